//go:build bench

package bench

import (
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// The plots' colours (matplotlib's first two).
var (
	plotBlue   = color.RGBA{31, 119, 180, 255}
	plotOrange = color.RGBA{255, 127, 14, 255}
)

// series is one line of a plot.
type series struct {
	name   string // in the legend; "" for none
	xs, ys []float64
	color  color.Color
	dashes []vg.Length // nil: a solid line
	points bool        // mark each point
	step   bool        // a step line: y holds until the next x
}

// writePlot draws series as lines on one pair of axes and writes a PNG of
// 800 × 480 px to path. style, if not nil, adjusts the plot (scales,
// ticks, ranges) before it is drawn.
func writePlot(path, title, xLabel, yLabel string, ss []series, style func(*plot.Plot)) error {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, xLabel, yLabel
	p.Add(plotter.NewGrid())
	p.Legend.Top, p.Legend.Left = true, true
	for _, s := range ss {
		xys := make(plotter.XYs, len(s.xs))
		for i := range s.xs {
			xys[i].X, xys[i].Y = s.xs[i], s.ys[i]
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color, l.Dashes, l.Width = s.color, s.dashes, vg.Points(1.5)
		if s.step {
			l.StepStyle = plotter.PostStep
		}
		p.Add(l)
		thumbs := []plot.Thumbnailer{l}
		if s.points {
			sc, err := plotter.NewScatter(xys)
			if err != nil {
				return err
			}
			sc.Color = s.color
			p.Add(sc)
			thumbs = append(thumbs, sc)
		}
		if s.name != "" {
			p.Legend.Add(s.name, thumbs...)
		}
	}
	if style != nil {
		style(p)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return p.Save(600, 360, path) // points; at the PNG's 96 dpi, 800 × 480 px
}
