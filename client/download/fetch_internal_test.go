package download

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/shachain"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// The scheduler's tests run whole downloads into real files from fake
// sources that serve the artifact's bytes from memory, some of them
// wrongly. (The real sources, presigned URLs of MinIO replicas and
// vmappd's ReadRange, are download_test.go's.)

const testPiece = 64 << 10

// fakeSource serves data, or fails in the ways its fields say.
type fakeSource struct {
	name string
	data []byte
	err  error // every ReadRange fails with it
	flip int64 // the offset of a byte sent wrong; -1: none
	cut  int64 // the offset at which the reader fails; 0: never
	// cutErr is the error of the reader cut; nil: errCut.
	cutErr error
	// short wraps each reader (iotest.OneByteReader, HalfReader); nil:
	// reads as large as asked.
	short func(io.Reader) io.Reader

	mu    sync.Mutex
	asked []string // "first-last" of each ReadRange, in order
}

var errCut = errors.New("connection cut by the test")

func newFake(name string, data []byte) *fakeSource {
	return &fakeSource{name: name, data: data, flip: -1}
}

func (s *fakeSource) Name() string   { return s.name }
func (s *fakeSource) String() string { return "fake " + s.name }

func (s *fakeSource) ReadRange(_ context.Context, off, n int64) (io.ReadCloser, error) {
	s.mu.Lock()
	s.asked = append(s.asked, fmt.Sprintf("%d-%d", off, off+n-1))
	s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	b := bytes.Clone(s.data[off : off+n])
	if s.flip >= off && s.flip < off+n {
		b[s.flip-off] ^= 1
	}
	var r io.Reader = bytes.NewReader(b)
	if s.cut > off && s.cut < off+n {
		r = io.MultiReader(bytes.NewReader(b[:s.cut-off]), iotest.ErrReader(cmp.Or(s.cutErr, errCut)))
	}
	if s.short != nil {
		r = s.short(r)
	}
	return io.NopCloser(r), nil
}

func (s *fakeSource) reads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.asked)
}

// span is "first-last" of pieces [from, to).
func span(size int64, from, to int) string {
	return fmt.Sprintf("%d-%d", int64(from)*testPiece, min(int64(to)*testPiece, size)-1)
}

// testPlan is the plan of data in pieces of testPiece bytes, with the
// pieces' chaining values when chain is set.
func testPlan(data []byte, chain bool) *pb.DownloadPlan {
	p := &pb.DownloadPlan{Gallery: "g", Application: "a", Version: "1.0.0", Region: "eastus",
		SizeBytes: int64(len(data)), PieceSize: testPiece}
	whole := sha256.New()
	for off := 0; off < len(data); off += testPiece {
		piece := data[off:min(off+testPiece, len(data))]
		sum := sha256.Sum256(piece)
		p.PieceSha256 = append(p.PieceSha256, sum[:])
		whole.Write(piece)
		if chain && off+testPiece < len(data) {
			p.PieceChain = append(p.PieceChain, shachain.Value(whole))
		}
	}
	p.Sha256 = hex.EncodeToString(whole.Sum(nil))
	return p
}

// fixture is a download of data into a temporary directory.
type fixture struct {
	data []byte
	plan *pb.DownloadPlan
	dest string
	logs syncBuffer
	gets atomic.Int32 // plans asked for after the first
	m    *meter
}

func newFixture(t *testing.T, size int, chain bool) *fixture {
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(size)}).Read(data)
	return &fixture{data: data, plan: testPlan(data, chain), dest: filepath.Join(t.TempDir(), "pkg")}
}

// run downloads with the sources that sources returns for each plan: gen
// counts the plans, 0 the first. Renewals get the same plan again. The
// meter of the download is left in fx.
func (fx *fixture) run(t *testing.T, o Options, sources func(gen int) []*source) error {
	t.Helper()
	art, err := newArtifact(fx.plan, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE)
	if err != nil {
		t.Fatal(err)
	}
	gen := -1
	pl := newPlanner(fx.plan, art, time.Now,
		func(context.Context) (*pb.DownloadPlan, error) { fx.gets.Add(1); return fx.plan, nil },
		func(*pb.DownloadPlan) []*source { gen++; return sources(gen) })
	o.Logger = slog.New(slog.NewTextHandler(&fx.logs, nil))
	rep := newReporter(nil, target{}, art.what, o.Logger)
	rep.onBadPeer = o.OnBadPeer
	d := newDownloader(art, fx.dest, o, pl, rep)
	fx.m = &d.m
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return d.run(ctx)
}

