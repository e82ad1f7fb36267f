package daemon

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
// through one cap each, shared by everything vmappd reads from it, and
// those caps.
func (s Stores) Capped(topo *topology.Topology) (Stores, EgressCaps) {
	out, caps := Stores{}, EgressCaps{}
	for region, eps := range s {
		r, _ := topo.Region(region)
		for i, st := range eps {
			if i < len(r.Endpoints) {
				if c := ratecap.New(r.Endpoints[i].Egress()); c != nil {
					st = capped.Wrap(st, c)
					caps = append(caps, egressCap{c: c, full: r.Endpoints[i].Egress(), region: region, endpoint: strconv.Itoa(i)})
				}
			}
			out[region] = append(out[region], st)
		}
	}
	return out, caps
}

// EgressCaps are the endpoints' egress caps of one vmappd.
type EgressCaps []egressCap

type egressCap struct {
	c                *ratecap.Cap
	full             int64 // the regions file's, in bytes per second
	region, endpoint string
}

// Register exports each cap in force (this node's share) as
// vmapp_store_egress_cap_bytes_per_second{region, endpoint}.
func (e EgressCaps) Register(reg prometheus.Registerer) {
	for _, c := range e {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmapp_store_egress_cap_bytes_per_second",
			Help:        "The egress cap this vmappd reads a store endpoint under (egressMBps; a cluster node's share of it), in bytes per second.",
			ConstLabels: prometheus.Labels{"region": c.region, "endpoint": c.endpoint}}, func() float64 { return float64(c.c.Rate()) }))
	}
}

// Share sets each cap to its nth: the share of one of a cluster's n nodes,
// each reading from the stores (downloads through ReadRange on any node,
// replication and scrubs on the leader), so that together they never
// pass the cap. A load the nodes don't share evenly uses less than the
// cap.
func (e EgressCaps) Share(n int) {
	for _, c := range e {
		c.c.SetRate(max(1, c.full/int64(max(n, 1))))
	}
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
