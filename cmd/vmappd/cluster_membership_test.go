package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/daemon"
)

// someState writes galleries, applications, versions and machines
// through c, tagged with prefix.
func someState(t *testing.T, vc *vcluster, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	must := must(t)
	for _, g := range []string{prefix + "-a", prefix + "-b"} {
		must(vc.c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: g, Location: "eastus"}}))
		must(vc.c.Catalog.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: g, Name: "app", Location: "eastus", SupportedOsType: "Linux"}}))
		must(vc.c.Catalog.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{Gallery: g, Application: "app", Name: "1.0.0", Location: "eastus",
			PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}}}}))
		must(pb.NewFleetServiceClient(vc.c.Conn()).CreateMachine(ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: g + "-vm", Region: "eastus", OsType: "Linux"}}))
	}
}

// TestClusterSnapshotWipeRejoin saves a snapshot with the vmapp CLI
// (given the three nodes), wipes a node's data directory and starts it
// again, empty, joining through the others: it gets the cluster's state
// (a raft snapshot) and the changes since, and its state file equals the
// others'. The saved snapshot, restored with vmappd restore into a new
// data directory, equals them too, and serves as a one-node cluster.
func TestClusterSnapshotWipeRejoin(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three vmappd processes and the CLI")
	}
	vc := startCluster(t, regionsYAML, clusterOpts{nodes: 3})
	cli := filepath.Join(t.TempDir(), "vmapp")
	if out, err := exec.Command("go", "build", "-o", cli, "../vmapp").CombinedOutput(); err != nil {
		t.Fatalf("go build vmapp: %v\n%s", err, out)
	}
	servers := vc.nodes[0].api + "," + vc.nodes[1].api + "," + vc.nodes[2].api
	vmapp := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(cli, append([]string{"--server", servers}, args...)...)
		cmd.Env = append(os.Environ(), "VMAPP_TOKEN="+vc.token)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("vmapp %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	someState(t, vc, "before")
	wiped := vc.nodes[2]
	vc.kill9(wiped)
	if err := os.RemoveAll(wiped.data); err != nil {
		t.Fatal(err)
	}
	someState(t, vc, "while-gone")
	vc.start(wiped) // joins: its data directory is gone
	vc.waitFormed(vc.nodes...)
	someState(t, vc, "after")
	vc.quiesce()
	snap := filepath.Join(t.TempDir(), "vmapp.snap")
	t.Log(strings.TrimSpace(vmapp("cluster", "snapshot", "save", snap)))
	t.Log("\n" + vmapp("cluster", "status"))
	dumps := vc.dumps()
	sameDumps(t, dumps, "n1", "n2", "n3")
	if !strings.Contains(dumps["n3"], "while-gone-a") || !strings.Contains(dumps["n3"], "before-b") {
		t.Fatalf("the rejoined node's state lacks what was written before and while it was gone")
	}

	restored := filepath.Join(t.TempDir(), "data")
	if out, err := exec.Command(vc.bin, "restore", "--data", restored, snap).CombinedOutput(); err != nil {
		t.Fatalf("vmappd restore: %v\n%s", err, out)
	}
	if got, _ := dumpFile(t, filepath.Join(restored, daemon.DBFile)); got != dumps["n1"] {
		t.Fatalf("the restored snapshot differs from the nodes' state:\n%s", firstDiff(dumps["n1"], got))
	}
	one := &cnode{id: "r1", ip: "127.0.0.21", data: restored, api: freeAddr(t, "127.0.0.21"), raft: freeAddr(t, "127.0.0.21")}
	one.apiAdv, one.raftAd = one.api, one.raft
	alone := &vcluster{t: t, bin: vc.bin, regions: vc.regions, key: vc.key, nodes: []*cnode{one}, token: vc.token}
	alone.start(one)
	alone.c = one.c
	alone.waitFormed(one)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := one.c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: "while-gone-b", Application: "app", Version: "1.0.0"}); err != nil {
		t.Fatalf("the restored node: %v", err)
	}
	if _, err := one.c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "on-the-restored", Location: "eastus"}}); err != nil {
		t.Fatalf("a write on the restored node: %v", err)
	}
}

// refusedNode starts a vmappd node that must exit, and returns its log.
func (vc *vcluster) refusedNode(id, ip, key string, join ...string) string {
	t := vc.t
	t.Helper()
	n := vc.newNode(id, ip, false)
	args := []string{"--listen", n.api, "--node-id", id, "--raft-listen", n.raft, "--cluster-key", key}
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	p := launch(t, vc.bin, n.data, vc.regions, args...)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("node %s was not refused:\n%s", id, p.output())
	}
	return p.output()
}

