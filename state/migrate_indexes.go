package state

import (
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// buildIndexes fills the indexes of schema 4 from the records of a file of
// schema 3: what the appliers would have written had they kept them from
// the start. The dirty_versions table starts empty: the replicator
// reconciles every version when it starts.
func buildIndexes(tx *Tx) error {
	one := func(k []byte) [][]byte { return [][]byte{k} }
	err := MachinesByScaleSet.rebuild(tx, func(_ []byte, m *pb.Machine) [][]byte {
		if m.ScaleSet == "" {
			return nil
		}
		return one(MachineInScaleSetKey(m.Tenant, m.ScaleSet, m.Name))
	})
	if err != nil {
		return err
	}
	if err := TokensByTenant.rebuild(tx, func(_ []byte, c *statepb.Credential) [][]byte { return one(TokenInTenantKey(c.Token)) }); err != nil {
		return err
	}
	if err := DeletingGalleries.rebuild(tx, deletingKey[*pb.Gallery]); err != nil {
		return err
	}
	if err := DeletingApplications.rebuild(tx, deletingKey[*pb.GalleryApplication]); err != nil {
		return err
	}
	if err := DeletingVersions.rebuild(tx, deletingKey[*pb.GalleryApplicationVersion]); err != nil {
		return err
	}
	err = ActiveReplicas.rebuild(tx, func(k []byte, r *statepb.Replica) [][]byte {
		if r.Phase == phaseCompleted {
			return nil
		}
		return one(k)
	})
	if err != nil {
		return err
	}
	return buildInventory(tx)
}

func deletingKey[M resource](k []byte, m M) [][]byte {
	if m.GetProvisioningState() != pb.ProvisioningDeleting {
		return nil
	}
	return [][]byte{k}
}

// buildInventory writes the inventory entries of every instance view.
func buildInventory(tx *Tx) error {
	type report struct {
		m  *pb.Machine
		iv *pb.InstanceView
	}
	var todo []report
	err := InstanceViews.Scan(tx, nil, nil, func(k []byte, iv *pb.InstanceView) (bool, error) {
		m, ok, err := Machines.Get(tx, k)
		if ok {
			todo = append(todo, report{m, iv})
		}
		return err == nil, err
	})
	if err != nil {
		return err
	}
	for _, r := range todo { // no writes while the cursor walks
		for _, s := range r.iv.Applications {
			e := &pb.InventoryEntry{Machine: r.m.Name, Region: r.m.Region, ScaleSet: r.m.ScaleSet, Status: s}
			if err := putInventory(tx, r.m.Tenant, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// buildOwnApps fills machines_own_apps (schema 9) from the machines: the
// instances of scale sets whose own profile names an application.
func buildOwnApps(tx *Tx) error {
	return MachinesOwnApps.rebuild(tx, func(_ []byte, m *pb.Machine) [][]byte {
		if !hasOwnApps(m) {
			return nil
		}
		return [][]byte{MachineInScaleSetKey(m.Tenant, m.ScaleSet, m.Name)}
	})
}
