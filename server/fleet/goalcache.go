package fleet

import (
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// DefaultGoalStateCacheSize is how many machines' goal states the fleet
// keeps computed, the most recently used.
const DefaultGoalStateCacheSize = 100_000

// maxCachedGoalState bounds the size of a goal state the cache keeps (large
// inline configurations are computed every time rather than held).
const maxCachedGoalState = 64 << 10

// goalCache keeps computed goal states by machine, so that an agent's
// downloads (authorized against its goal state once per piece) and its
// stream's rechecks don't compute it again and again; and their bodies
// (goalBody: what a goal state holds but the machine's name and region) by
// what they are computed from, so that the machines of a scale set share
// one, computed once per change. It is never stale: a
// watcher of the state drops the goal states a command can change — the
// machine's (its profile, creation, deletion), its scale set's machines,
// the machines naming an application whose versions or replicas changed,
// or in a gallery that was changed, deleted or shared — before the
// command's proposer gets its answer; a command it can't attribute clears
// it all. (Between a command's commit and its watcher, a reader that saw
// the commit another way may still get the goal state of just before;
// the streams get the new one as the watcher wakes them.) A body is dropped with the applications it names (a change of
// profile changes what a body is computed from, so it finds another). A
// change of a scale set's profile alone keeps, for each of its machines,
// what its goal state was computed from that is its own (goalEntry.own:
// not its pins, which the change may drop), and the scale set's entries
// are read again once for all of them (scaleSets): their streams read no
// record. A goal state or body computed while a command was applied is
// not kept.
type goalCache struct {
	mu    sync.Mutex
	epoch uint64 // counts invalidations
	lru   *simplelru.LRU[string, *goalEntry]
	// Who to drop: machine keys by scale set (tenant 0 scale set) and by
	// the application they name (its tenant 0 gallery 0 application).
	byScaleSet map[string]map[string]bool
	byApp      map[string]map[string]bool
	// Bodies by key (bodyKey), and their keys by application.
	bodies    *simplelru.LRU[string, *goalBody]
	bodyByApp map[string]map[string]bool
	// Scale sets' profile entries, by tenant 0 scale set: read once per
	// change for all their instances.
	scaleSets map[string]*scaleSetIn
}

type goalEntry struct {
	g        Goal
	scaleSet string // key in byScaleSet, "" for none
	// own: what the goal state was computed from that is the machine's
	// own (nil: not kept). stale: its scale set's profile changed since,
	// g is not its goal state any more, but own still holds, so that the
	// goal state is computed again without reading the machine.
	own   *ownIn
	stale bool
}

func newGoalCache(size int) *goalCache {
	if size <= 0 {
		size = DefaultGoalStateCacheSize
	}
	c := &goalCache{byScaleSet: map[string]map[string]bool{}, byApp: map[string]map[string]bool{}, bodyByApp: map[string]map[string]bool{},
		scaleSets: map[string]*scaleSetIn{}}
	c.lru, _ = simplelru.NewLRU(size, c.evicted) // size > 0: never fails
	c.bodies, _ = simplelru.NewLRU(size, c.bodyEvicted)
	return c
}

func appKey(tenant, gallery, app string) string { return tenant + "\x00" + gallery + "\x00" + app }

// get returns a machine's goal state (nil State: not kept), and the epoch
// to put one computed now with. The goal state is shared: callers must not
// change it.
func (c *goalCache) get(machine string) (Goal, uint64) {
	g, _, epoch := c.lookup(machine)
	return g, epoch
}

// lookup is get, with the machine's own inputs when only its scale set's
// profile changed since its goal state was computed (Goal nil then).
func (c *goalCache) lookup(machine string) (Goal, *ownIn, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.lru.Get(machine); ok {
		if e.stale {
			return Goal{}, e.own, c.epoch
		}
		return e.g, nil, c.epoch
	}
	return Goal{}, nil, c.epoch
}

// put keeps a goal state computed from epoch on, unless something was
// invalidated since (it may have been computed from what changed).
func (c *goalCache) put(machine string, epoch uint64, g Goal, scaleSet string) {
	c.putWith(machine, epoch, g, scaleSet, nil)
}

// putWith is put, keeping the machine's own inputs too.
func (c *goalCache) putWith(machine string, epoch uint64, g Goal, scaleSet string, own *ownIn) {
	if g.body.size > maxCachedGoalState {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	if old, ok := c.lru.Peek(machine); ok { // a stale entry: its links go with it
		c.evicted(machine, old)
	}
	c.lru.Add(machine, &goalEntry{g: g, scaleSet: scaleSet, own: own})
	link(c.byScaleSet, scaleSet, machine)
	for _, a := range append(slices.Clip(g.body.apps), g.ownApps...) {
		link(c.byApp, a, machine)
	}
}

// scaleSet returns a scale set's profile entries as kept (nil: not kept).
func (c *goalCache) scaleSet(k string) *scaleSetIn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scaleSets[k]
}

// putScaleSet keeps a scale set's profile entries read from epoch on,
// unless something was invalidated since.
func (c *goalCache) putScaleSet(k string, epoch uint64, ss *scaleSetIn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch == c.epoch {
		c.scaleSets[k] = ss
	}
}

// body returns the body kept under key, or nil.
func (c *goalCache) body(key string) *goalBody {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, _ := c.bodies.Get(key)
	return b
}

// putBody keeps a body computed from epoch on, unless something was
// invalidated since.
func (c *goalCache) putBody(key string, epoch uint64, b *goalBody) {
	if b.size > maxCachedGoalState {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch != c.epoch {
		return
	}
	c.bodies.Add(key, b)
	for _, a := range b.apps {
		link(c.bodyByApp, a, key)
	}
}

func link(m map[string]map[string]bool, k, machine string) {
	if k == "" {
		return
	}
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][machine] = true
}

func unlink(m map[string]map[string]bool, k, machine string) {
	if set := m[k]; set != nil {
		delete(set, machine)
		if len(set) == 0 {
			delete(m, k)
		}
	}
}

// evicted forgets a machine's entry in the reverse maps; the LRU calls it
// on every removal. c.mu is held.
func (c *goalCache) evicted(machine string, e *goalEntry) {
	unlink(c.byScaleSet, e.scaleSet, machine)
	for _, a := range append(slices.Clip(e.g.body.apps), e.g.ownApps...) {
		unlink(c.byApp, a, machine)
	}
}

func (c *goalCache) bodyEvicted(key string, b *goalBody) {
	for _, a := range b.apps {
		unlink(c.bodyByApp, a, key)
	}
}

// drop forgets the goal states of machines; c.mu is held.
func (c *goalCache) drop(machines map[string]bool) {
	for _, m := range slices.Collect(maps.Keys(machines)) { // Remove unlinks from machines
		c.lru.Remove(m)
	}
}

// reprofile marks the goal states of a scale set's machines stale after
// a change of its profile, keeping what each was computed from that is
// the machine's own (its record, runs, preheats): the next goal state
// reads neither the machine nor, once per change, the scale set again.
// A machine with pins is dropped whole (the change may drop its pins), as
// is one kept without its own inputs. The links stay until the entry is
// replaced or dropped: any change they name drops it whole. c.mu is held.
func (c *goalCache) reprofile(scaleSet string) {
	delete(c.scaleSets, scaleSet)
	for _, m := range slices.Collect(maps.Keys(c.byScaleSet[scaleSet])) {
		e, ok := c.lru.Peek(m)
		if !ok {
			continue
		}
		if e.own == nil || len(e.own.pins) > 0 {
			c.lru.Remove(m)
			continue
		}
		e.stale = true
	}
}

// dropApp forgets the goal states and bodies naming an application (key
// appKey); c.mu is held.
func (c *goalCache) dropApp(app string) {
	c.drop(c.byApp[app])
	for _, k := range slices.Collect(maps.Keys(c.bodyByApp[app])) {
		c.bodies.Remove(k)
	}
}

// invalidate drops what cmd, which changesGoalStates, can change (see
// goalCache).
func (c *goalCache) invalidate(cmd *statepb.Command) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	machine := func(tenant, name string) { c.lru.Remove(string(key(tenant, name))) }
	scaleSet := func(tenant, name string) {
		delete(c.scaleSets, tenant+"\x00"+name)
		c.drop(c.byScaleSet[tenant+"\x00"+name])
	}
	app := func(tenant, gallery, name string) { c.dropApp(appKey(tenant, gallery, name)) }
	version := func(r *statepb.VersionRef) { app(r.GetTenant(), r.GetGallery(), r.GetApplication()) }
	gallery := func(tenant, name string) {
		p := appKey(tenant, name, "")
		for _, k := range slices.Collect(maps.Keys(c.byApp)) {
			if strings.HasPrefix(k, p) {
				c.dropApp(k)
			}
		}
		for _, k := range slices.Collect(maps.Keys(c.bodyByApp)) {
			if strings.HasPrefix(k, p) {
				c.dropApp(k)
			}
		}
	}
	switch op := cmd.GetOp().(type) {
	case *statepb.Command_CreateMachine:
		machine(op.CreateMachine.GetMachine().GetTenant(), op.CreateMachine.GetMachine().GetName())
	case *statepb.Command_DeleteMachine:
		machine(op.DeleteMachine.Tenant, op.DeleteMachine.Name)
	case *statepb.Command_CreateScaleSet, *statepb.Command_DeleteUpload:
		// no goal state depends on it yet, or ever
	case *statepb.Command_DeleteScaleSet:
		scaleSet(op.DeleteScaleSet.Tenant, op.DeleteScaleSet.Name)
	case *statepb.Command_SetProfile:
		if t := op.SetProfile.GetTarget(); t.GetMachine() != "" {
			machine(op.SetProfile.Tenant, t.Machine)
		} else {
			c.reprofile(op.SetProfile.Tenant + "\x00" + t.GetScaleSet())
		}
	case *statepb.Command_RequestActions:
		for _, r := range op.RequestActions.GetRuns() {
			machine(r.GetTenant(), r.GetMachine())
		}
	case *statepb.Command_FinishAction:
		machine(op.FinishAction.Tenant, op.FinishAction.Machine)
	case *statepb.Command_CreateVersion:
		v := op.CreateVersion.GetVersion()
		app(v.GetTenant(), v.GetGallery(), v.GetApplication())
	case *statepb.Command_UpdateVersion:
		v := op.UpdateVersion.GetVersion()
		app(v.GetTenant(), v.GetGallery(), v.GetApplication())
	case *statepb.Command_DeleteVersion:
		version(op.DeleteVersion.GetVersion())
	case *statepb.Command_RemoveVersion:
		version(op.RemoveVersion.GetVersion())
	case *statepb.Command_FailIngest:
		version(op.FailIngest.GetVersion())
	case *statepb.Command_RetryIngest:
		version(op.RetryIngest.GetVersion())
	case *statepb.Command_UpdateApplication:
		a := op.UpdateApplication.GetApplication()
		app(a.GetTenant(), a.GetGallery(), a.GetName())
	case *statepb.Command_DeleteApplication:
		app(op.DeleteApplication.Tenant, op.DeleteApplication.Gallery, op.DeleteApplication.Name)
	case *statepb.Command_UpdateGallery:
		gallery(op.UpdateGallery.GetGallery().GetTenant(), op.UpdateGallery.GetGallery().GetName())
	case *statepb.Command_DeleteGallery:
		gallery(op.DeleteGallery.Tenant, op.DeleteGallery.Name)
	case *statepb.Command_RemoveDeleted:
		for _, r := range op.RemoveDeleted.GetResources() {
			gallery(r.Tenant, r.Gallery)
		}
	case *statepb.Command_PutShare:
		gallery(op.PutShare.Tenant, op.PutShare.GetShare().GetGallery())
	case *statepb.Command_DeleteShare:
		gallery(op.DeleteShare.Tenant, op.DeleteShare.Gallery)
	case *statepb.Command_ReconcileReplicas:
		for _, r := range op.ReconcileReplicas.GetAdd() {
			app(r.Tenant, r.Gallery, r.Application)
		}
		for _, r := range op.ReconcileReplicas.GetUnwanted() {
			version(r.GetVersion())
		}
	case *statepb.Command_ReplicaCompleted:
		version(op.ReplicaCompleted.GetReplica().GetVersion())
	case *statepb.Command_ReplicaRestart:
		version(op.ReplicaRestart.GetReplica().GetVersion())
	case *statepb.Command_ReplicaRemoved:
		version(op.ReplicaRemoved.GetReplica().GetVersion())
	case *statepb.Command_SetPreheat:
		p := op.SetPreheat.GetPreheat()
		version(p.GetVersion()) // the machines of the preheat it replaces
		for _, m := range p.GetMachines() {
			machine(p.GetTenant(), m)
		}
		if p.GetScaleSet() != "" {
			scaleSet(p.GetTenant(), p.GetScaleSet())
		}
	case *statepb.Command_RemovePreheat:
		version(op.RemovePreheat.GetVersion())
	case *statepb.Command_SignVersion:
		version(op.SignVersion.GetVersion())
	case *statepb.Command_PutRollout:
		r := op.PutRollout.GetRollout()
		for _, m := range r.GetMachines() {
			machine(r.Tenant, m.Name)
		}
		if ss := r.GetTarget().GetScaleSet(); ss != "" && r.State == pb.RolloutSucceeded {
			scaleSet(r.Tenant, ss)
		}
	case *statepb.Command_PutTrustPolicy:
		gallery(op.PutTrustPolicy.Tenant, op.PutTrustPolicy.GetPolicy().GetGallery())
	default: // FinishUpload names only its session; a restored state; any other
		c.lru.Purge()
		c.bodies.Purge()
		clear(c.scaleSets)
	}
}
