package replicator

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Status computes a version's replicationStatus from its replica records.
func (r *Replicator) Status(v *pb.GalleryApplicationVersion) (*pb.ReplicationStatus, error) {
	recs, err := r.records(prefixOf(v))
	if err != nil {
		return nil, err
	}
	return r.status(v, recs), nil
}

// Decorate sets the replicationStatus of versions, in place.
func (r *Replicator) Decorate(vs ...*pb.GalleryApplicationVersion) error {
	for _, v := range vs {
		s, err := r.Status(v)
		if err != nil {
			return err
		}
		v.ReplicationStatus = s
	}
	return nil
}

func (r *Replicator) status(v *pb.GalleryApplicationVersion, recs []*statepb.Replica) *pb.ReplicationStatus {
	out := &pb.ReplicationStatus{AggregatedState: pb.ReplicationUnknown}
	if v.Package == nil {
		for _, tr := range v.GetPublishingProfile().GetTargetRegions() {
			out.Summary = append(out.Summary, &pb.RegionalReplicationStatus{Region: tr.Name, State: pb.ReplicationUnknown, Details: "waiting for the package"})
		}
		return out
	}
	kinds := int32(1)
	if v.DefaultConfiguration != nil {
		kinds = 2
	}
	now := r.now()
	completed, failed := 0, 0
	pp := v.GetPublishingProfile()
	for _, tr := range pp.GetTargetRegions() {
		want := pp.ReplicasIn(tr)
		s := &pb.RegionalReplicationStatus{Region: tr.Name, ReplicasWanted: want}
		var started time.Time
		var startedBytes int64
		var fail, repairing *statepb.Replica
		done, n := 0, 0
		for _, rec := range recs {
			if rec.Region != tr.Name || rec.Phase == statepb.ReplicaPhase_REPLICA_PHASE_DELETING || rec.Index >= want {
				continue
			}
			n++
			s.Replicas = append(s.Replicas, replicaStatus(rec, now))
			s.BytesTotal += rec.SizeBytes
			s.BytesDone += min(rec.BytesDone, rec.SizeBytes)
			switch rec.Phase {
			case statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED:
				done++
				if rec.Kind == pb.ArtifactKind_ARTIFACT_KIND_PACKAGE {
					s.ReplicasCompleted++
				}
			case statepb.ReplicaPhase_REPLICA_PHASE_FAILED:
				if fail == nil || rec.Attempts > fail.Attempts {
					fail = rec
				}
			}
			if rec.Damage != "" && rec.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED && repairing == nil {
				repairing = rec
			}
			if rec.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED && rec.StartTime != nil {
				if t := rec.StartTime.AsTime(); started.IsZero() || t.Before(started) {
					started = t
				}
				startedBytes += rec.BytesDone
			}
		}
		sortReplicas(s.Replicas)
		if s.BytesTotal > 0 {
			s.Progress = int32(s.BytesDone * 100 / s.BytesTotal)
		}
		switch {
		case n > 0 && done == n && n == int(want*kinds):
			s.State, s.Progress = pb.ReplicationCompleted, 100
			completed++
		case fail != nil:
			s.State = pb.ReplicationFailed
			s.Details = fmt.Sprintf("replica %d (%s): %s (attempt %d; retrying in %s)", fail.Index, fail.Kind.Label(), fail.LastError, fail.Attempts,
				max(0, fail.NextAttemptTime.AsTime().Sub(now)).Round(time.Second))
			failed++
		default:
			s.State = pb.ReplicationReplicating
			if repairing != nil {
				s.Details = fmt.Sprintf("replica %d (%s) is copied again: %s", repairing.Index, repairing.Kind.Label(), repairing.Damage)
				if serving(v, tr.Name, recs) {
					s.Details += "; the region's other replicas serve downloads"
				}
			}
			if el := now.Sub(started); !started.IsZero() && startedBytes > 0 && el > 0 {
				rate := float64(startedBytes) / el.Seconds()
				s.Eta = durationpb.New(time.Duration(float64(s.BytesTotal-s.BytesDone) / rate * float64(time.Second)).Round(time.Second))
			}
		}
		out.Summary = append(out.Summary, s)
	}
	switch {
	case completed == len(out.Summary):
		out.AggregatedState = pb.ReplicationCompleted
	case failed > 0:
		out.AggregatedState = pb.ReplicationFailed
	default:
		out.AggregatedState = pb.ReplicationInProgress
	}
	return out
}

