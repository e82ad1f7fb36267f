//go:build bench

package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// benchCluster is vmappd as one process or as nodes of a cluster, with a
// client given every node's address.
type benchCluster struct {
	bin, regions, key string
	env               []string
	nodes             []*benchNode
	token             string
	c                 *client.Client
}

type benchNode struct {
	id, data, listen, raft string
	d                      *vmappd // nil while it is down
}

// startBenchCluster starts vmappd alone (nodes 0) or a cluster of nodes
// nodes: n1 bootstraps, the others join it.
func startBenchCluster(t *testing.T, bin, regions string, nodes int, env ...string) *benchCluster {
	t.Helper()
	bc := &benchCluster{bin: bin, regions: regions, env: env, key: filepath.Join(t.TempDir(), "cluster.key")}
	if err := os.WriteFile(bc.key, bytes.Repeat([]byte("bench-cluster-key"), 2), 0o600); err != nil {
		t.Fatal(err)
	}
	if nodes == 0 {
		d := startVmappd(t, bin, regions, env...)
		bc.nodes = []*benchNode{{id: "single", d: d}}
		bc.token = d.token
	}
	for i := range nodes {
		n := &benchNode{id: fmt.Sprintf("n%d", i+1), data: filepath.Join(t.TempDir(), "data"), listen: freeAddr(t), raft: freeAddr(t)}
		bc.nodes = append(bc.nodes, n)
		bc.start(t, n)
		if i == 0 {
			bc.token = waitToken(t, n.d.tokenFile)
		}
	}
	var addrs []string
	for _, n := range bc.nodes {
		addrs = append(addrs, n.d.addr)
	}
	c, err := client.New(strings.Join(addrs, ","), client.Options{Token: bc.token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	bc.c = c
	if nodes > 0 {
		bc.waitMembers(t, nodes)
	}
	return bc
}

func (bc *benchCluster) start(t *testing.T, n *benchNode) {
	args := []string{"--listen", n.listen, "--node-id", n.id, "--raft-listen", n.raft, "--cluster-key", bc.key}
	if n != bc.nodes[0] {
		args = append(args, "--join", bc.nodes[0].listen)
	}
	n.d = launchVmappd(t, bc.bin, n.data, bc.regions, args, bc.env...)
}

func waitToken(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		tok, err := client.ReadTokenFile(path)
		if err == nil {
			return tok
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first node wrote no operator token: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// status is the cluster's status as some node answers it.
func (bc *benchCluster) status(ctx context.Context) (*pb.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := pb.NewClusterServiceClient(bc.c.Conn()).GetClusterStatus(ctx, &pb.GetClusterStatusRequest{})
	return r.GetStatus(), err
}

// waitMembers waits until the cluster has a leader and n members that
// answer.
func (bc *benchCluster) waitMembers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, err := bc.status(context.Background())
		ok := err == nil && st.LeaderId != "" && len(st.Nodes) == n
		for _, node := range st.GetNodes() {
			ok = ok && (node.State == "Leader" || node.State == "Follower")
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster never formed: %v %v", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leader is the node that leads.
func (bc *benchCluster) leader(t *testing.T) *benchNode {
	t.Helper()
	bc.waitMembers(t, len(bc.nodes))
	st, err := bc.status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range bc.nodes {
		if n.id == st.LeaderId {
			return n
		}
	}
	t.Fatalf("no node is the leader %q", st.LeaderId)
	return nil
}

// writeLoad is a closed loop of conc callers for d, each alternating two
// control-plane writes: CreateVersion (in a tenant of its own, a new one
// with its gallery and application every 200 versions, within the seeds'
// 300 versions per region per tenant) and SetApplication of its scale
// set between versions 1.0.0 and 1.0.1. Every call is a write.
func writeLoad(t *testing.T, ctx context.Context, bc *benchCluster, label string, pid int, d time.Duration, conc int) loadResult {
	t.Helper()
	e := &fleetEnv{c: bc.c, fleet: pb.NewFleetServiceClient(bc.c.Conn())}
	for _, v := range []string{"1.0.0", "1.0.1"} {
		e.publish(t, ctx, "bench", "cp", v, randomFile(t, 4096), 1)
	}
	for w := range conc {
		e.createMachines(t, ctx, fmt.Sprintf("cp%d", w), 1, 1)
	}
	next := make([]int, conc)
	r, err := hammer(ctx, pid, d, conc, func(ctx context.Context, w int) error {
		k := next[w]
		next[w]++
		if k%2 == 1 {
			_, err := e.fleet.SetApplication(ctx, &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: fmt.Sprintf("cp%d", w)}},
				Application: &pb.VMGalleryApplication{PackageReferenceId: fmt.Sprintf("bench/cp/1.0.%d", k/2%2)}})
			return err
		}
		v := k / 2
		tctx := metadata.AppendToOutgoingContext(ctx, pb.TenantMetadataKey, fmt.Sprintf("%s-w%d-b%d", label, w, v/200))
		if v%200 == 0 {
			if _, err := bc.c.Catalog.CreateGallery(tctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: fleetRegion}}); err != nil {
				return err
			}
			if _, err := bc.c.Catalog.CreateApplication(tctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "a", Location: fleetRegion, SupportedOsType: "Linux"}}); err != nil {
				return err
			}
		}
		_, err := bc.c.Catalog.CreateVersion(tctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: fmt.Sprintf("1.0.%d", v), Location: fleetRegion,
			PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}}}})
		return err
	})
	if err != nil {
		t.Fatalf("%s: %d of %d writes failed, the first: %v", label, r.ErrCount, r.Calls+r.ErrCount, err)
	}
	t.Logf("%s: %d writes in %.1fs = %.0f/s; p50 %.2f ms, p99 %.2f ms", label, r.Calls, r.Seconds, r.perSecond(), ms(percentile(r.Latency, 50)), ms(percentile(r.Latency, 99)))
	return r
}

