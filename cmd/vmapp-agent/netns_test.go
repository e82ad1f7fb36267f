//go:build linux

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/client/agent"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	"github.com/vmapp/vmapp/internal/testkit/testnet"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/tracker"
)

// netnsAgents is how many agent processes TestPeerNetns runs, each in a
// network namespace of its own.
const netnsAgents = 20

// netnsStoreRate caps what the region's store sends, all machines
// together (bytes per second): slower than a machine's link, as a store
// serving a whole region is.
const netnsStoreRate = 10 << 20

// TestPeerNetns: 20 real vmapp-agent processes, each in a network
// namespace of its own on a veth link to a bridge (in a namespace of its
// own) shaped by tbf at 200 Mbit/s both ways, reach vmappd and the
// region's store on the root namespace's address on the bridge; the
// store sits behind a proxy capped at 10 MiB/s that counts its egress.
// The agents serve peers on their own addresses. All twenty, started at
// once, install one version of their scale set: the store sent at most
// three packages' worth, and every machine's file is the package
// (sha256).
func TestPeerNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vmapp-agent and runs MinIO and 20 agents in network namespaces")
	}
	n := testnet.New(t)
	bin := filepath.Join(t.TempDir(), "vmapp-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build vmapp-agent: %v\n%s", err, out)
	}
	f := testnet.NewFronts(t, n.RootIP(), netnsStoreRate, "eastus")
	c := testcluster.Start(t, testcluster.Options{Listen: n.RootIP() + ":0", Front: f.Front})
	egress := f.Egress
	data := make([]byte, 10*testcluster.PartSize-1000) // ten pieces
	rand.NewChaCha8([32]byte{22}).Read(data)
	sum := sha256.Sum256(data)
	c.Publish(t, "1.0.0", data, testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	e := &env{c: c, bin: bin, fl: pb.NewFleetServiceClient(c.Client.Conn())}
	if _, err := e.fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "web", Region: "eastus", OsType: "Linux"}}); err != nil {
		t.Fatal(err)
	}
	shape := testnet.Shape{Rate: "200mbit", Burst: "256kb", Latency: "50ms"}
	before := egress()
	if _, err := e.fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "web"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}}); err != nil {
		t.Fatal(err)
	}
	roots := map[string]string{}
	hosts := map[string]*testnet.Host{}
	agents := map[string]*agentProc{}
	start := func(name string) {
		h := n.AddHost(shape)
		args := e.instance(t, name, "web")
		roots[name], hosts[name] = args[len(args)-1], h
		args = append(args, "--peer-listen", h.IP+":7460")
		agents[name] = e.startCmd(t, h.Command(bin, args...), args)
	}
	// Each machine's copy, verified by its agent, kept for its peers
	// under its sha256 (the install command, install.sh, isn't in the
	// package: it fails, and the agent tries it again later).
	downloaded := func(name string) func() bool {
		return func() bool {
			b, err := os.ReadFile(filepath.Join(roots[name], agent.StateDir, agent.CacheDir, hex.EncodeToString(sum[:])))
			return err == nil && sha256.Sum256(b) == sum
		}
	}
	art := tracker.Artifact{Tenant: "default", Gallery: "g", Application: "a", Version: "1.0.0", Kind: int32(pb.ArtifactKind_ARTIFACT_KIND_PACKAGE)}

	// All twenty at once (a scale set's wave): the store sends each piece
	// to about one of them (vmappd's tracker claims it for one), they send
	// it to the others.
	for i := range netnsAgents {
		start(fmt.Sprint("web-", i))
	}
	for i := range netnsAgents {
		name := fmt.Sprint("web-", i)
		e.pollLong(t, name+" downloaded the package", downloaded(name))
	}
	e.pollLong(t, "the machines announced", func() bool { return c.Daemon.Tracker.Holders(art, "eastus") == netnsAgents })
	sent := egress() - before
	fromPeers, peerBytes := 0, int64(0)
	for name, a := range agents {
		if strings.Contains(a.log.String(), "bytes_from.peer/") {
			fromPeers++
		}
		tx, _, err := hosts[name].Bytes()
		if err != nil {
			t.Fatal(err)
		}
		peerBytes += tx
	}
	t.Logf("%d machines in namespaces: the store sent %d bytes for a %d-byte package (%.2f packages); %d read from peers; their links sent %d bytes (%.2f packages)",
		netnsAgents, sent, len(data), float64(sent)/float64(len(data)), fromPeers, peerBytes, float64(peerBytes)/float64(len(data)))
	if sent > 3*int64(len(data)) {
		t.Fatalf("the store sent %d bytes for %d machines installing a %d-byte package: more than 3 packages' worth", sent, netnsAgents, len(data))
	}
	if fromPeers == 0 {
		t.Fatal("no machine read from a peer")
	}
}
