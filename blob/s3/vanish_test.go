package s3_test

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/vmapp/vmapp/internal/testkit/testnet"
)

// TestVanishedStoreFailsAPart: the store's host vanishes while a part is
// being sent to it (its packets dropped both ways, as when its container
// is killed: no reset, only silence). The upload fails on its own, well
// before the kernel's retransmissions would give up (about 15 minutes):
// the replicator's copy into a region whose MinIO was killed used to hang
// that long. The 5-minute context is only a guard: the call must return
// with its own error while the context is still live.
func TestVanishedStoreFailsAPart(t *testing.T) {
	holes := testnet.NewBlackholer(t)
	st, srv := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	id, err := st.NewMultipart(ctx, "vanish", nil)
	if err != nil {
		t.Fatalf("NewMultipart: %v", err)
	}
	const size = 256 << 20
	body := &tripwire{r: io.LimitReader(zeros{}, size), at: 8 << 20, trip: func() {
		if err := holes.Drop(srv.Addr()); err != nil {
			t.Errorf("drop %s: %v", srv.Addr(), err)
		}
	}}
	_, err = st.PutPart(ctx, "vanish", id, 1, body, size, nil)
	if err == nil {
		t.Fatal("a part sent to a store that vanished half-way was stored")
	}
	if ctx.Err() != nil {
		t.Fatalf("the part upload hung until the test's guard: %v", err)
	}
	t.Logf("the upload failed on its own: %v", err)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// tripwire calls trip once after at bytes were read from it.
type tripwire struct {
	r    io.Reader
	at   int64
	read int64
	once sync.Once
	trip func()
}

func (w *tripwire) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if w.read += int64(n); w.read >= w.at {
		w.once.Do(w.trip)
	}
	return n, err
}
