package server_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// agentOf is what a machine's agent may do with its own credential:
// download plans and ReadRange (authorized against its goal state).
type agentOf struct {
	t      *testing.T
	dl     pb.DownloadServiceClient
	tenant string // the gallery's tenant, "" for the machine's own
}

func newAgent(t *testing.T, addr, secret string) *agentOf {
	cl, err := client.New(addr, client.Options{Token: secret})
	mustOK(t, err)
	t.Cleanup(func() { cl.Close() })
	return &agentOf{t: t, dl: pb.NewDownloadServiceClient(cl.Conn())}
}

func (a *agentOf) ctx() context.Context {
	if a.tenant != "" {
		return client.InTenant(ctx(a.t), a.tenant)
	}
	return ctx(a.t)
}

func (a *agentOf) plan(version string) error {
	_, err := a.dl.GetDownloadPlan(a.ctx(), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: version, Kind: pkg, Region: "eastus"})
	return err
}

func (a *agentOf) read(version string) error {
	s, err := a.dl.ReadRange(a.ctx(), &pb.ReadRangeRequest{Gallery: "g", Application: "a", Version: version, Kind: pkg, Region: "eastus", Length: 4})
	if err != nil {
		return err
	}
	for {
		if _, err := s.Recv(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// may checks that the agent may (or may not) download version, by plan
// and by ReadRange.
func (a *agentOf) may(version string, allowed bool) {
	a.t.Helper()
	for _, err := range []error{a.plan(version), a.read(version)} {
		if allowed {
			mustOK(a.t, err)
		} else {
			wantErr(a.t, err, codes.PermissionDenied)
		}
	}
}

// TestGoalStateCacheFollowsChanges: a machine's goal state is kept
// computed, and every change it depends on — its profile, its scale set's,
// a version, a replication, a share — shows in the very next download plan
// and ReadRange of its agent, without waiting.
func TestGoalStateCacheFollowsChanges(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cat, fl, ac := c.Client.Catalog, pb.NewFleetServiceClient(c.Client.Conn()), pb.NewAccessServiceClient(c.Client.Conn())
	c.Publish(t, "1.0.0", []byte("package one"), testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	machine := func(fl pb.FleetServiceClient, m *pb.Machine) *agentOf {
		r, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: m})
		mustOK(t, err)
		return newAgent(t, c.Addr, r.AgentToken)
	}
	set := func(target *pb.ProfileTarget, app *pb.VMGalleryApplication) {
		_, err := fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: target, Application: app})
		mustOK(t, err)
	}
	onVM := &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "vm1"}}
	onWeb := &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "web"}}
	vm1 := machine(fl, &pb.Machine{Name: "vm1", Region: "eastus", OsType: "Linux"})
	_, err := fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "web", Region: "eastus", OsType: "Linux"}})
	mustOK(t, err)
	web0 := machine(fl, &pb.Machine{Name: "web-0", ScaleSet: "web"})

	// Its profile.
	vm1.may("1.0.0", false)
	set(onVM, &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"})
	vm1.may("1.0.0", true)

	// The cache serves it: asked again, it reads nothing, and another
	// machine's goal state computed meanwhile leaves it there.
	web0.may("1.0.0", false)
	db := c.Daemon.State
	mark := db.RecordsRead()
	for range 3 {
		if _, err := c.Fleet.GoalState(ctx(t), "default", "vm1"); err != nil {
			t.Fatal(err)
		}
	}
	if read := db.RecordsRead() - mark; read != 0 {
		t.Fatalf("a goal state kept computed read %d records", read)
	}

	// Its scale set's profile.
	set(onWeb, &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"})
	web0.may("1.0.0", true)
	vm1.may("1.0.0", true)

	// A replication: with automatic upgrade, the newest version replicated
	// to its region. The replicator's commands are answered once the
	// caches they change are cleared; a write of ours after replication
	// completed is answered after them.
	set(onVM, &pb.VMGalleryApplication{PackageReferenceId: "g/a/latest", EnableAutomaticUpgrade: true})
	vm1.may("1.0.0", true)
	c.Publish(t, "2.0.0", []byte("package two"), testcluster.Target("eastus", 1))
	c.WaitState(t, "2.0.0", "Completed")
	_, err = cat.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "barrier", Location: "eastus"}})
	mustOK(t, err)
	vm1.may("2.0.0", true)
	vm1.may("1.0.0", false)

	// A version: excluded from latest, the machine goes back to 1.0.0.
	_, err = cat.UpdateVersion(ctx(t), &pb.UpdateVersionRequest{
		Version:    &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "2.0.0", PublishingProfile: &pb.PublishingProfile{ExcludeFromLatest: true}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"publishing_profile.exclude_from_latest"}},
	})
	mustOK(t, err)
	vm1.may("2.0.0", false)
	vm1.may("1.0.0", true)
	// A share: another tenant's machine deploys g/a/2.0.0 while shared.
	_, err = ac.ShareGallery(ctx(t), &pb.ShareGalleryRequest{Gallery: "g", Grantee: "other"})
	mustOK(t, err)
	other := pb.NewFleetServiceClient(c.Client.Conn())
	inOther := func(ctx context.Context) context.Context { return client.InTenant(ctx, "other") }
	r, err := other.CreateMachine(inOther(ctx(t)), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "vmx", Region: "eastus", OsType: "Linux"}})
	mustOK(t, err)
	vmx := newAgent(t, c.Addr, r.AgentToken)
	vmx.tenant = "default"
	_, err = other.SetApplication(inOther(ctx(t)), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "vmx"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "default:g/a/2.0.0"}})
	mustOK(t, err)
	vmx.may("2.0.0", true)
	_, err = ac.UnshareGallery(ctx(t), &pb.UnshareGalleryRequest{Gallery: "g", Grantee: "other"})
	mustOK(t, err)
	vmx.may("2.0.0", false)
	_, err = ac.ShareGallery(ctx(t), &pb.ShareGalleryRequest{Gallery: "g", Grantee: "other"})
	mustOK(t, err)
	vmx.may("2.0.0", true)

	// Deleting the machine's scale set takes its instance's goal state.
	_, err = fl.DeleteScaleSet(ctx(t), &pb.DeleteScaleSetRequest{Name: "web", Cascade: true})
	mustOK(t, err)
	if _, err := c.Fleet.GoalState(ctx(t), "default", "web-0"); err == nil {
		t.Fatal("a deleted machine still has a goal state")
	}
}

