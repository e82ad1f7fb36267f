package download

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/ratecap"
)

// peersThenStore gives every plan the peers (tierPeer, named as peers) and
// then the store's replica.
func peersThenStore(store Source, peers ...Source) func(int) []*source {
	return func(int) []*source {
		var out []*source
		for _, p := range peers {
			out = append(out, &source{Source: p, tier: tierPeer, peer: p.Name()})
		}
		return append(out, &source{Source: store, tier: tierRegion})
	}
}

// Peers come first, their pieces spread over them; one that sends a bad
// piece is dropped at once and reported, one that fails three times in a
// row is dropped; the store is read only for what no peer sent, and the
// file is right.
func TestPeers(t *testing.T) {
	const pieces = 24
	fx := newFixture(t, pieces*testPiece-7, true)
	good, liar, cut, store := newFake("good", fx.data), newFake("liar", fx.data), newFake("cut", fx.data), newFake("store", fx.data)
	liar.flip = 5*testPiece + 3 // in piece 5: pieces before it are sound
	cut.err = errs.New(errs.Unavailable, "", "connection refused")
	var mu sync.Mutex
	var bad []string
	o := Options{Parallelism: 1, OnBadPeer: func(p string) { mu.Lock(); bad = append(bad, p); mu.Unlock() }}
	if err := fx.run(t, o, peersThenStore(store, liar, good, cut)); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	if !slices.Equal(bad, []string{"liar"}) {
		t.Fatalf("reported %v, want the liar; logs:\n%s", bad, fx.logs.String())
	}
	// The failing peer went behind the good one after its first failure.
	if n := len(cut.reads()); n != 1 {
		t.Fatalf("the peer that fails was asked %d times, want once", n)
	}
	// The liar was asked once (a run from piece 0), and not again after
	// its bad piece.
	if r := liar.reads(); len(r) != 1 || !strings.HasPrefix(r[0], "0-") {
		t.Fatalf("the liar was asked for %v", r)
	}
	if len(store.reads()) != 0 {
		t.Fatalf("the store was read while a good peer served: %v", store.reads())
	}
	if !strings.Contains(fx.logs.String(), "a peer sent a piece that failed verification") {
		t.Fatalf("no warning of the bad peer in:\n%s", fx.logs.String())
	}

	// A peer that fails three times in a row is dropped; a store never.
	peer, replica := &source{Source: cut, tier: tierPeer, peer: "cut", health: &health{}}, &source{Source: store, tier: tierRegion, health: &health{}}
	for i := range peerMaxFails {
		if peer.health.dropped.Load() {
			t.Fatalf("a peer dropped after %d failures", i)
		}
		peer.result(cut.err)
		replica.result(cut.err)
	}
	if !peer.health.dropped.Load() || replica.health.dropped.Load() {
		t.Fatalf("after %d failures: peer dropped %v, replica dropped %v", peerMaxFails, peer.health.dropped.Load(), replica.health.dropped.Load())
	}

	// Every peer bad: the store serves.
	fx = newFixture(t, 4*testPiece, true)
	liar, store = newFake("liar", fx.data), newFake("store", fx.data)
	liar.flip = 0
	if err := fx.run(t, Options{Parallelism: 1}, peersThenStore(store, liar)); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	if len(liar.reads()) != 1 || len(store.reads()) == 0 {
		t.Fatalf("liar asked %v, store %v", liar.reads(), store.reads())
	}
}

// A download's rate cap, counted against the cap's own clock: its bytes
// took their size over the rate (less the bucket's first burst).
func TestDownloadCap(t *testing.T) {
	const rate = 4 * testPiece // bytes per second
	fx := newFixture(t, 40*testPiece, true)
	var mu sync.Mutex
	clock := time.Unix(0, 0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	sleep := func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		clock = clock.Add(d)
		mu.Unlock()
		return ctx.Err()
	}
	cp := ratecap.NewWithClock(rate, now, sleep)
	if err := fx.run(t, Options{Parallelism: 4, Cap: cp}, in(at(tierRegion, newFake("store", fx.data)))); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	took := now().Sub(time.Unix(0, 0))
	burst := max(64<<10, rate/20)
	want := time.Duration(float64(len(fx.data)-burst) / rate * float64(time.Second))
	if took < want-time.Millisecond || took > want+time.Millisecond {
		t.Fatalf("%d bytes took %v on the cap's clock; want %v", len(fx.data), took, want)
	}
}
