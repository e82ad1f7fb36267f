package fleet

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// Goal is a machine's goal state (shared: don't change it), and its body.
type Goal struct {
	State *pb.GoalState
	body  *goalBody
	// own: the goal state has fields of the machine's own beyond its name
	// and region (custom actions to run, preheats): WatchResponse
	// marshals it whole. ownApps are the goalCache keys of the
	// applications only those fields name.
	own     bool
	ownApps []string
}

// goalBody is what a goal state holds but the machine's name and region:
// its applications, key changes and generation, computed from a tenant, a
// region and the profile entries that apply (bodyKey). The machines of a
// scale set without entries of their own share one: it is computed once
// per change and encoded once for all their streams.
type goalBody struct {
	applications []*pb.GoalApplication
	keyChanges   []*pb.KeyChange
	generation   string
	apps         []string // goalCache keys of the applications named
	size         int      // encoded

	once    sync.Once
	encoded []byte // GoalState fields 2, 3 and 5
}

// encode is the body as GoalState's fields generation, applications and
// key_changes, in protobuf's wire form (encoded at the first call).
func (b *goalBody) encode() []byte {
	b.once.Do(func() {
		gs := &pb.GoalState{Generation: b.generation, Applications: b.applications, KeyChanges: b.keyChanges}
		b.encoded, _ = proto.MarshalOptions{Deterministic: true}.Marshal(gs)
	})
	return b.encoded
}

// WatchResponse is the goal state as a WatchGoalStateResponse in
// protobuf's wire form: the machine's own fields, then the body's bytes
// (encoded once for every machine sharing it). Protobuf reads fields in
// any order, so the message is the same as the goal state marshalled. A
// goal state with fields of the machine's own (custom actions to run,
// preheats) is marshalled whole.
func (g Goal) WatchResponse() []byte {
	if g.own {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.WatchGoalStateResponse{GoalState: g.State})
		return b
	}
	var own []byte
	if g.State.Machine != "" {
		own = protowire.AppendTag(own, 1, protowire.BytesType)
		own = protowire.AppendString(own, g.State.Machine)
	}
	if g.State.Region != "" {
		own = protowire.AppendTag(own, 4, protowire.BytesType)
		own = protowire.AppendString(own, g.State.Region)
	}
	body := g.body.encode()
	out := protowire.AppendTag(make([]byte, 0, len(own)+len(body)+16), 1, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(len(own)+len(body)))
	return append(append(out, own...), body...)
}

// GoalState returns a machine's goal state, from the cache when it holds
// it (see goalCache). The goal state is shared: don't change it.
func (f *Fleet) GoalState(ctx context.Context, tenant, machine string) (*pb.GoalState, error) {
	g, err := f.Goal(ctx, tenant, machine)
	return g.State, err
}

// Goal returns a machine's goal state and its body, kept computed (see
// goalCache). After a change of its scale set's profile only, the
// machine's own inputs are still kept, and the scale set's entries are
// read once for all its instances: the goal state is computed again
// without reading the state.
func (f *Fleet) Goal(ctx context.Context, tenant, machine string) (Goal, error) {
	k := string(key(tenant, machine))
	g, own, epoch := f.goals.lookup(k)
	if g.State != nil {
		return g, nil
	}
	var ss *scaleSetIn
	var err error
	switch {
	case own == nil:
		if own, ss, err = f.goalInputs(ctx, tenant, machine); err != nil {
			return Goal{}, err
		}
		if ss != nil {
			f.goals.putScaleSet(own.scaleSet, epoch, ss)
		}
	case own.scaleSet != "":
		if ss, err = f.scaleSetInputs(ctx, tenant, own.scaleSetName, epoch); err != nil {
			return Goal{}, err
		}
	}
	in := own.with(tenant, ss)
	b, err := f.goalBody(ctx, tenant, in, epoch)
	if err != nil {
		return Goal{}, err
	}
	g = Goal{State: &pb.GoalState{Machine: in.machine, Region: in.region, Generation: b.generation,
		Applications: b.applications, KeyChanges: b.keyChanges}, body: b}
	if len(in.actions) > 0 || len(in.preheat) > 0 { // the machine's own
		g.State.Actions, g.State.Preheat = in.actions, in.preheat
		g.State.Generation = generation(b.applications, b.keyChanges, in.actions, in.preheat)
		g.own, g.ownApps = true, in.preheatApps
	}
	f.goals.putWith(k, epoch, g, in.scaleSet, own)
	return g, nil
}

