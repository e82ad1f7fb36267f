package fleet

import (
	"context"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// CreateMachine records a machine; one joining a scale set takes its region
// and OS from it (and must not contradict them). cred, when set, is the
// agent credential issued with it (in the same command).
func (f *Fleet) CreateMachine(ctx context.Context, tenant string, in *pb.Machine, cred *statepb.Credential) (*pb.Machine, error) {
	if err := CheckName("name", in.Name); err != nil {
		return nil, err
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	m := &pb.Machine{Name: in.Name, Region: in.Region, OsType: in.OsType, ScaleSet: in.ScaleSet, Tenant: tenant, ProvisioningState: pb.ProvisioningSucceeded, Tags: in.Tags}
	if m.ScaleSet != "" {
		ss, err := f.GetScaleSet(ctx, tenant, m.ScaleSet)
		if err != nil {
			return nil, err
		}
		if m.Region != "" && m.Region != ss.Region {
			return nil, errs.New(errs.InvalidArgument, "region", "machine '%s' is in region %s but scale set '%s' is in %s", m.Name, m.Region, ss.Name, ss.Region)
		}
		if m.OsType != "" {
			if os, err := canonicalOS("osType", m.OsType); err != nil || os != ss.OsType {
				return nil, errs.New(errs.InvalidArgument, "osType", "machine '%s' runs %s but scale set '%s' runs %s", m.Name, m.OsType, ss.Name, ss.OsType)
			}
		}
		m.Region, m.OsType = ss.Region, ss.OsType
	}
	if err := f.checkRegion(m.Region); err != nil {
		return nil, err
	}
	os, err := canonicalOS("osType", m.OsType)
	if err != nil {
		return nil, err
	}
	m.OsType = os
	_, err = f.propose(ctx, func(c *statepb.Command) {
		m.Etag, m.CreateTime, m.UpdateTime = c.Etag, c.Time, c.Time
		m.ApplicationProfile = &pb.ApplicationProfile{Etag: c.Etag}
		c.Op = &statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: m, Credential: cred}}
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// CheckAgentOS refuses an agent of m that runs on another OS (os: Linux
// or Windows, in any case) than m's osType; an agent that doesn't say (os
// empty) passes.
func CheckAgentOS(m *pb.Machine, os string) error {
	if os == "" {
		return nil
	}
	c, err := canonicalOS("osType", os)
	if err != nil {
		return err
	}
	if c != m.OsType {
		return errs.New(errs.FailedPrecondition, "osType", "machine '%s' was created with osType %s, but its agent runs on %s: create the machine with --os %s, or run this agent on a %s machine", m.Name, m.OsType, c, c, m.OsType)
	}
	return nil
}

// GetMachine returns a machine with its instance view.
func (f *Fleet) GetMachine(ctx context.Context, tenant, name string) (*pb.Machine, error) {
	var m *pb.Machine
	err := f.syncView(ctx, func(tx *state.Tx) (err error) {
		if m, err = tx.Machine(tenant, name); err != nil {
			return err
		}
		return f.withView(tx, m)
	})
	return m, err
}

// withView adds the instance view and the provisioning state it implies.
func (f *Fleet) withView(tx *state.Tx, m *pb.Machine) error {
	iv, _, err := state.InstanceViews.Get(tx, state.MachineKey(m.Tenant, m.Name))
	if err != nil {
		return err
	}
	if iv == nil {
		iv = &pb.InstanceView{}
	}
	f.mu.Lock()
	iv.Connected = f.connected[string(key(m.Tenant, m.Name))] > 0
	f.mu.Unlock()
	m.InstanceView = iv
	m.ProvisioningState = pb.ProvisioningSucceeded
	for _, a := range iv.Applications {
		if a.State == pb.AppFailed && a.TreatFailureAsDeploymentFailure {
			m.ProvisioningState = pb.ProvisioningFailed
		}
	}
	return nil
}

// ListMachines lists the tenant's machines (of one scale set when named).
func (f *Fleet) ListMachines(ctx context.Context, tenant, scaleSet string, size int32, token string) ([]*pb.Machine, string, error) {
	n, err := state.PageSize(size)
	if err != nil {
		return nil, "", err
	}
	var out []*pb.Machine
	var next string
	err = f.syncView(ctx, func(tx *state.Tx) (err error) {
		if scaleSet == "" {
			out, next, err = state.Page(tx, state.Machines, state.Prefix(tenant), token, n, nil)
		} else if _, err = tx.ScaleSet(tenant, scaleSet); err == nil {
			out, next, err = state.Page(tx, state.MachinesByScaleSet, state.Prefix(tenant, scaleSet), token, n, nil)
		}
		for _, m := range out {
			if err == nil {
				err = f.withView(tx, m)
			}
		}
		return err
	})
	return out, next, err
}

// DeleteMachine forgets a machine and its instance view, and revokes its
// agent credential.
func (f *Fleet) DeleteMachine(ctx context.Context, tenant, name string) error {
	_, err := f.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_DeleteMachine{DeleteMachine: &statepb.DeleteMachine{Tenant: tenant, Name: name}}
	})
	return err
}

// CreateScaleSet records a scale set.
func (f *Fleet) CreateScaleSet(ctx context.Context, tenant string, in *pb.ScaleSet) (*pb.ScaleSet, error) {
	if err := CheckName("name", in.Name); err != nil {
		return nil, err
	}
	if err := f.checkRegion(in.Region); err != nil {
		return nil, err
	}
	os, err := canonicalOS("osType", in.OsType)
	if err != nil {
		return nil, err
	}
	ss := &pb.ScaleSet{Name: in.Name, Region: in.Region, OsType: os, Tenant: tenant}
	_, err = f.propose(ctx, func(c *statepb.Command) {
		ss.Etag, ss.CreateTime, ss.UpdateTime = c.Etag, c.Time, c.Time
		ss.ApplicationProfile = &pb.ApplicationProfile{Etag: c.Etag}
		c.Op = &statepb.Command_CreateScaleSet{CreateScaleSet: &statepb.CreateScaleSet{ScaleSet: ss}}
	})
	if err != nil {
		return nil, err
	}
	return ss, nil
}

// GetScaleSet returns a scale set.
func (f *Fleet) GetScaleSet(ctx context.Context, tenant, name string) (*pb.ScaleSet, error) {
	var ss *pb.ScaleSet
	err := f.syncView(ctx, func(tx *state.Tx) (err error) {
		ss, err = tx.ScaleSet(tenant, name)
		return err
	})
	return ss, err
}

// ListScaleSets lists the tenant's scale sets.
func (f *Fleet) ListScaleSets(ctx context.Context, tenant string, size int32, token string) ([]*pb.ScaleSet, string, error) {
	n, err := state.PageSize(size)
	if err != nil {
		return nil, "", err
	}
	var out []*pb.ScaleSet
	var next string
	err = f.syncView(ctx, func(tx *state.Tx) (err error) {
		out, next, err = state.Page(tx, state.ScaleSets, state.Prefix(tenant), token, n, nil)
		return err
	})
	return out, next, err
}

// DeleteScaleSet deletes a scale set; with instances, only with cascade
// (which deletes them too and revokes their agents' credentials).
func (f *Fleet) DeleteScaleSet(ctx context.Context, tenant, name string, cascade bool) error {
	_, err := f.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_DeleteScaleSet{DeleteScaleSet: &statepb.DeleteScaleSet{Tenant: tenant, Name: name, Cascade: cascade}}
	})
	return err
}
