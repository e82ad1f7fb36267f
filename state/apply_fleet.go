package state

import (
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// createMachine records a machine, counts it in its scale set, and issues
// its agent credential when the command carries one.
func createMachine(tx *Tx, c *statepb.Command, op *statepb.CreateMachine) error {
	m := op.GetMachine()
	k := MachineKey(m.GetTenant(), m.GetName())
	if Machines.Has(tx, k) {
		return errs.New(errs.AlreadyExists, "name", "Machine '%s' already exists.", m.Name)
	}
	if m.ScaleSet != "" {
		ss, err := tx.ScaleSet(m.Tenant, m.ScaleSet)
		if err != nil {
			return err
		}
		if ss.Region != m.Region || ss.OsType != m.OsType {
			return errs.New(errs.FailedPrecondition, "scaleSet", "scale set '%s' is in %s running %s, not %s running %s", ss.Name, ss.Region, ss.OsType, m.Region, m.OsType)
		}
		ss.InstanceCount++
		if err := ScaleSets.put(tx, ScaleSetKey(ss.Tenant, ss.Name), ss); err != nil {
			return err
		}
		if err := MachinesByScaleSet.put(tx, MachineInScaleSetKey(m.Tenant, m.ScaleSet, m.Name), k); err != nil {
			return err
		}
	}
	if op.Credential != nil {
		if err := issueToken(tx, c, &statepb.IssueToken{Credential: op.Credential}); err != nil {
			return err
		}
	}
	m.ApplicationProfile = &pb.ApplicationProfile{GalleryApplications: m.GetApplicationProfile().GetGalleryApplications(), Etag: c.Etag}
	if err := indexOwnApps(tx, m); err != nil {
		return err
	}
	return Machines.put(tx, k, stamp(m, c))
}

// hasOwnApps tells whether m is an instance of a scale set whose own
// profile names an application: what MachinesOwnApps indexes.
func hasOwnApps(m *pb.Machine) bool {
	return m.GetScaleSet() != "" && len(m.GetApplicationProfile().GetGalleryApplications()) > 0
}

// indexOwnApps keeps m's key in MachinesOwnApps in step with its profile
// (as it is about to be stored).
func indexOwnApps(tx *Tx, m *pb.Machine) error {
	if m.ScaleSet == "" {
		return nil
	}
	k := MachineInScaleSetKey(m.Tenant, m.ScaleSet, m.Name)
	if hasOwnApps(m) {
		return MachinesOwnApps.put(tx, k, MachineKey(m.Tenant, m.Name))
	}
	return MachinesOwnApps.delete(tx, k)
}

// deleteMachine forgets a machine and its instance view, takes it out of
// its scale set and revokes its agent credential.
func deleteMachine(tx *Tx, c *statepb.Command, tenant, name string) error {
	m, err := tx.Machine(tenant, name)
	if err != nil {
		return err
	}
	if m.ScaleSet != "" {
		if ss, ok, err := ScaleSets.Get(tx, ScaleSetKey(tenant, m.ScaleSet)); err != nil {
			return err
		} else if ok {
			ss.InstanceCount--
			if err := ScaleSets.put(tx, ScaleSetKey(tenant, ss.Name), ss); err != nil {
				return err
			}
		}
		if err := MachinesByScaleSet.delete(tx, MachineInScaleSetKey(tenant, m.ScaleSet, name)); err != nil {
			return err
		}
		if err := MachinesOwnApps.delete(tx, MachineInScaleSetKey(tenant, m.ScaleSet, name)); err != nil {
			return err
		}
	}
	if err := bindMachineToken(tx, c, tenant, name, ""); err != nil {
		return err
	}
	if err := clearInventory(tx, tenant, name); err != nil {
		return err
	}
	if err := deleteActionRuns(tx, tenant, name); err != nil {
		return err
	}
	if err := deletePins(tx, tenant, name); err != nil {
		return err
	}
	if err := InstanceViews.delete(tx, MachineKey(tenant, name)); err != nil {
		return err
	}
	return Machines.delete(tx, MachineKey(tenant, name))
}

func createScaleSet(tx *Tx, c *statepb.Command, op *statepb.CreateScaleSet) error {
	ss := op.GetScaleSet()
	k := ScaleSetKey(ss.GetTenant(), ss.GetName())
	if ScaleSets.Has(tx, k) {
		return errs.New(errs.AlreadyExists, "name", "Scale set '%s' already exists.", ss.Name)
	}
	ss.ApplicationProfile = &pb.ApplicationProfile{GalleryApplications: ss.GetApplicationProfile().GetGalleryApplications(), Etag: c.Etag}
	return ScaleSets.put(tx, k, stamp(ss, c))
}

// Instances lists a scale set's machines, in name order.
func (tx *Tx) Instances(tenant, scaleSet string) ([]*pb.Machine, error) {
	return MachinesByScaleSet.All(tx, Prefix(tenant, scaleSet))
}

// InstancesWithOwnApps lists the machines of a scale set whose own
// profile names an application, in name order: the only instances a
// change of the scale set's profile can conflict with.
func (tx *Tx) InstancesWithOwnApps(tenant, scaleSet string) ([]*pb.Machine, error) {
	return MachinesOwnApps.All(tx, Prefix(tenant, scaleSet))
}

// instanceNames lists the names of a scale set's machines, in name order,
// from the index's keys alone (no record decoded).
func (tx *Tx) instanceNames(tenant, scaleSet string) ([]string, error) {
	prefix := Prefix(tenant, scaleSet)
	var out []string
	err := scanBucket(MachinesByScaleSet.bucket(tx), prefix, nil, func(k, _ []byte) (bool, error) {
		out = append(out, string(k[len(prefix):]))
		return true, nil
	})
	return out, err
}

func deleteScaleSet(tx *Tx, c *statepb.Command, op *statepb.DeleteScaleSet) error {
	if _, err := tx.ScaleSet(op.Tenant, op.Name); err != nil {
		return err
	}
	instances, err := tx.Instances(op.Tenant, op.Name)
	if err != nil {
		return err
	}
	if len(instances) > 0 && !op.Cascade {
		return errs.New(errs.FailedPrecondition, "cascade", "Scale set '%s' has %d instances: delete them first, or delete with cascade.", op.Name, len(instances))
	}
	for _, m := range instances {
		if err := deleteMachine(tx, c, op.Tenant, m.Name); err != nil {
			return err
		}
	}
	return ScaleSets.delete(tx, ScaleSetKey(op.Tenant, op.Name))
}

// profileAt reads the profile a ProfileEtag names, and a func storing a
// new one in its place.
func profileAt(tx *Tx, c *statepb.Command, tenant string, p *statepb.ProfileEtag) (*pb.ApplicationProfile, func(*pb.ApplicationProfile) error, error) {
	if p.GetMachine() != "" {
		m, err := tx.Machine(tenant, p.Machine)
		if err != nil {
			return nil, nil, err
		}
		return m.ApplicationProfile, func(ap *pb.ApplicationProfile) error {
			m.ApplicationProfile = ap
			m.UpdateTime = c.Time
			if err := indexOwnApps(tx, m); err != nil {
				return err
			}
			return Machines.put(tx, MachineKey(tenant, m.Name), m)
		}, nil
	}
	ss, err := tx.ScaleSet(tenant, p.GetScaleSet())
	if err != nil {
		return nil, nil, err
	}
	return ss.ApplicationProfile, func(ap *pb.ApplicationProfile) error {
		ss.ApplicationProfile = ap
		ss.UpdateTime = c.Time
		return ScaleSets.put(tx, ScaleSetKey(tenant, ss.Name), ss)
	}, nil
}

func profileName(p *statepb.ProfileEtag) string {
	if p.GetMachine() != "" {
		return "machine '" + p.Machine + "'"
	}
	return "scale set '" + p.GetScaleSet() + "'"
}

// setProfile replaces a profile if it, and every profile it was checked
// against, still has the etag read. A scale set's profile is checked
// against its instances with applications of their own (MachinesOwnApps):
// each of those must be among the profiles read, so that an instance that
// got applications of its own since the read is not missed.
func setProfile(tx *Tx, c *statepb.Command, op *statepb.SetProfile) error {
	read := map[string]bool{}
	for _, o := range op.GetOthers() {
		cur, _, err := profileAt(tx, c, op.Tenant, o)
		if err != nil {
			return err
		}
		if cur.GetEtag() != o.Etag {
			return errs.New(errs.Aborted, "", "the application profile of %s changed meanwhile: try again", profileName(o))
		}
		if o.GetMachine() != "" {
			read[o.Machine] = true
		}
	}
	if ss := op.GetTarget().GetScaleSet(); op.GetTarget().GetMachine() == "" && ss != "" {
		prefix := Prefix(op.Tenant, ss)
		var missed string
		err := scanBucket(MachinesOwnApps.bucket(tx), prefix, nil, func(k, _ []byte) (bool, error) {
			if m := string(k[len(prefix):]); !read[m] {
				missed = m
				return false, nil
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		if missed != "" {
			return errs.New(errs.Aborted, "", "the application profile of machine '%s' changed meanwhile: try again", missed)
		}
	}
	cur, save, err := profileAt(tx, c, op.Tenant, op.GetTarget())
	if err != nil {
		return err
	}
	if err := CheckETag("the application profile of "+profileName(op.Target), op.Target.Etag, cur.GetEtag()); err != nil {
		return err
	}
	p := &pb.ApplicationProfile{GalleryApplications: op.GetProfile().GetGalleryApplications(), Etag: c.Etag}
	if err := releasePins(tx, op.Tenant, op.Target, changedApps(cur, p)); err != nil {
		return err
	}
	return save(p)
}

// changedApps are the applications (gallery/application) whose entries
// differ between two profiles.
func changedApps(a, b *pb.ApplicationProfile) []string {
	entries := func(p *pb.ApplicationProfile) map[string]*pb.VMGalleryApplication {
		m := map[string]*pb.VMGalleryApplication{}
		for _, e := range p.GetGalleryApplications() {
			m[appOfRef(e.PackageReferenceId)] = e
		}
		return m
	}
	ea, eb := entries(a), entries(b)
	var out []string
	for _, e := range append(slices.Clone(a.GetGalleryApplications()), b.GetGalleryApplications()...) {
		app := appOfRef(e.PackageReferenceId)
		if !slices.Contains(out, app) && !proto.Equal(ea[app], eb[app]) {
			out = append(out, app)
		}
	}
	return out
}

// releasePins refuses a change of apps in the profile at t while an active
// rollout moves them on its machines, and drops the pins ended rollouts
// (halted, aborted) left on them: the profile says their version now.
func releasePins(tx *Tx, tenant string, t *statepb.ProfileEtag, apps []string) error {
	machines := []string{t.GetMachine()}
	if t.GetMachine() == "" {
		var err error
		if machines, err = tx.instanceNames(tenant, t.GetScaleSet()); err != nil {
			return err
		}
	}
	if err := checkNotRolling(tx, tenant, apps, machines); err != nil {
		return err
	}
	for _, app := range apps {
		for _, m := range machines {
			if err := RolloutPins.delete(tx, RolloutPinKey(tenant, m, app)); err != nil {
				return err
			}
		}
	}
	return nil
}

func reportStatus(tx *Tx, c *statepb.Command, op *statepb.ReportStatus) error {
	m, err := tx.Machine(op.Tenant, op.Machine)
	if err != nil {
		return err
	}
	iv := op.GetInstanceView()
	if iv == nil {
		iv = &pb.InstanceView{}
	}
	iv.LastReportTime, iv.Connected = c.Time, false
	if err := clearInventory(tx, op.Tenant, op.Machine); err != nil {
		return err
	}
	for _, s := range iv.Applications {
		e := &pb.InventoryEntry{Machine: m.Name, Region: m.Region, ScaleSet: m.ScaleSet, Status: s}
		if err := putInventory(tx, op.Tenant, e); err != nil {
			return err
		}
	}
	return InstanceViews.put(tx, MachineKey(op.Tenant, op.Machine), iv)
}

// inventoryIndexes are the indexes of inventory entries.
var inventoryIndexes = []Index[*pb.InventoryEntry]{InventoryByState, InventoryByApp, InventoryByRegion}

// inventoryKeys are an inventory entry's key and its keys in
// inventoryIndexes.
func inventoryKeys(tenant string, e *pb.InventoryEntry) (k []byte, ix [3][]byte) {
	app := e.GetStatus().GetApplication()
	return InventoryKey(tenant, e.Machine, app), [3][]byte{
		key(tenant, InventoryState(e.GetStatus().GetState()), e.Machine, app),
		key(tenant, InventoryAppName(app), e.Machine, app),
		key(tenant, e.Region, e.Machine, app),
	}
}

func putInventory(tx *Tx, tenant string, e *pb.InventoryEntry) error {
	k, ixk := inventoryKeys(tenant, e)
	if err := Inventory.put(tx, k, e); err != nil {
		return err
	}
	for i, ix := range inventoryIndexes {
		if err := ix.put(tx, ixk[i], k); err != nil {
			return err
		}
	}
	return nil
}

// clearInventory deletes a machine's inventory entries and their index
// keys.
func clearInventory(tx *Tx, tenant, machine string) error {
	old, err := Inventory.All(tx, Prefix(tenant, machine))
	if err != nil {
		return err
	}
	for _, e := range old {
		k, ixk := inventoryKeys(tenant, e)
		for i, ix := range inventoryIndexes {
			if err := ix.delete(tx, ixk[i]); err != nil {
				return err
			}
		}
		if err := Inventory.delete(tx, k); err != nil {
			return err
		}
	}
	return nil
}

// deletePins forgets the versions rollouts pinned a machine's
// applications at.
func deletePins(tx *Tx, tenant, machine string) error {
	var keys [][]byte
	err := scanBucket(RolloutPins.bucket(tx), Prefix(tenant, machine), nil, func(k, _ []byte) (bool, error) {
		keys = append(keys, append([]byte(nil), k...))
		return true, nil
	})
	for _, k := range keys {
		if err == nil {
			err = RolloutPins.delete(tx, k)
		}
	}
	return err
}
