package download

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// A plan is renewed a tenth of its life before it expires, at most 30 s
// before; never when it has no URLs or looks expired already.
func TestRenewTime(t *testing.T) {
	const far = 100 * 365 * 24 * time.Hour
	for _, c := range []struct {
		name   string
		direct bool
		expire time.Duration // after t0; 0: no expire_time
		want   time.Duration // after t0
	}{
		{"ten minutes", true, 10 * time.Minute, 10*time.Minute - 30*time.Second},
		{"one minute", true, time.Minute, 54 * time.Second},
		{"expired already", true, -time.Second, far},
		{"no expiry", true, 0, far},
		{"not direct", false, 10 * time.Minute, far},
	} {
		p := &pb.DownloadPlan{Direct: c.direct}
		if c.expire != 0 {
			p.ExpireTime = timestamppb.New(t0.Add(c.expire))
		}
		if got := renewTime(p, t0); !got.Equal(t0.Add(c.want)) {
			t.Errorf("%s: renew at t0+%v, want t0+%v", c.name, got.Sub(t0), c.want)
		}
	}
}

// planFixture is a planner of one artifact on a clock of its own, whose
// vmappd answers with next (or fails with err) and counts the requests.
type planFixture struct {
	pl   *planner
	now  atomic.Pointer[time.Time]
	gets atomic.Int32

	mu   sync.Mutex
	next *pb.DownloadPlan
	err  error
}

func newPlanFixture(t *testing.T, expiry time.Duration, names ...string) *planFixture {
	t.Helper()
	fx := &planFixture{}
	fx.set(t0)
	first := testPlan(make([]byte, 3*testPiece), true)
	first.Direct, first.ExpireTime = true, timestamppb.New(t0.Add(expiry))
	fx.next = first
	art, err := newArtifact(first, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE)
	if err != nil {
		t.Fatal(err)
	}
	fx.pl = newPlanner(first, art, func() time.Time { return *fx.now.Load() },
		func(context.Context) (*pb.DownloadPlan, error) {
			fx.gets.Add(1)
			fx.mu.Lock()
			defer fx.mu.Unlock()
			return fx.next, fx.err
		},
		func(*pb.DownloadPlan) []*source {
			var out []*source
			for i, n := range names {
				out = append(out, &source{Source: newFake(n, nil), tier: tier(i % 2)})
			}
			return out
		})
	return fx
}

func (fx *planFixture) set(now time.Time) { fx.now.Store(&now) }

// answer sets what vmappd answers from now on: plan p renewed at the
// fixture's time, expiring after expiry, or err.
func (fx *planFixture) answer(p *pb.DownloadPlan, expiry time.Duration, err error) {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	if p != nil {
		p = proto.Clone(p).(*pb.DownloadPlan)
		p.ExpireTime = timestamppb.New(fx.now.Load().Add(expiry))
	}
	fx.next, fx.err = p, err
}

// The plan in force is renewed once it is due: once, however many workers
// find it due at the same time.
func TestPlanRenewal(t *testing.T) {
	fx := newPlanFixture(t, 10*time.Minute, "a")
	ctx := context.Background()
	fx.set(t0.Add(9 * time.Minute))
	if v, err := fx.pl.current(ctx); err != nil || v.gen != 0 || fx.gets.Load() != 0 {
		t.Fatalf("before it is due: plan %d, %d requests, %v", v.gen, fx.gets.Load(), err)
	}
	fx.set(t0.Add(9*time.Minute + 30*time.Second))
	fx.answer(fx.pl.latest(), 10*time.Minute, nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if v, err := fx.pl.current(ctx); err != nil || v.gen != 1 {
				t.Errorf("when due: plan %v, %v", v, err)
			}
		})
	}
	wg.Wait()
	if n := fx.gets.Load(); n != 1 {
		t.Fatalf("8 workers at once asked for %d plans, want 1", n)
	}
	// The new plan is due 10 minutes after it came, less 30 s: at 19:00.
	fx.set(t0.Add(19*time.Minute - time.Nanosecond))
	if v, _ := fx.pl.current(ctx); v.gen != 1 || fx.gets.Load() != 1 {
		t.Fatalf("the new plan renewed early: plan %d, %d requests", v.gen, fx.gets.Load())
	}
	// A renewal of a plan that was renewed already asks for nothing.
	if err := fx.pl.renew(ctx, 0); err != nil || fx.gets.Load() != 1 {
		t.Fatalf("renew(0) on plan 1: %v, %d requests", err, fx.gets.Load())
	}
}

