package download

import (
	"testing"
	"time"
)

// TestAdaptive is the adaptive pool's rule on a clock of its own: the
// throughput of each window, and the connections it leads to.
func TestAdaptive(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	const ms = time.Millisecond
	// tick is one observation: at (after t0), the bytes received by then,
	// the pieces queued, and the connections wanted after it.
	type tick struct {
		at     time.Duration
		moved  int64
		queued int
		want   int
	}
	const mb = 1 << 20
	for _, c := range []struct {
		name  string
		first time.Duration // first byte at t0+first; <0: never
		ticks []tick
	}{
		{"waits for the first byte", -1, []tick{{100 * ms, 0, 24, 8}, {1000 * ms, 0, 24, 8}}},
		{"the first window starts at the first byte", 500 * ms, []tick{
			{600 * ms, 10 * mb, 24, 8}, // 100ms of data: too short
			{700 * ms, 20 * mb, 24, 8},
			{800 * ms, 30 * mb, 24, 12}, // 300ms: measured (100 MB/s), one step
		}},
		{"grows while each step pays by more than 10%", 0, []tick{
			{300 * ms, 30 * mb, 24, 12},  // 100 MB/s
			{600 * ms, 64 * mb, 24, 16},  // 113 MB/s: paid
			{900 * ms, 102 * mb, 24, 16}, // 127 MB/s: paid, but 16 is the most
			{1200 * ms, 200 * mb, 24, 16},
		}},
		{"keeps a step that doesn't pay and stops", 0, []tick{
			{300 * ms, 30 * mb, 24, 12}, // 100 MB/s
			{600 * ms, 62 * mb, 24, 12}, // 107 MB/s: not more than 10%, not less than -5%
			{900 * ms, 63 * mb, 24, 12}, // much worse, but no longer adapting
			{1200 * ms, 200 * mb, 24, 12},
		}},
		{"takes back a step that costs more than 5%", 0, []tick{
			{300 * ms, 30 * mb, 24, 12}, // 100 MB/s
			{600 * ms, 58 * mb, 24, 8},  // 93 MB/s
			{900 * ms, 200 * mb, 24, 8}, // no longer adapting
		}},
		{"a window in which nothing arrived is no measure", 0, []tick{
			{300 * ms, 30 * mb, 24, 12},
			{600 * ms, 30 * mb, 24, 12}, // a stall: not a step that cost everything
			{900 * ms, 64 * mb, 24, 16}, // 113 MB/s against the 100 before the stall
		}},
		{"a window is at least 250ms", 0, []tick{
			{249 * ms, 30 * mb, 24, 8},
			{250 * ms, 30 * mb, 24, 12},
		}},
		{"a step is no larger than the pieces left", 0, []tick{{300 * ms, 30 * mb, 2, 10}}},
		{"no pieces left: no step", 0, []tick{{300 * ms, 30 * mb, 0, 8}, {600 * ms, 90 * mb, 24, 8}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := &adaptive{target: adaptiveStart}
			var first time.Time
			if c.first >= 0 {
				first = t0.Add(c.first)
			}
			for i, k := range c.ticks {
				if got := a.observe(t0.Add(k.at), k.moved, first, k.queued); got != k.want {
					t.Fatalf("tick %d (%v, %d bytes): %d connections, want %d", i, k.at, k.moved, got, k.want)
				}
			}
		})
	}
	// The pool starts with fewer connections than pieces when there are
	// few: its steps start from there.
	a := &adaptive{target: 3}
	if got := a.observe(t0.Add(300*ms), 30*mb, t0, 5); got != 7 {
		t.Fatalf("from 3 connections with 5 pieces queued: %d, want 7", got)
	}
}
