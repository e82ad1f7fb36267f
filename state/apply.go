package state

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Apply applies one command in tx. It is deterministic: it reads only tx
// and the command (its time, its etag), never a clock, a random source or
// the order of a map. A refusal (a classified error: NotFound,
// FailedPrecondition, ...) is decided before anything is written; any other
// error means the transaction must be rolled back.
//
// term is the raft term of the log entry (0 outside a cluster): a command
// of leader-only work from another term is refused.
func Apply(tx *Tx, c *statepb.Command, term uint64) error {
	if c.LeaderTerm != 0 && term != 0 && c.LeaderTerm != term {
		return errs.New(errs.Aborted, "", "the command was proposed by the leader of term %d, and the cluster is in term %d: leadership changed", c.LeaderTerm, term)
	}
	if c.Time == nil || c.Etag == "" {
		return fmt.Errorf("command %T has no time or etag", c.Op)
	}
	switch op := c.Op.(type) {
	case *statepb.Command_CreateGallery:
		return createGallery(tx, c, op.CreateGallery)
	case *statepb.Command_UpdateGallery:
		return updateGallery(tx, c, op.UpdateGallery)
	case *statepb.Command_DeleteGallery:
		return deleteGallery(tx, c, op.DeleteGallery)
	case *statepb.Command_CreateApplication:
		return createApplication(tx, c, op.CreateApplication)
	case *statepb.Command_UpdateApplication:
		return updateApplication(tx, c, op.UpdateApplication)
	case *statepb.Command_DeleteApplication:
		return deleteApplication(tx, c, op.DeleteApplication)
	case *statepb.Command_CreateVersion:
		return createVersion(tx, c, op.CreateVersion)
	case *statepb.Command_UpdateVersion:
		return updateVersion(tx, c, op.UpdateVersion)
	case *statepb.Command_DeleteVersion:
		return deleteVersion(tx, c, op.DeleteVersion)
	case *statepb.Command_RemoveDeleted:
		return removeDeleted(tx, op.RemoveDeleted)
	case *statepb.Command_RemoveVersion:
		return removeVersion(tx, c, op.RemoveVersion)
	case *statepb.Command_FailIngest:
		return failIngest(tx, c, op.FailIngest)
	case *statepb.Command_RetryIngest:
		return retryIngest(tx, c, op.RetryIngest)

	case *statepb.Command_CreateUpload:
		return createUpload(tx, op.CreateUpload)
	case *statepb.Command_CommitPart:
		return commitPart(tx, c, op.CommitPart)
	case *statepb.Command_FinishUpload:
		return finishUpload(tx, c, op.FinishUpload)
	case *statepb.Command_DeleteUpload:
		return deleteUpload(tx, op.DeleteUpload)

	case *statepb.Command_ReconcileReplicas:
		return reconcileReplicas(tx, c, op.ReconcileReplicas)
	case *statepb.Command_ReplicaStarted:
		return replicaStarted(tx, c, op.ReplicaStarted)
	case *statepb.Command_ReplicaMultipart:
		return replicaMultipart(tx, op.ReplicaMultipart)
	case *statepb.Command_ReplicaPartCopied:
		return replicaPartCopied(tx, op.ReplicaPartCopied)
	case *statepb.Command_ReplicaFailed:
		return replicaFailed(tx, op.ReplicaFailed)
	case *statepb.Command_ReplicaCompleted:
		return replicaCompleted(tx, c, op.ReplicaCompleted)
	case *statepb.Command_ReplicaRestart:
		return replicaRestart(tx, op.ReplicaRestart)
	case *statepb.Command_ReplicaRemoved:
		return replicaRemoved(tx, c, op.ReplicaRemoved)
	case *statepb.Command_ReplicaVerified:
		return replicaVerified(tx, c, op.ReplicaVerified)

	case *statepb.Command_IssueToken:
		return issueToken(tx, c, op.IssueToken)
	case *statepb.Command_RevokeToken:
		return revokeToken(tx, c, op.RevokeToken.GetId())
	case *statepb.Command_PutShare:
		return putShare(tx, op.PutShare)
	case *statepb.Command_DeleteShare:
		return deleteShare(tx, op.DeleteShare)

	case *statepb.Command_CreateMachine:
		return createMachine(tx, c, op.CreateMachine)
	case *statepb.Command_DeleteMachine:
		return deleteMachine(tx, c, op.DeleteMachine.GetTenant(), op.DeleteMachine.GetName())
	case *statepb.Command_CreateScaleSet:
		return createScaleSet(tx, c, op.CreateScaleSet)
	case *statepb.Command_DeleteScaleSet:
		return deleteScaleSet(tx, c, op.DeleteScaleSet)
	case *statepb.Command_SetProfile:
		return setProfile(tx, c, op.SetProfile)
	case *statepb.Command_SetPreheat:
		return setPreheat(tx, c, op.SetPreheat)
	case *statepb.Command_RemovePreheat:
		return removePreheat(tx, op.RemovePreheat)
	case *statepb.Command_ReportStatus:
		return reportStatus(tx, c, op.ReportStatus)
	case *statepb.Command_RequestActions:
		return requestActions(tx, c, op.RequestActions)
	case *statepb.Command_FinishAction:
		return finishAction(tx, c, op.FinishAction)

	case *statepb.Command_PutNode:
		n := op.PutNode.GetNode()
		return Nodes.put(tx, NodeKey(n.GetId()), &pb.ClusterNode{Id: n.GetId(), RaftAddress: n.GetRaftAddress(), ApiAddress: n.GetApiAddress()})
	case *statepb.Command_RemoveNode:
		return Nodes.delete(tx, NodeKey(op.RemoveNode.GetId()))

	case *statepb.Command_SignVersion:
		return signVersion(tx, c, op.SignVersion)
	case *statepb.Command_PutTrustPolicy:
		return putTrustPolicy(tx, c, op.PutTrustPolicy)

	case *statepb.Command_CreateRollout:
		return createRollout(tx, c, op.CreateRollout)
	case *statepb.Command_PutRollout:
		return putRollout(tx, c, op.PutRollout)
	}
	return fmt.Errorf("unknown command %T: is this vmappd older than the one that proposed it?", c.Op)
}

// stamp sets a record's etag and update time (where it has them) from the
// command.
func stamp[M proto.Message](m M, c *statepb.Command) M {
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	if f := fields.ByName("etag"); f != nil {
		r.Set(f, protoreflect.ValueOfString(c.Etag))
	}
	if f := fields.ByName("update_time"); f != nil {
		r.Set(f, protoreflect.ValueOfMessage(timestamppb.New(c.Time.AsTime()).ProtoReflect()))
	}
	return m
}

// CheckETag fails with FailedPrecondition when want is set and differs from
// etag. The quotes of an HTTP-style etag are optional in want.
func CheckETag(what, want, etag string) error {
	if want != "" && strings.Trim(want, `"`) != strings.Trim(etag, `"`) {
		return errs.New(errs.FailedPrecondition, "ifMatch", "%s has etag %s, not %s: it was changed since you read it; read it again and retry", what, etag, want)
	}
	return nil
}

func protoValue(s string) protoreflect.Value { return protoreflect.ValueOfString(s) }

func hasPrefix(k, p []byte) bool { return len(k) >= len(p) && string(k[:len(p)]) == string(p) }