// goalIn is what a machine's goal state is computed from: the profile
// entries that apply (its scale set's, and its own, which win), in
// packageReferenceId order.
type goalIn struct {
	machine, region, scaleSet string // scaleSet: its goalCache key, or ""
	entries                   []*pb.VMGalleryApplication
	key                       string          // bodyKey(tenant, region, entries)
	actions                   []*pb.ActionRun // its custom actions' runs pending
	preheat                   []*pb.GoalPreheat
	preheatApps               []string // goalCache keys of the preheats' applications
}

// ownIn is what a machine's goal state is computed from that is its own:
// all but its scale set's profile entries. Shared: don't change it.
type ownIn struct {
	machine, region, scaleSet string // scaleSet: its goalCache key, or ""
	scaleSetName              string
	entries                   []*pb.VMGalleryApplication // its own profile's
	pins                      map[string]string          // versions rollouts hold its applications at
	actions                   []*pb.ActionRun
	preheat                   []*pb.GoalPreheat
	preheatApps               []string
}

// scaleSetIn is a scale set's profile entries, and the goal-state inputs
// of its instances without entries or pins of their own (computed once).
// Shared: don't change it.
type scaleSetIn struct {
	entries  []*pb.VMGalleryApplication
	region   string
	plain    []*pb.VMGalleryApplication // merged as an instance of its own
	plainKey string                     // their bodyKey in the scale set's region
}

func newScaleSetIn(tenant string, ss *pb.ScaleSet) *scaleSetIn {
	s := &scaleSetIn{entries: ss.GetApplicationProfile().GetGalleryApplications(), region: ss.GetRegion()}
	s.plain = mergeEntries(s.entries, nil, nil)
	s.plainKey = bodyKey(tenant, s.region, s.plain)
	return s
}

// with is the machine's goal-state inputs with its scale set's entries
// (ss nil: none).
func (o *ownIn) with(tenant string, ss *scaleSetIn) goalIn {
	in := goalIn{machine: o.machine, region: o.region, scaleSet: o.scaleSet, actions: o.actions, preheat: o.preheat, preheatApps: o.preheatApps}
	if ss != nil && len(o.entries) == 0 && len(o.pins) == 0 && ss.region == o.region {
		in.entries, in.key = ss.plain, ss.plainKey
		return in
	}
	var entries []*pb.VMGalleryApplication
	if ss != nil {
		entries = ss.entries
	}
	in.entries = mergeEntries(entries, o.entries, o.pins)
	in.key = bodyKey(tenant, in.region, in.entries)
	return in
}

// mergeEntries is a scale set's entries and a machine's own (which win),
// with the versions pinned by rollouts, in packageReferenceId order.
func mergeEntries(scaleSet, own []*pb.VMGalleryApplication, pins map[string]string) []*pb.VMGalleryApplication {
	byApp := map[string]*pb.VMGalleryApplication{} // the machine's own entry wins
	for _, e := range append(slices.Clip(scaleSet), own...) {
		r, _ := ParseRef(e.PackageReferenceId)
		byApp[r.App()] = pinned(e, r, pins[r.App()])
	}
	out := make([]*pb.VMGalleryApplication, 0, len(byApp))
	for _, e := range byApp {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PackageReferenceId < out[j].PackageReferenceId })
	return out
}

