package state

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
)

const (
	phaseDeleting  = statepb.ReplicaPhase_REPLICA_PHASE_DELETING
	phaseCompleted = statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED
)

// ErrReplicaGone refuses a change to a replica that is no longer wanted
// (deleted, or marked Deleting) or was changed under the copy (another
// multipart upload): the worker copying it stops. The replicator tells it
// by IsReplicaGone.
func errReplicaGone(r *statepb.ReplicaRef) error {
	return errs.New(errs.FailedPrecondition, "replica", "replica %d of %s in %s is no longer wanted, or another copy of it started", r.GetIndex(), r.GetVersion().GetVersion(), r.GetRegion())
}

// IsReplicaGone tells whether a replica command was refused because the
// replica is no longer what the worker copies.
func IsReplicaGone(err error) bool {
	return errs.Is(err, errs.FailedPrecondition) && errs.FieldOf(err) == "replica" || errs.Is(err, errs.NotFound) && errs.FieldOf(err) == "replica"
}

// changeReplica applies fn to the stored record of r.
func changeReplica(tx *Tx, r *statepb.ReplicaRef, fn func(rec *statepb.Replica) error) error {
	k := refReplicaKey(r)
	rec, ok, err := Replicas.Get(tx, k)
	if err != nil {
		return err
	}
	if !ok {
		return errs.New(errs.NotFound, "replica", "replica %d of %s in %s doesn't exist", r.GetIndex(), r.GetVersion().GetVersion(), r.GetRegion())
	}
	if err := fn(rec); err != nil {
		return err
	}
	return putReplica(tx, k, rec)
}

// putReplica stores a replica record, in ActiveReplicas while it is not
// Completed (what the replicator's dispatch reads).
func putReplica(tx *Tx, k []byte, rec *statepb.Replica) error {
	if err := Replicas.put(tx, k, rec); err != nil {
		return err
	}
	if rec.Phase == phaseCompleted {
		return ActiveReplicas.delete(tx, k)
	}
	return ActiveReplicas.put(tx, k, k)
}

func reconcileReplicas(tx *Tx, c *statepb.Command, op *statepb.ReconcileReplicas) error {
	for _, rec := range op.GetAdd() {
		k := KeyOfReplica(rec)
		if Replicas.Has(tx, k) {
			continue
		}
		rec.NextAttemptTime = c.Time
		if err := putReplica(tx, k, rec); err != nil {
			return err
		}
	}
	for _, r := range op.GetUnwanted() {
		k := refReplicaKey(r)
		rec, ok, err := Replicas.Get(tx, k)
		if err != nil {
			return err
		}
		if !ok || rec.Phase == phaseDeleting {
			continue
		}
		rec.Phase = phaseDeleting
		rec.NextAttemptTime, rec.Attempts, rec.LastError = nil, 0, ""
		if err := putReplica(tx, k, rec); err != nil {
			return err
		}
	}
	return clearDirty(tx, op.GetReconciled())
}

func replicaStarted(tx *Tx, c *statepb.Command, op *statepb.ReplicaStarted) error {
	return changeReplica(tx, op.GetReplica(), func(rec *statepb.Replica) error {
		if rec.Phase == phaseDeleting || rec.Phase == phaseCompleted {
			return errReplicaGone(op.Replica)
		}
		rec.Phase = statepb.ReplicaPhase_REPLICA_PHASE_COPYING
		if rec.StartTime == nil {
			rec.StartTime = c.Time
		}
		return nil
	})
}

func replicaMultipart(tx *Tx, op *statepb.ReplicaMultipart) error {
	return changeReplica(tx, op.GetReplica(), func(rec *statepb.Replica) error {
		if rec.Phase == phaseDeleting {
			return errReplicaGone(op.Replica)
		}
		rec.MultipartId, rec.Parts, rec.BytesDone = op.MultipartId, nil, 0
		return nil
	})
}

