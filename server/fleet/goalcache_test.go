package fleet

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// TestGoalCacheInvalidation applies real commands to a real state and
// checks which machines' kept goal states each one drops: those it can
// change, and only those.
func TestGoalCacheInvalidation(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), "vmapp.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f := New(db, Options{Regions: []string{"eastus"}})
	propose := func(op func(c *statepb.Command)) {
		t.Helper()
		c := state.NewCommand(time.Unix(1_800_000_000, 0))
		op(c)
		if err := db.Propose(context.Background(), c); err != nil {
			t.Fatalf("%T: %v", c.Op, err)
		}
	}
	ref := &statepb.VersionRef{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0"}
	rep := &statepb.ReplicaRef{Version: ref, Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Region: "eastus"}
	version := func(app string) *pb.GalleryApplicationVersion {
		return &pb.GalleryApplicationVersion{Tenant: "t", Gallery: "g", Application: app, Name: "1.0.0", ProvisioningState: pb.ProvisioningCreating, PublishingProfile: &pb.PublishingProfile{}}
	}
	for _, op := range []func(c *statepb.Command){
		func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: &pb.Gallery{Tenant: "t", Name: "g"}}}
		},
		func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateApplication{CreateApplication: &statepb.CreateApplication{Application: &pb.GalleryApplication{Tenant: "t", Gallery: "g", Name: "a"}}}
		},
		func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateApplication{CreateApplication: &statepb.CreateApplication{Application: &pb.GalleryApplication{Tenant: "t", Gallery: "g", Name: "b"}}}
		},
		func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateVersion{CreateVersion: &statepb.CreateVersion{Version: version("a")}}
		},
		func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateScaleSet{CreateScaleSet: &statepb.CreateScaleSet{ScaleSet: &pb.ScaleSet{Tenant: "t", Name: "ss", Region: "eastus", OsType: "Linux"}}}
		},
		func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: &pb.Machine{Tenant: "t", Name: "m1", Region: "eastus", OsType: "Linux", ScaleSet: "ss"}}}
		},
		func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: &pb.Machine{Tenant: "t", Name: "m2", Region: "eastus", OsType: "Linux"}}}
		},
		func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: &pb.Machine{Tenant: "t", Name: "m3", Region: "eastus", OsType: "Linux"}}}
		},
	} {
		propose(op)
	}

	// What each machine's goal state was computed from: m1 is in scale set
	// ss and names g/a, m2 names g/b, m3 another tenant's h/x.
	deps := map[string]struct {
		scaleSet string
		apps     []string
	}{
		"m1": {"t\x00ss", []string{appKey("t", "g", "a")}},
		"m2": {"", []string{appKey("t", "g", "b")}},
		"m3": {"", []string{appKey("u", "h", "x")}},
	}
	fill := func() {
		for m, d := range deps {
			_, epoch := f.goals.get(string(key("t", m)))
			f.goals.put(string(key("t", m)), epoch, Goal{State: &pb.GoalState{Machine: m}, body: &goalBody{apps: d.apps}}, d.scaleSet)
			f.goals.putBody("body of "+m, epoch, &goalBody{apps: d.apps})
		}
	}
	// Bodies are kept by what they are computed from: only a change of
	// the applications they name drops them.
	keptBodies := func() []string {
		var out []string
		for _, m := range slices.Sorted(maps.Keys(deps)) {
			if f.goals.body("body of "+m) != nil {
				out = append(out, m)
			}
		}
		return out
	}
	all := []string{"m1", "m2", "m3"}
	kept := func() []string {
		var out []string
		for _, m := range slices.Sorted(maps.Keys(deps)) {
			if g, _ := f.goals.get(string(key("t", m))); g.State != nil {
				out = append(out, m)
			}
		}
		return out
	}
	for _, c := range []struct {
		name   string
		op     func(c *statepb.Command)
		kept   []string
		bodies []string // nil: kept
	}{
		{"the scale set's profile", func(c *statepb.Command) {
			c.Op = &statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{ScaleSet: "ss"}, Profile: &pb.ApplicationProfile{}}}
		}, []string{"m2", "m3"}, all},
		{"a machine's profile", func(c *statepb.Command) {
			c.Op = &statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{Machine: "m2"}, Profile: &pb.ApplicationProfile{}}}
		}, []string{"m1", "m3"}, all},
		{"a version", func(c *statepb.Command) {
			c.Op = &statepb.Command_UpdateVersion{UpdateVersion: &statepb.UpdateVersion{Version: version("a")}}
		}, []string{"m2", "m3"}, nil},
		{"a new version", func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateVersion{CreateVersion: &statepb.CreateVersion{Version: version("b")}}
		}, []string{"m1", "m3"}, nil},
		{"replicas added", func(c *statepb.Command) {
			c.Op = &statepb.Command_ReconcileReplicas{ReconcileReplicas: &statepb.ReconcileReplicas{Add: []*statepb.Replica{{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0",
				Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Region: "eastus", Phase: statepb.ReplicaPhase_REPLICA_PHASE_PENDING}}}}
		}, []string{"m2", "m3"}, nil},
		{"a copy started (nothing available changes)", func(c *statepb.Command) {
			c.Op = &statepb.Command_ReplicaStarted{ReplicaStarted: &statepb.ReplicaStarted{Replica: rep}}
		}, []string{"m1", "m2", "m3"}, nil},
		{"a replica completed", func(c *statepb.Command) {
			c.Op = &statepb.Command_ReplicaCompleted{ReplicaCompleted: &statepb.ReplicaCompleted{Replica: rep}}
		}, []string{"m2", "m3"}, nil},
		{"a replica sent back", func(c *statepb.Command) {
			c.Op = &statepb.Command_ReplicaRestart{ReplicaRestart: &statepb.ReplicaRestart{Replica: rep, Pending: true}}
		}, []string{"m2", "m3"}, nil},
		{"a replica unwanted", func(c *statepb.Command) {
			c.Op = &statepb.Command_ReconcileReplicas{ReconcileReplicas: &statepb.ReconcileReplicas{Unwanted: []*statepb.ReplicaRef{rep}}}
		}, []string{"m2", "m3"}, nil},
		{"a report", func(c *statepb.Command) {
			c.Op = &statepb.Command_ReportStatus{ReportStatus: &statepb.ReportStatus{Tenant: "t", Machine: "m1", InstanceView: &pb.InstanceView{}}}
		}, []string{"m1", "m2", "m3"}, nil},
		{"a share of the gallery", func(c *statepb.Command) {
			c.Op = &statepb.Command_PutShare{PutShare: &statepb.PutShare{Tenant: "t", Share: &pb.Share{Gallery: "g", Grantee: "u"}}}
		}, []string{"m3"}, nil},
		{"its end", func(c *statepb.Command) {
			c.Op = &statepb.Command_DeleteShare{DeleteShare: &statepb.DeleteShare{Tenant: "t", Gallery: "g", Grantee: "u"}}
		}, []string{"m3"}, nil},
		{"the gallery's trust policy", func(c *statepb.Command) {
			c.Op = &statepb.Command_PutTrustPolicy{PutTrustPolicy: &statepb.PutTrustPolicy{Tenant: "t", Policy: &pb.TrustPolicy{Gallery: "g"}}}
		}, []string{"m3"}, nil},
		{"an application updated", func(c *statepb.Command) {
			c.Op = &statepb.Command_UpdateApplication{UpdateApplication: &statepb.UpdateApplication{Application: &pb.GalleryApplication{Tenant: "t", Gallery: "g", Name: "b"}}}
		}, []string{"m1", "m3"}, nil},
		{"an upload begun", func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateUpload{CreateUpload: &statepb.CreateUpload{Session: &statepb.UploadSession{Id: "s", Tenant: "t", Gallery: "g", Application: "b", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE}}}
		}, []string{"m1", "m2", "m3"}, nil},
		{"an upload finished (it names no version: everything)", func(c *statepb.Command) {
			c.Op = &statepb.Command_FinishUpload{FinishUpload: &statepb.FinishUpload{SessionId: "s", Artifact: &pb.Artifact{}, Manifest: &statepb.Manifest{}}}
		}, nil, nil},
		{"a machine deleted", func(c *statepb.Command) {
			c.Op = &statepb.Command_DeleteMachine{DeleteMachine: &statepb.DeleteMachine{Tenant: "t", Name: "m3"}}
		}, []string{"m1", "m2"}, all},
		{"its scale set deleted", func(c *statepb.Command) {
			c.Op = &statepb.Command_DeleteScaleSet{DeleteScaleSet: &statepb.DeleteScaleSet{Tenant: "t", Name: "ss", Cascade: true}}
		}, []string{"m2", "m3"}, all},
	} {
		fill()
		propose(c.op)
		if got := kept(); !slices.Equal(got, c.kept) {
			t.Errorf("%s: kept %v, want %v", c.name, got, c.kept)
		}
		if c.bodies == nil {
			c.bodies = c.kept
		}
		if got := keptBodies(); !slices.Equal(got, c.bodies) {
			t.Errorf("%s: kept the bodies of %v, want %v", c.name, got, c.bodies)
		}
	}

	// A version signed (applied here without the store: its statement is
	// checked against a policy the test doesn't build).
	fill()
	sign := state.NewCommand(time.Unix(1_800_000_000, 0))
	sign.Op = &statepb.Command_SignVersion{SignVersion: &statepb.SignVersion{Version: ref}}
	f.goals.invalidate(sign)
	if got := kept(); !slices.Equal(got, []string{"m2", "m3"}) {
		t.Errorf("a version signed: kept %v, want [m2 m3]", got)
	}

	// A goal state computed while a command was applied is not kept,
	// whichever machines the command concerns: it may have been read
	// before the change.
	_, epoch := f.goals.get(string(key("t", "m9")))
	propose(func(c *statepb.Command) {
		c.Op = &statepb.Command_UpdateApplication{UpdateApplication: &statepb.UpdateApplication{Application: &pb.GalleryApplication{Tenant: "t", Gallery: "g", Name: "a"}}}
	})
	f.goals.put(string(key("t", "m9")), epoch, Goal{State: &pb.GoalState{Machine: "m9"}, body: &goalBody{}}, "")
	if g, _ := f.goals.get(string(key("t", "m9"))); g.State != nil {
		t.Fatal("a goal state computed across a change was kept")
	}
	f.goals.putBody("body of m9", epoch, &goalBody{})
	if f.goals.body("body of m9") != nil {
		t.Fatal("a body computed across a change was kept")
	}
}