// check checks that dest holds the data and nothing is left beside it.
func (fx *fixture) check(t *testing.T) {
	t.Helper()
	got, err := os.ReadFile(fx.dest)
	if err != nil || !bytes.Equal(got, fx.data) {
		t.Fatalf("dest: %d bytes (%v), want the %d bytes served", len(got), err, len(fx.data))
	}
	for _, s := range []string{PartialSuffix, StateSuffix} {
		if _, err := os.Stat(fx.dest + s); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s is left (%v)", fx.dest+s, err)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// tiered is a source and its tier.
type tiered struct {
	t tier
	s Source
}

func at(t tier, s Source) tiered { return tiered{t, s} }

// in gives the same sources to every plan.
func in(srcs ...tiered) func(int) []*source {
	return func(int) []*source {
		var out []*source
		for _, s := range srcs {
			out = append(out, &source{Source: s.s, tier: s.t})
		}
		return out
	}
}

const size6 = 6*testPiece - 100 // 6 pieces

// One worker asks the first source for runs of pieces, a read each
// (shorter as the queue empties), however short the reads it gets.
func TestFetchRun(t *testing.T) {
	for _, c := range []struct {
		name  string
		short func(io.Reader) io.Reader
	}{{"reads as large as asked", nil}, {"half reads", iotest.HalfReader}, {"one byte at a time", iotest.OneByteReader}} {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture(t, size6, true)
			a, b := newFake("a", fx.data), newFake("b", fx.data)
			a.short = c.short
			var last atomic.Int64
			if err := fx.run(t, Options{Parallelism: 1, Progress: func(done, _ int64) { last.Store(done) }}, in(at(tierRegion, a), at(tierRegion, b))); err != nil {
				t.Fatal(err)
			}
			fx.check(t)
			want := []string{span(size6, 0, 3), span(size6, 3, 4), span(size6, 4, 5), span(size6, 5, 6)}
			if got := a.reads(); !slices.Equal(got, want) || len(b.reads()) != 0 {
				t.Fatalf("reads of a %v, of b %v; want a's %v", got, b.reads(), want)
			}
			if last.Load() != size6 || strings.Contains(fx.logs.String(), "WARN") {
				t.Fatalf("progress ended at %d of %d; log:\n%s", last.Load(), size6, fx.logs.String())
			}
		})
	}
}

// A source that sends a wrong byte: the pieces of its run verified before
// it are kept, that piece and the rest come from the next source, and the
// warning names the source and the class. With the chain and with piece
// hashes alone.
func TestFetchCorruptPiece(t *testing.T) {
	for _, chain := range []bool{true, false} {
		t.Run(fmt.Sprint("chain=", chain), func(t *testing.T) {
			fx := newFixture(t, size6, chain)
			a, b := newFake("a", fx.data), newFake("b", fx.data)
			a.flip = 2*testPiece + 5
			if err := fx.run(t, Options{Parallelism: 1}, in(at(tierRegion, a), at(tierRegion, b))); err != nil {
				t.Fatal(err)
			}
			fx.check(t)
			// The run of pieces 0-2 from a fails at 2; then piece by
			// piece, b first: a failed last.
			want := []string{span(size6, 2, 3), span(size6, 3, 4), span(size6, 4, 5), span(size6, 5, 6)}
			if got := b.reads(); !slices.Equal(got, want) || len(a.reads()) != 1 {
				t.Fatalf("reads of a %v, of b %v; want b's %v", a.reads(), got, want)
			}
			for _, w := range []string{"level=WARN", "source=a", "pieces=[2]", "class=DataLoss", "piece 2 from fake a"} {
				if !strings.Contains(fx.logs.String(), w) {
					t.Fatalf("no %q in the log:\n%s", w, fx.logs.String())
				}
			}
		})
	}
}

