package replicator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/time/rate"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// RepairReport is what Repair found.
type RepairReport struct {
	// Problems are the replicas found missing or damaged, now being
	// copied again.
	Problems []*pb.ReplicaProblem
	// Unchecked are the replicas that could not be checked (their store is
	// down), with why; nothing was changed on them.
	Unchecked []*pb.ReplicaProblem
	// Sound counts the replicas found sound.
	Sound int32
}

// Repair checks every completed replica of a version — its size and store
// ETag against the manifest; with deep, every piece's sha256 too — and
// sends those missing or damaged back to be copied. A replica that can't be
// checked doesn't stop the others'.
func (r *Replicator) Repair(ctx context.Context, v *pb.GalleryApplicationVersion, deep bool) (RepairReport, error) {
	return r.repair(ctx, v, deep, checkRepair, map[string]string{})
}

// repair is Repair for check. down holds the stores found down in this
// pass, by endpoint, with why: their other replicas are not tried again
// (each try waits for retries).
func (r *Replicator) repair(ctx context.Context, v *pb.GalleryApplicationVersion, deep bool, check string, down map[string]string) (RepairReport, error) {
	var out RepairReport
	recs, err := r.records(prefixOf(v))
	if err != nil {
		return out, err
	}
	manifests := map[pb.ArtifactKind]*statepb.Manifest{}
	ps := noPieces
	if deep {
		ps = allPieces
	}
	for _, rec := range recs {
		if rec.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
			continue
		}
		p := &pb.ReplicaProblem{Region: rec.Region, Replica: rec.Index, Artifact: rec.Kind.Label()}
		ep := endpointName(rec.Region, int(rec.Endpoint))
		if why, ok := down[ep]; ok {
			p.Problem = why
			out.Unchecked = append(out.Unchecked, p)
			continue
		}
		m := manifests[rec.Kind]
		if m == nil {
			if m, err = r.cat.Manifest(ctx, rec.Tenant, rec.Gallery, rec.Application, rec.Version, rec.Kind); err != nil {
				return out, err
			}
			manifests[rec.Kind] = m
		}
		o, checked, err := r.checkAndAct(ctx, rec, m, ps, nil, check)
		if err != nil {
			return out, err
		}
		switch {
		case !checked:
		case o.err != nil:
			p.Problem = o.err.Error()
			out.Unchecked = append(out.Unchecked, p)
			down[ep] = fmt.Sprintf("its store did not answer for %s replica %d: %v", what(rec), rec.Index, o.err)
		case o.problem != "":
			p.Problem = o.problem
			out.Problems = append(out.Problems, p)
		default:
			out.Sound++
		}
	}
	return out, ctx.Err()
}

// checkAndAct checks a completed replica under its lock and acts on what it
// finds: damage sends it back to be copied, a sound deep check is recorded.
// checked is false when the record changed since rec was read (copied
// again, or going): there was nothing to check. err is ctx's.
func (r *Replicator) checkAndAct(ctx context.Context, rec *statepb.Replica, m *statepb.Manifest, ps pieces, pace *rate.Limiter, check string) (o outcome, checked bool, err error) {
	release, err := r.locks.lock(ctx, recordKey(rec))
	if err != nil {
		return o, false, err
	}
	defer release()
	if cur, err := r.record(recordKey(rec)); err != nil || !sameCopy(cur, rec) {
		return o, false, err
	}
	o = r.check(ctx, rec, m, ps, pace)
	if o.verified > 0 {
		r.m.verified.WithLabelValues(rec.Region, check).Add(float64(o.verified))
	}
	switch {
	case o.err != nil && ctx.Err() != nil:
		return o, false, ctx.Err()
	case o.err != nil:
		r.log.Warn("a replica could not be checked", "version", what(rec), "region", rec.Region, "replica", rec.Index, "check", check, "err", o.err)
	case o.problem != "":
		r.condemn(ctx, rec, o.problem, check)
	case ps == allPieces:
		r.markDeepVerified(ctx, rec)
	}
	return o, true, nil
}

