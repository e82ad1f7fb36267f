package fleet

import (
	"cmp"
	"context"
	"slices"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// MaxPreheatMachines bounds the machines one preheat names.
const MaxPreheatMachines = 1000

// PreheatRequest is a version's preheat in a region: count machines of
// the region, or the instances of a scale set there.
type PreheatRequest struct {
	Gallery, Application, Version string
	Region                        string
	Machines                      int
	ScaleSet                      string
	// Serving tells whether a machine's agent serves peers now: those are
	// chosen first.
	Serving func(machine string) bool
}

// check validates r's fields.
func (f *Fleet) checkPreheat(r PreheatRequest) error {
	switch {
	case r.Region == "":
		return errs.New(errs.InvalidArgument, "region", "region is required: the region whose machines fetch the version")
	case r.Machines < 0 || r.Machines > MaxPreheatMachines:
		return errs.New(errs.InvalidArgument, "machines", "machines %d must be 1 to %d", r.Machines, MaxPreheatMachines)
	case r.Machines == 0 && r.ScaleSet == "":
		return errs.New(errs.InvalidArgument, "machines", "say which machines fetch the version: a number of machines, or a scale set")
	case r.Machines > 0 && r.ScaleSet != "":
		return errs.New(errs.InvalidArgument, "scaleSet", "give a number of machines or a scale set, not both")
	}
	return f.checkRegion(r.Region)
}

// Preheat records a version's preheat in a region (replacing the one there
// was): the machines named in their goal states fetch its package into
// their peer caches. The version must be Succeeded with a package.
func (f *Fleet) Preheat(ctx context.Context, tenant string, r PreheatRequest) (*statepb.Preheat, error) {
	if err := f.checkPreheat(r); err != nil {
		return nil, err
	}
	v, err := f.cat.GetVersion(ctx, tenant, r.Gallery, r.Application, r.Version)
	if err != nil {
		return nil, err
	}
	if v.Package == nil || v.ProvisioningState != pb.ProvisioningSucceeded {
		return nil, errs.New(errs.FailedPrecondition, "version", "Version '%s' is %s without a package yet: nothing to preheat", state.VersionPath(r.Gallery, r.Application, v.Name), v.ProvisioningState)
	}
	p := &statepb.Preheat{Tenant: tenant, Region: r.Region, ScaleSet: r.ScaleSet,
		Version: &statepb.VersionRef{Tenant: tenant, Gallery: r.Gallery, Application: r.Application, Version: v.Name}}
	err = f.syncView(ctx, func(tx *state.Tx) error {
		if r.ScaleSet != "" {
			ss, err := tx.ScaleSet(tenant, r.ScaleSet)
			if err == nil && ss.Region != r.Region {
				err = errs.New(errs.InvalidArgument, "scaleSet", "scale set '%s' is in region %s, not %s", ss.Name, ss.Region, r.Region)
			}
			return err
		}
		p.Machines, err = chooseMachines(tx, tenant, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	c, err := f.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_SetPreheat{SetPreheat: &statepb.SetPreheat{Preheat: p}}
	})
	if err != nil {
		return nil, err
	}
	p.CreateTime = c.Time
	return p, nil
}

// chooseMachines picks r.Machines machines of tenant in r.Region: those
// serving peers first, then by name.
func chooseMachines(tx *state.Tx, tenant string, r PreheatRequest) ([]string, error) {
	var names []string
	err := state.Machines.Scan(tx, state.Prefix(tenant), nil, func(_ []byte, m *pb.Machine) (bool, error) {
		if m.Region == r.Region {
			names = append(names, m.Name)
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if len(names) < r.Machines {
		return nil, errs.New(errs.FailedPrecondition, "machines", "region %s has %d machines; %d asked for", r.Region, len(names), r.Machines)
	}
	serving := func(n string) int {
		if r.Serving != nil && r.Serving(n) {
			return 0
		}
		return 1
	}
	slices.SortStableFunc(names, func(a, b string) int { return cmp.Compare(serving(a), serving(b)) })
	return names[:r.Machines], nil
}

// CancelPreheat ends a version's preheat in a region.
func (f *Fleet) CancelPreheat(ctx context.Context, tenant, gallery, app, version, region string) error {
	if err := f.checkRegion(region); err != nil {
		return err
	}
	v, err := f.cat.GetVersion(ctx, tenant, gallery, app, version)
	if err != nil {
		return err
	}
	_, err = f.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_RemovePreheat{RemovePreheat: &statepb.RemovePreheat{Tenant: tenant, Region: region,
			Version: &statepb.VersionRef{Tenant: tenant, Gallery: gallery, Application: app, Version: v.Name}}}
	})
	return err
}

// Preheats lists a version's preheats, region by region, with the
// machines each names (a scale set's: its instances in the region now).
func (f *Fleet) Preheats(ctx context.Context, tenant, gallery, app, version string) ([]*statepb.Preheat, error) {
	var out []*statepb.Preheat
	err := f.syncView(ctx, func(tx *state.Tx) (err error) {
		if out, err = tx.PreheatsOfVersion(tenant, gallery, app, version); err != nil {
			return err
		}
		for _, p := range out {
			if p.ScaleSet == "" {
				continue
			}
			ms, err := tx.Instances(tenant, p.ScaleSet)
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.Region == p.Region {
					p.Machines = append(p.Machines, m.Name)
				}
			}
		}
		return nil
	})
	return out, err
}

// goalPreheats are what a machine of tenant in region fetches ahead of a
// rollout: the preheats naming it or its scale set whose version is
// replicated to the region; and the goalCache keys of their applications.
func (f *Fleet) goalPreheats(ctx context.Context, tenant string, m *pb.Machine) (out []*pb.GoalPreheat, apps []string, err error) {
	var ps []*statepb.Preheat
	err = f.db.View(ctx, func(tx *state.Tx) (err error) {
		ps, err = tx.PreheatsOf(tenant, m.Name, m.ScaleSet, m.Region)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	for _, p := range ps {
		r := p.GetVersion()
		apps = append(apps, appKey(r.Tenant, r.Gallery, r.Application))
		v, err := f.cat.ReadVersion(ctx, r.Tenant, r.Gallery, r.Application, r.Version)
		if errs.Is(err, errs.NotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if v.Package == nil || f.avail.Available(ctx, v, m.Region) != nil {
			continue
		}
		out = append(out, &pb.GoalPreheat{Gallery: r.Gallery, Application: r.Application, Version: r.Version, Package: v.Package})
	}
	slices.SortFunc(out, func(a, b *pb.GoalPreheat) int {
		return cmp.Or(cmp.Compare(a.Gallery, b.Gallery), cmp.Compare(a.Application, b.Application), cmp.Compare(a.Version, b.Version))
	})
	return out, apps, nil
}
