// Package ratecap caps the bytes per second a machine moves: its
// downloads (vmapp-agent --max-download-rate) or what it serves to peers
// (--max-upload-rate). One Cap is shared by every transfer it covers, so
// that the cap holds for the machine, whatever the number of connections.
//
// A Cap is a token bucket (golang.org/x/time/rate) on a clock: the time
// package's, which tests run in a testing/synctest bubble where time moves
// only when every transfer waits, or one of the test's own (NewWithClock).
// Tests count the time a number of bytes took on it.
package ratecap

import (
	"context"
	"io"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// minBurst is the least a Cap lets through at once: a read's worth.
const minBurst = 64 << 10

// Cap limits a rate. A nil *Cap limits nothing.
type Cap struct {
	// mu makes a reservation's time and the reservation one step: a time
	// read before another transfer's reservation but used after it would
	// move the limiter's clock back and credit the same time twice.
	mu    sync.Mutex
	lim   *rate.Limiter
	burst int
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// New returns a cap of bytesPerSec (nil when it is 0 or less: no cap),
// on the time package's clock.
func New(bytesPerSec int64) *Cap {
	return NewWithClock(bytesPerSec, time.Now, sleepCtx)
}

// NewWithClock is New on the clock now, waiting with sleep. A test clock
// that moves by each sleep counts exactly only one transfer at a time
// (concurrent sleeps would add up): tests of several transfers sharing a
// cap use New in a testing/synctest bubble instead.
func NewWithClock(bytesPerSec int64, now func() time.Time, sleep func(ctx context.Context, d time.Duration) error) *Cap {
	if bytesPerSec <= 0 {
		return nil
	}
	// A twentieth of a second's worth at once: smooth at high rates, and
	// at least one read's worth at low ones.
	burst := int(max(minBurst, bytesPerSec/20))
	return &Cap{lim: rate.NewLimiter(rate.Limit(bytesPerSec), burst), burst: burst, now: now, sleep: sleep}
}

// SetRate changes the cap to bytesPerSec (more than 0) from now on; the
// burst stays.
func (c *Cap) SetRate(bytesPerSec int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lim.SetLimitAt(c.now(), rate.Limit(bytesPerSec))
}

// Rate is the cap, in bytes per second.
func (c *Cap) Rate() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int64(c.lim.Limit())
}

// Wait waits until n more bytes may move.
func (c *Cap) Wait(ctx context.Context, n int) error {
	if c == nil {
		return nil
	}
	for n > 0 {
		k := min(n, c.burst)
		c.mu.Lock()
		now := c.now()
		r := c.lim.ReserveN(now, k)
		c.mu.Unlock()
		if d := r.DelayFrom(now); d > 0 {
			if err := c.sleep(ctx, d); err != nil {
				r.CancelAt(c.now())
				return err
			}
		}
		n -= k
	}
	return nil
}

// Reader caps the bytes read from r (waiting after each read).
func (c *Cap) Reader(ctx context.Context, r io.ReadCloser) io.ReadCloser {
	if c == nil {
		return r
	}
	return &reader{ReadCloser: r, c: c, ctx: ctx}
}

type reader struct {
	io.ReadCloser
	c   *Cap
	ctx context.Context
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p[:min(len(p), r.c.burst)])
	if n > 0 {
		if werr := r.c.Wait(r.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// Writer caps the bytes written to w (waiting before each write).
func (c *Cap) Writer(ctx context.Context, w io.Writer) io.Writer {
	if c == nil {
		return w
	}
	return &writer{w: w, c: c, ctx: ctx}
}

type writer struct {
	w   io.Writer
	c   *Cap
	ctx context.Context
}

func (w *writer) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		k := min(len(p)-done, w.c.burst)
		if err := w.c.Wait(w.ctx, k); err != nil {
			return done, err
		}
		n, err := w.w.Write(p[done : done+k])
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
