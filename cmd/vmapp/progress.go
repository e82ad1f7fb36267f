package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
)

// interactive reports whether progress may be drawn: stderr is a terminal
// and the output is not JSON.
func (c *cli) interactive() bool {
	if c.structured() {
		return false
	}
	f, ok := c.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// status prints a line about work in progress when interactive.
func (c *cli) status(format string, args ...any) {
	if c.interactive() {
		fmt.Fprintf(c.stderr, format+"\n", args...)
	}
}

// progress draws an upload's progress bar on stderr, at most 10 times a
// second. A nil *progress draws nothing.
type progress struct {
	c         *cli
	label     string
	start     time.Time
	startDone int64 // bytes the server held already when this run started
	started   bool
	last      time.Time
	done      int64
	total     int64
	width     int   // of the last line drawn
	drawn     int64 // done when the last line was drawn
}

const redrawEvery = 100 * time.Millisecond

func (c *cli) newProgress(label string) *progress {
	if !c.interactive() {
		return nil
	}
	return &progress{c: c, label: label}
}

// update is the client.UploadOptions.Progress callback.
func (p *progress) update(done, total int64) {
	if p == nil {
		return
	}
	now := time.Now()
	if !p.started {
		p.started, p.start, p.startDone = true, now, done
	}
	p.done, p.total = done, total
	if now.Sub(p.last) < redrawEvery && done < total {
		return
	}
	p.last = now
	p.draw(now)
}

func (p *progress) draw(now time.Time) {
	const barWidth = 24
	frac := 1.0
	if p.total > 0 {
		frac = float64(p.done) / float64(p.total)
	}
	filled := int(frac * barWidth)
	bar := strings.Repeat("=", filled) + strings.Repeat(" ", barWidth-filled)
	line := fmt.Sprintf("%s [%s] %3.0f%% %s / %s", p.label, bar, frac*100, formatBytes(p.done), formatBytes(p.total))
	if elapsed := now.Sub(p.start).Seconds(); elapsed > 0.2 {
		rate := float64(p.done-p.startDone) / elapsed
		line += fmt.Sprintf("  %s/s", formatBytes(int64(rate)))
		if rate > 0 && p.done < p.total {
			eta := time.Duration(float64(p.total-p.done) / rate * float64(time.Second))
			line += "  ETA " + formatETA(eta)
		}
	}
	pad := ""
	if n := p.width - len(line); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	p.width, p.drawn = len(line), p.done
	fmt.Fprintf(p.c.stderr, "\r%s%s", line, pad)
}

// finish ends the bar's line.
func (p *progress) finish(err error) {
	if p == nil || !p.started {
		return
	}
	if err == nil && p.drawn != p.done {
		p.draw(time.Now())
	}
	fmt.Fprintln(p.c.stderr)
}

func formatETA(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}