// TestClusterBadInput: a node joining with a member's id or another
// cluster's key is refused and exits saying why; adding a node at an
// address where nothing listens, or one that leads a cluster of its own,
// is refused with FailedPrecondition naming it; a two-node cluster that
// loses a node refuses writes (Unavailable, naming the leader it last
// knew) and reports NOT_SERVING until the node is back; the last node
// can't be removed.
func TestClusterBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs vmappd processes")
	}
	vc := startCluster(t, regionsYAML, clusterOpts{nodes: 2})
	n1, n2 := vc.nodes[0], vc.nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cl := pb.NewClusterServiceClient(vc.c.Conn())

	out := vc.refusedNode("n2", "127.0.0.31", vc.key, n1.api)
	if !strings.Contains(out, "node id 'n2' is a member already") {
		t.Fatalf("a node joining with a member's id:\n%s", out)
	}
	otherKey := filepath.Join(t.TempDir(), "other.key")
	os.WriteFile(otherKey, []byte(strings.Repeat("another cluster's key ", 3)), 0o600)
	out = vc.refusedNode("n5", "127.0.0.32", otherKey, n1.api)
	if !strings.Contains(out, "must carry this cluster's key") {
		t.Fatalf("a node of another cluster key joining:\n%s", out)
	}

	dead := freeAddr(t, "127.0.0.33")
	_, err := cl.AddNode(ctx, &pb.AddNodeRequest{Id: "n9", RaftAddress: dead, ApiAddress: dead})
	if !errs.Is(err, errs.FailedPrecondition) || !strings.Contains(err.Error(), "can't be reached at raft address "+dead) {
		t.Fatalf("adding a node at a wrong address: %v", err)
	}
	// A node that leads a cluster of its own, with this cluster's key.
	other := vc.newNode("x1", "127.0.0.34", false)
	alone := &vcluster{t: t, bin: vc.bin, regions: vc.regions, key: vc.key, nodes: []*cnode{other}}
	alone.start(other)
	_, err = cl.AddNode(ctx, &pb.AddNodeRequest{Id: "x1", RaftAddress: other.raft, ApiAddress: other.api})
	for errs.Is(err, errs.FailedPrecondition) && strings.Contains(err.Error(), "doesn't answer") && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond) // it is still starting
		_, err = cl.AddNode(ctx, &pb.AddNodeRequest{Id: "x1", RaftAddress: other.raft, ApiAddress: other.api})
	}
	if !errs.Is(err, errs.FailedPrecondition) || !strings.Contains(err.Error(), "node 'x1' belongs to another cluster") {
		t.Fatalf("adding a node of another cluster: %v", err)
	}
	if st, err := vc.status(n1); err != nil || len(st.Nodes) != 2 {
		t.Fatalf("after the refusals: %v %v", st, err)
	}

	// Two nodes, one lost: no majority.
	leader := vc.leader(n1, n2)
	lost, left := n2, n1
	if leader == n2 {
		lost, left = n1, n2
	}
	vc.kill9(lost)
	var refusal error
	// A write the node took while it still led (before its lease ran out)
	// has an outcome it can't learn without its peer: it waits for it, up
	// to the call's deadline, and answers Aborted (or the deadline): asked
	// again, the node, no longer leading, refuses at once.
	vc.eventually(left.id+" refuses writes", func() bool {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, refusal = left.c.Catalog.CreateGallery(wctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "alone", Location: "eastus"}})
		return refusal != nil && !errs.Is(refusal, errs.Aborted) && !errs.Is(refusal, errs.DeadlineExceeded)
	})
	t.Logf("a write on %s, its peer lost: %v", left.id, refusal)
	if !errs.Is(refusal, errs.Unavailable) || !strings.Contains(refusal.Error(), "the last leader it knew was "+leader.id) {
		t.Fatalf("a write with one node of two: %v, want Unavailable naming %s", refusal, leader.id)
	}
	vc.eventually(left.id+" reports NOT_SERVING", func() bool {
		r, err := healthpb.NewHealthClient(left.c.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.Status == healthpb.HealthCheckResponse_NOT_SERVING
	})
	vc.start(lost)
	vc.waitFormed(n1, n2)
	must(t)(vc.c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "together", Location: "eastus"}}))

	// Down to one node, which can't be removed.
	if _, err := cl.RemoveNode(ctx, &pb.RemoveNodeRequest{Id: "n2"}); err != nil {
		t.Fatalf("removing n2: %v", err)
	}
	_, err = cl.RemoveNode(ctx, &pb.RemoveNodeRequest{Id: "n1"})
	if !errs.Is(err, errs.FailedPrecondition) || !strings.Contains(err.Error(), "node 'n1' is the cluster's last node") || errs.FieldOf(err) != "id" {
		t.Fatalf("removing the last node: %v (field %q)", err, errs.FieldOf(err))
	}
}
