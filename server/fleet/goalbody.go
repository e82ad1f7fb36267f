package fleet

import (
	"context"
	"sort"
	"strconv"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

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
// goalCache).
func (f *Fleet) Goal(ctx context.Context, tenant, machine string) (Goal, error) {
	k := string(key(tenant, machine))
	g, epoch := f.goals.get(k)
	if g.State != nil {
		return g, nil
	}
	in, err := f.goalInputs(ctx, tenant, machine)
	if err != nil {
		return Goal{}, err
	}
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
	f.goals.put(k, epoch, g, in.scaleSet)
	return g, nil
}

// goalIn is what a machine's goal state is computed from: the profile
// entries that apply (its scale set's, and its own, which win), in
// packageReferenceId order.
type goalIn struct {
	machine, region, scaleSet string // scaleSet: its goalCache key, or ""
	entries                   []*pb.VMGalleryApplication
	actions                   []*pb.ActionRun // its custom actions' runs pending
	preheat                   []*pb.GoalPreheat
	preheatApps               []string // goalCache keys of the preheats' applications
}

func (f *Fleet) goalInputs(ctx context.Context, tenant, machine string) (goalIn, error) {
	var m *pb.Machine
	var entries []*pb.VMGalleryApplication
	var actions []*pb.ActionRun
	var pins map[string]string // versions rollouts hold its applications at
	err := f.db.View(ctx, func(tx *state.Tx) (err error) {
		if m, err = tx.Machine(tenant, machine); err != nil {
			return err
		}
		if m.ScaleSet != "" {
			if ss, err := tx.ScaleSet(tenant, m.ScaleSet); err == nil {
				entries = append(entries, ss.ApplicationProfile.GetGalleryApplications()...)
			}
		}
		entries = append(entries, m.ApplicationProfile.GetGalleryApplications()...)
		if pins, err = readPins(tx, tenant, machine); err != nil {
			return err
		}
		actions, err = pendingActions(tx, tenant, machine)
		return err
	})
	if err != nil {
		return goalIn{}, err
	}
	in := goalIn{machine: m.Name, region: m.Region, actions: actions}
	if in.preheat, in.preheatApps, err = f.goalPreheats(ctx, tenant, m); err != nil {
		return goalIn{}, err
	}
	if m.ScaleSet != "" {
		in.scaleSet = tenant + "\x00" + m.ScaleSet
	}
	byApp := map[string]*pb.VMGalleryApplication{} // the machine's own entry wins
	for _, e := range entries {
		r, _ := ParseRef(e.PackageReferenceId)
		byApp[r.App()] = pinned(e, r, pins[r.App()])
	}
	for _, e := range byApp {
		in.entries = append(in.entries, e)
	}
	sort.Slice(in.entries, func(i, j int) bool { return in.entries[i].PackageReferenceId < in.entries[j].PackageReferenceId })
	return in, nil
}

// bodyKey names a body by all it is computed from but the state of the
// applications it names: the tenant, the region and the entries.
func bodyKey(tenant string, in goalIn) string {
	k := []byte(tenant + "\x00" + in.region + "\x00")
	for _, e := range in.entries {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(e)
		k = protowire.AppendBytes(k, b)
	}
	return string(k)
}

// goalBody returns the body for in, kept or computed; machines asking for
// the same one at once wait for one computation.
func (f *Fleet) goalBody(ctx context.Context, tenant string, in goalIn, epoch uint64) (*goalBody, error) {
	k := bodyKey(tenant, in)
	if b := f.goals.body(k); b != nil {
		return b, nil
	}
	// Only callers that read the same epoch share a computation: one that
	// started before a change may have read what changed.
	v, err, _ := f.flights.Do(strconv.FormatUint(epoch, 10)+"\x00"+k, func() (any, error) {
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