// A read cut in the middle of piece 1: piece 0 is kept, piece 1 starts
// over from the next source, and the bytes of the cut piece are taken back
// out of the progress (the bytes moved still count them).
func TestFetchCut(t *testing.T) {
	fx := newFixture(t, size6, true)
	a, b := newFake("a", fx.data), newFake("b", fx.data)
	a.cut = testPiece + testPiece/2
	if err := fx.run(t, Options{Parallelism: 1}, in(at(tierRegion, a), at(tierRegion, b))); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	if got := b.reads(); len(got) != 5 || got[0] != span(size6, 1, 2) {
		t.Fatalf("reads of b %v; want pieces 1 to 5", got)
	}
	msg := fmt.Sprintf("fake a: piece 1: %d of %d bytes: %v", testPiece/2, testPiece, errCut)
	if !strings.Contains(fx.logs.String(), msg) || !strings.Contains(fx.logs.String(), "class=Unavailable") {
		t.Fatalf("no warning %q:\n%s", msg, fx.logs.String())
	}
	if done, moved := fx.m.done.Load(), fx.m.moved.Load(); done != size6 || moved != size6+testPiece/2 {
		t.Fatalf("progress %d, bytes moved %d; want %d and %d", done, moved, size6, size6+testPiece/2)
	}
}

// Sources are tried by tier, then by their failures: a region's replica
// that failed still comes before a sound fallback, and vmappd comes last,
// asked a piece at a time.
func TestFetchTiers(t *testing.T) {
	unavailable := errs.New(errs.Unavailable, "", "refused by the test")
	t.Run("failed replicas before a sound fallback", func(t *testing.T) {
		fx := newFixture(t, size6, true)
		r0, r1, f, v := newFake("r0", fx.data), newFake("r1", fx.data), newFake("f", fx.data), newFake("v", fx.data)
		r0.err, r1.err = unavailable, unavailable
		if err := fx.run(t, Options{Parallelism: 1}, in(at(tierRegion, r0), at(tierRegion, r1), at(tierFallback, f), at(tierVmappd, v))); err != nil {
			t.Fatal(err)
		}
		fx.check(t)
		// r0's run fails; then each piece is asked of r0 and r1 before f.
		if len(r0.reads()) != 1+6 || len(r1.reads()) != 6 || len(f.reads()) != 6 || len(v.reads()) != 0 {
			t.Fatalf("reads of r0 %v, r1 %v, f %v, v %v", r0.reads(), r1.reads(), f.reads(), v.reads())
		}
	})
	t.Run("vmappd last, a piece at a time", func(t *testing.T) {
		fx := newFixture(t, size6, true)
		r, v := newFake("r", fx.data), newFake("v", fx.data)
		r.err = unavailable
		if err := fx.run(t, Options{Parallelism: 1}, in(at(tierRegion, r), at(tierVmappd, v))); err != nil {
			t.Fatal(err)
		}
		fx.check(t)
		if got := v.reads(); len(got) != 6 || len(r.reads()) != 1+6 {
			t.Fatalf("reads of v %v, of r %v; want a read a piece from v, after each of r", got, r.reads())
		}
	})
	t.Run("a plan without URLs: vmappd, a piece at a time", func(t *testing.T) {
		fx := newFixture(t, size6, true)
		v := newFake("v", fx.data)
		if err := fx.run(t, Options{Parallelism: 1}, in(at(tierVmappd, v))); err != nil {
			t.Fatal(err)
		}
		fx.check(t)
		if got := v.reads(); len(got) != 6 {
			t.Fatalf("reads of v %v; want one a piece", got)
		}
	})
}

