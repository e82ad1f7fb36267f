package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmapp/vmapp/errs"
)

// A download in progress serves its verified pieces only, each read back
// and verified again: a range over a piece not verified is refused; a
// verified piece changed on disk since is not sent, nor anything after
// it; once the download ends the share serves nothing.
func TestShare(t *testing.T) {
	const pieces = 8
	fx := newFixture(t, pieces*testPiece-100, true)
	var sh *Share
	var verified atomic.Int32
	var failed []string
	fail := func(format string, args ...any) {
		failed = append(failed, errs.New(errs.Internal, "", format, args...).Error())
	}
	o := Options{Parallelism: 1, OnShare: func(s *Share) { sh = s }, OnPiece: func() {
		if verified.Add(1) != 3 {
			return
		}
		// Pieces 0-2 are verified (one worker, in order).
		if bits, n := sh.Pieces(); n != 3 || !bytes.Equal(bits, []byte{0b111}) {
			fail("pieces %08b (%d), want 0-2", bits, n)
		}
		if !sh.Covers(0, 3*testPiece) || sh.Covers(0, 3*testPiece+1) || sh.Covers(-1, 10) {
			fail("covers: wrong")
		}
		var b bytes.Buffer
		if err := sh.WriteRange(&b, testPiece+10, testPiece); err != nil || !bytes.Equal(b.Bytes(), fx.data[testPiece+10:2*testPiece+10]) {
			fail("a verified range: %v, %d bytes", err, b.Len())
		}
		b.Reset()
		if err := sh.WriteRange(&b, 3*testPiece, 10); !errs.Is(err, errs.NotFound) || b.Len() != 0 {
			fail("a piece not verified: %v, %d bytes sent", err, b.Len())
		}
		// Piece 1 changed on disk: piece 0 is sent, nothing of piece 1.
		f, err := os.OpenFile(fx.dest+PartialSuffix, os.O_RDWR, 0)
		if err != nil {
			fail("%v", err)
			return
		}
		defer f.Close()
		f.WriteAt([]byte{^fx.data[testPiece+5]}, testPiece+5)
		b.Reset()
		if err := sh.WriteRange(&b, 0, 2*testPiece); !errs.Is(err, errs.DataLoss) || !bytes.Equal(b.Bytes(), fx.data[:testPiece]) {
			fail("a changed piece: %v, %d bytes sent", err, b.Len())
		}
		f.WriteAt(fx.data[testPiece+5:testPiece+6], testPiece+5)
	}}
	if err := fx.run(t, o, in(at(tierRegion, newFake("store", fx.data)))); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	if len(failed) > 0 || verified.Load() != pieces {
		t.Fatalf("%d pieces verified; %v", verified.Load(), failed)
	}
	if sh.Covers(0, 1) || sh.WriteRange(io.Discard, 0, 1) == nil {
		t.Fatal("the share still serves after the download ended")
	}
}

// gauge is a Source that counts the reads of another in flight, and can
// hold them until released.
type gauge struct {
	Source
	hold    chan struct{} // nil: no hold
	mu      sync.Mutex
	now, hi int
}

func (g *gauge) ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	g.mu.Lock()
	g.now++
	g.hi = max(g.hi, g.now)
	g.mu.Unlock()
	if g.hold != nil {
		select {
		case <-g.hold:
		case <-ctx.Done():
		}
	}
	r, err := g.Source.ReadRange(ctx, off, n)
	if err != nil {
		g.done()
		return nil, err
	}
	return &gaugeBody{ReadCloser: r, g: g}, nil
}

func (g *gauge) done() { g.mu.Lock(); g.now--; g.mu.Unlock() }

type gaugeBody struct {
	io.ReadCloser
	g    *gauge
	once sync.Once
}

func (b *gaugeBody) Close() error { b.once.Do(b.g.done); return b.ReadCloser.Close() }

// evenPieces is the bitmap of the even pieces of n.
func evenPieces(n int) []byte {
	b := make([]byte, (n+7)/8)
	for i := 0; i < n; i += 2 {
		b[i/8] |= 1 << (i % 8)
	}
	return b
}

// In a swarm, the pieces the plan gives the machine (store_pieces) come
// from the store, the others from the peer that holds them: each piece
// once, a piece per read.
func TestSwarmStorePieces(t *testing.T) {
	const pieces = 24
	fx := newFixture(t, pieces*testPiece, true)
	fx.plan.PeerRefresh = durationpb.New(time.Hour)
	for i := 1; i < pieces; i += 2 {
		fx.plan.StorePieces = append(fx.plan.StorePieces, uint32(i))
	}
	peer, store := newFake("peer", fx.data), newFake("store", fx.data)
	srcs := func(int) []*source {
		return []*source{{Source: peer, tier: tierPeer, peer: "peer", pieces: evenPieces(pieces)}, {Source: store, tier: tierRegion}}
	}
	if err := fx.run(t, Options{Parallelism: 8}, srcs); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	fromPeer, fromStore := piecesOf(t, peer.reads()), piecesOf(t, store.reads())
	slices.Sort(fromPeer)
	slices.Sort(fromStore)
	var even, odd []int
	for i := range pieces {
		if i%2 == 0 {
			even = append(even, i)
		} else {
			odd = append(odd, i)
		}
	}
	if !slices.Equal(fromPeer, even) || !slices.Equal(fromStore, odd) || len(store.reads()) != pieces/2 {
		t.Fatalf("the peer sent %v, the store %v in %d reads; want the even pieces from the peer, the odd ones from the store, a read each",
			fromPeer, fromStore, len(store.reads()))
	}
}

