package capped_test

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/blob/blobtest"
	"github.com/vmapp/vmapp/blob/capped"
	"github.com/vmapp/vmapp/internal/ratecap"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
)

// clock is a test clock that moves only by the cap's sleeps: the bytes
// a reader moved by a time on it are what the cap let through by then,
// however fast the machine is.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return nil
}

// TestCapped: a capped store passes the blob.Store conformance suite on
// real MinIO; reads of a real MinIO object through a cap of 2 MB/s,
// range after range as downloads read through vmappd, move 20 MB in 10 s
// of the cap's clock, within 5%. A Purger stays one.
func TestCapped(t *testing.T) {
	srv := miniotest.Start(t)
	newStore := blobtest.Buckets(srv, "capped")
	t.Run("conformance", func(t *testing.T) {
		blobtest.Run(t, func(t *testing.T) blob.Store { return capped.Wrap(newStore(t), ratecap.New(1e9)) })
	})

	const rate = 2_000_000 // bytes per second
	const window = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw := newStore(t)
	data := blobtest.Data(3*rate*int(window/time.Second)/2, 1) // more than the window takes
	if _, err := raw.Put(ctx, "pkg", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Unix(0, 0)}
	st := capped.Wrap(raw, ratecap.NewWithClock(rate, clk.now, clk.sleep))
	if _, ok := st.(blob.Purger); !ok {
		t.Error("a Purger wrapped is no longer one")
	}
	start := clk.now()
	var moved int64
	buf := make([]byte, 32<<10)
	const rangeSize = 1 << 20 // a ReadRange's worth
	for off := int64(0); clk.now().Sub(start) < window; off += rangeSize {
		if off >= int64(len(data)) {
			t.Fatalf("the whole object (%d bytes) moved in %v of the cap's clock", len(data), clk.now().Sub(start))
		}
		r, err := st.Get(ctx, "pkg", off, rangeSize)
		if err != nil {
			t.Fatal(err)
		}
		for clk.now().Sub(start) < window {
			n, err := r.Read(buf)
			if !bytes.Equal(buf[:n], data[off+moved%rangeSize:off+moved%rangeSize+int64(n)]) {
				t.Fatalf("bytes %d+%d differ from the object's", off+moved%rangeSize, n)
			}
			moved += int64(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		r.Close()
	}
	want := float64(rate) * window.Seconds()
	t.Logf("%d bytes moved in %v of the cap's clock at %d B/s: %.2f%% of %.0f", moved, clk.now().Sub(start), rate, 100*float64(moved)/want, want)
	if d := float64(moved)/want - 1; d < -0.05 || d > 0.05 {
		t.Fatalf("%d bytes moved in %v at a cap of %d B/s: %.1f%% off %0.f", moved, window, rate, 100*d, want)
	}
}