// failover kills the leader with SIGKILL while a version replicates to
// westus and measures, from the kill: the first write acknowledged (a
// CreateGallery through every node's address, retried as soon as it
// fails), and replication resuming (westus's bytes done growing past
// what they were at the kill, polled every 20 ms; a part is committed
// once copied, so this includes one part's copy). The leader is then
// started again.
func failover(t *testing.T, ctx context.Context, bc *benchCluster, round int) (write, resume time.Duration) {
	t.Helper()
	e := &fleetEnv{c: bc.c, fleet: pb.NewFleetServiceClient(bc.c.Conn())}
	version := fmt.Sprintf("2.0.%d", round)
	path := randomFile(t, 64<<20)
	if _, err := e.c.Catalog.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: "bench", Application: "cp", Name: version, Location: fleetRegion,
		PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"},
			TargetRegions: []*pb.TargetRegion{{Name: fleetRegion}, {Name: "westus"}}},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Upload(ctx, "bench", "cp", version, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	west := func() int64 {
		for {
			r, err := bc.c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: "bench", Application: "cp", Version: version})
			if err == nil {
				for _, s := range r.Version.GetReplicationStatus().GetSummary() {
					if s.Region == "westus" {
						return s.BytesDone
					}
				}
			}
			if ctx.Err() != nil {
				t.Fatal("replication status unreadable")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for west() < 16<<20 {
		time.Sleep(20 * time.Millisecond)
	}
	leader := bc.leader(t)
	atKill := west()
	killed := time.Now()
	leader.d.cmd.Process.Kill()
	leader.d.cmd.Wait()
	leader.d = nil
	for i := 0; ; i++ {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := bc.c.Catalog.CreateGallery(wctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: fmt.Sprintf("failover-%d-%d", round, i), Location: fleetRegion}})
		cancel()
		if err == nil {
			write = time.Since(killed)
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no write succeeded after the leader's kill: %v", err)
		}
	}
	for west() <= atKill {
		time.Sleep(20 * time.Millisecond)
	}
	resume = time.Since(killed)
	t.Logf("failover %d: leader %s killed; first write after %v, replication resumed after %v", round, leader.id, write, resume)
	bc.start(t, leader)
	bc.waitMembers(t, len(bc.nodes))
	return write, resume
}

