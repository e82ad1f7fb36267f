package server_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestPreheat: a preheat of N machines chooses the region's machines that
// serve peers first; the chosen (and only they) find the version in their
// goal states, may download it and announce it; GetVersion counts those
// holding it; a scale set's preheat replaces the region's, names its
// instances in the region and leaves the machines chosen before; cancel
// ends it; wrong values are refused naming their field.
func TestPreheat(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	fl := pb.NewFleetServiceClient(c.Client.Conn())
	dl := pb.NewDownloadServiceClient(c.Client.Conn())
	c.Publish(t, "1.0.0", []byte("package one"), testcluster.Target("eastus", 1), testcluster.Target("westus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	_, err := fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "web", Region: "eastus", OsType: "Linux"}})
	mustOK(t, err)
	_, err = fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "far", Region: "westus", OsType: "Linux"}})
	mustOK(t, err)
	machines := map[string]peerMachine{}
	for _, m := range []*pb.Machine{{Name: "web-0", ScaleSet: "web"}, {Name: "web-1", ScaleSet: "web"},
		{Name: "vm-a", Region: "eastus", OsType: "Linux"}, {Name: "vm-b", Region: "eastus", OsType: "Linux"}, {Name: "vm-w", Region: "westus", OsType: "Linux"}} {
		r, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: m})
		mustOK(t, err)
		machines[m.Name] = peerMachine{agentOf: newAgent(t, c.Addr, r.AgentToken)}
	}
	preheatOf := func(name string) string {
		t.Helper()
		gs, err := c.Fleet.GoalState(ctx(t), "default", name)
		mustOK(t, err)
		var s []string
		for _, p := range gs.Preheat {
			s = append(s, fmt.Sprintf("%s/%s/%s:%s", p.Gallery, p.Application, p.Version, p.Package.GetSha256()[:8]))
		}
		return strings.Join(s, " ")
	}
	status := func() string {
		t.Helper()
		r, err := c.Client.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
		mustOK(t, err)
		var s []string
		for _, p := range r.Version.Preheat {
			s = append(s, fmt.Sprintf("%s %s %v %d/%d (%d in region)", p.Region, p.ScaleSet, p.Machines, p.Holding, p.Wanted, p.HoldingInRegion))
			if len(p.Holders) != int(p.Holding) {
				t.Errorf("%s: holding %d, holders %v", p.Region, p.Holding, p.Holders)
			}
		}
		for _, p := range r.Version.Peers { // the tracker's, chosen or not
			s = append(s, fmt.Sprintf("peers in %s %v", p.Region, p.Machines))
		}
		return strings.Join(s, "; ")
	}
	sha := c.Version(t, "1.0.0").Package.Sha256[:8]

	// vm-b serves peers (it announced an address, holding nothing): it is
	// chosen before vm-a and the scale set's instances.
	_, err = machines["vm-b"].dl.Announce(ctx(t), &pb.AnnounceRequest{Machine: "vm-b", Address: "127.0.0.1:7100"})
	mustOK(t, err)
	r, err := dl.Preheat(ctx(t), &pb.PreheatRequest{Gallery: "g", Application: "a", Version: "latest", Region: "eastus", Machines: 1})
	mustOK(t, err)
	if got := fmt.Sprint(r.Status.Machines, r.Status.Wanted, r.Status.Holding); got != "[vm-b] 1 0" {
		t.Fatalf("preheat of one machine: %s", got)
	}
	if got := preheatOf("vm-b"); got != "g/a/1.0.0:"+sha {
		t.Fatalf("vm-b's goal state preheats %q", got)
	}
	for _, other := range []string{"vm-a", "web-0", "vm-w"} {
		if got := preheatOf(other); got != "" {
			t.Fatalf("%s, not chosen, preheats %q", other, got)
		}
	}
	// The chosen machine may download the version and announce it; one
	// not chosen may do neither.
	_, err = machines["vm-b"].dl.GetDownloadPlan(ctx(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: "eastus"})
	mustOK(t, err)
	_, err = machines["vm-a"].dl.GetDownloadPlan(ctx(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: "eastus"})
	wantErr(t, err, codes.PermissionDenied, "not in its goal state")
	held := []*pb.HeldArtifact{{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg}}
	a, err := machines["vm-b"].dl.Announce(ctx(t), &pb.AnnounceRequest{Machine: "vm-b", Address: "127.0.0.1:7100", Held: held})
	mustOK(t, err)
	if a.Recorded != 1 {
		t.Fatalf("vm-b's announcement of its preheated version: %d recorded", a.Recorded)
	}
	a, err = machines["vm-a"].dl.Announce(ctx(t), &pb.AnnounceRequest{Machine: "vm-a", Address: "127.0.0.1:7101", Held: held})
	mustOK(t, err)
	if a.Recorded != 0 {
		t.Fatalf("vm-a, not chosen, had %d recorded", a.Recorded)
	}
	if got := status(); got != "eastus  [vm-b] 1/1 (1 in region); peers in eastus [vm-b]" {
		t.Fatalf("status after vm-b announced: %q", got)
	}

	// The scale set's preheat replaces the region's: its instances, and
	// vm-b no more.
	r, err = dl.Preheat(ctx(t), &pb.PreheatRequest{Gallery: "g", Application: "a", Version: "1.0.0", Region: "eastus", ScaleSet: "web"})
	mustOK(t, err)
	if got := fmt.Sprintf("%s %v %d", r.Status.ScaleSet, r.Status.Machines, r.Status.Wanted); got != "web [web-0 web-1] 2" {
		t.Fatalf("preheat of the scale set: %s", got)
	}
	if preheatOf("web-1") == "" || preheatOf("vm-b") != "" {
		t.Fatalf("after the scale set's preheat: web-1 %q, vm-b %q", preheatOf("web-1"), preheatOf("vm-b"))
	}
	// A new instance takes part at once.
	_, err = fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "web-2", ScaleSet: "web"}})
	mustOK(t, err)
	if preheatOf("web-2") == "" {
		t.Fatal("a new instance of the scale set doesn't preheat")
	}
	// westus, separately. vm-b, no longer chosen, holds it still (as it
	// announced): counted in the region, not among the chosen.
	_, err = dl.Preheat(ctx(t), &pb.PreheatRequest{Gallery: "g", Application: "a", Version: "1.0.0", Region: "westus", Machines: 1})
	mustOK(t, err)
	if got := status(); got != "eastus web [web-0 web-1 web-2] 0/3 (1 in region); westus  [vm-w] 0/1 (0 in region); peers in eastus [vm-b]" {
		t.Fatalf("status with two regions: %q", got)
	}
	// Cancelled: the machines' goal states drop it.
	_, err = dl.Preheat(ctx(t), &pb.PreheatRequest{Gallery: "g", Application: "a", Version: "1.0.0", Region: "eastus", Cancel: true})
	mustOK(t, err)
	if preheatOf("web-0") != "" || !strings.HasPrefix(status(), "westus") {
		t.Fatalf("after the cancel: web-0 %q, status %q", preheatOf("web-0"), status())
	}

	// Wrong values, each naming its field; nothing changes.
	before := status()
	for _, bad := range []struct {
		name string
		req  *pb.PreheatRequest
		code codes.Code
		want string
	}{
		{"no region", &pb.PreheatRequest{Version: "1.0.0", Machines: 1}, codes.InvalidArgument, "region is required"},
		{"unknown region", &pb.PreheatRequest{Version: "1.0.0", Region: "mars", Machines: 1}, codes.InvalidArgument, "mars"},
		{"no machines", &pb.PreheatRequest{Version: "1.0.0", Region: "eastus"}, codes.InvalidArgument, "say which machines"},
		{"negative machines", &pb.PreheatRequest{Version: "1.0.0", Region: "eastus", Machines: -1}, codes.InvalidArgument, "machines -1 must be 1 to 1000"},
		{"too many machines", &pb.PreheatRequest{Version: "1.0.0", Region: "eastus", Machines: 1001}, codes.InvalidArgument, "machines 1001"},
		{"more than the region has", &pb.PreheatRequest{Version: "1.0.0", Region: "eastus", Machines: 6}, codes.FailedPrecondition, "region eastus has 5 machines; 6 asked for"},
		{"both", &pb.PreheatRequest{Version: "1.0.0", Region: "eastus", Machines: 1, ScaleSet: "web"}, codes.InvalidArgument, "not both"},
		{"scale set elsewhere", &pb.PreheatRequest{Version: "1.0.0", Region: "eastus", ScaleSet: "far"}, codes.InvalidArgument, "scale set 'far' is in region westus"},
		{"no such scale set", &pb.PreheatRequest{Version: "1.0.0", Region: "eastus", ScaleSet: "nope"}, codes.NotFound, "nope"},
		{"no such version", &pb.PreheatRequest{Version: "9.9.9", Region: "eastus", Machines: 1}, codes.NotFound, "9.9.9"},
		{"cancel with machines", &pb.PreheatRequest{Version: "1.0.0", Region: "westus", Machines: 1, Cancel: true}, codes.InvalidArgument, "cancel ends the preheat"},
		{"cancel of none", &pb.PreheatRequest{Version: "1.0.0", Region: "eastus", Cancel: true}, codes.NotFound, "has no preheat in region eastus"},
	} {
		t.Run(bad.name, func(t *testing.T) {
			bad.req.Gallery, bad.req.Application = "g", "a"
			_, err := dl.Preheat(ctx(t), bad.req)
			wantErr(t, err, bad.code, bad.want)
		})
	}
	if after := status(); after != before {
		t.Fatalf("refused preheats changed the status: %q, then %q", before, after)
	}
}
