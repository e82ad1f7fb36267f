package fleet

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// RolloutMachines are the machines a rollout of app (gallery/application)
// to version moves: a scale set's instances (the application must be in
// the scale set's profile), or the machines a selector picks (those with
// the application in their own profile), each Pending with the version
// its goal state holds now. The version must pass the seeds' checks in
// every region the machines are in (SetApplication's), and no entry may
// upgrade on its own (enableAutomaticUpgrade): both would move machines.
func (f *Fleet) RolloutMachines(ctx context.Context, tenant string, t *pb.RolloutTarget, app, version string) ([]*pb.RolloutMachine, error) {
	ref, err := ParseRef(app + "/" + version)
	if err != nil || ref.Tenant != "" {
		return nil, errs.New(errs.InvalidArgument, "application", "application '%s' is invalid: want gallery/application of this tenant", app)
	}
	ms, entries, err := f.rolloutTargets(ctx, tenant, t, app)
	if err != nil {
		return nil, err
	}
	checked := map[string]bool{}
	var out []*pb.RolloutMachine
	for i, m := range ms {
		if e := entries[i]; e.EnableAutomaticUpgrade {
			return nil, errs.New(errs.FailedPrecondition, "application", "%s has %s with enableAutomaticUpgrade: its machines move on their own; set a version (vmapp vm|vmss app set) before rolling out", targetName(t, m), app)
		}
		if k := m.Region + "/" + m.OsType; !checked[k] {
			if _, err := f.checkVersion(ctx, tenant, ref, m.OsType, m.Region); err != nil {
				return nil, asVersionField(err)
			}
			checked[k] = true
		}
		gs, err := f.GoalState(ctx, tenant, m.Name)
		if err != nil {
			return nil, err
		}
		rm := &pb.RolloutMachine{Name: m.Name, Region: m.Region, State: pb.RolloutMachinePending}
		for _, ga := range gs.Applications {
			if ga.Tenant == "" && ga.Gallery == ref.Gallery && ga.Application == ref.Application {
				rm.PreviousVersion = ga.Version
			}
		}
		out = append(out, rm)
	}
	if len(out) == 0 {
		return nil, errs.New(errs.InvalidArgument, "target", "the target has no machines with %s in their profile: nothing to roll out", app)
	}
	return out, nil
}

func targetName(t *pb.RolloutTarget, m *pb.Machine) string {
	if t.GetScaleSet() != "" {
		return "scale set '" + t.ScaleSet + "'"
	}
	return "machine '" + m.Name + "'"
}

// rolloutTargets reads the machines t names that have app in the profile
// the rollout changes (the scale set's or their own), with that entry.
func (f *Fleet) rolloutTargets(ctx context.Context, tenant string, t *pb.RolloutTarget, app string) (ms []*pb.Machine, entries []*pb.VMGalleryApplication, err error) {
	if (t.GetScaleSet() == "") == (t.GetMachines() == nil) {
		return nil, nil, errs.New(errs.InvalidArgument, "target", "name either a scale set or a machine selector")
	}
	err = f.syncView(ctx, func(tx *state.Tx) error {
		if t.ScaleSet != "" {
			ss, err := tx.ScaleSet(tenant, t.ScaleSet)
			if err != nil {
				return err
			}
			e := entryOf(ss.ApplicationProfile, app)
			if e == nil {
				return errs.New(errs.FailedPrecondition, "application", "Application '%s' isn't in the application profile of scale set '%s': add it (vmapp vmss app set) before rolling out", app, ss.Name)
			}
			if ms, err = tx.Instances(tenant, ss.Name); err != nil {
				return err
			}
			entries = slices.Repeat([]*pb.VMGalleryApplication{e}, len(ms))
			return nil
		}
		sel := t.Machines
		if sel.Region != "" {
			if err := f.checkRegion(sel.Region); err != nil {
				return err
			}
		}
		return state.Machines.Scan(tx, state.Prefix(tenant), nil, func(_ []byte, m *pb.Machine) (bool, error) {
			if e := entryOf(m.ApplicationProfile, app); e != nil && selects(sel, m) {
				ms, entries = append(ms, m), append(entries, e)
			}
			return true, nil
		})
	})
	return ms, entries, err
}

// selects tells whether a selector picks m: its region, and every tag.
func selects(sel *pb.MachineSelector, m *pb.Machine) bool {
	if sel.Region != "" && m.Region != sel.Region {
		return false
	}
	for _, k := range slices.Sorted(maps.Keys(sel.Tags)) {
		if v, ok := m.Tags[k]; !ok || v != sel.Tags[k] {
			return false
		}
	}
	return true
}

// entryOf is app's (gallery/application) entry in p, or nil.
func entryOf(p *pb.ApplicationProfile, app string) *pb.VMGalleryApplication {
	for _, e := range p.GetGalleryApplications() {
		if r, _ := ParseRef(e.PackageReferenceId); r.App() == app {
			return e
		}
	}
	return nil
}

// asVersionField names the rollout's field at fault in a refusal of the
// version (SetApplication's name it packageReferenceId or location).
func asVersionField(err error) error {
	var e *errs.Error
	if errors.As(err, &e) && (e.Field == "packageReferenceId" || e.Field == "location") {
		out := *e
		out.Field = "version"
		return &out
	}
	return err
}