func replicaPartCopied(tx *Tx, op *statepb.ReplicaPartCopied) error {
	return changeReplica(tx, op.GetReplica(), func(rec *statepb.Replica) error {
		if rec.Phase == phaseDeleting || rec.MultipartId != op.MultipartId {
			return errReplicaGone(op.Replica)
		}
		rec.Parts = append(rec.Parts, op.GetPart())
		rec.BytesDone += op.GetPart().GetSizeBytes()
		rec.CrossRegionBytes += op.CrossRegionBytes
		rec.InRegionBytes += op.InRegionBytes
		return nil
	})
}

func replicaFailed(tx *Tx, op *statepb.ReplicaFailed) error {
	return changeReplica(tx, op.GetReplica(), func(rec *statepb.Replica) error {
		if rec.Phase != phaseDeleting {
			rec.Phase = statepb.ReplicaPhase_REPLICA_PHASE_FAILED
		}
		rec.Attempts++
		rec.LastError, rec.NextAttemptTime = op.Error, op.NextAttemptTime
		return nil
	})
}

func replicaCompleted(tx *Tx, c *statepb.Command, op *statepb.ReplicaCompleted) error {
	return changeReplica(tx, op.GetReplica(), func(rec *statepb.Replica) error {
		if rec.Phase == phaseDeleting {
			return errReplicaGone(op.Replica)
		}
		rec.Phase = phaseCompleted
		// Every part was checked as it was written (its sha256 by the
		// store, its ETag against the source's): the deep scrub's period
		// starts now, and any damage that sent it back is healed.
		rec.Etag, rec.CompleteTime, rec.VerifyTime, rec.DeepVerifyTime = op.Etag, c.Time, c.Time, c.Time
		rec.Damage = ""
		rec.MultipartId, rec.Parts, rec.BytesDone = "", nil, op.SizeBytes
		rec.Attempts, rec.LastError, rec.NextAttemptTime = 0, "", nil
		return nil
	})
}

func replicaRestart(tx *Tx, op *statepb.ReplicaRestart) error {
	return changeReplica(tx, op.GetReplica(), func(rec *statepb.Replica) error {
		if !op.Pending {
			rec.MultipartId, rec.Parts, rec.BytesDone = "", nil, 0
			return nil
		}
		if rec.Phase == phaseDeleting || op.IfCompleted != nil && !sameTime(rec.CompleteTime, op.IfCompleted) {
			return errReplicaGone(op.Replica)
		}
		rec.Phase = statepb.ReplicaPhase_REPLICA_PHASE_PENDING
		rec.MultipartId, rec.Parts, rec.BytesDone, rec.Etag = "", nil, 0, ""
		rec.StartTime, rec.CompleteTime, rec.NextAttemptTime = nil, nil, nil
		rec.LastError = op.Reason
		if op.Damage != "" {
			rec.Damage = op.Damage
		}
		return nil
	})
}

func replicaRemoved(tx *Tx, c *statepb.Command, op *statepb.ReplicaRemoved) error {
	k := refReplicaKey(op.GetReplica())
	rec, ok, err := Replicas.Get(tx, k)
	if err != nil || !ok || op.OnlyDeleting && rec.Phase != phaseDeleting {
		return err
	}
	if err := ActiveReplicas.delete(tx, k); err != nil {
		return err
	}
	// The version may want a record at k again (its count went down and
	// back up while this one was being deleted).
	if err := markDirty(tx, c, rec.Tenant, rec.Gallery, rec.Application, rec.Version); err != nil {
		return err
	}
	return Replicas.delete(tx, k)
}

func replicaVerified(tx *Tx, c *statepb.Command, op *statepb.ReplicaVerified) error {
	return changeReplica(tx, op.GetReplica(), func(rec *statepb.Replica) error {
		if rec.Phase != phaseCompleted || op.IfCompleted != nil && !sameTime(rec.CompleteTime, op.IfCompleted) {
			return errReplicaGone(op.Replica)
		}
		rec.VerifyTime = c.Time
		if op.Deep {
			rec.DeepVerifyTime = c.Time
		}
		return nil
	})
}

func sameTime(a, b *timestamppb.Timestamp) bool {
	return a.GetSeconds() == b.GetSeconds() && a.GetNanos() == b.GetNanos()
}
