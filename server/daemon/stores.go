package daemon

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/blob/capped"
	"github.com/vmapp/vmapp/blob/observed"
	"github.com/vmapp/vmapp/blob/s3"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/ratecap"
	"github.com/vmapp/vmapp/topology"
)

// Stores are the storage endpoints of every region, in topology order.
type Stores map[string][]blob.Store

// OpenStores makes a client for every endpoint of the topology. It does not
// contact them: a store that is down must not keep vmappd from starting.
func OpenStores(ctx context.Context, topo *topology.Topology) (Stores, error) {
	out := Stores{}
	for _, r := range topo.Regions {
		for _, e := range r.Endpoints {
			st, err := s3.New(ctx, e)
			if err != nil {
				return nil, err
			}
			out[r.Name] = append(out[r.Name], st)
		}
	}
	return out, nil
}

// Observed returns the stores counting their errors in e.
func (s Stores) Observed(e *observed.Errors) Stores {
	out := Stores{}
	for region, eps := range s {
		for i, st := range eps {
			out[region] = append(out[region], e.Wrap(st, region, strconv.Itoa(i)))
		}
	}
	return out
}

// Capped returns the stores whose endpoint sets egressMBps in topo reading
// through one cap each, shared by everything vmappd reads from it.
func (s Stores) Capped(topo *topology.Topology) Stores {
	out := Stores{}
	for region, eps := range s {
		r, _ := topo.Region(region)
		for i, st := range eps {
			if i < len(r.Endpoints) {
				st = capped.Wrap(st, ratecap.New(r.Endpoints[i].Egress()))
			}
			out[region] = append(out[region], st)
		}
	}
	return out
}

// Get returns endpoint i of region.
func (s Stores) Get(region string, i int) (blob.Store, error) {
	eps := s[region]
	if i < 0 || i >= len(eps) {
		return nil, errs.New(errs.FailedPrecondition, "", "region %s has no storage endpoint %d", region, i)
	}
	return eps[i], nil
}

// EnsureBuckets creates the bucket of every endpoint, retrying those that
// are down until they answer or ctx ends.
func (s Stores) EnsureBuckets(ctx context.Context, log *slog.Logger) {
	for region, eps := range s {
		for _, st := range eps {
			go func() {
				for backoff := time.Second; ; backoff = min(2*backoff, time.Minute) {
					err := st.EnsureBucket(ctx)
					if err == nil {
						return
					}
					log.Warn("storage endpoint not ready; retrying", "region", region, "endpoint", st.Endpoint(), "err", err, "retry_in", backoff)
					select {
					case <-ctx.Done():
						return
					case <-time.After(backoff):
					}
				}
			}()
		}
	}
}
