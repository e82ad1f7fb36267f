package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func TestFleetProfilesAndGoalState(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	cat, fl := c.Client.Catalog, pb.NewFleetServiceClient(c.Client.Conn())
	c.Publish(t, "1.0.0", []byte("package one"), testcluster.Target("eastus", 1), testcluster.Target("westus", 1))
	c.WaitState(t, "1.0.0", "Completed")

	// Machines and scale sets.
	mk := func(m *pb.Machine) (*pb.Machine, error) {
		r, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: m})
		return r.GetMachine(), err
	}
	vm1, err := mk(&pb.Machine{Name: "vm1", Region: "eastus", OsType: "linux"})
	mustOK(t, err)
	if vm1.OsType != "Linux" || vm1.ProvisioningState != "Succeeded" || vm1.Etag == "" {
		t.Fatalf("vm1 %v", vm1)
	}
	_, err = mk(&pb.Machine{Name: "vm1", Region: "eastus", OsType: "linux"})
	wantErr(t, err, codes.AlreadyExists, "Machine 'vm1' already exists.")
	_, err = mk(&pb.Machine{Name: "bad/name", Region: "eastus", OsType: "linux"})
	wantErr(t, err, codes.InvalidArgument, "name 'bad/name' is invalid")
	_, err = mk(&pb.Machine{Name: "vm2", Region: "mars", OsType: "linux"})
	wantErr(t, err, codes.InvalidArgument, "region 'mars'")
	_, err = mk(&pb.Machine{Name: "vm2", Region: "eastus", OsType: "bsd"})
	wantErr(t, err, codes.InvalidArgument, "osType 'bsd'")
	win, err := mk(&pb.Machine{Name: "win1", Region: "eastus", OsType: "Windows"})
	mustOK(t, err)
	_, err = fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "web", Region: "westus", OsType: "Linux"}})
	mustOK(t, err)
	for i := range 3 {
		m, err := mk(&pb.Machine{Name: fmt.Sprintf("web-%d", i), ScaleSet: "web"})
		mustOK(t, err)
		if m.Region != "westus" || m.OsType != "Linux" {
			t.Fatalf("instance %v", m)
		}
	}
	_, err = mk(&pb.Machine{Name: "web-x", ScaleSet: "web", Region: "eastus"})
	wantErr(t, err, codes.InvalidArgument, "scale set 'web' is in westus")
	_, err = mk(&pb.Machine{Name: "web-y", ScaleSet: "nope"})
	wantErr(t, err, codes.NotFound, "Scale set 'nope' doesn't exist.")
	ss, err := fl.GetScaleSet(ctx(t), &pb.GetScaleSetRequest{Name: "web"})
	mustOK(t, err)
	if ss.ScaleSet.InstanceCount != 3 {
		t.Fatalf("scale set %v", ss.ScaleSet)
	}

	set := func(target *pb.ProfileTarget, app *pb.VMGalleryApplication, ifMatch string) (*pb.ApplicationProfile, error) {
		r, err := fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: target, Application: app, IfMatch: ifMatch})
		return r.GetApplicationProfile(), err
	}
	onVM := func(name string) *pb.ProfileTarget {
		return &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: name}}
	}
	onSS := &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "web"}}

	// The seeds' rejections.
	_, err = set(onVM("vm1"), &pb.VMGalleryApplication{PackageReferenceId: "g/nope/1.0.0"}, "")
	wantErr(t, err, codes.NotFound, "The platform image g/nope/1.0.0 isn't available.")
	_, err = set(onVM("vm1"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/9.9.9"}, "")
	wantErr(t, err, codes.NotFound, "The platform image g/a/9.9.9 isn't available.")
	_, err = set(onVM("vm1"), &pb.VMGalleryApplication{PackageReferenceId: "g/a"}, "")
	wantErr(t, err, codes.InvalidArgument, "packageReferenceId 'g/a' is invalid")
	_, err = set(onVM("win1"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}, "")
	wantErr(t, err, codes.FailedPrecondition, "Current VM Application Version g/a/1.0.0 supports OS Linux, while current OSDisk's OS is Windows.")
	_ = win
	_, err = set(onVM("nope"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}, "")
	wantErr(t, err, codes.NotFound, "Machine 'nope' doesn't exist.")
	_, err = set(onVM("vm1"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0", ConfigurationReference: "ftp://x"}, "")
	wantErr(t, err, codes.InvalidArgument, "configurationReference")
	_, err = set(onVM("vm1"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0", Configuration: make([]byte, 1<<20+1)}, "")
	wantErr(t, err, codes.InvalidArgument, "inline")
	// Not replicated to the machine's region: only eastus and westus.
	mustOK(t, err2(mk(&pb.Machine{Name: "ne1", Region: "northeurope", OsType: "Linux"})))
	_, err = set(onVM("ne1"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}, "")
	wantErr(t, err, codes.FailedPrecondition, "isn't available in northeurope region")
	// Deprecated.
	c.Publish(t, "0.9.0", []byte("old"), testcluster.Target("eastus", 1))
	c.WaitState(t, "0.9.0", "Completed")
	eol := &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "0.9.0", PublishingProfile: &pb.PublishingProfile{EndOfLifeDate: timestamppb.New(time.Now().Add(time.Second))}}
	_, err = cat.UpdateVersion(ctx(t), &pb.UpdateVersionRequest{Version: eol, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"publishing_profile.end_of_life_date"}}})
	mustOK(t, err)
	time.Sleep(1100 * time.Millisecond)
	_, err = set(onVM("vm1"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/0.9.0"}, "")
	wantErr(t, err, codes.FailedPrecondition, "Current VM Application Version g/a/0.9.0 was deprecated at")

	// Set, with the profile's etag.
	p, err := set(onVM("vm1"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/latest", Order: i32(2), TreatFailureAsDeploymentFailure: true, Tags: map[string]string{"team": "web"}}, vm1.Etag)
	mustOK(t, err)
	if len(p.GalleryApplications) != 1 || p.GalleryApplications[0].ResolvedVersion != "1.0.0" {
		t.Fatalf("profile %v", p)
	}
	_, err = set(onVM("vm1"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}, vm1.Etag)
	wantErr(t, err, codes.FailedPrecondition, "has etag")
	// Setting the application again replaces it: one version per machine.
	p, err = set(onVM("vm1"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0", Order: i32(1)}, p.Etag)
	mustOK(t, err)
	if len(p.GalleryApplications) != 1 || p.GalleryApplications[0].PackageReferenceId != "g/a/1.0.0" {
		t.Fatalf("profile %v", p)
	}

	// The scale set's profile reaches its instances; an instance can't
	// add another version of it (nor the same one).
	_, err = set(onSS, &pb.VMGalleryApplication{PackageReferenceId: "/subscriptions/default/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/applications/a/versions/1.0.0"}, "")
	mustOK(t, err)
	_, err = set(onVM("web-0"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}, "")
	wantErr(t, err, codes.InvalidArgument, "More than one VM Application was specified with the same packageReferenceId")
	_, err = set(onVM("web-0"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/latest"}, "")
	wantErr(t, err, codes.InvalidArgument, "Only one version of an application")

	// Goal state of an instance, pushed on a stream, and pushed again when
	// the profile changes.
	ws, err := fl.WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: "web-1"})
	mustOK(t, err)
	first, err := ws.Recv()
	mustOK(t, err)
	gs := first.GoalState
	if len(gs.Applications) != 1 || gs.Region != "westus" || gs.Applications[0].Version != "1.0.0" || gs.Applications[0].Package.GetSizeBytes() != int64(len("package one")) || gs.Applications[0].ManageActions.GetInstall() != "install.sh" {
		t.Fatalf("goal state %v", gs)
	}
	m, err := fl.GetMachine(ctx(t), &pb.GetMachineRequest{Name: "web-1"})
	mustOK(t, err)
	if !m.Machine.InstanceView.Connected {
		t.Fatal("the agent's stream does not show as connected")
	}
	_, err = fl.RemoveApplication(ctx(t), &pb.RemoveApplicationRequest{Target: onSS, Application: "g/a"})
	mustOK(t, err)
	next, err := ws.Recv()
	mustOK(t, err)
	if len(next.GoalState.Applications) != 0 || next.GoalState.Generation == gs.Generation {
		t.Fatalf("goal state after removal %v", next.GoalState)
	}
	_, err = fl.RemoveApplication(ctx(t), &pb.RemoveApplicationRequest{Target: onSS, Application: "g/a"})
	wantErr(t, err, codes.NotFound, "isn't in the application profile of scale set 'web'")

	// Automatic upgrade: a new latest moves the machine once replicated
	// to its region.
	p, err = set(onVM("vm1"), &pb.VMGalleryApplication{PackageReferenceId: "g/a/latest", EnableAutomaticUpgrade: true}, "")
	mustOK(t, err)
	goal := func(machine string) *pb.GoalState {
		s, err := fl.WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: machine})
		mustOK(t, err)
		r, err := s.Recv()
		mustOK(t, err)
		return r.GoalState
	}
	if v := goal("vm1").Applications[0].Version; v != "1.0.0" {
		t.Fatalf("vm1 goal version %s", v)
	}
	c.Publish(t, "2.0.0", []byte("package two"), testcluster.Target("eastus", 1))
	c.WaitState(t, "2.0.0", "Completed")
	// vm1's stream moves to 2.0.0. (Its first goal state may be the one of
	// just before: the replica's record is read as Completed from its
	// commit on, and the goal state cache drops vm1's right after it,
	// before the replicator's proposal returns; the stream follows.)
	ws1, err := fl.WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: "vm1"})
	mustOK(t, err)
	for v := ""; v != "2.0.0"; {
		r, err := ws1.Recv()
		mustOK(t, err) // the test's deadline ends a wait for 2.0.0 that never comes
		if v = r.GoalState.Applications[0].Version; v != "1.0.0" && v != "2.0.0" {
			t.Fatalf("vm1 goal version %s after 2.0.0 became latest", v)
		}
	}

	// Status reported by the agent: the instance view and the seeds'
	// provisioning state rule.
	report := func(state string, treat bool) {
		_, err := fl.ReportStatus(ctx(t), &pb.ReportStatusRequest{Machine: "vm1", InstanceView: &pb.InstanceView{BootId: "b1", Applications: []*pb.ApplicationStatus{
			{Application: "g/a", Version: "2.0.0", State: state, ExitCode: 3, TreatFailureAsDeploymentFailure: treat},
		}}})
		mustOK(t, err)
	}
	report("Failed", false)
	m, err = fl.GetMachine(ctx(t), &pb.GetMachineRequest{Name: "vm1"})
	mustOK(t, err)
	if m.Machine.ProvisioningState != "Succeeded" || m.Machine.InstanceView.Applications[0].State != "Failed" {
		t.Fatalf("machine %v", m.Machine)
	}
	report("Failed", true)
	m, err = fl.GetMachine(ctx(t), &pb.GetMachineRequest{Name: "vm1"})
	mustOK(t, err)
	if m.Machine.ProvisioningState != "Failed" {
		t.Fatalf("machine %v", m.Machine)
	}
	inv, err := fl.ListInventory(ctx(t), &pb.ListInventoryRequest{State: "Failed"})
	mustOK(t, err)
	if len(inv.Entries) != 1 || inv.Entries[0].Machine != "vm1" {
		t.Fatalf("inventory %v", inv.Entries)
	}
	inv, err = fl.ListInventory(ctx(t), &pb.ListInventoryRequest{Region: "westus"})
	mustOK(t, err)
	if len(inv.Entries) != 0 {
		t.Fatalf("inventory in westus %v", inv.Entries)
	}
	if n := metric(t, c.Daemon.Registry, "vmapp_applications", map[string]string{"region": "eastus", "state": "failed"}); n != 1 {
		t.Fatalf("vmapp_applications{eastus,failed} = %v, want 1", n)
	}
	if series(t, c.Daemon.Registry, "vmapp_applications", map[string]string{"region": "eastus", "state": "installed"}) {
		t.Fatal("vmapp_applications counts an application vm1 no longer reports installed")
	}
	_, err = fl.ReportStatus(ctx(t), &pb.ReportStatusRequest{Machine: "ghost", InstanceView: &pb.InstanceView{}})
	wantErr(t, err, codes.NotFound, "Machine 'ghost' doesn't exist.")
	_, err = fl.ReportStatus(ctx(t), &pb.ReportStatusRequest{InstanceView: &pb.InstanceView{}})
	wantErr(t, err, codes.InvalidArgument, "machine is required")
	_, err = fl.ReportStatus(ctx(t), &pb.ReportStatusRequest{Machine: "vm1"})
	wantErr(t, err, codes.InvalidArgument, "instanceView is required")
	// Neither bad report replaced what vm1 reported before.
	inv, err = fl.ListInventory(ctx(t), &pb.ListInventoryRequest{State: "Failed"})
	mustOK(t, err)
	if len(inv.Entries) != 1 || inv.Entries[0].Machine != "vm1" {
		t.Fatalf("inventory after bad reports %v", inv.Entries)
	}

	// More than 25 applications.
	for i := range 25 {
		name := fmt.Sprintf("app%02d", i)
		_, err := cat.CreateApplication(ctx(t), &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: name, Location: "eastus", SupportedOsType: "Linux"}})
		mustOK(t, err)
		_, err = cat.CreateVersion(ctx(t), &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{Gallery: "g", Application: name, Name: "1.0.0", Location: "eastus",
			PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}}}})
		mustOK(t, err)
		path, _, _ := file(t, 10)
		_, err = c.Client.Upload(ctx(t), "g", name, "1.0.0", pkg, path, client.UploadOptions{})
		mustOK(t, err)
	}
	deadline := time.Now().Add(time.Minute)
	added := 1 // g/a
	for i := 0; i < 25; {
		_, err := set(onVM("vm1"), &pb.VMGalleryApplication{PackageReferenceId: fmt.Sprintf("g/app%02d/1.0.0", i)}, "")
		if err != nil && time.Now().Before(deadline) && errs.ClassOf(err).Code() == codes.FailedPrecondition {
			time.Sleep(50 * time.Millisecond) // not replicated yet
			continue
		}
		if added == 25 {
			wantErr(t, err, codes.InvalidArgument, "The maximum number of VM applications (max=25, current=26) has been exceeded.")
			break
		}
		mustOK(t, err)
		added++
		i++
	}
}

