package download

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// refreshMargin caps how long before the plan's expiry a new one is asked
// for.
const refreshMargin = 30 * time.Second

// OrderSources returns a plan's sources in the order Run tries them: the
// own region's replicas (in the plan's order) rotated to start at
// FNV-1a(machineID) mod their number, then the other regions' (fallbacks)
// in the plan's order.
func OrderSources(plan *pb.DownloadPlan, machineID string) []*pb.DownloadSource {
	var own, other []*pb.DownloadSource
	for _, s := range plan.GetSources() {
		if s.Fallback {
			other = append(other, s)
		} else {
			own = append(own, s)
		}
	}
	out := make([]*pb.DownloadSource, 0, len(own)+len(other))
	if n := len(own); n > 0 {
		h := fnv.New32a()
		h.Write([]byte(machineID))
		k := int(h.Sum32() % uint32(n))
		out = append(append(out, own[k:]...), own[:k]...)
	}
	return append(out, other...)
}

// planSources returns the sources of plan p in the order to try them while
// none failed: its peers (unless o.NoPeers), its presigned URLs when it is
// direct, in OrderSources' order, then vmappd.
func planSources(p *pb.DownloadPlan, o Options, size int64, vmappd Source) []*source {
	machineID, hc := o.MachineID, o.HTTPClient
	out := peerSources(p, o)
	if p.Direct {
		for _, s := range OrderSources(p, machineID) {
			t := tierRegion
			if s.Fallback {
				t = tierFallback
			}
			name := fmt.Sprintf("%s/%d", s.Region, s.Replica)
			out = append(out, &source{Source: newURLSource(name, s.Url, size, hc), tier: t, replica: &replicaRef{s.Region, s.Replica}})
		}
	}
	return append(out, &source{Source: vmappd, tier: tierVmappd})
}

// view is a plan in force with its sources; it doesn't change.
type view struct {
	plan    *pb.DownloadPlan
	gen     int       // counts the plans
	renewAt time.Time // when to ask for a new plan
	// expireAt is when renewing it is a must: its URLs expire; before,
	// a renewal only asks for peers (peer_refresh).
	expireAt time.Time
	sources  []*source     // in planSources' order
	replaced chan struct{} // closed when a new view replaces it
}

// find returns the view's source named name, or nil.
func (v *view) find(name string) *source {
	if v == nil {
		return nil
	}
	for _, s := range v.sources {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

// order returns the sources in the order to try them for piece i: by tier,
// then by consecutive failures, then in the plan's order — the peers'
// rotated by i, so that a download spreads its pieces over its peers.
// Dropped peers, and peers that don't hold piece i, are left out.
func (v *view) order(i int) []*source {
	fails := make(map[*source]int32, len(v.sources))
	var peers, out []*source
	for _, s := range v.sources {
		fails[s] = s.health.fails.Load()
		switch {
		case s.health.dropped.Load():
		case s.tier == tierPeer && !s.has(i):
		case s.tier == tierPeer:
			peers = append(peers, s)
		default:
			out = append(out, s)
		}
	}
	if n := len(peers); n > 0 {
		k := i % n
		out = append(append(append(make([]*source, 0, len(out)+n), peers[k:]...), peers[:k]...), out...)
	}
	slices.SortStableFunc(out, func(a, b *source) int {
		return cmp.Or(cmp.Compare(a.tier, b.tier), cmp.Compare(fails[a], fails[b]))
	})
	return out
}

// renewTime is when to ask for a new plan of p, got at now: a little
// before its URLs expire, and in a swarm after its peer_refresh.
func renewTime(p *pb.DownloadPlan, now time.Time) time.Time {
	t := expireTime(p, now)
	if r := p.GetPeerRefresh().AsDuration(); p.PeerRefresh != nil && r > 0 {
		return minTime(t, now.Add(r))
	}
	return t
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// expireTime is when a new plan of p, got at now, must be asked for: a
// little before its URLs expire. A plan without URLs doesn't expire; one
// that looks expired already means the clocks disagree: then only an
// expired source (a 403) renews it.
func expireTime(p *pb.DownloadPlan, now time.Time) time.Time {
	if left := p.GetExpireTime().AsTime().Sub(now); p.Direct && p.ExpireTime != nil && left > 0 {
		return now.Add(left - min(left/10, refreshMargin))
	}
	return now.Add(100 * 365 * 24 * time.Hour)
}

// planner holds the plan in force and renews it. Readers take the view
// without a lock; renewals are made one at a time.
type planner struct {
	art *artifact
	now func() time.Time
	// get asks vmappd for a plan; sources makes a plan's sources.
	get     func(context.Context) (*pb.DownloadPlan, error)
	sources func(*pb.DownloadPlan) []*source

	renewMu sync.Mutex
	cur     atomic.Pointer[view]
}

func newPlanner(first *pb.DownloadPlan, art *artifact, now func() time.Time, get func(context.Context) (*pb.DownloadPlan, error), sources func(*pb.DownloadPlan) []*source) *planner {
	pl := &planner{art: art, now: now, get: get, sources: sources}
	pl.adopt(first, nil)
	return pl
}

// adopt makes p the plan in force, after the view old. Sources keep their
// health from one plan to the next.
func (pl *planner) adopt(p *pb.DownloadPlan, old *view) {
	now := pl.now()
	v := &view{plan: p, renewAt: renewTime(p, now), expireAt: expireTime(p, now), sources: pl.sources(p), replaced: make(chan struct{})}
	if old != nil {
		v.gen = old.gen + 1
		defer close(old.replaced)
	}
	for _, s := range v.sources {
		if o := old.find(s.Name()); o != nil {
			s.health = o.health
		} else {
			s.health = &health{}
		}
	}
	pl.cur.Store(v)
}

// latest is the plan in force.
func (pl *planner) latest() *pb.DownloadPlan { return pl.cur.Load().plan }

// current returns the view in force, asking for a new plan when it expired.
func (pl *planner) current(ctx context.Context) (*view, error) {
	v := pl.cur.Load()
	if pl.now().Before(v.renewAt) {
		return v, nil
	}
	if err := pl.renew(ctx, v.gen); err != nil {
		return nil, err
	}
	return pl.cur.Load(), nil
}

// renew replaces plan generation gen with a new plan; when another worker
// did so already it does nothing.
func (pl *planner) renew(ctx context.Context, gen int) error {
	pl.renewMu.Lock()
	defer pl.renewMu.Unlock()
	old := pl.cur.Load()
	if old.gen != gen {
		return nil
	}
	p, err := pl.get(ctx)
	if err != nil && pl.now().Before(old.expireAt) {
		pl.adopt(old.plan, old) // a renewal for peers only: try again later
		return nil
	}
	if err != nil {
		err = errs.Wrap(errs.ClassOf(err), err, "renew the download plan of %s", pl.art.what)
		switch errs.ClassOf(err) {
		case errs.Unavailable, errs.DeadlineExceeded, errs.Internal, errs.Aborted, errs.ResourceExhausted:
			return err // a piece failure: retried
		}
		return fatal(err)
	}
	if err := pl.art.sameAs(p); err != nil {
		return fatal(err)
	}
	pl.adopt(p, old)
	return nil
}
