package state

import (
	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// ActionRunKey is the key of a custom action's run: tenant 0 machine 0 id.
func ActionRunKey(tenant, machine, id string) []byte { return key(tenant, machine, id) }

// requestActions records runs of a custom action, Pending, one per
// machine; refused when a machine is gone or already has max_pending runs
// pending.
func requestActions(tx *Tx, c *statepb.Command, op *statepb.RequestActions) error {
	for _, r := range op.GetRuns() {
		if _, err := tx.Machine(r.Tenant, r.Machine); err != nil {
			return err
		}
		pending, err := ActionRuns.Count(tx, Prefix(r.Tenant, r.Machine), func(o *pb.ActionRun) bool { return o.State == pb.ActionPending })
		if err != nil {
			return err
		}
		if max := op.GetMaxPending(); max > 0 && pending >= int(max) {
			return errs.New(errs.ResourceExhausted, "target", "Machine '%s' has %d custom action runs pending already, the most it may have: wait until its agent ran them.", r.Machine, pending)
		}
		k := ActionRunKey(r.Tenant, r.Machine, r.Id)
		if ActionRuns.Has(tx, k) {
			return errs.New(errs.AlreadyExists, "id", "Run '%s' already exists.", r.Id)
		}
		r.State, r.CreateTime = pb.ActionPending, c.Time
		if err := ActionRuns.put(tx, k, r); err != nil {
			return err
		}
	}
	return nil
}

// finishAction records how a Pending run ended; a run already finished
// (a report sent again) or gone is left alone. The machine's finished runs
// beyond keep_finished go, oldest first.
func finishAction(tx *Tx, c *statepb.Command, op *statepb.FinishAction) error {
	in := op.GetRun()
	k := ActionRunKey(op.Tenant, op.Machine, in.GetId())
	r, ok, err := ActionRuns.Get(tx, k)
	if err != nil || !ok || r.State != pb.ActionPending {
		return err
	}
	r.State, r.Reason, r.ExitCode, r.OutputTail = in.State, in.Reason, in.ExitCode, in.OutputTail
	r.Duration, r.Logs, r.EndTime = in.Duration, in.Logs, in.EndTime
	if r.EndTime == nil {
		r.EndTime = c.Time
	}
	if err := ActionRuns.put(tx, k, r); err != nil {
		return err
	}
	return pruneActionRuns(tx, op.Tenant, op.Machine, int(op.GetKeepFinished()))
}

// pruneActionRuns deletes a machine's finished runs beyond keep, oldest
// first (ids sort by creation).
func pruneActionRuns(tx *Tx, tenant, machine string, keep int) error {
	if keep <= 0 {
		return nil
	}
	var finished [][]byte
	err := ActionRuns.ScanDesc(tx, Prefix(tenant, machine), func(k []byte, r *pb.ActionRun) (bool, error) {
		if r.State != pb.ActionPending {
			finished = append(finished, append([]byte(nil), k...))
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range finished[min(keep, len(finished)):] {
		if err := ActionRuns.delete(tx, k); err != nil {
			return err
		}
	}
	return nil
}

// deleteActionRuns forgets a machine's runs (the machine goes).
func deleteActionRuns(tx *Tx, tenant, machine string) error {
	var keys [][]byte
	err := ActionRuns.Scan(tx, Prefix(tenant, machine), nil, func(k []byte, _ *pb.ActionRun) (bool, error) {
		keys = append(keys, append([]byte(nil), k...))
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := ActionRuns.delete(tx, k); err != nil {
			return err
		}
	}
	return nil
}