func err2[T any](_ T, err error) error { return err }

func TestFleetSmallRejections(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	fl := pb.NewFleetServiceClient(c.Client.Conn())
	c.Publish(t, "1.0.0", []byte("p"), testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	_, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "vm1", Region: "eastus", OsType: "Linux"}})
	mustOK(t, err)
	_, err = fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "vm1"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0", EnableAutomaticUpgrade: true}})
	wantErr(t, err, codes.InvalidArgument, "enableAutomaticUpgrade needs the version 'latest'")
	_, err = fl.ListMachines(ctx(t), &pb.ListMachinesRequest{ScaleSet: "nope"})
	wantErr(t, err, codes.NotFound, "Scale set 'nope' doesn't exist.")
	_, err = fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "x", ScaleSet: "nope"}})
	wantErr(t, err, codes.NotFound, "Scale set 'nope' doesn't exist.")
}

// TestProfileTagLimits: an application's tags are bounded (50 tags, names
// of 1-512 characters, values of up to 256, 4096 bytes in all); each limit
// is accepted at its value and refused past it with InvalidArgument naming
// tags, and a refusal changes nothing stored.
func TestProfileTagLimits(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	fl := pb.NewFleetServiceClient(c.Client.Conn())
	c.Publish(t, "1.0.0", []byte("the package"), testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	_, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "vm1", Region: "eastus", OsType: "Linux"}})
	mustOK(t, err)
	set := func(tags map[string]string) (*pb.ApplicationProfile, error) {
		r, err := fl.SetApplication(ctx(t), &pb.SetApplicationRequest{
			Target:      &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "vm1"}},
			Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0", Tags: tags},
		})
		return r.GetApplicationProfile(), err
	}
	tags := func(n, nameLen, valueLen int) map[string]string {
		m := map[string]string{}
		for i := range n {
			name := fmt.Sprintf("%03d", i) + strings.Repeat("n", nameLen-3)
			m[name] = strings.Repeat("v", valueLen)
		}
		return m
	}
	one := func(name, value string) map[string]string { return map[string]string{name: value} }

	var last *pb.ApplicationProfile
	for what, ok := range map[string]map[string]string{
		"50 tags":                  tags(50, 3, 0),
		"names of 512 characters":  one(strings.Repeat("é", 512), "x"), // 1024 bytes: characters count
		"values of 256 characters": one("k", strings.Repeat("ü", 256)),
		"4096 bytes of tags":       tags(16, 8, 248),
		"an empty value":           one("k", ""),
	} {
		p, err := set(ok)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := p.GalleryApplications[0].Tags; len(got) != len(ok) {
			t.Fatalf("%s: stored %d tags, want %d", what, len(got), len(ok))
		}
		last = p
	}
	for _, tc := range []struct {
		tags map[string]string
		want string
	}{
		{tags(51, 3, 0), "tags: 51 tags; at most 50 are allowed"},
		{one(strings.Repeat("é", 513), "x"), "has 513 characters; at most 512 are allowed"},
		{one("k", strings.Repeat("ü", 257)), "the value of tag 'k' has 257 characters; at most 256 are allowed"},
		{one("", "x"), "tags: a tag name is empty"},
		{tags(16, 8, 249), "the names and values of the tags have 4112 bytes; at most 4096 are allowed"},
	} {
		_, err := set(tc.tags)
		wantErr(t, err, codes.InvalidArgument, tc.want)
		if f := errs.FieldOf(err); f != "tags" {
			t.Errorf("%s: field at fault %q, want tags", tc.want, f)
		}
		m, err := fl.GetMachine(ctx(t), &pb.GetMachineRequest{Name: "vm1"})
		mustOK(t, err)
		if got := m.Machine.ApplicationProfile; !proto.Equal(got, last) {
			t.Fatalf("%s: the refused call changed the profile:\n%v\nwant\n%v", tc.want, got, last)
		}
	}
}