// In a swarm, the pieces the plan doesn't give the machine wait for a peer
// that a later plan names: while the store holds its read of the one piece
// given, the peer of the plans after sends every other piece.
func TestSwarmWaitsForPeers(t *testing.T) {
	defer func(p int) { swarmPatience = p }(swarmPatience)
	swarmPatience = 1 << 30 // no fallback to the store
	const pieces = 16
	fx := newFixture(t, pieces*testPiece, true)
	fx.plan.PeerRefresh = durationpb.New(time.Millisecond)
	fx.plan.StorePieces = []uint32{5}
	peer, store := newFake("peer", fx.data), &gauge{Source: newFake("store", fx.data), hold: make(chan struct{})}
	srcs := func(int) []*source {
		out := []*source{{Source: store, tier: tierRegion}}
		store.mu.Lock()
		held := store.now > 0
		store.mu.Unlock()
		if held { // once the store holds a read
			out = append([]*source{{Source: peer, tier: tierPeer, peer: "peer", pieces: allBut(pieces, 5)}}, out...)
		}
		return out
	}
	go func() {
		deadline := time.Now().Add(2 * time.Minute) // hang guard
		for len(peer.reads()) < pieces-1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		close(store.hold)
	}()
	if err := fx.run(t, Options{Parallelism: 8}, srcs); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	if fromStore := piecesOf(t, store.Source.(*fakeSource).reads()); !slices.Equal(fromStore, []int{5}) || len(peer.reads()) != pieces-1 {
		t.Fatalf("the store sent %v, the peer %v", fromStore, piecesOf(t, peer.reads()))
	}
}

// In a swarm whose plans give the machine no piece and name no peer that
// holds one, the download doesn't hang: after swarmPatience plans with
// nothing to fetch, it takes the pieces from the store, each once.
func TestSwarmFallsBackToStore(t *testing.T) {
	const pieces = 6
	fx := newFixture(t, pieces*testPiece, true)
	fx.plan.PeerRefresh = durationpb.New(time.Millisecond)
	store := newFake("store", fx.data)
	if err := fx.run(t, Options{Parallelism: 4}, func(int) []*source { return []*source{{Source: store, tier: tierRegion}} }); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	got := piecesOf(t, store.reads())
	slices.Sort(got)
	if !slices.Equal(got, []int{0, 1, 2, 3, 4, 5}) {
		t.Fatalf("the store sent %v", got)
	}
	if n := fx.gets.Load(); n < int32(swarmPatience) {
		t.Fatalf("%d plans asked for before the store was read; want %d at least", n, swarmPatience)
	}
}

// allBut is the bitmap of the n pieces but one.
func allBut(n, but int) []byte {
	b := make([]byte, (n+7)/8)
	for i := range n {
		if i != but {
			b[i/8] |= 1 << (i % 8)
		}
	}
	return b
}

// In a swarm, a piece chosen for its peers never goes to the store when
// they fail: it goes back to the swarm, and a later plan's peer sends it.
// (The store's bytes are for pieces no machine holds.)
func TestSwarmPeerFailureWaits(t *testing.T) {
	defer func(p int) { swarmPatience = p }(swarmPatience)
	swarmPatience = 1 << 30 // no fallback to the store
	const pieces = 8
	fx := newFixture(t, pieces*testPiece, true)
	fx.plan.PeerRefresh = durationpb.New(time.Millisecond)
	bad, good, store := newFake("bad", fx.data), newFake("good", fx.data), newFake("store", fx.data)
	bad.err = errCut
	srcs := func(gen int) []*source {
		out := []*source{{Source: bad, tier: tierPeer, peer: "bad"}}
		if len(bad.reads()) >= 2 { // the good peer comes once the bad one failed twice
			out = append(out, &source{Source: good, tier: tierPeer, peer: "good"})
		}
		return append(out, &source{Source: store, tier: tierRegion})
	}
	if err := fx.run(t, Options{Parallelism: 4}, srcs); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	if n := len(store.reads()); n != 0 || len(bad.reads()) < 2 {
		t.Fatalf("the store was asked %d times (want 0), the bad peer %d (want 2 at least)", n, len(bad.reads()))
	}
	if got := piecesOf(t, good.reads()); len(got) != pieces {
		t.Fatalf("the good peer sent %v", got)
	}
}

// BenchmarkPieceRecheck: what a share's re-check of an 8 MiB piece costs,
// the first time (its sha256) and after (the CRC-32C of what passed).
func BenchmarkPieceRecheck(b *testing.B) {
	piece := make([]byte, 8<<20)
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(int64(len(piece)))
		for b.Loop() {
			sha256.Sum256(piece)
		}
	})
	b.Run("crc32c", func(b *testing.B) {
		b.SetBytes(int64(len(piece)))
		for b.Loop() {
			crc32.Checksum(piece, castagnoli)
		}
	})
}
