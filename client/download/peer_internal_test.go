package download

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
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

// A download's rate cap, counted on a synctest bubble's clock (it moves
// only when every transfer waits): its bytes took their size over the
// rate (less the bucket's first burst).
func TestDownloadCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate = 4 * testPiece // bytes per second
		fx := newFixture(t, 40*testPiece, true)
		start := time.Now()
		if err := fx.run(t, Options{Parallelism: 4, Cap: ratecap.New(rate)}, in(at(tierRegion, newFake("store", fx.data)))); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		fx.check(t)
		burst := max(64<<10, rate/20)
		want := time.Duration(float64(len(fx.data)-burst) / rate * float64(time.Second))
		if took < want-time.Millisecond || took > want+time.Millisecond {
			t.Fatalf("%d bytes took %v on the bubble's clock; want %v", len(fx.data), took, want)
		}
	})
}

// piecesOf turns a fake's reads ("off-end") into the pieces they cover.
func piecesOf(t *testing.T, reads []string) []int {
	t.Helper()
	var out []int
	for _, r := range reads {
		var off, end int
		if _, err := fmt.Sscanf(r, "%d-%d", &off, &end); err != nil {
			t.Fatal(err)
		}
		for i := off / testPiece; i <= end/testPiece; i++ {
			out = append(out, i)
		}
	}
	slices.Sort(out)
	return out
}

// bits is a PeerSource's pieces bitmap of the pieces ps.
func bits(ps ...int) []byte {
	b := make([]byte, 1)
	for _, i := range ps {
		b[i/8] |= 1 << (i % 8)
	}
	return b
}

// Peers that hold some pieces: each is asked only for those; the pieces
// fewest peers hold come first (none: the store's), and the store is read
// for what no peer holds alone. A partial peer's bad piece is fetched from
// the store (the other peer doesn't hold it): the file is right.
func TestPartialPeersRarestFirst(t *testing.T) {
	srcs := []*source{{tier: tierPeer, pieces: bits(0, 1, 2, 3)}, {tier: tierPeer, pieces: bits(2, 3, 4, 5)}, {tier: tierRegion}}
	order := rarestFirst([]int{0, 1, 2, 3, 4, 5, 6, 7}, srcs, "vm-1")
	group := func(ps []int) []int { return slices.Sorted(slices.Values(ps)) }
	if !slices.Equal(group(order[:2]), []int{6, 7}) || !slices.Equal(group(order[2:6]), []int{0, 1, 4, 5}) || !slices.Equal(group(order[6:]), []int{2, 3}) {
		t.Fatalf("rarest first: %v", order)
	}
	if got := rarestFirst([]int{0, 1, 2}, []*source{{tier: tierPeer}, {tier: tierRegion}}, "vm-1"); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("whole peers only: the order changed to %v", got)
	}

	for _, flip := range []bool{false, true} {
		fx := newFixture(t, 8*testPiece, true)
		a, b, store := newFake("a", fx.data), newFake("b", fx.data), newFake("store", fx.data)
		if flip {
			a.flip = 1*testPiece + 9
		}
		var bad []string
		o := Options{Parallelism: 1, MachineID: "vm-1", OnBadPeer: func(p string) { bad = append(bad, p) }}
		err := fx.run(t, o, func(int) []*source {
			return []*source{{Source: a, tier: tierPeer, peer: "a", pieces: bits(0, 1, 2, 3)},
				{Source: b, tier: tierPeer, peer: "b", pieces: bits(2, 3, 4, 5)}, {Source: store, tier: tierRegion}}
		})
		if err != nil {
			t.Fatal(err)
		}
		fx.check(t)
		fromA, fromB, fromStore := piecesOf(t, a.reads()), piecesOf(t, b.reads()), piecesOf(t, store.reads())
		t.Logf("flip %v: a %v, b %v, store %v", flip, fromA, fromB, fromStore)
		for _, i := range fromA {
			if i > 3 {
				t.Fatalf("peer a was asked for piece %d it doesn't hold (%v)", i, fromA)
			}
		}
		for _, i := range fromB {
			if i < 2 || i > 5 {
				t.Fatalf("peer b was asked for piece %d it doesn't hold (%v)", i, fromB)
			}
		}
		wantStore := []int{6, 7}
		if flip {
			wantStore = []int{1, 6, 7} // a dropped at piece 1, which b doesn't hold
			if !slices.Equal(bad, []string{"a"}) {
				t.Fatalf("reported %v, want a", bad)
			}
		}
		if !slices.Equal(fromStore, wantStore) {
			t.Fatalf("the store served pieces %v, want %v", fromStore, wantStore)
		}
	}
}