// When no source has a piece right the download fails: DataLoss when all
// of them sent it corrupted, Unavailable when one couldn't be reached; a
// fatal error ends it at once. Nothing appears at dest.
func TestFetchFails(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(a, b *fakeSource)
		class errs.Class
		want  string
		reads int // of a
	}{
		{"every source corrupt", func(a, b *fakeSource) { a.flip, b.flip = 10, 20 }, errs.DataLoss,
			"g/a/1.0.0 package piece 0 (bytes 0-65535): every source failed 3 times; last: a: piece 0 (the last) from fake a ends the file's sha256", 3},
		{"one corrupt, one unreachable", func(a, b *fakeSource) { a.flip, b.err = 10, errs.New(errs.Unavailable, "", "down") }, errs.Unavailable,
			"every source failed 3 times", 3},
		{"fatal", func(a, b *fakeSource) { a.err = fatal(errs.New(errs.FailedPrecondition, "", "not in the region")) }, errs.FailedPrecondition,
			"not in the region", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			fx := newFixture(t, testPiece, true)
			a, b := newFake("a", fx.data), newFake("b", fx.data)
			c.setup(a, b)
			err := fx.run(t, Options{Parallelism: 1}, in(at(tierRegion, a), at(tierRegion, b)))
			if !errs.Is(err, c.class) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v (%v), want %v with %q", err, errs.ClassOf(err), c.class, c.want)
			}
			if n := len(a.reads()); n != c.reads {
				t.Fatalf("%d reads of a, want %d", n, c.reads)
			}
			if _, err := os.Stat(fx.dest); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("dest exists (%v)", err)
			}
		})
	}
}

// expiring serves data once its plan is at least gen; before, it says its
// access expired.
func expiring(fx *fixture, validFrom int, b *fakeSource) func(int) []*source {
	return func(gen int) []*source {
		a := newFake("a", fx.data)
		if gen < validFrom {
			a.err = fmt.Errorf("403 from the test: %w", ErrExpired)
		}
		return in(at(tierRegion, a), at(tierRegion, b))(gen)
	}
}

// A source whose access expired: a new plan, and the source of the same
// name in it serves. One that stays expired after two new plans is a
// failed source like any other.
func TestFetchExpired(t *testing.T) {
	fx := newFixture(t, size6, true)
	b := newFake("b", fx.data)
	if err := fx.run(t, Options{Parallelism: 1}, expiring(fx, 1, b)); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	if fx.gets.Load() != 1 || len(b.reads()) != 0 {
		t.Fatalf("%d new plans, reads of b %v; want 1 plan, none", fx.gets.Load(), b.reads())
	}

	fx = newFixture(t, size6, true)
	b = newFake("b", fx.data)
	if err := fx.run(t, Options{Parallelism: 1}, expiring(fx, 100, b)); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	if fx.gets.Load() < 2 || len(b.reads()) != 6 || !strings.Contains(fx.logs.String(), "403 from the test") {
		t.Fatalf("%d new plans, reads of b %v; want 2 plans or more, then b for every piece; log:\n%s", fx.gets.Load(), b.reads(), fx.logs.String())
	}
}

// A source whose access expires in the middle of a run: the pieces it
// verified are kept, and the source of the new plan is asked for the rest
// of the run in one read.
func TestFetchExpiredMidRun(t *testing.T) {
	fx := newFixture(t, size6, true)
	var a1 *fakeSource
	sources := func(gen int) []*source {
		a := newFake("a", fx.data)
		if gen == 0 {
			a.cut, a.cutErr = testPiece+testPiece/2, fmt.Errorf("token expired: %w", ErrExpired)
		} else {
			a1 = a
		}
		return in(at(tierRegion, a))(gen)
	}
	if err := fx.run(t, Options{Parallelism: 1}, sources); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	if want := []string{span(size6, 1, 3), span(size6, 3, 4), span(size6, 4, 5), span(size6, 5, 6)}; fx.gets.Load() != 1 || !slices.Equal(a1.reads(), want) {
		t.Fatalf("%d new plans, reads of the renewed source %v; want 1, %v", fx.gets.Load(), a1.reads(), want)
	}
	if strings.Contains(fx.logs.String(), "WARN") {
		t.Fatalf("an expiry renewed is no failure:\n%s", fx.logs.String())
	}
}

// Many workers fetching at once from sources of which one fails: the
// download completes, and -race checks the bookkeeping.
func TestFetchParallel(t *testing.T) {
	fx := newFixture(t, 40*testPiece+7, false)
	a, b, c := newFake("a", fx.data), newFake("b", fx.data), newFake("c", fx.data)
	a.flip, b.cut = 17*testPiece+3, 30*testPiece+1
	if err := fx.run(t, Options{Parallelism: 8}, in(at(tierRegion, a), at(tierRegion, b), at(tierFallback, c))); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
}