// scaleSetInputs returns a scale set's entries, kept or read (once for
// the instances asking at once after a change); nil when it is gone.
func (f *Fleet) scaleSetInputs(ctx context.Context, tenant, name string, epoch uint64) (*scaleSetIn, error) {
	k := tenant + "\x00" + name
	if ss := f.goals.scaleSet(k); ss != nil {
		return ss, nil
	}
	v, err, _ := f.flights.Do("scaleset\x00"+strconv.FormatUint(epoch, 10)+"\x00"+k, func() (any, error) {
		if ss := f.goals.scaleSet(k); ss != nil { // a flight that ended since the look above kept it
			return ss, nil
		}
		var ss *pb.ScaleSet
		err := f.db.View(context.WithoutCancel(ctx), func(tx *state.Tx) (err error) {
			ss, err = tx.ScaleSet(tenant, name)
			return err
		})
		if errs.Is(err, errs.NotFound) {
			return (*scaleSetIn)(nil), nil
		}
		if err != nil {
			return nil, err
		}
		in := newScaleSetIn(tenant, ss)
		f.goals.putScaleSet(k, epoch, in)
		return in, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*scaleSetIn), nil
}

// goalInputs reads a machine's own inputs, and its scale set's entries
// (nil: none).
func (f *Fleet) goalInputs(ctx context.Context, tenant, machine string) (*ownIn, *scaleSetIn, error) {
	var m *pb.Machine
	var ss *pb.ScaleSet
	var actions []*pb.ActionRun
	var pins map[string]string // versions rollouts hold its applications at
	err := f.db.View(ctx, func(tx *state.Tx) (err error) {
		if m, err = tx.Machine(tenant, machine); err != nil {
			return err
		}
		if m.ScaleSet != "" {
			if s, err := tx.ScaleSet(tenant, m.ScaleSet); err == nil {
				ss = s
			}
		}
		if pins, err = readPins(tx, tenant, machine); err != nil {
			return err
		}
		actions, err = pendingActions(tx, tenant, machine)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	own := &ownIn{machine: m.Name, region: m.Region, entries: m.ApplicationProfile.GetGalleryApplications(), actions: actions}
	if len(pins) > 0 {
		own.pins = pins
	}
	if own.preheat, own.preheatApps, err = f.goalPreheats(ctx, tenant, m); err != nil {
		return nil, nil, err
	}
	var ssIn *scaleSetIn
	if m.ScaleSet != "" {
		own.scaleSet, own.scaleSetName = tenant+"\x00"+m.ScaleSet, m.ScaleSet
		if ss != nil {
			ssIn = newScaleSetIn(tenant, ss)
		}
	}
	return own, ssIn, nil
}

// bodyKey names a body by all it is computed from but the state of the
// applications it names: the tenant, the region and the entries.
func bodyKey(tenant, region string, entries []*pb.VMGalleryApplication) string {
	k := []byte(tenant + "\x00" + region + "\x00")
	for _, e := range entries {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(e)
		k = protowire.AppendBytes(k, b)
	}
	return string(k)
}

// goalBody returns the body for in, kept or computed; machines asking for
// the same one at once wait for one computation.
func (f *Fleet) goalBody(ctx context.Context, tenant string, in goalIn, epoch uint64) (*goalBody, error) {
	k := in.key
	if b := f.goals.body(k); b != nil {
		return b, nil
	}
	// Only callers that read the same epoch share a computation: one that
	// started before a change may have read what changed.
	v, err, _ := f.flights.Do(strconv.FormatUint(epoch, 10)+"\x00"+k, func() (any, error) {
		if b := f.goals.body(k); b != nil { // a flight that ended since the look above kept it
			return b, nil
		}
		b, err := f.computeBody(context.WithoutCancel(ctx), tenant, in)
		if err == nil {
			f.goals.putBody(k, epoch, b)
		}
		return b, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*goalBody), nil
}

// computeBody computes the applications, key changes and generation of a
// goal state from its entries.
func (f *Fleet) computeBody(ctx context.Context, tenant string, in goalIn) (*goalBody, error) {
	f.bodiesComputed.Add(1)
	b := &goalBody{}
	for _, e := range in.entries {
		ref, _ := ParseRef(e.PackageReferenceId)
		b.apps = append(b.apps, appKey(ref.in(tenant), ref.Gallery, ref.Application))
		ga, err := f.goalApplication(ctx, tenant, in.region, e)
		if err != nil {
			return nil, err
		}
		b.applications = append(b.applications, ga)
	}
	sort.Slice(b.applications, func(i, j int) bool {
		a, c := b.applications[i], b.applications[j]
		return a.Gallery+"/"+a.Application < c.Gallery+"/"+c.Application
	})
	var err error
	if b.keyChanges, err = f.keyChanges(ctx, tenant, b.applications); err != nil {
		return nil, err
	}
	b.generation = generation(b.applications, b.keyChanges, nil, nil)
	b.size = len(b.encode())
	return b, nil
}

// GoalBodiesComputed counts the goal-state bodies computed since the fleet
// was made: a change of a scale set's profile costs one for all its
// machines (without entries of their own), not one per machine.
func (f *Fleet) GoalBodiesComputed() int64 { return f.bodiesComputed.Load() }
