package replicator

import (
	"context"
	"maps"
	"math"
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

// dirtyBatch bounds the versions one incremental reconcile command covers.
const dirtyBatch = 256

// reconcileDirty reconciles the versions the state marked dirty (see
// state.DirtyVersions): work in proportion to what changed, not to what
// exists. Each batch's command clears the marks it handled.
func (r *Replicator) reconcileDirty(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var after *statepb.VersionRef
	for {
		var diff *statepb.ReconcileReplicas
		err := r.db.View(ctx, func(tx *state.Tx) (err error) {
			diff, err = r.dirtyDiff(tx, after)
			return err
		})
		if err != nil || len(diff.Reconciled) == 0 {
			return err
		}
		if err := r.proposeDiff(ctx, diff); err != nil {
			return err
		}
		if len(diff.Reconciled) < dirtyBatch {
			return nil
		}
		after = diff.Reconciled[len(diff.Reconciled)-1].Version
	}
}

// dirtyDiff reads up to dirtyBatch dirty marks, after the version after
// names, and what the records of their versions need. r.mu is held.
func (r *Replicator) dirtyDiff(tx *state.Tx, after *statepb.VersionRef) (*statepb.ReconcileReplicas, error) {
	marks, err := tx.DirtyVersions(after, dirtyBatch)
	if err != nil {
		return nil, err
	}
	diff := &statepb.ReconcileReplicas{Reconciled: marks}
	for _, m := range marks {
		ref := m.Version
		v, _, err := state.Versions.Get(tx, state.VersionKey(ref.Tenant, ref.Gallery, ref.Application, ref.Version)) // nil when gone
		if err != nil {
			return nil, err
		}
		have, err := state.Replicas.All(tx, state.ReplicaPrefix(ref.Tenant, ref.Gallery, ref.Application, ref.Version))
		if err != nil {
			return nil, err
		}
		r.diffVersion(versionPrefix(ref.Tenant, ref.Gallery, ref.Application, ref.Version), v, have, diff)
	}
	return diff, nil
}

// reconcileAll compares every version with every replica record: the
// replicator's first pass, and a safety net every FullReconcileInterval.
// It clears the dirty marks it read, which it covers.
func (r *Replicator) reconcileAll(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	diff := &statepb.ReconcileReplicas{}
	var versions []*pb.GalleryApplicationVersion
	byVersion := map[string][]*statepb.Replica{} // version prefix -> its records
	err := r.db.View(ctx, func(tx *state.Tx) (err error) {
		if diff.Reconciled, err = tx.DirtyVersions(nil, math.MaxInt); err != nil {
			return err
		}
		if versions, err = state.Versions.All(tx, nil); err != nil {
			return err
		}
		return state.Replicas.Scan(tx, nil, nil, func(_ []byte, rec *statepb.Replica) (bool, error) {
			p := versionPrefix(rec.Tenant, rec.Gallery, rec.Application, rec.Version)
			byVersion[p] = append(byVersion[p], rec)
			return true, nil
		})
	})
	if err != nil {
		return err
	}
	r.wantedBy, r.wantedIn = map[string]map[string]int{}, map[string]int{}
	for _, v := range versions {
		p := prefixOf(v)
		r.diffVersion(p, v, byVersion[p], diff)
		delete(byVersion, p)
	}
	for _, p := range slices.Sorted(maps.Keys(byVersion)) { // records of versions gone
		r.diffVersion(p, nil, byVersion[p], diff)
	}
	if len(diff.Add) == 0 && len(diff.Unwanted) == 0 && len(diff.Reconciled) == 0 {
		return nil
	}
	return r.proposeDiff(ctx, diff)
}

// diffVersion adds to diff what a version's records (have) need: the
// records it wants that are missing, and Deleting marks for those it
// doesn't want (its region left the target regions, its count went down,
// or the version is gone: v nil). The records of a version being deleted
// are Finalize's. It keeps the count of wanted records up to date. r.mu
// is held.
func (r *Replicator) diffVersion(prefix string, v *pb.GalleryApplicationVersion, have []*statepb.Replica, diff *statepb.ReconcileReplicas) {
	if v != nil && v.ProvisioningState == pb.ProvisioningDeleting {
		r.setWanted(prefix, nil)
		return
	}
	want := map[string]*statepb.Replica{}
	in := map[string]int{}
	if v != nil {
		for _, rec := range r.wanted(v) {
			want[recordKey(rec)] = rec
			in[rec.Region]++
		}
	}
	r.setWanted(prefix, in)
	seen := map[string]bool{}
	for _, rec := range have {
		k := recordKey(rec)
		seen[k] = true
		if _, ok := want[k]; !ok && rec.Phase != statepb.ReplicaPhase_REPLICA_PHASE_DELETING {
			diff.Unwanted = append(diff.Unwanted, state.RefOf(rec))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if !seen[k] {
			diff.Add = append(diff.Add, want[k])
		}
	}
}

// setWanted records how many replica records a version wants in each
// region, for the vmapp_replicas gauges. r.mu is held.
func (r *Replicator) setWanted(prefix string, in map[string]int) {
	for region, n := range r.wantedBy[prefix] {
		r.wantedIn[region] -= n
	}
	for region, n := range in {
		r.wantedIn[region] += n
	}
	if len(in) == 0 {
		delete(r.wantedBy, prefix)
	} else {
		r.wantedBy[prefix] = in
	}
}

func (r *Replicator) proposeDiff(ctx context.Context, diff *statepb.ReconcileReplicas) error {
	return r.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_ReconcileReplicas{ReconcileReplicas: diff}
	})
}

