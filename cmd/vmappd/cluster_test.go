package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	"github.com/vmapp/vmapp/internal/testkit/testnet"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/daemon"
	"github.com/vmapp/vmapp/state"
)

// newVersion creates gallery g and application a (when missing) and
// version name of a with the profile given.
func newVersion(t *testing.T, c *client.Client, name string, profile *pb.PublishingProfile) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Catalog.GetApplication(ctx, &pb.GetApplicationRequest{Gallery: "g", Application: "a"}); err != nil {
		must(t)(c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "eastus"}}))
		must(t)(c.Catalog.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "a", Location: "eastus", SupportedOsType: "Linux"}}))
	}
	must(t)(c.Catalog.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: "g", Application: "a", Name: name, Location: "eastus", PublishingProfile: profile}}))
}

// randomPackage writes size random bytes to a file and returns its path
// and hex sha256.
func randomPackage(t *testing.T, size int) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "package")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rand.Reader, int64(size)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}

// waitReplicated waits until version's replication is Completed, asking
// through c.
func waitReplicated(t *testing.T, c *client.Client, version string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: version})
		cancel()
		if err == nil && r.Version.ReplicationStatus.GetAggregatedState() == "Completed" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never replicated: %v %v", version, r.GetVersion().GetReplicationStatus(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clientProxies puts a proxy in front of every node's API, for a client:
// the test holds the paths to some nodes to choose where its calls go.
func clientProxies(t *testing.T, nodes []*cnode) map[*cnode]*tcpProxy {
	out := map[*cnode]*tcpProxy{}
	for _, n := range nodes {
		out[n] = newProxy(t, "127.0.0.1:0", n.api)
	}
	return out
}

func proxyList(ps map[*cnode]*tcpProxy, nodes []*cnode) string {
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, ps[n].addr())
	}
	return strings.Join(addrs, ",")
}

// TestClusterUploadLeaderKilled uploads a 256 MiB package with the SDK
// given the three nodes' addresses; the client reaches only the leader at
// first (the paths to the others are held), and the leader is killed with
// SIGKILL a quarter of the way in. The upload finishes through another
// node, resuming from no earlier than what the leader had committed; the
// stored object is the file (sha256), exactly one version is published,
// and the killed node, restarted, holds the same state as the others.
func TestClusterUploadLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three vmappd processes and MinIO")
	}
	m := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	vc := startCluster(t, fmt.Sprintf("regions:\n  - name: eastus\n    endpoints: [{url: %q, bucket: vmapp-eastus}]\n", m.Endpoint()), clusterOpts{nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	newVersion(t, vc.c, "1.0.0", &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}, ReplicaCount: proto.Int32(1)})
	const size = 256 << 20
	path, sum := randomPackage(t, size)

	leader := vc.leader(vc.nodes...)
	ps := clientProxies(t, vc.nodes)
	for n, p := range ps {
		if n != leader {
			p.hold()
		}
	}
	// Paced at 32 MiB/s: 8 s for the whole file at best, so that the kill
	// (a quarter in) comes well before the end on a busy machine.
	up, err := client.New(proxyList(ps, vc.nodes), client.Options{Token: vc.token, DialOptions: []grpc.DialOption{grpc.WithContextDialer(testnet.SlowDialer(32 << 20))}})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	var mu sync.Mutex
	var starts []int64
	last := int64(-1)
	type result struct {
		v   *pb.GalleryApplicationVersion
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := up.Upload(ctx, "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{SHA256: sum, Progress: func(d, _ int64) {
			mu.Lock()
			defer mu.Unlock()
			if d <= last || last < 0 {
				starts = append(starts, d)
			}
			last = d
		}})
		done <- result{v, err}
	}()
	var committed int64
	for committed < size/4 {
		b, err := vc.c.Transfer.BeginUpload(ctx, &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, SizeBytes: size, Sha256: sum})
		if err != nil {
			t.Fatal(err)
		}
		if b.Version != nil {
			t.Fatal("the upload finished before the leader was killed")
		}
		committed = b.CommittedOffset
		time.Sleep(10 * time.Millisecond)
	}
	vc.kill9(leader)
	for _, p := range ps {
		p.release()
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("upload across the leader's kill -9: %v\n%s", r.err, vc.logs())
	}
	if r.v.Package.GetSha256() != sum || r.v.ProvisioningState != "Succeeded" {
		t.Fatalf("version after the upload: %s %v", r.v.ProvisioningState, r.v.Package)
	}
	mu.Lock()
	t.Logf("%s (the leader) killed with %d bytes committed; attempts started at %v", leader.id, committed, starts)
	if len(starts) < 2 || starts[len(starts)-1] < committed {
		t.Fatalf("attempts started at %v: the resume lost committed bytes (%d)", starts, committed)
	}
	mu.Unlock()
	list, err := vc.c.Catalog.ListVersions(ctx, &pb.ListVersionsRequest{Gallery: "g", Application: "a"})
	if err != nil || len(list.Versions) != 1 || list.Versions[0].Name != "1.0.0" || list.Versions[0].ProvisioningState != "Succeeded" {
		t.Fatalf("versions published: %v, %v", list.GetVersions(), err)
	}
	obj, err := m.Client(t).GetObject(ctx, "vmapp-eastus", blob.SourceKey("default", "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE), minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if n, err := io.Copy(h, obj); err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != sum {
		t.Fatalf("stored object: %d bytes, sha256 %x, %v", n, h.Sum(nil), err)
	}
	vc.start(leader)
	vc.waitFormed(vc.nodes...)
	waitReplicated(t, leader.c, "1.0.0")
	sameDumps(t, vc.dumps(), "n1", "n2", "n3")
}

