package state

import (
	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
)

// PreheatKey is the key of a version's preheat in a region.
func PreheatKey(tenant, gallery, app, version, region string) []byte {
	return key(tenant, gallery, app, version, region)
}

func keyOfPreheat(p *statepb.Preheat) []byte {
	r := p.GetVersion()
	return PreheatKey(p.GetTenant(), r.GetGallery(), r.GetApplication(), r.GetVersion(), p.GetRegion())
}

// Preheat targets in the preheats_by_target index: a machine, or a scale
// set.
const (
	PreheatMachine  = "machine"
	PreheatScaleSet = "scaleset"
)

// preheatTargetKeys are p's keys in preheats_by_target.
func preheatTargetKeys(p *statepb.Preheat) [][]byte {
	pk := keyOfPreheat(p)
	var out [][]byte
	add := func(kind, name string) { out = append(out, append(Prefix(p.GetTenant(), kind, name), pk...)) }
	for _, m := range p.GetMachines() {
		add(PreheatMachine, m)
	}
	if p.GetScaleSet() != "" {
		add(PreheatScaleSet, p.GetScaleSet())
	}
	return out
}

// setPreheat records a version's preheat in a region, replacing the one
// there was.
func setPreheat(tx *Tx, c *statepb.Command, op *statepb.SetPreheat) error {
	p := op.GetPreheat()
	r := p.GetVersion()
	if _, err := tx.Version(r.GetTenant(), r.GetGallery(), r.GetApplication(), r.GetVersion()); err != nil {
		return err
	}
	if err := dropPreheat(tx, keyOfPreheat(p)); err != nil {
		return err
	}
	p.CreateTime = c.Time
	for _, k := range preheatTargetKeys(p) {
		if err := PreheatsByTarget.put(tx, k, keyOfPreheat(p)); err != nil {
			return err
		}
	}
	return Preheats.put(tx, keyOfPreheat(p), p)
}

// removePreheat ends a version's preheat in a region.
func removePreheat(tx *Tx, op *statepb.RemovePreheat) error {
	r := op.GetVersion()
	k := PreheatKey(op.GetTenant(), r.GetGallery(), r.GetApplication(), r.GetVersion(), op.GetRegion())
	if !Preheats.Has(tx, k) {
		return errs.New(errs.NotFound, "region", "Version '%s' has no preheat in region %s.", VersionPath(r.GetGallery(), r.GetApplication(), r.GetVersion()), op.GetRegion())
	}
	return dropPreheat(tx, k)
}

// dropPreheat deletes the preheat at k, if any, and its index entries.
func dropPreheat(tx *Tx, k []byte) error {
	old, ok, err := Preheats.Get(tx, k)
	if err != nil || !ok {
		return err
	}
	for _, ik := range preheatTargetKeys(old) {
		if err := PreheatsByTarget.delete(tx, ik); err != nil {
			return err
		}
	}
	return Preheats.delete(tx, k)
}

// dropPreheatsOf deletes a version's preheats in every region.
func dropPreheatsOf(tx *Tx, r *statepb.VersionRef) error {
	ps, err := tx.PreheatsOfVersion(r.GetTenant(), r.GetGallery(), r.GetApplication(), r.GetVersion())
	if err != nil {
		return err
	}
	for _, p := range ps {
		if err := dropPreheat(tx, keyOfPreheat(p)); err != nil {
			return err
		}
	}
	return nil
}

// PreheatsOfVersion lists a version's preheats, by region.
func (tx *Tx) PreheatsOfVersion(tenant, gallery, app, version string) ([]*statepb.Preheat, error) {
	var out []*statepb.Preheat
	err := Preheats.Scan(tx, Prefix(tenant, gallery, app, version), nil, func(_ []byte, p *statepb.Preheat) (bool, error) {
		out = append(out, p)
		return true, nil
	})
	return out, err
}

// PreheatsOf lists the preheats a machine takes part in: those naming it,
// and those of its scale set ("": none) in its region.
func (tx *Tx) PreheatsOf(tenant, machine, scaleSet, region string) ([]*statepb.Preheat, error) {
	out, err := PreheatsByTarget.All(tx, Prefix(tenant, PreheatMachine, machine))
	if err != nil || scaleSet == "" {
		return out, err
	}
	ss, err := PreheatsByTarget.All(tx, Prefix(tenant, PreheatScaleSet, scaleSet))
	for _, p := range ss {
		if p.GetRegion() == region {
			out = append(out, p)
		}
	}
	return out, err
}
