package download

import (
	"context"
	"time"
)

// A swarm is a download whose plan says other machines of the region are
// downloading the artifact too and serve peers (DownloadPlan.peer_refresh).
// Then the download asks for a new plan every peer_refresh, to learn of the
// pieces its peers verified since; fetches a piece at a time, rarest first
// (rotated by machine, so that a wave of machines starts at different
// pieces); and fetches at most swarmStoreSlots pieces at once from the
// stores: the other workers wait for a peer to hold their piece, or for a
// slot. The store then sends each piece to a few machines, and they to the
// others, instead of every machine taking every piece from it.
const swarmStoreSlots = 1

// turn waits until piece i may be fetched and returns the view to fetch it
// with, and what to call once fetched: at once outside a swarm; in a
// swarm, once a peer of the plan in force holds i, or a store slot is free
// (release gives it back).
func (d *downloader) turn(ctx context.Context, i int) (v *view, release func(), err error) {
	for {
		if v, err = d.plan.current(ctx); err != nil || d.slots == nil {
			return v, func() {}, err
		}
		if srcs := v.order(i); len(srcs) > 0 && srcs[0].tier == tierPeer {
			return v, func() {}, nil
		}
		renew := time.NewTimer(max(v.renewAt.Sub(d.plan.now()), time.Millisecond))
		select {
		case d.slots <- struct{}{}:
			renew.Stop()
			return v, func() { <-d.slots }, nil
		case <-v.replaced: // a new plan: a peer may hold i now
		case <-renew.C:
		case <-ctx.Done():
			renew.Stop()
			return nil, nil, ctx.Err()
		}
		renew.Stop()
	}
}
