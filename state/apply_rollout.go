package state

import (
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// RolloutKey is the key of a rollout.
func RolloutKey(tenant, name string) []byte { return key(tenant, name) }

// ActiveRolloutKey is a rollout's key in ActiveRollouts.
func ActiveRolloutKey(tenant, app, name string) []byte { return key(tenant, app, name) }

// RolloutPinKey is the key of the version a rollout pins a machine's
// application (gallery/application) at.
func RolloutPinKey(tenant, machine, app string) []byte { return key(tenant, machine, app) }

// ActiveRolloutsOf lists the active rollouts of tenant's application.
func (tx *Tx) ActiveRolloutsOf(tenant, app string) ([]*pb.Rollout, error) {
	return ActiveRollouts.All(tx, Prefix(tenant, app))
}

// RolloutHolding returns the active rollout of app that has machine
// among its machines, or nil.
func (tx *Tx) RolloutHolding(tenant, app, machine string) (*pb.Rollout, error) {
	holding, err := tx.rolloutsHolding(tenant, app)
	return holding[machine], err
}

// rolloutsHolding maps each machine an active rollout of app moves to that
// rollout (the first in ActiveRolloutsOf's order), reading them once.
func (tx *Tx) rolloutsHolding(tenant, app string) (map[string]*pb.Rollout, error) {
	rs, err := tx.ActiveRolloutsOf(tenant, app)
	if err != nil {
		return nil, err
	}
	holding := map[string]*pb.Rollout{}
	for _, r := range rs {
		for _, m := range r.Machines {
			if holding[m.Name] == nil {
				holding[m.Name] = r
			}
		}
	}
	return holding, nil
}

func createRollout(tx *Tx, c *statepb.Command, op *statepb.CreateRollout) error {
	r := op.GetRollout()
	k := RolloutKey(r.GetTenant(), r.GetName())
	if Rollouts.Has(tx, k) {
		return errs.New(errs.AlreadyExists, "name", "Rollout '%s' already exists.", r.Name)
	}
	holding, err := tx.rolloutsHolding(r.Tenant, r.Application)
	if err != nil {
		return err
	}
	for _, m := range r.Machines {
		if other := holding[m.Name]; other != nil {
			return errs.New(errs.FailedPrecondition, "target", "Rollout '%s' of %s is active on machine '%s': pause and abort it, or wait until it ends.", other.Name, r.Application, m.Name)
		}
	}
	r.CreateTime = c.Time
	if err := ActiveRollouts.put(tx, ActiveRolloutKey(r.Tenant, r.Application, r.Name), k); err != nil {
		return err
	}
	return Rollouts.put(tx, k, stamp(r, c))
}

// putRollout replaces a rollout whose etag is still the one read, and
// keeps its pins, its place in ActiveRollouts and, once it succeeded, the
// profiles in step.
func putRollout(tx *Tx, c *statepb.Command, op *statepb.PutRollout) error {
	r := op.GetRollout()
	k := RolloutKey(r.GetTenant(), r.GetName())
	cur, ok, err := Rollouts.Get(tx, k)
	if err != nil {
		return err
	}
	if !ok {
		return errs.New(errs.NotFound, "name", "Rollout '%s' doesn't exist.", r.Name)
	}
	if cur.Etag != op.ExpectEtag {
		return errs.New(errs.Aborted, "", "rollout '%s' changed meanwhile: try again", r.Name)
	}
	if !pb.RolloutActive(cur.State) {
		return errs.New(errs.FailedPrecondition, "name", "Rollout '%s' is %s: it can't change any more.", r.Name, cur.State)
	}
	if r.State == pb.RolloutSucceeded {
		if err := writeRolledOut(tx, c, r); err != nil {
			return err
		}
	}
	if err := pinRollout(tx, r); err != nil {
		return err
	}
	if !pb.RolloutActive(r.State) {
		if err := ActiveRollouts.delete(tx, ActiveRolloutKey(r.Tenant, r.Application, r.Name)); err != nil {
			return err
		}
	}
	r.CreateTime = cur.CreateTime
	return Rollouts.put(tx, k, stamp(r, c))
}

// pinOf is the version a rollout in state pins a machine at ("": none).
func pinOf(r *pb.Rollout, m *pb.RolloutMachine) string {
	if r.State == pb.RolloutSucceeded || r.State == pb.RolloutRolledBack {
		return "" // the profile says it now
	}
	switch m.State {
	case pb.RolloutMachineUpdating, pb.RolloutMachineSucceeded, pb.RolloutMachineFailed:
		return r.Version
	case pb.RolloutMachineRollingBack, pb.RolloutMachineRolledBack, pb.RolloutMachineRollbackFailed:
		return m.PreviousVersion
	}
	return ""
}

// pinRollout writes (or deletes) the pin of each of r's machines.
func pinRollout(tx *Tx, r *pb.Rollout) error {
	for _, m := range r.Machines {
		pk := RolloutPinKey(r.Tenant, m.Name, r.Application)
		if v := pinOf(r, m); v != "" && Machines.Has(tx, MachineKey(r.Tenant, m.Name)) {
			if err := RolloutPins.put(tx, pk, &statepb.RolloutPin{Rollout: r.Name, Version: v}); err != nil {
				return err
			}
			continue
		}
		old, ok, err := RolloutPins.Get(tx, pk)
		if err != nil {
			return err
		}
		if ok && old.Rollout == r.Name {
			if err := RolloutPins.delete(tx, pk); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeRolledOut puts a succeeded rollout's version in the profile entries
// its machines had the application from: the scale set's, or each
// machine's own.
func writeRolledOut(tx *Tx, c *statepb.Command, r *pb.Rollout) error {
	targets := []*statepb.ProfileEtag{{ScaleSet: r.GetTarget().GetScaleSet()}}
	if targets[0].ScaleSet == "" {
		targets = targets[:0]
		for _, m := range r.Machines {
			targets = append(targets, &statepb.ProfileEtag{Machine: m.Name})
		}
	}
	for _, t := range targets {
		cur, save, err := profileAt(tx, c, r.Tenant, t)
		if errs.Is(err, errs.NotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		if err := save(withVersion(cur, c, r.Application, r.Version)); err != nil {
			return err
		}
	}
	return nil
}

// withVersion is p with app's entry naming version.
func withVersion(p *pb.ApplicationProfile, c *statepb.Command, app, version string) *pb.ApplicationProfile {
	out := &pb.ApplicationProfile{Etag: c.Etag}
	for _, e := range p.GetGalleryApplications() {
		if appOfRef(e.PackageReferenceId) == app {
			e = proto.CloneOf(e)
			e.PackageReferenceId, e.ResolvedVersion, e.EnableAutomaticUpgrade = app+"/"+version, version, false
		}
		out.GalleryApplications = append(out.GalleryApplications, e)
	}
	return out
}

// appOfRef is the gallery/application of a profile's packageReferenceId
// as the fleet stores it (gallery/application/version).
func appOfRef(ref string) string {
	for i := len(ref) - 1; i >= 0; i-- {
		if ref[i] == '/' {
			return ref[:i]
		}
	}
	return ref
}

// checkNotRolling refuses a profile change of an application an active
// rollout moves on one of machines.
// Each application's active rollouts are read once, whatever the number
// of machines (a scale set's instances).
func checkNotRolling(tx *Tx, tenant string, apps []string, machines []string) error {
	for _, app := range apps {
		holding, err := tx.rolloutsHolding(tenant, app)
		if err != nil {
			return err
		}
		for _, m := range machines {
			if r := holding[m]; r != nil {
				return errs.New(errs.FailedPrecondition, "application", "Rollout '%s' is moving %s on machine '%s': abort it first (vmapp rollout abort %s).", r.Name, app, m, r.Name)
			}
		}
	}
	return nil
}
