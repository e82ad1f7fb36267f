package server_test

import (
	"crypto/ed25519"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/grant"
	"github.com/vmapp/vmapp/internal/testkit/signtest"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/tracker"
)

// peerMachine is a machine's download client and its credential's id.
type peerMachine struct {
	*agentOf
	tokenID string
}

// TestPeers: machines announce what they hold; a plan names the holders of
// the asking machine's region, its scale set first, with a grant signed for
// that machine and version alone; what isn't in the announcer's goal state
// isn't recorded; a reported peer is offered no more; a revoked credential
// and a version outside the goal state get no plan, so no grant.
func TestPeers(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	fl, ac := pb.NewFleetServiceClient(c.Client.Conn()), pb.NewAccessServiceClient(c.Client.Conn())
	c.Publish(t, "1.0.0", []byte("package one"), testcluster.Target("eastus", 1))
	c.Publish(t, "2.0.0", []byte("package two"), testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	c.WaitState(t, "2.0.0", "Completed")
	_, err := fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "web", Region: "eastus", OsType: "Linux"}})
	mustOK(t, err)
	machine := func(m *pb.Machine) peerMachine {
		r, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: m})
		mustOK(t, err)
		id, _, _ := strings.Cut(r.AgentToken, ".")
		return peerMachine{newAgent(t, c.Addr, r.AgentToken), id}
	}
	web0, web1, web2 := machine(&pb.Machine{Name: "web-0", ScaleSet: "web"}), machine(&pb.Machine{Name: "web-1", ScaleSet: "web"}), machine(&pb.Machine{Name: "web-2", ScaleSet: "web"})
	vmE := machine(&pb.Machine{Name: "vm-e", Region: "eastus", OsType: "Linux"})
	for _, target := range []*pb.ProfileTarget{{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "web"}}, {Target: &pb.ProfileTarget_Machine{Machine: "vm-e"}}} {
		_, err := fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: target, Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}})
		mustOK(t, err)
	}
	held := func(versions ...string) []*pb.HeldArtifact {
		var out []*pb.HeldArtifact
		for _, v := range versions {
			out = append(out, &pb.HeldArtifact{Gallery: "g", Application: "a", Version: v, Kind: pkg})
		}
		return out
	}
	announce := func(m peerMachine, name, addr string, versions ...string) *pb.AnnounceResponse {
		t.Helper()
		r, err := m.dl.Announce(ctx(t), &pb.AnnounceRequest{Machine: name, Address: addr, Held: held(versions...)})
		mustOK(t, err)
		return r
	}
	// web-0 holds 1.0.0 and 2.0.0, but was given 1.0.0 only.
	r := announce(web0, "web-0", "127.0.0.1:7001", "1.0.0", "2.0.0")
	if r.Recorded != 1 || r.Lease.AsDuration() != tracker.Lease || len(r.GrantKeys) != 1 {
		t.Fatalf("announce: %v", r)
	}
	keys := []ed25519.PublicKey{r.GrantKeys[0]}
	announce(vmE, "vm-e", "127.0.0.1:7002", "1.0.0")

	plan := func(m peerMachine, version string) *pb.DownloadPlan {
		t.Helper()
		r, err := m.dl.GetDownloadPlan(ctx(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: version, Kind: pkg, Region: "eastus"})
		mustOK(t, err)
		return r.Plan
	}
	peersOf := func(p *pb.DownloadPlan) string {
		var s []string
		for _, x := range p.Peers {
			s = append(s, x.Machine+"@"+x.Address)
		}
		return strings.Join(s, " ")
	}
	p := plan(web1, "1.0.0")
	if got := peersOf(p); got != "web-0@127.0.0.1:7001 vm-e@127.0.0.1:7002" || !p.Peers[0].SameScaleSet || p.Peers[1].SameScaleSet {
		t.Fatalf("web-1's peers: %q (%v)", got, p.Peers)
	}
	g, err := grant.Check(p.PeerGrant, keys, time.Now())
	mustOK(t, err)
	if g.Machine != "web-1" || g.Tenant != "default" || g.GalleryTenant != "default" || g.Gallery != "g" || g.Application != "a" || g.Version != "1.0.0" || g.Kind != pkg {
		t.Fatalf("web-1's grant: %v", g)
	}
	if left := time.Until(g.ExpireTime.AsTime()); left <= 0 || left > grant.TTL {
		t.Fatalf("the grant expires in %v", left)
	}
	// A grant doesn't check with another key, or once expired, or changed.
	other := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	if _, err := grant.Check(p.PeerGrant, []ed25519.PublicKey{other}, time.Now()); err == nil || !strings.Contains(err.Error(), "not signed by vmappd") {
		t.Fatalf("a grant checked with another key: %v", err)
	}
	if _, err := grant.Check(p.PeerGrant, keys, time.Now().Add(grant.TTL+time.Second)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("an expired grant: %v", err)
	}
	if _, err := grant.Check(signtest.Tamper(p.PeerGrant), keys, time.Now()); err == nil {
		t.Fatal("a changed grant checked")
	}
	// A holder isn't its own peer; 2.0.0, not recorded, has none.
	if got := peersOf(plan(web0, "1.0.0")); got != "vm-e@127.0.0.1:7002" {
		t.Fatalf("web-0's peers: %q", got)
	}
	if p := plan(vmE, "1.0.0"); peersOf(p) != "web-0@127.0.0.1:7001" {
		t.Fatalf("vm-e's peers: %q", peersOf(p))
	}
	// The operator is no machine: no peers, no grant.
	op, err := c.Client.Download(ctx(t), "g", "a", "1.0.0", t.TempDir()+"/pkg", client.DownloadOptions{Region: "eastus"})
	mustOK(t, err)
	if len(op.Peers) != 0 || op.PeerGrant != "" {
		t.Fatalf("the operator's plan names peers: %v %q", op.Peers, op.PeerGrant)
	}
	// A version outside the goal state: no plan, so no grant.
	_, err = web1.dl.GetDownloadPlan(ctx(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "2.0.0", Kind: pkg, Region: "eastus"})
	wantErr(t, err, codes.PermissionDenied, "not in its goal state")

	// web-1 reports web-0: offered to nobody for 1.0.0 any more.
	_, err = web1.dl.ReportPeer(ctx(t), &pb.ReportPeerRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Peer: "web-0", Piece: 0, Problem: "sha256 mismatch"})
	mustOK(t, err)
	if got := peersOf(plan(web2, "1.0.0")); got != "vm-e@127.0.0.1:7002" {
		t.Fatalf("web-2's peers after web-0 was reported: %q", got)
	}
	if n := metric(t, c.Daemon.Registry, "vmapp_peer_reports_total", nil); n != 1 {
		t.Fatalf("vmapp_peer_reports_total %v", n)
	}
	// vm-e withdraws: no peer is left.
	announce(vmE, "vm-e", "")
	if p := plan(web2, "1.0.0"); len(p.Peers) != 0 || p.PeerGrant != "" {
		t.Fatalf("peers after the last withdrew: %v %q", p.Peers, p.PeerGrant)
	}

	// Pieces of a download in progress: vm-e announces a bitmap; web-2,
	// which serves peers too, gets it in its plan, and is told to ask
	// again (a swarm: vm-e downloads it).
	_, err = vmE.dl.Announce(ctx(t), &pb.AnnounceRequest{Machine: "vm-e", Address: "127.0.0.1:7002",
		Held: []*pb.HeldArtifact{{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Pieces: []byte{0b1}}}})
	mustOK(t, err)
	announce(web2, "web-2", "127.0.0.1:7003")
	p = plan(web2, "1.0.0")
	if len(p.Peers) != 1 || p.Peers[0].Machine != "vm-e" || string(p.Peers[0].Pieces) != "\x01" || p.PeerRefresh.AsDuration() != tracker.SwarmRefresh || p.PeerGrant == "" {
		t.Fatalf("web-2's plan in a swarm: peers %v, refresh %v", p.Peers, p.PeerRefresh)
	}
	// Its store pieces: those no one holds (vm-e holds piece 0).
	if want := len(p.PieceSha256) - 1; len(p.StorePieces) != want || slices.Contains(p.StorePieces, 0) {
		t.Fatalf("web-2's store pieces %v of %d", p.StorePieces, len(p.PieceSha256))
	}
	announce(web2, "web-2", "")

	// A revoked credential gets no plan, so no grant.
	announce(vmE, "vm-e", "127.0.0.1:7002", "1.0.0")
	_, err = ac.RevokeToken(ctx(t), &pb.RevokeTokenRequest{Id: web1.tokenID})
	mustOK(t, err)
	_, err = web1.dl.GetDownloadPlan(ctx(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: "eastus"})
	wantErr(t, err, codes.Unauthenticated)

	// Wrong announcements and reports, each naming its field.
	for _, c := range []struct {
		name  string
		m     peerMachine
		req   *pb.AnnounceRequest
		code  codes.Code
		field string
	}{
		{"no port", web2, &pb.AnnounceRequest{Machine: "web-2", Address: "127.0.0.1"}, codes.InvalidArgument, `address "127.0.0.1" must be host:port`},
		{"port zero", web2, &pb.AnnounceRequest{Machine: "web-2", Address: "127.0.0.1:0"}, codes.InvalidArgument, `port "0" is not 1-65535`},
		{"any address", web2, &pb.AnnounceRequest{Machine: "web-2", Address: "0.0.0.0:7000"}, codes.InvalidArgument, "names no host peers can dial"},
		{"no kind", web2, &pb.AnnounceRequest{Machine: "web-2", Address: "h:1", Held: []*pb.HeldArtifact{{Gallery: "g", Application: "a", Version: "1.0.0"}}}, codes.InvalidArgument, "kind must be ARTIFACT_KIND_PACKAGE"},
		{"a bitmap too long", web2, &pb.AnnounceRequest{Machine: "web-2", Address: "h:1", Held: []*pb.HeldArtifact{{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Pieces: make([]byte, 64<<10+1)}}}, codes.InvalidArgument, "a bitmap of 65537 bytes; at most 65536"},
		{"another machine", web2, &pb.AnnounceRequest{Machine: "web-0", Address: "h:1"}, codes.PermissionDenied, "may act for machine 'web-2' only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.m.dl.Announce(ctx(t), c.req)
			wantErr(t, err, c.code, c.field)
		})
	}
	for _, c := range []struct {
		name  string
		req   *pb.ReportPeerRequest
		code  codes.Code
		field string
	}{
		{"no peer", &pb.ReportPeerRequest{Version: "1.0.0", Kind: pkg}, codes.InvalidArgument, "peer is required"},
		{"negative piece", &pb.ReportPeerRequest{Version: "1.0.0", Kind: pkg, Peer: "web-0", Piece: -1}, codes.InvalidArgument, "piece -1"},
		{"no kind", &pb.ReportPeerRequest{Version: "1.0.0", Peer: "web-0"}, codes.InvalidArgument, "kind must be"},
		{"problem too long", &pb.ReportPeerRequest{Version: "1.0.0", Kind: pkg, Peer: "web-0", Problem: strings.Repeat("x", 1025)}, codes.InvalidArgument, "problem must be"},
		{"not in the goal state", &pb.ReportPeerRequest{Version: "2.0.0", Kind: pkg, Peer: "web-0"}, codes.PermissionDenied, "not in its goal state"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.req.Gallery, c.req.Application = "g", "a"
			_, err := web2.dl.ReportPeer(ctx(t), c.req)
			wantErr(t, err, c.code, c.field)
		})
	}
}
