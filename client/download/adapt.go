package download

import "time"

const (
	adaptiveStart = 8
	adaptiveMax   = 16
	adaptiveStep  = 4
	adaptiveTick  = 300 * time.Millisecond
)

// adaptive is the rule of the adaptive pool, apart from any clock: fed the
// bytes received so far at each tick, it measures the throughput of
// windows of at least adaptiveTick, the first from the first byte
// (connecting and the wait for headers would make it too low, and the
// first step look as if it paid), and answers with the number of
// connections to run.
//
// The pool starts with adaptiveStart connections and takes adaptiveStep
// more (up to adaptiveMax) while each step raises throughput by more than
// 10%. A step that lowers it by more than 5% is taken back; one that merely
// doesn't pay is kept (more connections cost no more CPU per byte; taking
// it back left loopback downloads on fewer, and slower). Then it stops.
type adaptive struct {
	target int
	done   bool

	from      time.Time // the window's start; zero before the first byte
	fromBytes int64
	base      float64 // bytes/s before the last step
	step      int     // connections the last step added
}

// observe takes the bytes received by now (moved), when the first of them
// arrived (zero: none yet) and how many pieces wait to be fetched, and
// returns the number of connections to run.
func (a *adaptive) observe(now time.Time, moved int64, first time.Time, queued int) int {
	if a.done {
		return a.target
	}
	if a.from.IsZero() {
		if first.IsZero() {
			return a.target
		}
		a.from = first
	}
	el := now.Sub(a.from)
	if el < adaptiveTick-progressTick/2 {
		return a.target
	}
	rate := float64(moved-a.fromBytes) / el.Seconds()
	a.from, a.fromBytes = now, moved
	switch {
	case rate == 0:
		// Nothing arrived (a stall, a failover): no measure.
	case a.base == 0 || rate > a.base*1.1:
		a.base = rate
		a.step = min(adaptiveStep, adaptiveMax-a.target, queued)
		if a.step <= 0 {
			a.done = true
			break
		}
		a.target += a.step
	case rate < a.base*0.95:
		a.target = max(a.target-a.step, 1)
		a.done = true
	default:
		a.done = true
	}
	return a.target
}
