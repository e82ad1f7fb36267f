package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/cluster"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/metricstest"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestClusterOneTracker: a cluster's nodes answer from one peer tracker,
// the leader's, and each reads a third of the store's egress cap. Two machines talk to different followers: each is named
// in the other's plans, the stores' one piece is claimed for one of them
// only, and a peer reported through one node is left out of the plans of
// the other. When the leader is killed, the new leader's tracker knows
// nothing until the machines announce again (soft state), and then names
// them again.
func TestClusterOneTracker(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three vmappd processes and MinIO")
	}
	m := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	vc := startCluster(t, fmt.Sprintf("regions:\n  - name: eastus\n    endpoints: [{url: %q, bucket: vmapp-eastus, egressMBps: 90}]\n", m.Endpoint()),
		clusterOpts{nodes: 3, args: []string{"--metrics", "127.0.0.1:0"}})
	for _, n := range vc.nodes {
		const series = `vmapp_store_egress_cap_bytes_per_second{endpoint="0",region="eastus"}`
		addr := metricsRE.FindStringSubmatch(n.output())
		if addr == nil {
			t.Fatalf("%s logged no metrics address:\n%s", n.id, n.output())
		}
		vc.eventually(n.id+" reads a third of the egress cap", func() bool {
			_, body := metricstest.Get(t, addr[1], "/metrics")
			return metricstest.Sample(body, series) == "3e+07"
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute) // guards against hangs only
	defer cancel()
	newVersion(t, vc.c, "1.0.0", &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "true", Remove: "true"}, ReplicaCount: proto.Int32(1)})
	pkg, _ := randomPackage(t, 1<<20)
	must(t)(vc.c.Upload(ctx, "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, pkg, client.UploadOptions{}))
	waitReplicated(t, vc.c, "1.0.0")
	fl := pb.NewFleetServiceClient(vc.c.Conn())
	tokens := map[string]string{}
	for _, name := range []string{"vm-a", "vm-b"} {
		r, err := fl.CreateMachine(ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: name, Region: "eastus", OsType: "Linux"}})
		if err != nil {
			t.Fatal(err)
		}
		tokens[name] = r.AgentToken
		must(t)(fl.SetApplication(ctx, &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: name}},
			Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}}))
	}
	leader := vc.leader(vc.nodes...)
	var followers []*cnode
	for _, n := range vc.nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	// as is the DownloadService of machine name through node n.
	as := func(name string, n *cnode) pb.DownloadServiceClient {
		c, err := client.New(n.api, client.Options{Token: tokens[name]})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return pb.NewDownloadServiceClient(c.Conn())
	}
	a, b := as("vm-a", followers[0]), as("vm-b", followers[1])
	announce := func(dl pb.DownloadServiceClient, name, addr string, whole bool) {
		t.Helper()
		r := &pb.AnnounceRequest{Machine: name, Address: addr}
		if whole {
			r.Held = []*pb.HeldArtifact{{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE}}
		}
		must(t)(dl.Announce(ctx, r))
	}
	plan := func(dl pb.DownloadServiceClient) *pb.DownloadPlan {
		t.Helper()
		r, err := dl.GetDownloadPlan(ctx, &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Region: "eastus"})
		if err != nil {
			t.Fatal(err)
		}
		return r.Plan
	}
	peersOf := func(p *pb.DownloadPlan) []string {
		var out []string
		for _, q := range p.Peers {
			out = append(out, q.Machine+"@"+q.Address)
		}
		return out
	}

	// Both serve peers, each announced to its own follower: one swarm, and
	// the one piece is the stores' for one machine only.
	announce(a, "vm-a", "127.0.0.1:7001", false)
	announce(b, "vm-b", "127.0.0.1:7002", false)
	pa, pb2 := plan(a), plan(b)
	if pa.PeerRefresh == nil || pb2.PeerRefresh == nil {
		t.Fatalf("the plans don't make a swarm: %v, %v", pa.PeerRefresh, pb2.PeerRefresh)
	}
	if !slices.Equal(pa.StorePieces, []uint32{0}) || len(pb2.StorePieces) != 0 {
		t.Fatalf("store pieces: vm-a %v, vm-b %v; want the one piece for vm-a only", pa.StorePieces, pb2.StorePieces)
	}
	// vm-a holds it: vm-b's plan, from the other follower, names it.
	announce(a, "vm-a", "127.0.0.1:7001", true)
	if got := peersOf(plan(b)); !slices.Equal(got, []string{"vm-a@127.0.0.1:7001"}) {
		t.Fatalf("vm-b's peers through %s: %v", followers[1].id, got)
	}
	// vm-b reports vm-a through the leader: no node names vm-a to it.
	vmbAtLeader := as("vm-b", leader)
	must(t)(vmbAtLeader.ReportPeer(ctx, &pb.ReportPeerRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Peer: "vm-a", Problem: "a bad piece (the test's)"}))
	if got := peersOf(plan(b)); len(got) != 0 {
		t.Fatalf("vm-b's peers after it reported vm-a: %v", got)
	}
	if got := peersOf(plan(as("vm-b", followers[0]))); len(got) != 0 {
		t.Fatalf("vm-b's peers through %s after it reported vm-a: %v", followers[0].id, got)
	}

	// TrackerService is for the nodes: a call without the cluster's key,
	// even an operator's, is refused.
	_, err := pb.NewTrackerServiceClient(vc.c.Conn()).TrackAnnounce(ctx, &pb.TrackAnnounceRequest{
		Machine: &pb.TrackedMachine{Tenant: "default", Name: "vm-x", Region: "eastus"}, Address: "127.0.0.1:7003"})
	if !errs.Is(errs.FromStatus(err), errs.Unauthenticated) {
		t.Fatalf("TrackAnnounce without the cluster key: %v", err)
	}

	// With the key: a bad request gets the field at fault, and a node that
	// doesn't lead sends the caller to the leader.
	key, err := os.ReadFile(vc.key)
	if err != nil {
		t.Fatal(err)
	}
	nodeCtx := metadata.AppendToOutgoingContext(ctx, cluster.PeerKey, cluster.PeerToken(bytes.TrimSpace(key)))
	good := &pb.TrackPlanRequest{Artifact: &pb.TrackedArtifact{Tenant: "default", Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE},
		Machine: &pb.TrackedMachine{Tenant: "default", Name: "vm-b", Region: "eastus"}, Pieces: 1, MaxPeers: 16}
	for _, c := range []struct {
		field string
		edit  func(r *pb.TrackPlanRequest)
	}{
		{"max_peers", func(r *pb.TrackPlanRequest) { r.MaxPeers = -1 }},
		{"pieces", func(r *pb.TrackPlanRequest) { r.Pieces = -3 }},
		{"artifact.kind", func(r *pb.TrackPlanRequest) { r.Artifact.Kind = pb.ArtifactKind_ARTIFACT_KIND_UNSPECIFIED }},
		{"machine.region", func(r *pb.TrackPlanRequest) { r.Machine.Region = "" }},
	} {
		r := proto.Clone(good).(*pb.TrackPlanRequest)
		c.edit(r)
		_, err := pb.NewTrackerServiceClient(leader.c.Conn()).TrackPlan(nodeCtx, r)
		if err = errs.FromStatus(err); !errs.Is(err, errs.InvalidArgument) || errs.FieldOf(err) != c.field {
			t.Errorf("TrackPlan with a bad %s: %v (field %q)", c.field, err, errs.FieldOf(err))
		}
	}
	if _, err := pb.NewTrackerServiceClient(leader.c.Conn()).TrackPlan(nodeCtx, good); err != nil {
		t.Fatalf("TrackPlan of the leader: %v", err)
	}
	_, err = pb.NewTrackerServiceClient(followers[0].c.Conn()).TrackPlan(nodeCtx, good)
	if err = errs.FromStatus(err); !errs.Is(err, errs.Unavailable) || errs.FieldOf(err) != "leader" {
		t.Fatalf("TrackPlan of a follower: %v", err)
	}

	// The leader dies: the new one's tracker starts empty, and fills again
	// as the machines announce.
	vc.kill9(leader)
	next := vc.leader(followers...)
	t.Logf("killed leader %s; %s leads", leader.id, next.id)
	var p *pb.DownloadPlan
	vc.eventually("a plan from the new leader's tracker", func() bool {
		r, err := b.GetDownloadPlan(ctx, &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Region: "eastus"})
		if err != nil && !errs.Is(errs.FromStatus(err), errs.Unavailable) {
			t.Fatal(err)
		}
		p = r.GetPlan()
		return err == nil
	})
	if len(p.Peers) != 0 || p.PeerRefresh != nil {
		t.Fatalf("the new leader's tracker knew peers before any announcement: %v, refresh %v", peersOf(p), p.PeerRefresh)
	}
	vc.eventually("vm-a announces to the cluster again", func() bool {
		_, err := a.Announce(ctx, &pb.AnnounceRequest{Machine: "vm-a", Address: "127.0.0.1:7001",
			Held: []*pb.HeldArtifact{{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE}}})
		return err == nil
	})
	if got := peersOf(plan(b)); !slices.Equal(got, []string{"vm-a@127.0.0.1:7001"}) {
		t.Fatalf("vm-b's peers after the new leader heard vm-a: %v", got)
	}
}
