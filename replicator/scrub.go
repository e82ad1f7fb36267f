package replicator

import (
	"context"
	"time"

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
	return r.repair(ctx, v, deep, checkRepair)
}

func (r *Replicator) repair(ctx context.Context, v *pb.GalleryApplicationVersion, deep bool, check string) (RepairReport, error) {
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
		m := manifests[rec.Kind]
		if m == nil {
			if m, err = r.cat.Manifest(ctx, rec.Tenant, rec.Gallery, rec.Application, rec.Version, rec.Kind); err != nil {
				return out, err
			}
			manifests[rec.Kind] = m
		}
		o, checked, err := r.checkAndAct(ctx, rec, m, ps, check)
		if err != nil {
			return out, err
		}
		p := &pb.ReplicaProblem{Region: rec.Region, Replica: rec.Index, Artifact: rec.Kind.Label()}
		switch {
		case !checked:
		case o.err != nil:
			p.Problem = o.err.Error()
			out.Unchecked = append(out.Unchecked, p)
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
// finds: damage sends it back to be copied.
// checked is false when the record changed since rec was read (copied
// again, or going): there was nothing to check. err is ctx's.
func (r *Replicator) checkAndAct(ctx context.Context, rec *statepb.Replica, m *statepb.Manifest, ps pieces, check string) (o outcome, checked bool, err error) {
	release, err := r.locks.lock(ctx, recordKey(rec))
	if err != nil {
		return o, false, err
	}
	defer release()
	if cur, err := r.record(recordKey(rec)); err != nil || !sameCopy(cur, rec) {
		return o, false, err
	}
	o = r.check(ctx, rec, m, ps)
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
	for _, v := range versions {
		if v.ProvisioningState == deleting || v.Package == nil {
			continue
		}
		rep, err := r.repair(ctx, v, false, checkScrub)
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