// TestCluster measures control-plane writes per second on a three-node
// cluster against a single vmappd (and a one-node cluster: the raft log's
// own cost), and the failover of the three-node cluster: from the
// leader's SIGKILL to the first write acknowledged, and to replication
// resuming.
func TestCluster(t *testing.T) {
	dur, rounds := 10*time.Second, 3
	if quick {
		dur, rounds = 3*time.Second, 1
	}
	const conc = 32
	const accessKey, secretKey = "vmappbench", "vmappbenchsecret"
	east := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	west := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	regions := filepath.Join(t.TempDir(), "regions.yaml")
	yaml := fmt.Sprintf("regions:\n  - name: %s\n    endpoints: [{url: %q, bucket: vmapp-eastus}]\n  - name: westus\n    endpoints: [{url: %q, bucket: vmapp-westus}]\nreplication:\n  partConcurrency: 1\n  bandwidthMBps: 16\n",
		fleetRegion, east.Endpoint(), west.Endpoint())
	if err := os.WriteFile(regions, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"VMAPP_S3_ACCESS_KEY=" + accessKey, "VMAPP_S3_SECRET_KEY=" + secretKey}
	bin := buildCmd(t, "vmappd")
	ctx := ctxFor(t, 20*time.Minute)

	rates := map[string]loadResult{}
	var writes, resumes []time.Duration
	for _, mode := range []struct {
		name  string
		nodes int
	}{{"single", 0}, {"oneNode", 1}, {"threeNodes", 3}} {
		bc := startBenchCluster(t, bin, regions, mode.nodes, env...)
		pid := bc.nodes[0].d.cmd.Process.Pid
		if mode.nodes > 0 {
			pid = bc.leader(t).d.cmd.Process.Pid
		}
		rates[mode.name] = writeLoad(t, ctx, bc, mode.name, pid, dur, conc)
		if mode.nodes == 3 {
			for r := range rounds {
				w, res := failover(t, ctx, bc, r)
				writes, resumes = append(writes, w), append(resumes, res)
			}
		}
		for _, n := range bc.nodes {
			if n.d != nil {
				n.d.cmd.Process.Kill()
				n.d.cmd.Wait()
			}
		}
	}
	single, one, three := rates["single"], rates["oneNode"], rates["threeNodes"]
	ratio := three.perSecond() / single.perSecond()
	secs := func(ds []time.Duration) []float64 {
		var out []float64
		for _, d := range ds {
			out = append(out, round(d.Seconds(), 3))
		}
		return out
	}
	median := func(ds []time.Duration) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return round(s[len(s)/2].Seconds(), 3)
	}
	report.Scenarios["cluster"] = Result{
		"concurrency":                       conc,
		"durationSeconds":                   dur.Seconds(),
		"singleWrites":                      single.Calls,
		"singleWritesPerSecond":             round(single.perSecond(), 0),
		"singleLatencyMs":                   latencyMS(single.Latency),
		"oneNodeWrites":                     one.Calls,
		"oneNodeWritesPerSecond":            round(one.perSecond(), 0),
		"oneNodeLatencyMs":                  latencyMS(one.Latency),
		"threeNodesWrites":                  three.Calls,
		"threeNodesWritesPerSecond":         round(three.perSecond(), 0),
		"threeNodesLatencyMs":               latencyMS(three.Latency),
		"ratio":                             round(ratio, 2),
		"oneNodeRatio":                      round(one.perSecond()/single.perSecond(), 2),
		"failoverRounds":                    rounds,
		"failoverFirstWriteSeconds":         secs(writes),
		"failoverReplicationResumedSeconds": secs(resumes),
		"failoverFirstWriteSecondsMedian":   median(writes),
		"failoverReplicationResumedMedian":  median(resumes),
		"failoverGoalSeconds":               5,
		"baselineName":                      "a single vmappd (no raft log)",
		"vmapp": fmt.Sprintf("3 nodes: %.0f writes/s (p99 %.1f ms); failover: first write %.2f s, replication resumed %.2f s (median of %d)",
			three.perSecond(), ms(percentile(three.Latency, 99)), median(writes), median(resumes), rounds),
		"baseline": fmt.Sprintf("%.0f writes/s (p99 %.1f ms) (single vmappd)", single.perSecond(), ms(percentile(single.Latency, 99))),
		"notes": fmt.Sprintf("CreateVersion and SetApplication alternating, %d callers, %.0f s each, the client given every node's address (followers forward to the leader); one-node cluster %.0f writes/s (ratio %.2f: the raft log's cost); failover with raft's default timeouts on loopback, goal < 5 s; replication resumed = westus's bytes done grow past the kill's (one 8 MiB part at 16 MB/s included)",
			conc, dur.Seconds(), one.perSecond(), one.perSecond()/single.perSecond()),
	}
}