// runnable reports whether rec can start now; seed reads a record by key
// (replica 0 of the region must be completed before the others copy).
func runnable(rec *statepb.Replica, seed func(key string) (*statepb.Replica, error), now time.Time) (bool, error) {
	switch rec.Phase {
	case statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED:
		return false, nil
	case statepb.ReplicaPhase_REPLICA_PHASE_DELETING:
	default:
		if rec.Index > 0 {
			s, err := seed(seedKey(rec))
			if err != nil || s == nil || s.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
				return false, err
			}
		}
	}
	return rec.NextAttemptTime == nil || !rec.NextAttemptTime.AsTime().After(now), nil
}

// queued reads the records that can start now (not in flight, not of a
// version being deleted), grouped by version prefix. It reads the records
// not completed (state.ActiveReplicas), not every record. r.mu is held.
func (r *Replicator) queued(ctx context.Context) (map[string][]*statepb.Replica, error) {
	now := r.now()
	queues := map[string][]*statepb.Replica{}
	going := map[string]bool{}
	count := phaseCount{}
	defer func() { r.setReplicaGauges(count) }()
	err := r.db.View(ctx, func(tx *state.Tx) error {
		seed := func(k string) (*statepb.Replica, error) {
			rec, _, err := state.Replicas.Get(tx, []byte(k))
			return rec, err
		}
		return state.ActiveReplicas.Scan(tx, nil, nil, func(k []byte, rec *statepb.Replica) (bool, error) {
			count.add(rec)
			if r.inflight[string(k)] != nil {
				return true, nil
			}
			p := versionPrefix(rec.Tenant, rec.Gallery, rec.Application, rec.Version)
			g, ok := going[p]
			if !ok {
				g = r.finalizing[p] || state.DeletingVersions.Has(tx, state.VersionKey(rec.Tenant, rec.Gallery, rec.Application, rec.Version))
				going[p] = g
			}
			if g {
				return true, nil // Finalize's
			}
			ok, err := runnable(rec, seed, now)
			if ok {
				queues[p] = append(queues[p], rec)
			}
			return err == nil, err
		})
	})
	return queues, err
}

// dispatch starts workers on runnable records, round-robin between
// versions, within the concurrency limits.
func (r *Replicator) dispatch(ctx context.Context) error {
	// Read under the lock: a worker updates its record before it leaves
	// inflight, so a record read here is either in flight or current.
	r.mu.Lock()
	defer r.mu.Unlock()
	queues, err := r.queued(ctx)
	if err != nil || len(queues) == 0 {
		return err
	}
	order := slices.Collect(maps.Keys(queues))
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