// TestScaleSetGoalComputedOnce: the goal state of a scale set's machines
// is computed once per change of the scale set's profile, whatever the
// number of machines and streams, and each stream still gets its own
// machine's goal state (name and region), equal to what the fleet
// computes; a machine with an entry of its own gets a goal state of its
// own, and the others keep sharing theirs.
func TestScaleSetGoalComputedOnce(t *testing.T) {
	const n = 30
	c, fl := twoVersionsAndWeb(t)
	streams := make([]pb.FleetService_WatchGoalStateClient, n)
	for i := range n {
		name := fmt.Sprintf("web-%d", i)
		_, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: name, ScaleSet: "web"}})
		mustOK(t, err)
		streams[i], err = fl.WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: name})
		mustOK(t, err)
		_, err = streams[i].Recv()
		mustOK(t, err)
	}
	// next takes each stream's next goal state, checks it is the fleet's
	// for that machine, and returns the version of g/a in it.
	next := func() []string {
		var out []string
		for i, s := range streams {
			r, err := s.Recv()
			mustOK(t, err)
			want, err := c.Fleet.GoalState(ctx(t), "default", fmt.Sprintf("web-%d", i))
			mustOK(t, err)
			if !proto.Equal(r.GoalState, want) {
				t.Fatalf("stream %d got %v, want %v", i, r.GoalState, want)
			}
			v := ""
			for _, a := range r.GoalState.Applications {
				if a.Application == "a" {
					v = a.Version
				}
			}
			out = append(out, v)
		}
		return out
	}
	all := func(v string) []string { return slices.Repeat([]string{v}, n) }
	set := func(target *pb.ProfileTarget, ref string) {
		_, err := fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: target, Application: &pb.VMGalleryApplication{PackageReferenceId: ref}})
		mustOK(t, err)
	}
	expect := func(version string) {
		t.Helper()
		if got := next(); !slices.Equal(got, all(version)) {
			t.Fatalf("versions %v, want %q everywhere", got, version)
		}
	}
	onWeb := &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "web"}}

	mark := c.Fleet.GoalBodiesComputed()
	set(onWeb, "g/a/1.0.0")
	expect("1.0.0")
	if got := c.Fleet.GoalBodiesComputed() - mark; got != 1 {
		t.Fatalf("the scale set's profile set: %d goal states computed for %d machines, want 1", got, n)
	}
	mark = c.Fleet.GoalBodiesComputed()
	set(onWeb, "g/a/2.0.0")
	expect("2.0.0")
	if got := c.Fleet.GoalBodiesComputed() - mark; got != 1 {
		t.Fatalf("the scale set's profile changed: %d goal states computed for %d machines, want 1", got, n)
	}

	// Taken out of the scale set's profile: at most one goal state
	// computed (the empty one may still be kept from the start).
	mark = c.Fleet.GoalBodiesComputed()
	_, err := fl.RemoveApplication(ctx(t), &pb.RemoveApplicationRequest{Target: onWeb, Application: "g/a"})
	mustOK(t, err)
	expect("")
	if got := c.Fleet.GoalBodiesComputed() - mark; got > 1 {
		t.Fatalf("the scale set's profile emptied: %d goal states computed for %d machines, want at most 1", got, n)
	}

	// One machine with an entry of its own (one no profile has had: the
	// body of the same entries is still kept from the scale set's): one
	// more goal state; the others' are still kept.
	mark = c.Fleet.GoalBodiesComputed()
	set(&pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "web-7"}}, "g/a/latest")
	r, err := streams[7].Recv()
	mustOK(t, err)
	if len(r.GoalState.Applications) != 1 || r.GoalState.Machine != "web-7" {
		t.Fatalf("web-7's goal state %v", r.GoalState)
	}
	for i := range n {
		if _, err := c.Fleet.GoalState(ctx(t), "default", fmt.Sprintf("web-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.Fleet.GoalBodiesComputed() - mark; got != 1 {
		t.Fatalf("a machine's own entry: %d goal states computed, want 1", got)
	}
}

// TestScaleSetChangeReadsNoMachine: after a change of a scale set's
// profile, its machines' goal states are computed again from what was
// kept of each machine and the scale set's new entries, read once: not
// one read per machine. A machine's own change still reaches it, and
// every goal state is the one a fleet without a cache computes.
func TestScaleSetChangeReadsNoMachine(t *testing.T) {
	const n = 40
	c, fl := twoVersionsAndWeb(t)
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("web-%d", i)
		_, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: names[i], ScaleSet: "web"}})
		mustOK(t, err)
	}
	set := func(target *pb.ProfileTarget, ref string) {
		t.Helper()
		_, err := fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: target, Application: &pb.VMGalleryApplication{PackageReferenceId: ref}})
		mustOK(t, err)
	}
	onWeb := &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "web"}}
	db := c.Daemon.State
	// versions are the version of g/a in each machine's goal state, and
	// the records read to compute them all.
	versions := func() ([]string, int64) {
		t.Helper()
		mark := db.RecordsRead()
		var out []string
		for _, m := range names {
			g, err := c.Fleet.GoalState(ctx(t), "default", m)
			mustOK(t, err)
			v := ""
			for _, a := range g.Applications {
				if a.Application == "a" {
					v = a.Version
				}
			}
			out = append(out, v)
		}
		read := db.RecordsRead() - mark
		t.Logf("%d goal states: %d records read", n, read)
		return out, read
	}
	all := func(v string) []string { return slices.Repeat([]string{v}, n) }

	if got, _ := versions(); !slices.Equal(got, all("")) {
		t.Fatalf("before any profile: %v", got)
	}
	set(onWeb, "g/a/1.0.0")
	got, read := versions()
	if !slices.Equal(got, all("1.0.0")) {
		t.Fatalf("after the scale set's change: %v", got)
	}
	// The records read: the scale set's, once, and those of the version
	// its new body names (computed once): fewer than perChange, where
	// reading each machine would read 2n.
	const perChange = 10
	if read >= perChange {
		t.Fatalf("the goal states of %d machines after their scale set's change read %d records, want the scale set's and the body's only", n, read)
	}
	remove := func(target *pb.ProfileTarget) {
		t.Helper()
		_, err := fl.RemoveApplication(ctx(t), &pb.RemoveApplicationRequest{Target: target, Application: "g/a"})
		mustOK(t, err)
	}
	remove(onWeb)
	if got, read = versions(); !slices.Equal(got, all("")) || read >= perChange {
		t.Fatalf("after the scale set's entry was removed: %v, %d records read", got, read)
	}

	// A machine's own entry reaches it; it alone reads its records again.
	web3 := &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "web-3"}}
	set(web3, "g/a/2.0.0")
	want := all("")
	want[3] = "2.0.0"
	if got, read = versions(); !slices.Equal(got, want) || read == 0 || read >= perChange {
		t.Fatalf("after web-3's own change: %v, %d records read", got, read)
	}
	// Its own entry removed, then the scale set's set again: web-3 reads
	// its records again (its own change dropped what was kept), the others
	// don't.
	remove(web3)
	set(onWeb, "g/a/2.0.0")
	if got, read = versions(); !slices.Equal(got, all("2.0.0")) || read >= perChange {
		t.Fatalf("after the scale set's change: %v, %d records read", got, read)
	}
	for _, m := range names {
		g, err := c.Fleet.GoalState(ctx(t), "default", m)
		mustOK(t, err)
		if g.Machine != m || g.Region != "eastus" {
			t.Fatalf("%s's goal state names %s in %s", m, g.Machine, g.Region)
		}
	}
}

// twoVersionsAndWeb starts a cluster with versions 1.0.0 and 2.0.0 of g/a
// replicated to eastus and an empty Linux scale set "web" there.
func twoVersionsAndWeb(t *testing.T) (*testcluster.Cluster, pb.FleetServiceClient) {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{})
	fl := pb.NewFleetServiceClient(c.Client.Conn())
	c.Publish(t, "1.0.0", []byte("package one"), testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	c.Publish(t, "2.0.0", []byte("package two"), testcluster.Target("eastus", 1))
	c.WaitState(t, "2.0.0", "Completed")
	_, err := fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "web", Region: "eastus", OsType: "Linux"}})
	mustOK(t, err)
	return c, fl
}