// TestGoalCacheKeepsOwnInputs: a change of a scale set's profile keeps
// what its machines' goal states were computed from that is their own
// (not a machine with pins: the change may drop them), and forgets the
// scale set's entries; any change of the machine's own forgets them too.
func TestGoalCacheKeepsOwnInputs(t *testing.T) {
	db, err := state.Open(filepath.Join(t.TempDir(), "vmapp.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	f := New(db, Options{Regions: []string{"eastus"}})
	propose := func(op isOp) {
		t.Helper()
		c := state.NewCommand(time.Unix(1_800_000_000, 0))
		setOp(c, op)
		if err := db.Propose(context.Background(), c); err != nil {
			t.Fatalf("%T: %v", c.Op, err)
		}
	}
	propose(&statepb.Command_CreateScaleSet{CreateScaleSet: &statepb.CreateScaleSet{ScaleSet: &pb.ScaleSet{Tenant: "t", Name: "ss", Region: "eastus", OsType: "Linux"}}})
	for _, m := range []string{"m1", "m2"} {
		propose(&statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: &pb.Machine{Tenant: "t", Name: m, Region: "eastus", OsType: "Linux", ScaleSet: "ss"}}})
	}
	ssKey := "t\x00ss"
	own := map[string]*ownIn{
		"m1": {machine: "m1", region: "eastus", scaleSet: ssKey, scaleSetName: "ss"},
		"m2": {machine: "m2", region: "eastus", scaleSet: ssKey, scaleSetName: "ss", pins: map[string]string{"g/a": "1.0.0"}},
	}
	fill := func() {
		for m, o := range own {
			_, _, epoch := f.goals.lookup(string(key("t", m)))
			f.goals.putWith(string(key("t", m)), epoch, Goal{State: &pb.GoalState{Machine: m}, body: &goalBody{apps: []string{appKey("t", "g", "a")}}}, ssKey, o)
			f.goals.putScaleSet(ssKey, epoch, &scaleSetIn{region: "eastus"})
		}
	}
	fill()
	propose(&statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{ScaleSet: "ss"}, Profile: &pb.ApplicationProfile{}}})
	if g, o, _ := f.goals.lookup(string(key("t", "m1"))); g.State != nil || o != own["m1"] {
		t.Errorf("m1 after its scale set's change: goal %v, own inputs %v", g.State, o)
	}
	if g, o, _ := f.goals.lookup(string(key("t", "m2"))); g.State != nil || o != nil {
		t.Errorf("m2 (pinned) after its scale set's change: goal %v, own inputs %v", g.State, o)
	}
	if f.goals.scaleSet(ssKey) != nil {
		t.Error("the scale set's entries were kept across its change")
	}
	// A stale entry replaced: its links are the new goal state's.
	_, _, epoch := f.goals.lookup(string(key("t", "m1")))
	f.goals.putWith(string(key("t", "m1")), epoch, Goal{State: &pb.GoalState{Machine: "m1"}, body: &goalBody{apps: []string{appKey("t", "g", "b")}}}, ssKey, own["m1"])
	if f.goals.byApp[appKey("t", "g", "a")]["t\x00m1"] || !f.goals.byApp[appKey("t", "g", "b")]["t\x00m1"] {
		t.Errorf("m1's links after its goal state was computed again: %v", f.goals.byApp)
	}

	// The machine's own change, or an application it names, drops all.
	for _, c := range []struct {
		name string
		op   isOp
	}{
		{"its own profile", &statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{Machine: "m1"}, Profile: &pb.ApplicationProfile{}}}},
		{"an application of its goal state", &statepb.Command_UpdateApplication{UpdateApplication: &statepb.UpdateApplication{Application: &pb.GalleryApplication{Tenant: "t", Gallery: "g", Name: "a"}}}},
	} {
		fill()
		propose(&statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{ScaleSet: "ss"}, Profile: &pb.ApplicationProfile{}}})
		if c.name == "an application of its goal state" {
			propose(&statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: &pb.Gallery{Tenant: "t", Name: "g"}}})
			propose(&statepb.Command_CreateApplication{CreateApplication: &statepb.CreateApplication{Application: &pb.GalleryApplication{Tenant: "t", Gallery: "g", Name: "a"}}})
		}
		propose(c.op)
		if _, o, _ := f.goals.lookup(string(key("t", "m1"))); o != nil {
			t.Errorf("%s: m1's own inputs still kept", c.name)
		}
	}
}

type isOp interface{}

func setOp(c *statepb.Command, op isOp) {
	switch o := op.(type) {
	case *statepb.Command_CreateScaleSet:
		c.Op = o
	case *statepb.Command_CreateMachine:
		c.Op = o
	case *statepb.Command_SetProfile:
		c.Op = o
	case *statepb.Command_UpdateApplication:
		c.Op = o
	case *statepb.Command_CreateGallery:
		c.Op = o
	case *statepb.Command_CreateApplication:
		c.Op = o
	default:
		panic(fmt.Sprintf("setOp: %T", op))
	}
}