// Scrub checks every completed replica of every version (size and ETag) and
// sends those missing or damaged back to be copied. It returns the number
// of replicas sent back.
func (r *Replicator) Scrub(ctx context.Context) (int, error) {
	versions, err := r.cat.AllVersions(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	down := map[string]string{}
	for _, v := range versions {
		if v.ProvisioningState == pb.ProvisioningDeleting || v.Package == nil {
			continue
		}
		rep, err := r.repair(ctx, v, false, checkScrub, down)
		n += len(rep.Problems)
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if err != nil {
			r.log.Warn("scrub: a version could not be checked", "version", v.Gallery+"/"+v.Application+"/"+v.Name, "err", err)
		}
	}
	return n, nil
}

// scrubLoop runs Scrub every ScrubInterval until ctx ends.
func (r *Replicator) scrubLoop(ctx context.Context) {
	t := time.NewTicker(r.o.ScrubInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := r.Scrub(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("replica scrub", "err", err)
		} else if n > 0 {
			r.log.Warn("replica scrub found replicas missing or damaged; copying them again", "replicas", n)
		}
	}
}

// Deep scrub pacing.
const (
	// deepIdle bounds the deep scrub's sleep when nothing is due, so that
	// it notices records it hasn't seen.
	deepIdle = time.Minute
	// deepRetry is how long a replica whose check could not be made (its
	// store down) waits before the deep scrub tries it again.
	deepRetry = 15 * time.Minute
)

// deepScrub reads completed replicas back, one at a time, at most
// DeepScrubRate bytes/s, and checks every piece's sha256: each time the
// replica whose last deep check is oldest, once it is older than
// DeepScrubPeriod. Damage sends the replica back to be copied.
func (r *Replicator) deepScrub(ctx context.Context) {
	pace := rate.NewLimiter(rate.Limit(r.o.DeepScrubRate), burst(r.o.DeepScrubRate))
	retryAt := map[string]time.Time{}
	for ctx.Err() == nil {
		next, wait := r.deepNext(retryAt)
		if next != nil {
			if !r.deepCheck(ctx, next, pace) {
				retryAt[recordKey(next)] = r.now().Add(deepRetry)
			}
			continue
		}
		t := time.NewTimer(min(wait, deepIdle))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// deepNext picks the next replica to deep-check, and sets the gauge of
// replicas due.
func (r *Replicator) deepNext(retryAt map[string]time.Time) (*statepb.Replica, time.Duration) {
	recs, err := r.records("")
	if err != nil {
		r.log.Warn("deep scrub", "err", err)
		return nil, deepIdle
	}
	now := r.now()
	for k, t := range retryAt {
		if !t.After(now) {
			delete(retryAt, k)
		}
	}
	next, wait, due := nextDeep(recs, now, r.o.DeepScrubPeriod, retryAt)
	r.m.deepDue.Set(float64(due))
	return next, wait
}

// deepCheck deep-checks rec; false when the check could not be made.
func (r *Replicator) deepCheck(ctx context.Context, rec *statepb.Replica, pace *rate.Limiter) bool {
	if r.going(rec) {
		return false // its replicas are about to be deleted
	}
	m, err := r.cat.Manifest(ctx, rec.Tenant, rec.Gallery, rec.Application, rec.Version, rec.Kind)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("deep scrub: no manifest", "version", what(rec), "err", err)
		}
		return false
	}
	o, _, err := r.checkAndAct(ctx, rec, m, allPieces, pace, checkDeepScrub)
	return err == nil && o.err == nil
}

// nextDeep is the deep scrub's schedule. Of the completed replicas, it
// returns the one to check now: the one whose last deep check is oldest
// (never checked first; then by completion, then by key), once it is at
// least period old, skipping those whose check failed until their retryAt.
// When none is due it returns nil and how long until one is. due counts
// the replicas at least period old, those waiting to retry too: if it
// grows, the deep scrub reads slower than the stores fill.
func nextDeep(recs []*statepb.Replica, now time.Time, period time.Duration, retryAt map[string]time.Time) (next *statepb.Replica, wait time.Duration, due int) {
	wait = period
	for _, rec := range recs {
		if rec.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
			continue
		}
		at := deepDue(rec, period)
		if !at.After(now) {
			due++
		}
		if t, ok := retryAt[recordKey(rec)]; ok && t.After(now) {
			at = t
		}
		if at.After(now) {
			wait = min(wait, at.Sub(now))
			continue
		}
		if next == nil || deepOrder(rec, next) < 0 {
			next = rec
		}
	}
	if next != nil {
		wait = 0
	}
	return next, wait, due
}

// deepDue is when a completed replica is due for a deep check: period
// after its last one; one never checked has been due since 1970.
func deepDue(rec *statepb.Replica, period time.Duration) time.Time {
	return rec.GetDeepVerifyTime().AsTime().Add(period)
}

// deepOrder orders replicas for the deep scrub: by the last deep check
// (never first), then by completion and key.
func deepOrder(a, b *statepb.Replica) int {
	if c := a.GetDeepVerifyTime().AsTime().Compare(b.GetDeepVerifyTime().AsTime()); c != 0 {
		return c
	}
	if c := a.CompleteTime.AsTime().Compare(b.CompleteTime.AsTime()); c != 0 {
		return c
	}
	return strings.Compare(recordKey(a), recordKey(b))
}
