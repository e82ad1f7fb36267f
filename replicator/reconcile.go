package replicator

import (
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/vmapp/vmapp/blob"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// wanted returns the replica records a version should have (without state).
func (r *Replicator) wanted(v *pb.GalleryApplicationVersion) []*statepb.Replica {
	var kinds []pb.ArtifactKind
	if v.Package != nil {
		kinds = append(kinds, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE)
	}
	if v.DefaultConfiguration != nil {
		kinds = append(kinds, pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION)
	}
	pp := v.GetPublishingProfile()
	var out []*statepb.Replica
	for _, k := range kinds {
		a := v.Package
		if k == pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION {
			a = v.DefaultConfiguration
		}
		for _, tr := range pp.GetTargetRegions() {
			n := pp.ReplicasIn(tr)
			eps := r.endpoints(tr.Name)
			if eps == 0 {
				continue // not in the topology any more: nowhere to copy
			}
			for i := range n {
				out = append(out, &statepb.Replica{
					Tenant: v.Tenant, Gallery: v.Gallery, Application: v.Application, Version: v.Name, Kind: k,
					Region: tr.Name, Index: i, Endpoint: i % int32(eps),
					ObjectKey: blob.ReplicaKey(v.Tenant, v.Gallery, v.Application, v.Name, k, i),
					Phase:     statepb.ReplicaPhase_REPLICA_PHASE_PENDING, SizeBytes: a.SizeBytes,
				})
			}
		}
	}
	return out
}

// endpoints is the number of storage endpoints of region; 0 when the
// topology doesn't know it.
func (r *Replicator) endpoints(region string) int {
	reg, _ := r.topo.Region(region)
	return len(reg.Endpoints)
}

// reconcile adds the records the catalog wants and marks the others
// Deleting. Versions being deleted are left to Finalize.
func (r *Replicator) reconcile(ctx context.Context) error {
	versions, err := r.cat.AllVersions(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	provisioning := map[string]string{} // version prefix -> provisioning state
	r.doomed = map[string]bool{}
	want := map[string]*statepb.Replica{}
	for _, v := range versions {
		provisioning[prefixOf(v)] = v.ProvisioningState
		if v.ProvisioningState == pb.ProvisioningDeleting {
			r.doomed[prefixOf(v)] = true
			continue
		}
		for _, rec := range r.wanted(v) {
			want[recordKey(rec)] = rec
		}
	}
	have, err := r.records("")
	if err != nil {
		return err
	}
	diff := &statepb.ReconcileReplicas{}
	seen := map[string]bool{}
	for _, rec := range have {
		k := recordKey(rec)
		seen[k] = true
		p := versionPrefix(rec.Tenant, rec.Gallery, rec.Application, rec.Version)
		if _, ok := want[k]; ok || rec.Phase == statepb.ReplicaPhase_REPLICA_PHASE_DELETING || provisioning[p] == pb.ProvisioningDeleting {
			continue // wanted, going already, or Finalize's job
		}
		// Not wanted: its region left the target regions, the count went
		// down, or the version is gone (a left-over).
		diff.Unwanted = append(diff.Unwanted, state.RefOf(rec))
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if !seen[k] {
			diff.Add = append(diff.Add, want[k])
		}
	}
	r.m.records.Set(float64(len(want)))
	if len(diff.Add) == 0 && len(diff.Unwanted) == 0 {
		return nil
	}
	return r.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_ReconcileReplicas{ReconcileReplicas: diff}
	})
}

// runnable reports whether rec can start now, given the records by key.
func runnable(rec *statepb.Replica, byKey map[string]*statepb.Replica, now time.Time) bool {
	switch rec.Phase {
	case statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED:
		return false
	case statepb.ReplicaPhase_REPLICA_PHASE_DELETING:
	default:
		if rec.Index > 0 {
			seed := byKey[seedKey(rec)]
			if seed == nil || seed.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
				return false
			}
		}
	}
	return rec.NextAttemptTime == nil || !rec.NextAttemptTime.AsTime().After(now)
}

// dispatch starts workers on runnable records, round-robin between
// versions, within the concurrency limits.
func (r *Replicator) dispatch(ctx context.Context) error {
	// Read under the lock: a worker updates its record before it leaves
	// inflight, so a record read here is either in flight or current.
	r.mu.Lock()
	defer r.mu.Unlock()
	all, err := r.records("")
	if err != nil {
		return err
	}
	now := r.now()
	byKey := make(map[string]*statepb.Replica, len(all))
	for _, rec := range all {
		byKey[recordKey(rec)] = rec
	}
	queues := map[string][]*statepb.Replica{}
	var order []string
	for _, rec := range all {
		k := recordKey(rec)
		if r.inflight[k] != nil || !runnable(rec, byKey, now) {
			continue
		}
		p := versionPrefix(rec.Tenant, rec.Gallery, rec.Application, rec.Version)
		if r.doomed[p] || r.finalizing[p] {
			continue
		}
		if queues[p] == nil {
			order = append(order, p)
		}
		queues[p] = append(queues[p], rec)
	}
	if len(order) == 0 {
		return nil
	}
	slices.Sort(order)
	// Start after the version served last.
	start, _ := slices.BinarySearch(order, r.rr+"\xff")
	order = append(order[start:], order[:start]...)
	perEP := map[string]int{}
	for _, j := range r.inflight {
		perEP[j.endpoint]++
	}
	for progress := true; progress && len(r.inflight) < r.o.Concurrency; {
		progress = false
		for _, p := range order {
			if len(r.inflight) >= r.o.Concurrency {
				break
			}
			q := queues[p]
			for i, rec := range q {
				ep := endpointName(rec.Region, int(rec.Endpoint))
				if perEP[ep] >= r.o.EndpointConcurrency {
					continue
				}
				queues[p] = slices.Delete(q, i, i+1)
				perEP[ep]++
				r.start(ctx, rec, ep, p)
				r.rr = p
				progress = true
				break
			}
		}
	}
	return nil
}

// start runs a worker on rec; r.mu is held.
func (r *Replicator) start(ctx context.Context, rec *statepb.Replica, ep, version string) {
	jctx, cancel := context.WithCancel(ctx)
	j := &job{cancel: cancel, done: make(chan struct{}), endpoint: ep, version: version}
	key := recordKey(rec)
	r.inflight[key] = j
	r.jobs.Add(1)
	go func() {
		defer r.jobs.Done()
		defer close(j.done)
		defer cancel()
		r.work(jctx, key, rec)
		r.mu.Lock()
		delete(r.inflight, key)
		r.mu.Unlock()
		r.Poke()
	}()
}

// backoff is the wait before attempt n+1: exponential from RetryBase up to
// RetryMax, with full jitter on its upper half.
func (r *Replicator) backoff(attempts int32) time.Duration {
	d := r.o.RetryBase
	for i := int32(1); i < attempts && d < r.o.RetryMax; i++ {
		d *= 2
	}
	d = min(d, r.o.RetryMax)
	return d/2 + rand.N(d/2+1)
}

// inflightFor returns the jobs of a version prefix; r.mu is held.
func (r *Replicator) inflightFor(prefix string) []*job {
	var out []*job
	for k, j := range r.inflight {
		if strings.HasPrefix(k, prefix) {
			out = append(out, j)
		}
	}
	return out
}