// TestScaleSetChangeReadsOwnInstances: a change of a scale set's profile
// reads only the instances with applications of their own (the only ones
// it can conflict with), not all of them, and is still refused, with the
// seeds' messages, when one of those conflicts.
func TestScaleSetChangeReadsOwnInstances(t *testing.T) {
	const n = 150
	c, fl := twoVersionsAndWeb(t)
	for i := range n {
		_, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: fmt.Sprintf("web-%03d", i), ScaleSet: "web"}})
		mustOK(t, err)
	}
	_, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "vm1", Region: "eastus", OsType: "Linux"}})
	mustOK(t, err)
	set := func(target *pb.ProfileTarget, ref string) error {
		_, err := fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: target, Application: &pb.VMGalleryApplication{PackageReferenceId: ref}})
		return err
	}
	remove := func(target *pb.ProfileTarget) error {
		_, err := fl.RemoveApplication(ctx(t), &pb.RemoveApplicationRequest{Target: target, Application: "g/a"})
		return err
	}
	onVM := func(name string) *pb.ProfileTarget {
		return &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: name}}
	}
	onWeb := &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "web"}}
	db := c.Daemon.State
	reads := func(do func() error) int64 {
		t.Helper()
		mark := db.RecordsRead()
		mustOK(t, do())
		return db.RecordsRead() - mark
	}

	// Two instances with applications of their own (one of them g/a).
	mustOK(t, set(onVM("web-007"), "g/a/1.0.0"))
	mustOK(t, set(onVM("web-100"), "g/a/2.0.0"))
	mustOK(t, remove(onVM("web-100")))
	mustOK(t, set(onVM("web-100"), "g/a/2.0.0"))
	// A conflict is refused as before, whatever the number of instances.
	wantErr(t, set(onWeb, "g/a/1.0.0"), codes.InvalidArgument, "More than one VM Application was specified with the same packageReferenceId")
	wantErr(t, set(onWeb, "g/a/2.0.0"), codes.InvalidArgument, "Only one version of an application")
	mustOK(t, remove(onVM("web-007")))
	wantErr(t, set(onWeb, "g/a/1.0.0"), codes.InvalidArgument, "Only one version of an application")
	mustOK(t, remove(onVM("web-100")))

	// What a change costs: a machine's, and its scale set's with its 150
	// instances (none with applications of its own now) read about the
	// same records: the target twice (the check, then the change), the
	// version's records, never the instances.
	alone := reads(func() error { return set(onVM("vm1"), "g/a/1.0.0") })
	web := reads(func() error { return set(onWeb, "g/a/1.0.0") })
	if web > alone+4 {
		t.Fatalf("the scale set's change read %d records, a machine's %d: it read its %d instances", web, alone, n)
	}
	web = reads(func() error { return remove(onWeb) })
	if alone2 := reads(func() error { return remove(onVM("vm1")) }); web > alone2+4 {
		t.Fatalf("the scale set's removal read %d records, a machine's %d", web, alone2)
	}
	// An instance with an application of its own: read, and still in the way.
	mustOK(t, set(onVM("web-042"), "g/a/2.0.0"))
	mark := db.RecordsRead()
	wantErr(t, set(onWeb, "g/a/1.0.0"), codes.InvalidArgument, "Only one version of an application")
	if read := db.RecordsRead() - mark; read > alone+4 {
		t.Fatalf("the refused scale set's change read %d records", read)
	}
}
