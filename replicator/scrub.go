package replicator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Repair checks every completed replica of a version — its size and store
// ETag against the manifest; with deep, every piece's sha256 too — and sends
// those missing or corrupted back to be copied. It returns the problems
// found and the number of replicas found sound.
func (r *Replicator) Repair(ctx context.Context, v *pb.GalleryApplicationVersion, deep bool) ([]*pb.ReplicaProblem, int32, error) {
	recs, err := r.records(prefixOf(v))
	if err != nil {
		return nil, 0, err
	}
	var problems []*pb.ReplicaProblem
	var sound int32
	manifests := map[pb.ArtifactKind]*statepb.Manifest{}
	for _, rec := range recs {
		if rec.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
			continue
		}
		m := manifests[rec.Kind]
		if m == nil {
			if m, err = r.cat.Manifest(ctx, rec.Tenant, rec.Gallery, rec.Application, rec.Version, rec.Kind); err != nil {
				return nil, 0, err
			}
			manifests[rec.Kind] = m
		}
		problem, err := r.check(ctx, rec, m, deep)
		if err != nil {
			return problems, sound, fmt.Errorf("check replica %d in %s: %w", rec.Index, rec.Region, err)
		}
		if problem == "" {
			sound++
			continue
		}
		problems = append(problems, &pb.ReplicaProblem{Region: rec.Region, Replica: rec.Index, Artifact: rec.Kind.Label(), Problem: problem})
		r.m.repaired.WithLabelValues(rec.Region).Inc()
		r.log.Warn("replica missing or corrupted; copying it again", "version", what(rec), "region", rec.Region, "replica", rec.Index, "problem", problem)
		st, err := r.store(rec.Region, int(rec.Endpoint))
		if err == nil {
			st.Delete(ctx, rec.ObjectKey)
		}
		r.reset(ctx, rec, "repair: "+problem)
	}
	return problems, sound, nil
}

// check returns what is wrong with a completed replica, "" when nothing.
// An error means the check itself could not run (the store is down).
func (r *Replicator) check(ctx context.Context, rec *statepb.Replica, m *statepb.Manifest, deep bool) (string, error) {
	st, err := r.store(rec.Region, int(rec.Endpoint))
	if err != nil {
		return "", err
	}
	info, err := st.Stat(ctx, rec.ObjectKey)
	if errs.Is(err, errs.NotFound) {
		return "missing", nil
	}
	if err != nil {
		return "", err
	}
	if p := verify(info, m); p != "" {
		return p, nil
	}
	if !deep {
		return "", nil
	}
	body, err := st.Get(ctx, rec.ObjectKey, 0, -1)
	if err != nil {
		return "", err
	}
	defer body.Close()
	buf := make([]byte, m.PieceSize)
	for i, want := range m.PieceSha256 {
		n := min(m.PieceSize, m.SizeBytes-int64(i)*m.PieceSize)
		if _, err := io.ReadFull(body, buf[:n]); err != nil {
			if ctx.Err() != nil {
				return "", err
			}
			// A store that answers but can't serve the bytes holds a
			// damaged object (MinIO's bitrot check fails the read); one that
			// doesn't answer is down, and nothing is known of the replica.
			if _, serr := st.Stat(ctx, rec.ObjectKey); serr != nil {
				return "", err
			}
			return fmt.Sprintf("piece %d can't be read: %v", i, err), nil
		}
		if got := sha256.Sum256(buf[:n]); !bytes.Equal(got[:], want) {
			return fmt.Sprintf("piece %d has sha256 %x, not %x", i, got, want), nil
		}
	}
	return "", nil
}

// Scrub runs a shallow Repair over every version and returns the number of
// replicas sent back to be copied.
func (r *Replicator) Scrub(ctx context.Context, deep bool) (int, error) {
	versions, err := r.cat.AllVersions(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, v := range versions {
		if v.ProvisioningState == pb.ProvisioningDeleting || v.Package == nil {
			continue
		}
		problems, _, err := r.Repair(ctx, v, deep)
		n += len(problems)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("scrub: a replica could not be checked", "version", v.Gallery+"/"+v.Application+"/"+v.Name, "err", err)
		}
	}
	return n, ctx.Err()
}
