package ratecap

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Bytes moved through a cap, counted on a synctest bubble's clock (it
// moves only when every stream waits, so the count is exact): 10 s
// of them at the cap take 10 s, less the first burst, whichever way they
// move, in one stream or four sharing the cap.
func TestCap(t *testing.T) {
	const rate = 1 << 20 // 1 MiB/s
	for _, c := range []struct {
		name    string
		streams int
		write   bool
	}{{"read", 1, false}, {"write", 1, true}, {"four readers", 4, false}} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				cp := New(rate)
				var wg sync.WaitGroup
				var mu sync.Mutex
				total := int64(0)
				for range c.streams {
					wg.Go(func() {
						data := bytes.Repeat([]byte{'x'}, 10*rate/c.streams)
						var n int64
						var err error
						if c.write {
							n, err = io.Copy(cp.Writer(context.Background(), io.Discard), bytes.NewReader(data))
						} else {
							n, err = io.Copy(io.Discard, cp.Reader(context.Background(), io.NopCloser(bytes.NewReader(data))))
						}
						if err != nil {
							t.Error(err)
						}
						mu.Lock()
						total += n
						mu.Unlock()
					})
				}
				wg.Wait()
				took := time.Since(start)
				// The bucket starts full: its burst moves at once.
				want := time.Duration(float64(total-int64(cp.burst)) / rate * float64(time.Second))
				if total != 10*rate || took < want-time.Millisecond || took > want+time.Millisecond {
					t.Fatalf("%d bytes took %v on the bubble's clock, want %v", total, took, want)
				}
			})
		})
	}
}

// No cap: nil, which passes everything; a cancelled wait says so.
func TestNoCapAndCancel(t *testing.T) {
	if New(0) != nil || New(-5) != nil {
		t.Fatal("a cap of 0 or less limits")
	}
	var c *Cap
	r := io.NopCloser(bytes.NewReader(nil))
	if c.Reader(context.Background(), r) != r || c.Wait(context.Background(), 1<<30) != nil {
		t.Fatal("a nil cap limits")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cp := New(1)
	if err := cp.Wait(ctx, 10*minBurst); err != context.Canceled {
		t.Fatalf("a cancelled wait: %v", err)
	}
}

// SetRate changes the cap from then on: a second of bytes at the first
// rate, then a second's worth of that at a third of it, takes three.
func TestSetRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate = 3 << 20
		cp := New(rate)
		read := func(n int) time.Duration {
			start := time.Now()
			if _, err := io.Copy(io.Discard, cp.Reader(context.Background(), io.NopCloser(bytes.NewReader(make([]byte, n))))); err != nil {
				t.Fatal(err)
			}
			return time.Since(start)
		}
		read(cp.burst) // the bucket's first burst: at once
		if took := read(rate); took < time.Second-time.Millisecond || took > time.Second+time.Millisecond {
			t.Fatalf("a second's bytes at the cap took %v", took)
		}
		cp.SetRate(rate / 3)
		if cp.Rate() != rate/3 {
			t.Fatalf("Rate %d after SetRate(%d)", cp.Rate(), rate/3)
		}
		if took := read(rate); took < 3*time.Second-time.Millisecond || took > 3*time.Second+time.Millisecond {
			t.Fatalf("the same bytes at a third of the cap took %v, want 3s", took)
		}
	})
}
