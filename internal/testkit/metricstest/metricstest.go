// Package metricstest reads a running process's Prometheus /metrics for
// tests: scraped over HTTP, linted with Prometheus' own linter, and read
// series by series.
package metricstest

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// Get GETs path from addr (host:port): the status code and the body.
func Get(t testing.TB, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Sample returns the value of the exposition line of series (a name and
// its labels, sorted, as printed) in body; "" when there is none.
func Sample(body, series string) string {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			return v
		}
	}
	return ""
}

// Lint fails t for every problem Prometheus' linter (promlint, what
// promtool check metrics runs) finds in body, scraped from who.
func Lint(t testing.TB, who, body string) {
	t.Helper()
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("%s /metrics: %v", who, err)
	}
	for _, p := range problems {
		t.Errorf("%s /metrics: %s: %s", who, p.Metric, p.Text)
	}
}

// Value sums the samples of the counters and gauges named name in g whose
// labels include labels (for a histogram, its observations' count).
func Value(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}