// TestClusterReplicationLeaderKilled replicates a package from eastus to
// westus and northeurope (and a replica in eastus) slowly (the regions
// file limits the bandwidth), kills the leader with SIGKILL in the middle
// of the copies, and checks that the new leader completes them from the
// replicated replica records: the bytes that reached each other region's
// store (counted by a proxy in front of it, the dead leader's included)
// are the package plus at most one part, and the records count each part
// once.
func TestClusterReplicationLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three vmappd processes and MinIO")
	}
	east := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	far := map[string]*tcpProxy{}
	for _, region := range []string{"westus", "northeurope"} {
		m := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
		far[region] = newProxy(t, "127.0.0.1:0", strings.TrimPrefix(m.Endpoint(), "http://"))
	}
	vc := startCluster(t, fmt.Sprintf(`regions:
  - name: eastus
    endpoints: [{url: %q, bucket: vmapp-eastus}]
  - name: westus
    endpoints: [{url: "http://%s", bucket: vmapp-westus}]
  - name: northeurope
    endpoints: [{url: "http://%s", bucket: vmapp-northeurope}]
replication:
  partConcurrency: 1
  bandwidthMBps: 12
`, east.Endpoint(), far["westus"].addr(), far["northeurope"].addr()), clusterOpts{nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	newVersion(t, vc.c, "1.0.0", &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"},
		TargetRegions: []*pb.TargetRegion{{Name: "eastus"}, {Name: "westus"}, {Name: "northeurope"}}, ReplicaCount: proto.Int32(1)})
	const size, part = 40 << 20, 8 << 20 // five parts; 80 MiB to copy at 12 MB/s: about 7 s
	path, _ := randomPackage(t, size)
	before := map[string]int64{}
	for region, p := range far {
		before[region] = p.sent.Load()
	}
	must(t)(vc.c.Upload(ctx, "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{}))

	regionDone := func(region string) *pb.RegionalReplicationStatus {
		r, err := vc.c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range r.Version.ReplicationStatus.GetSummary() {
			if s.Region == region {
				return s
			}
		}
		return nil
	}
	leader := vc.leader(vc.nodes...)
	for regionDone("westus").GetBytesDone() < 2*part && regionDone("northeurope").GetBytesDone() < 2*part {
		if ctx.Err() != nil {
			t.Fatal("replication never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	w, ne := regionDone("westus"), regionDone("northeurope")
	if w.State == "Completed" && ne.State == "Completed" {
		t.Fatalf("the copies finished before the kill: %v %v", w, ne)
	}
	vc.kill9(leader)
	t.Logf("%s (the leader) killed with westus at %d bytes, northeurope at %d", leader.id, w.BytesDone, ne.BytesDone)
	waitReplicated(t, vc.c, "1.0.0")
	for region, p := range far {
		sent := p.sent.Load() - before[region]
		t.Logf("%s: %d bytes reached its store for a %d-byte package", region, sent, size)
		// Headers and the requests that list and complete the upload are
		// well under a MiB.
		if sent < size || sent > size+part+1<<20 {
			t.Errorf("%s: %d bytes reached its store for a %d-byte package: more than one part copied again", region, sent, size)
		}
	}
	vc.start(leader)
	vc.waitFormed(vc.nodes...)
	dumps := vc.dumps()
	sameDumps(t, dumps, "n1", "n2", "n3")
	cross := crossRegionBytes(t, vc.nodes[0])
	if cross != 2*size {
		t.Fatalf("the replica records count %d cross-region bytes for two regions of %d: a part counted twice or missing", cross, size)
	}
}

// crossRegionBytes sums the replica records' cross-region bytes in n's
// state file (n stopped).
func crossRegionBytes(t *testing.T, n *cnode) int64 {
	t.Helper()
	db, err := state.Open(filepath.Join(n.data, daemon.DBFile), state.Options{OpenTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var cross int64
	err = db.View(context.Background(), func(tx *state.Tx) error {
		recs, err := state.Replicas.All(tx, nil)
		for _, r := range recs {
			if r.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
				t.Errorf("replica %s/%d is %v", r.Region, r.Index, r.Phase)
			}
			cross += r.CrossRegionBytes
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return cross
}

// TestClusterAgentInstallLeaderKilled runs the vmapp-agent binary given
// the three nodes' addresses (it reaches only the leader at first) and
// kills the leader with SIGKILL while the install command runs: the agent
// reconnects to another node, the install runs exactly once (the script
// appends to a marker file), and every node shows it Installed.
func TestClusterAgentInstallLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three vmappd processes, the agent and MinIO")
	}
	m := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	agentBin := filepath.Join(t.TempDir(), "vmapp-agent")
	if out, err := exec.Command("go", "build", "-o", agentBin, "../vmapp-agent").CombinedOutput(); err != nil {
		t.Fatalf("go build vmapp-agent: %v\n%s", err, out)
	}
	vc := startCluster(t, fmt.Sprintf("regions:\n  - name: eastus\n    endpoints: [{url: %q, bucket: vmapp-eastus}]\n", m.Endpoint()), clusterOpts{nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	marks, installed := filepath.Join(dir, "marks"), filepath.Join(dir, "installed")
	install := fmt.Sprintf(`echo start >> %[1]s; sleep 3; cp a %[2]s && echo end >> %[1]s`, marks, installed)
	newVersion(t, vc.c, "1.0.0", &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: install, Remove: "true"}, ReplicaCount: proto.Int32(1)})
	pkg := filepath.Join(dir, "pkg")
	os.WriteFile(pkg, []byte("the package"), 0o600)
	must(t)(vc.c.Upload(ctx, "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, pkg, client.UploadOptions{}))
	waitReplicated(t, vc.c, "1.0.0")
	fl := pb.NewFleetServiceClient(vc.c.Conn())
	created, err := fl.CreateMachine(ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "vm1", Region: "eastus", OsType: "Linux"}})
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "agent.token")
	os.WriteFile(tokenFile, []byte(created.AgentToken+"\n"), 0o600)
	must(t)(fl.SetApplication(ctx, &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "vm1"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}}))

	leader := vc.leader(vc.nodes...)
	ps := clientProxies(t, vc.nodes)
	for n, p := range ps {
		if n != leader {
			p.hold()
		}
	}
	agent := exec.Command(agentBin, "--server", proxyList(ps, vc.nodes), "--vm", "vm1", "--root", filepath.Join(dir, "root"), "--token-file", tokenFile)
	agentLog := &strings.Builder{}
	agent.Stderr = &lockedWriter{w: agentLog}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { agent.Process.Kill(); agent.Wait() }()
	vc.eventually("the install starts", func() bool {
		b, _ := os.ReadFile(marks)
		return strings.Contains(string(b), "start")
	})
	vc.kill9(leader)
	for _, p := range ps {
		p.release()
	}
	var view *pb.InstanceView
	vc.eventually("vm1 shows the application Installed", func() bool {
		r, err := fl.GetMachine(ctx, &pb.GetMachineRequest{Name: "vm1"})
		view = r.GetMachine().GetInstanceView()
		apps := view.GetApplications()
		return err == nil && len(apps) == 1 && apps[0].State == "Installed" && view.Connected
	})
	if b, err := os.ReadFile(installed); err != nil || string(b) != "the package" {
		t.Fatalf("installed file: %q, %v", b, err)
	}
	if b, _ := os.ReadFile(marks); strings.Count(string(b), "start") != 1 || strings.Count(string(b), "end") != 1 {
		t.Fatalf("the install ran more than once, or not to its end:\n%s", b)
	}
	// The other nodes answer the same, linearizably.
	for _, n := range vc.live() {
		r, err := pb.NewFleetServiceClient(n.c.Conn()).GetMachine(ctx, &pb.GetMachineRequest{Name: "vm1"})
		if err != nil || r.Machine.InstanceView.GetApplications()[0].State != "Installed" {
			t.Fatalf("%s: %v %v", n.id, r.GetMachine().GetInstanceView(), err)
		}
	}
	t.Logf("the agent's instance view after the leader's kill: %v", view)
}

// lockedWriter lets a process write a log the test reads meanwhile.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestClusterDownloadWaitsForLeader: a download asked of a node that knows
// no leader waits for one instead of failing. Between a leader's death and
// the next election no node can give a download plan (it reads
// linearizably); an agent whose install started then failed the install,
// and a rollout counted the machine failed (TestRolloutResumesAfterLeaderChange
// halted one run in two of make test). Here two of the three nodes are
// killed, so the third can't elect a leader until one of them is back: the
// download asks it for its plan again and again, and once the node killed
// is started again and a leader elected, completes.
func TestClusterDownloadWaitsForLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three vmappd processes and MinIO")
	}
	m := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	vc := startCluster(t, fmt.Sprintf("regions:\n  - name: eastus\n    endpoints: [{url: %q, bucket: vmapp-eastus}]\n", m.Endpoint()), clusterOpts{nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute) // guards against hangs only
	defer cancel()
	newVersion(t, vc.c, "1.0.0", &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "true", Remove: "true"}, ReplicaCount: proto.Int32(1)})
	pkg, sum := randomPackage(t, 3<<20)
	must(t)(vc.c.Upload(ctx, "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, pkg, client.UploadOptions{}))
	waitReplicated(t, vc.c, "1.0.0")

	leader := vc.leader(vc.nodes...)
	var followers []*cnode
	for _, n := range vc.nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	survivor, back := followers[0], followers[1]
	vc.kill9(leader)
	vc.kill9(back)
	t.Logf("killed %s (the leader) and %s: %s is alone", leader.id, back.id, survivor.id)

	var logs strings.Builder
	lw := &lockedWriter{w: &logs}
	logged := func() string {
		lw.mu.Lock()
		defer lw.mu.Unlock()
		return logs.String()
	}
	asked := func() int { return strings.Count(logged(), "asking again") }
	dest := filepath.Join(t.TempDir(), "pkg")
	alone := vc.client(t, survivor)
	done := make(chan error, 1)
	go func() {
		_, err := alone.Download(ctx, "g", "a", "1.0.0", dest, client.DownloadOptions{Region: "eastus",
			Logger:   slog.New(slog.NewTextHandler(lw, nil)),
			PlanWait: 3 * time.Minute, // the wait is the node's restart's, whatever the machine's load
		})
		done <- err
	}()
	for asked() < 2 {
		select {
		case err := <-done:
			t.Fatalf("the download ended while no node could lead: %v\n%s", err, logged())
		case <-time.After(50 * time.Millisecond):
		}
	}
	vc.start(back)
	if err := <-done; err != nil {
		t.Fatalf("the download, once %s was back: %v", back.id, err)
	}
	b, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != sum {
		t.Fatal("the downloaded file isn't the package")
	}
	first, _, _ := strings.Cut(logged(), "\n")
	t.Logf("the plan was asked for again %d times while no node led; the first time: %s", asked(), first)
}