// A renewal that fails: vmappd unreachable is a failure of the pieces
// (tried again); the version gone, or a different artifact under its name,
// end the download (fatal). Either way the plan in force stays.
func TestPlanRenewalFails(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  func(p *pb.DownloadPlan)
		err   error
		class errs.Class
		fatal bool
	}{
		{"vmappd unavailable", nil, errs.New(errs.Unavailable, "", "down"), errs.Unavailable, false},
		{"version deleted", nil, errs.New(errs.NotFound, "version", "no such version"), errs.NotFound, true},
		{"another artifact", func(p *pb.DownloadPlan) { p.Sha256 = "ab" + p.Sha256[2:] }, nil, errs.Aborted, true},
		{"another size", func(p *pb.DownloadPlan) { p.SizeBytes++ }, nil, errs.Aborted, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fx := newPlanFixture(t, time.Minute, "a")
			var next *pb.DownloadPlan
			if c.edit != nil {
				next = proto.Clone(fx.pl.latest()).(*pb.DownloadPlan)
				c.edit(next)
			}
			fx.answer(next, time.Minute, c.err)
			fx.set(t0.Add(time.Minute))
			_, err := fx.pl.current(context.Background())
			if !errs.Is(err, c.class) || isFatal(err) != c.fatal {
				t.Fatalf("error %v (%v, fatal %v), want %v, fatal %v", err, errs.ClassOf(err), isFatal(err), c.class, c.fatal)
			}
			if fx.pl.cur.Load().gen != 0 {
				t.Fatal("the plan in force was replaced")
			}
		})
	}
}

// Sources are ordered by tier, then by consecutive failures, then as the
// plan has them; a source keeps its failures in the next plan, where it has
// a new URL; a success clears them.
func TestSourceOrder(t *testing.T) {
	// Tiers alternate: r0 and r1 are the region's, f0 and f1 fallbacks.
	fx := newPlanFixture(t, time.Minute, "r0", "f0", "r1", "f1")
	names := func(v *view) []string {
		var out []string
		for _, s := range v.order(0) {
			out = append(out, s.Name())
		}
		return out
	}
	fail := func(v *view, name string, n int) {
		for range n {
			v.find(name).result(errs.New(errs.Unavailable, "", "down"))
		}
	}
	v := fx.pl.cur.Load()
	if got := names(v); !slices.Equal(got, []string{"r0", "r1", "f0", "f1"}) {
		t.Fatalf("order %v", got)
	}
	fail(v, "r0", 2)
	fail(v, "r1", 1)
	fail(v, "f0", 1)
	if got := names(v); !slices.Equal(got, []string{"r1", "r0", "f1", "f0"}) {
		t.Fatalf("order after failures %v", got)
	}
	fx.answer(fx.pl.latest(), time.Minute, nil)
	if err := fx.pl.renew(context.Background(), v.gen); err != nil {
		t.Fatal(err)
	}
	v2 := fx.pl.cur.Load()
	if v2.find("r0") == v.find("r0") || !slices.Equal(names(v2), []string{"r1", "r0", "f1", "f0"}) {
		t.Fatalf("order in the new plan %v", names(v2))
	}
	v2.find("r0").result(nil)
	if got := names(v2); !slices.Equal(got, []string{"r0", "r1", "f1", "f0"}) {
		t.Fatalf("order after r0 served %v", got)
	}
}