// replicaStatus is a replica record as the API shows it at now.
func replicaStatus(rec *statepb.Replica, now time.Time) *pb.ReplicaStatus {
	r := &pb.ReplicaStatus{Index: rec.Index, Artifact: rec.Kind.Label(), BytesDone: min(rec.BytesDone, rec.SizeBytes), SizeBytes: rec.SizeBytes,
		Endpoint: rec.Endpoint, Attempts: rec.Attempts, Details: cmp.Or(rec.Damage, rec.LastError)}
	switch rec.Phase {
	case statepb.ReplicaPhase_REPLICA_PHASE_COPYING:
		r.State = "Copying"
	case statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED:
		r.State, r.BytesDone = pb.ReplicationCompleted, rec.SizeBytes
	case statepb.ReplicaPhase_REPLICA_PHASE_FAILED:
		r.State = pb.ReplicationFailed
	default:
		r.State = "Pending"
	}
	if rec.Phase == statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
		r.Details = ""
	}
	if r.SizeBytes > 0 {
		r.Progress = int32(r.BytesDone * 100 / r.SizeBytes)
	}
	r.Eta = replicaETA(rec, r, now)
	return r
}

// replicaETA is a copy's time left at the rate it has moved its bytes since
// its attempt started (nil when it isn't copying or has moved nothing).
func replicaETA(rec *statepb.Replica, r *pb.ReplicaStatus, now time.Time) *durationpb.Duration {
	if rec.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COPYING || rec.StartTime == nil || r.BytesDone <= 0 {
		return nil
	}
	el := now.Sub(rec.StartTime.AsTime())
	if el <= 0 {
		return nil
	}
	left := float64(r.SizeBytes-r.BytesDone) * float64(el) / float64(r.BytesDone)
	return durationpb.New(time.Duration(left).Round(time.Second))
}

// sortReplicas orders a region's replicas by index, the package first.
func sortReplicas(rs []*pb.ReplicaStatus) {
	slices.SortFunc(rs, func(a, b *pb.ReplicaStatus) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(b.Artifact, a.Artifact)) // "package" > "default configuration"
	})
}

// serving reports whether region serves downloads of v: each of the
// version's artifacts has all the replicas the region wants, each completed
// now or being copied again after damage was found (completed once), and
// at least one completed. A replica found damaged doesn't take the region
// away from machines while the others are sound.
func serving(v *pb.GalleryApplicationVersion, region string, recs []*statepb.Replica) bool {
	if v.Package == nil {
		return false
	}
	pp := v.GetPublishingProfile()
	i := slices.IndexFunc(pp.GetTargetRegions(), func(tr *pb.TargetRegion) bool { return tr.Name == region })
	if i < 0 {
		return false
	}
	want := pp.ReplicasIn(pp.TargetRegions[i])
	kinds := []pb.ArtifactKind{pb.ArtifactKind_ARTIFACT_KIND_PACKAGE}
	if v.DefaultConfiguration != nil {
		kinds = append(kinds, pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION)
	}
	for _, k := range kinds {
		have, completed := int32(0), 0
		for _, rec := range recs {
			if rec.Kind != k || rec.Region != region || rec.Index >= want || rec.Phase == statepb.ReplicaPhase_REPLICA_PHASE_DELETING {
				continue
			}
			have++
			switch {
			case rec.Phase == statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED:
				completed++
			case rec.Damage == "":
				return false // not copied yet
			}
		}
		if have != want || completed == 0 {
			return false
		}
	}
	return true
}

// Terminal reports whether every region of s is Completed or Failed.
func Terminal(s *pb.ReplicationStatus) bool {
	for _, r := range s.GetSummary() {
		if r.State != pb.ReplicationCompleted && r.State != pb.ReplicationFailed {
			return false
		}
	}
	return true
}

// Available fails unless the version may be deployed in region: the
// region is a target region and its replicas are Completed, or some are
// being copied again after damage was found while the others serve.
func (r *Replicator) Available(ctx context.Context, v *pb.GalleryApplicationVersion, region string) error {
	recs, err := r.records(prefixOf(v))
	if err != nil {
		return err
	}
	if serving(v, region, recs) {
		return nil
	}
	return errs.New(errs.FailedPrecondition, "location", "The gallery application version '%s/%s/%s' isn't available in %s region. Contact the application's owner to replicate it to this region, or change your requested region.", v.Gallery, v.Application, v.Name, region)
}

// Bytes sums the bytes a version's replicas moved through vmappd: read from
// another region, and from another endpoint of the same region.
func (r *Replicator) Bytes(v *pb.GalleryApplicationVersion) (crossRegion, inRegion int64, err error) {
	recs, err := r.records(prefixOf(v))
	for _, rec := range recs {
		crossRegion += rec.CrossRegionBytes
		inRegion += rec.InRegionBytes
	}
	return crossRegion, inRegion, err
}

// Completed returns the completed replicas of a version's artifact, every
// region's, in region and index order.
func (r *Replicator) Completed(v *pb.GalleryApplicationVersion, k pb.ArtifactKind) ([]*statepb.Replica, error) {
	recs, err := r.records(prefixOf(v))
	if err != nil {
		return nil, err
	}
	var out []*statepb.Replica
	for _, rec := range recs {
		if rec.Kind == k && rec.Phase == statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
			out = append(out, rec)
		}
	}
	return out, nil
}
