package deploy

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/topology"
)

// liveVar turns the compose test on (make test-compose sets it).
const liveVar = "VMAPP_COMPOSE"

// The deadlines of waits are failure guards against a hang, never what a
// test checks. Replication retries back off up to 5 minutes.
const (
	waitDeadline    = 6 * time.Minute
	commandDeadline = 15 * time.Minute
)

// live is the compose topology of one test run: its own project name,
// image tag and loopback address for the published ports, so that it
// touches nothing else on the engine or the machine.
type live struct {
	t       *testing.T
	compose []string // docker compose, or docker-compose
	project string
	tag     string
	ip      string // the published ports' address
	dir     string // packages, the override file, the token
	env     []string
	files   []string          // -f arguments
	ids     map[string]string // service -> container id
	api     *client.Client    // the host's connection to the published API
}

// TestComposeLive builds the images with no registry (make images), starts
// deploy/docker-compose.yml, publishes from the cli container, and checks
// what operators count on through faults made with docker itself: a
// region's MinIO killed in the middle of a replication, a region cut off
// from the control network and joined again, every vmappd restarted, a
// node back at another IP, an agent killed in the middle of an install;
// then that `down -v` leaves nothing of the project behind.
func TestComposeLive(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the compose test builds images and runs the topology's containers")
	}
	if os.Getenv(liveVar) == "" {
		t.Skipf("the compose test runs with make test-compose (%s=1): it builds images and runs the topology's 12 containers for minutes", liveVar)
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine answers (docker info: %v): the compose test needs one\n%s", err, tail(string(out), 5))
	}
	e := start(t)
	steps := []struct {
		name string
		fn   func(*live)
	}{
		{"publish and install", (*live).publishAndInstall},
		{"MinIO killed mid-replication", (*live).minioKilled},
		{"region cut off", (*live).regionCut},
		{"vmappd restarted", (*live).vmappdRestarted},
		{"agent killed mid-install", (*live).agentKilled},
		{"down leaves nothing", (*live).down},
	}
	for _, s := range steps {
		began := time.Now()
		ok := t.Run(s.name, func(t *testing.T) {
			sub := *e
			sub.t = t
			s.fn(&sub)
		})
		t.Logf("%s: %s", s.name, time.Since(began).Round(time.Second))
		if !ok {
			return
		}
	}
}

// start builds the images, brings the topology up and connects to it.
func start(t *testing.T) *live {
	id := make([]byte, 4)
	rand.Read(id)
	suffix := hex.EncodeToString(id)
	e := &live{t: t, project: "vmapptest" + suffix, tag: "test-" + suffix, dir: t.TempDir(), ids: map[string]string{},
		ip: fmt.Sprintf("127.%d.%d.%d", 1+id[0]%254, id[1], 1+id[2]%254)}
	e.compose = []string{"docker-compose"}
	if exec.Command("docker", "compose", "version").Run() == nil {
		e.compose = []string{"docker", "compose"}
	}
	e.env = append(os.Environ(), "VMAPP_TAG="+e.tag, "VMAPP_PUBLISH_IP="+e.ip)
	t.Logf("project %s, images tagged %s, ports published on %s, with %s", e.project, e.tag, e.ip, strings.Join(e.compose, " "))

	began := time.Now()
	t.Cleanup(func() {
		for _, image := range []string{"minio", "build", "vmappd", "agent"} {
			e.docker("rmi", "vmapp/"+image+":"+e.tag)
		}
	})
	if out, err := e.run("./docker/images.sh"); err != nil {
		t.Fatalf("make images: %v\n%s", err, tail(out, 40))
	}
	t.Logf("make images: %s", time.Since(began).Round(time.Second))

	e.files = []string{"-f", "docker-compose.yml", "-f", e.override()}
	began = time.Now()
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := e.dc("logs", "--no-color", "--tail", "40")
			t.Logf("the end of the containers' logs:\n%s", out)
		}
		e.dc("down", "-v", "--remove-orphans")
	})
	if out, err := e.dc("up", "-d"); err != nil {
		ps, _ := e.dc("ps")
		t.Fatalf("up: %v\n%s\n%s", err, tail(out, 20), ps)
	}
	t.Logf("up: %s", time.Since(began).Round(time.Second))
	for _, s := range []string{"minio-eastus", "minio-westus", "minio-northeurope", "vmappd-1", "vmappd-2", "vmappd-3",
		"agent-vm1", "agent-vm2", "agent-web-0", "agent-web-1"} {
		out, err := e.dc("ps", "-q", s)
		if err != nil || strings.TrimSpace(out) == "" {
			t.Fatalf("no container for %s: %v %s", s, err, out)
		}
		e.ids[s] = strings.TrimSpace(out)
	}

	token := filepath.Join(e.dir, "admin.token")
	if out, err := e.docker("cp", e.ids["vmappd-1"]+":/var/lib/vmappd/admin.token", token); err != nil {
		t.Fatalf("copying the operator's token out of vmappd-1's volume: %v\n%s", err, out)
	}
	tok, err := client.ReadTokenFile(token)
	if err != nil {
		t.Fatal(err)
	}
	addrs := fmt.Sprintf("%[1]s:7443,%[1]s:7445,%[1]s:7447", e.ip)
	if e.api, err = client.New(addrs, client.Options{Token: tok}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.api.Close() })
	e.eventually("a leader and three voters named by host", func() (bool, string) {
		st, err := e.cluster()
		return err == nil && st.LeaderId != "" && len(st.Nodes) == 3 && allNamed(st), fmt.Sprint(st, err)
	})
	return e
}

// override mounts a regions file that slows replication into northeurope
// (2 MB/s), so that a MinIO can be killed in the middle of it; otherwise it
// is deploy/docker/regions.yaml.
func (e *live) override() string {
	regions := `regions:
  - name: eastus
    endpoints:
      - {url: "http://minio-eastus:9000", bucket: vmapp-eastus}
  - name: westus
    endpoints:
      - {url: "http://minio-westus:9000", bucket: vmapp-westus}
  - name: northeurope
    endpoints:
      - {url: "http://minio-northeurope:9000", bucket: vmapp-northeurope, bandwidthMBps: 2}
`
	path := filepath.Join(e.dir, "regions.yaml")
	writeFile(e.t, path, []byte(regions))
	ours, err1 := topology.Load(path)
	theirs, err2 := topology.Load("docker/regions.yaml")
	if err1 != nil || err2 != nil || fmt.Sprint(endpoints(ours)) != fmt.Sprint(endpoints(theirs)) {
		e.t.Fatalf("the test's regions differ from docker/regions.yaml's: %v %v (%v, %v)", endpoints(ours), endpoints(theirs), err1, err2)
	}
	var b strings.Builder
	b.WriteString("services:\n")
	for _, n := range []string{"vmappd-1", "vmappd-2", "vmappd-3"} {
		fmt.Fprintf(&b, "  %s:\n    volumes: [%q]\n", n, path+":/etc/vmapp/regions.yaml:ro")
	}
	over := filepath.Join(e.dir, "override.yml")
	writeFile(e.t, over, []byte(b.String()))
	return over
}

func endpoints(t *topology.Topology) []string {
	var out []string
	for _, r := range t.Regions {
		for _, ep := range r.Endpoints {
			out = append(out, r.Name+"="+ep.URL+"/"+ep.Bucket)
		}
	}
	return out
}

// publishAndInstall publishes hello 1.0.0 from the cli container to the
// three regions, deploys it to the four machines, and finds it installed
// in each agent container.
func (e *live) publishAndInstall() {
	e.cli("gallery", "create", "demo", "--location", "eastus")
	e.cli("app", "create", "--gallery", "demo", "hello", "--os", "linux")
	out := e.publishHello("1.0.0", "--wait", "--target-region", "eastus", "--target-region", "westus", "--target-region", "northeurope")
	e.t.Logf("version create --wait:\n%s", tail(out, 5))
	for region, st := range e.replication("hello", "1.0.0") {
		if st.State != "Completed" || st.BytesDone != st.BytesTotal {
			e.t.Errorf("hello 1.0.0 in %s after --wait: %v", region, st)
		}
	}
	e.cli("vm", "app", "set", "--vm", "vm1", "--app", "demo/hello/1.0.0", "--order", "1")
	e.cli("vm", "app", "set", "--vm", "vm2", "--app", "demo/hello/1.0.0", "--order", "1")
	e.cli("vmss", "app", "set", "--vmss", "web", "--app", "demo/hello/latest", "--enable-automatic-upgrade")
	e.waitInstalled("hello", "1.0.0", "vm1", "vm2", "web-0", "web-1")
	for _, vm := range []string{"vm1", "vm2", "web-0", "web-1"} {
		e.helloIs(vm, "1.0.0")
	}
}

// minioKilled kills northeurope's MinIO while a version is being copied
// into it; the replicator sees the copy fail, and once MinIO is started
// again the replica is completed and reads back whole.
func (e *live) minioKilled() {
	data := make([]byte, 24<<20)
	rand.Read(data)
	writeFile(e.t, filepath.Join(e.dir, "big.bin"), data)
	e.cli("app", "create", "--gallery", "demo", "big", "--os", "linux")
	failed := e.metric(`vmapp_replica_copy_attempts_total{region="northeurope",result="failed"}`)
	e.cli("version", "create", "--gallery", "demo", "--app", "big", "1.0.0", "--location", "eastus",
		"--install", "true", "--remove", "true", "--target-region", "eastus", "--target-region", "northeurope", "--package", "/pkg/big.bin")
	e.eventually("northeurope copying big 1.0.0", func() (bool, string) {
		st := e.replication("big", "1.0.0")["northeurope"]
		if st.State == "Completed" {
			e.t.Fatalf("big 1.0.0 reached northeurope before MinIO could be killed: %v", st)
		}
		return st.BytesDone > 0, fmt.Sprint(st)
	})
	e.mustDocker("kill", e.ids["minio-northeurope"])
	e.eventually("the replicator sees the copy into northeurope fail", func() (bool, string) {
		n := e.metric(`vmapp_replica_copy_attempts_total{region="northeurope",result="failed"}`)
		return n > failed, fmt.Sprintf("failed attempts %v, %v before", n, failed)
	})
	e.t.Logf("northeurope killed at %v", e.replication("big", "1.0.0")["northeurope"])
	e.mustDocker("start", e.ids["minio-northeurope"])
	e.eventually("big 1.0.0 completed in northeurope", func() (bool, string) {
		st := e.replication("big", "1.0.0")["northeurope"]
		return st.State == "Completed" && st.BytesDone == st.BytesTotal, fmt.Sprint(st)
	})
	e.cli("version", "download", "--gallery", "demo", "--app", "big", "1.0.0", "--region", "northeurope", "--out", "/pkg/big.out")
	got, err := os.ReadFile(filepath.Join(e.dir, "big.out"))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		e.t.Fatalf("big 1.0.0 read back from northeurope differs from what was published (%d bytes, %v)", len(got), err)
	}
}

// regionCut disconnects westus — its MinIO and its two agents — from the
// control network while hello 1.1.0 is published: eastus installs it,
// westus is not replicated and keeps 1.0.0; once reconnected, at other
// IPs (their old connections are dead without a word), westus is
// replicated and the scale set upgrades.
func (e *live) regionCut() {
	cut := []string{"minio-westus", "agent-web-0", "agent-web-1"}
	control := e.network("control")
	var ips []string
	for _, s := range cut {
		ips = append(ips, e.ip4(e.ids[s]))
		e.mustDocker("network", "disconnect", control, e.ids[s])
	}
	e.publishHello("1.1.0", "--target-region", "eastus", "--target-region", "westus")
	e.eventually("hello 1.1.0 completed in eastus", func() (bool, string) {
		st := e.replication("hello", "1.1.0")["eastus"]
		return st.State == "Completed", fmt.Sprint(st)
	})
	e.cli("vm", "app", "set", "--vm", "vm1", "--app", "demo/hello/1.1.0", "--order", "1")
	e.waitInstalled("hello", "1.1.0", "vm1")
	e.helloIs("vm1", "1.1.0")
	if st := e.replication("hello", "1.1.0")["westus"]; st.State == "Completed" {
		e.t.Fatalf("hello 1.1.0 replicated to westus while it was cut off: %v", st)
	}
	for _, vm := range []string{"web-0", "web-1"} {
		e.helloIs(vm, "1.0.0")
		if dirs := e.exec("agent-"+vm, "ls", "/var/lib/vmapp/demo/hello"); dirs != "1.0.0\n" {
			e.t.Errorf("%s installed %q while cut off", vm, dirs)
		}
	}
	release := e.takeIPs(ips...)
	for i, s := range cut {
		e.mustDocker("network", "connect", "--alias", s, control, e.ids[s])
		if ip := e.ip4(e.ids[s]); ip == ips[i] {
			e.t.Fatalf("%s came back at its old address %s", s, ip)
		}
	}
	release()
	e.waitInstalled("hello", "1.1.0", "vm1", "web-0", "web-1")
	for _, vm := range []string{"web-0", "web-1"} {
		e.helloIs(vm, "1.1.0")
		if dirs := e.exec("agent-"+vm, "ls", "/var/lib/vmapp/demo/hello"); dirs != "1.1.0\n" {
			e.t.Errorf("%s holds %q after its upgrade", vm, dirs)
		}
	}
}

// vmappdRestarted restarts every node at once (the state comes back from
// their volumes: nothing else holds it), then starts node 2 again at
// another IP (as a recreated container is), and publishes through the
// cluster.
func (e *live) vmappdRestarted() {
	before := e.inventory()
	nodes := []string{e.ids["vmappd-1"], e.ids["vmappd-2"], e.ids["vmappd-3"]}
	e.mustDocker(append([]string{"restart"}, nodes...)...)
	e.waitCluster()
	if after := e.inventory(); fmt.Sprint(after) != fmt.Sprint(before) {
		e.t.Errorf("inventory after the restart:\n%v\nbefore:\n%v", after, before)
	}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		if st := e.replication("hello", v); len(st) == 0 {
			e.t.Errorf("hello %s is gone after the restart", v)
		}
	}

	n2 := e.ids["vmappd-2"]
	old := e.ip4(n2)
	e.mustDocker("stop", n2)
	release := e.takeIPs(old)
	e.mustDocker("start", n2)
	release()
	if now := e.ip4(n2); now == old {
		e.t.Fatalf("vmappd-2 came back at its old address %s", old)
	}
	e.waitCluster()
	e.publishHello("1.2.0", "--wait", "--target-region", "eastus", "--target-region", "westus")
	e.waitInstalled("hello", "1.2.0", "web-0", "web-1")
	e.eventually("vmappd-2 caught up", func() (bool, string) {
		st, err := e.cluster()
		for _, n := range st.GetNodes() {
			if n.Id == "n2" {
				return err == nil && n.State == "Follower" && n.AppliedIndex == st.CommitIndex, fmt.Sprint(n)
			}
		}
		return false, fmt.Sprint(st, err)
	})
}

// agentKilled kills vm2's agent while an install command runs, and starts
// it again: the cut-short install runs again, once, and completes.
func (e *live) agentKilled() {
	const log, gate = "/var/lib/vmapp/slow.log", "/var/lib/vmapp/slow.gate"
	writeFile(e.t, filepath.Join(e.dir, "slow"), []byte("a package\n"))
	e.cli("app", "create", "--gallery", "demo", "slow", "--os", "linux")
	e.cli("version", "create", "--gallery", "demo", "--app", "slow", "1.0.0", "--location", "eastus", "--target-region", "eastus", "--wait",
		"--install", fmt.Sprintf("echo start >> %[1]s; until [ -e %[2]s ]; do sleep 0.2; done; echo done >> %[1]s", log, gate),
		"--remove", "true", "--package", "/pkg/slow")
	e.cli("vm", "app", "set", "--vm", "vm2", "--app", "demo/slow/1.0.0", "--order", "2")
	waitLog := func(want string) {
		e.eventually(fmt.Sprintf("vm2's install log is %q", want), func() (bool, string) {
			got, _ := e.docker("exec", e.ids["agent-vm2"], "cat", log)
			return got == want, got
		})
	}
	waitLog("start\n")
	e.mustDocker("kill", e.ids["agent-vm2"])
	e.mustDocker("start", e.ids["agent-vm2"])
	waitLog("start\nstart\n")
	e.exec("agent-vm2", "touch", gate)
	e.waitInstalled("slow", "1.0.0", "vm2")
	if got := e.exec("agent-vm2", "cat", log); got != "start\nstart\ndone\n" {
		e.t.Errorf("vm2's install log %q: want the cut-short run, then one complete run", got)
	}
	e.helloIs("vm2", "1.0.0")
}

// down removes the project, and nothing of it is left.
func (e *live) down() {
	if out, err := e.dc("down", "-v", "--remove-orphans"); err != nil {
		e.t.Fatalf("down -v: %v\n%s", err, out)
	}
	label := "label=com.docker.compose.project=" + e.project
	for _, kind := range [][]string{{"ps", "-a"}, {"network", "ls"}, {"volume", "ls"}} {
		out := e.mustDocker(append(kind, "-q", "--filter", label)...)
		if strings.TrimSpace(out) != "" {
			e.t.Errorf("docker %s after down -v: left %s", strings.Join(kind, " "), out)
		}
	}
}

// publishHello publishes hello VERSION (the demo's sample) from the cli
// container with the flags given.
func (e *live) publishHello(version string, flags ...string) string {
	pkg := "hello-" + version + ".tar.gz"
	helloPackage(e.t, version, filepath.Join(e.dir, pkg))
	return e.cli(append([]string{"version", "create", "--gallery", "demo", "--app", "hello", version, "--location", "eastus",
		"--install", "tar -xzf hello && ./install.sh", "--remove", "tar -xzf hello && ./remove.sh",
		"--update", "tar -xzf hello && ./update.sh", "--package", "/pkg/" + pkg}, flags...)...)
}

// helloIs checks that the hello installed on vm prints version.
func (e *live) helloIs(vm, version string) {
	e.t.Helper()
	if out := e.exec("agent-"+vm, "/var/lib/vmapp/bin/hello"); !strings.Contains(out, "sample "+version+" ") {
		e.t.Errorf("hello on %s: %q, want %s", vm, out, version)
	}
}

// waitInstalled waits until each machine reports app at version Installed.
func (e *live) waitInstalled(app, version string, machines ...string) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("demo/%s %s installed on %v", app, version, machines), func() (bool, string) {
		inv := e.inventory()
		var at []string
		for _, m := range machines {
			if inv[m+" demo/"+app] == version+" Installed" {
				at = append(at, m)
			}
		}
		return len(at) == len(machines), fmt.Sprint(inv)
	})
}

// waitCluster waits for the nodes to be healthy and the cluster to have a
// leader followed by the other two.
func (e *live) waitCluster() {
	e.t.Helper()
	e.eventually("three healthy nodes, a leader and two followers", func() (bool, string) {
		for _, n := range []string{"vmappd-1", "vmappd-2", "vmappd-3"} {
			if h, _ := e.docker("inspect", "-f", "{{.State.Health.Status}}", e.ids[n]); strings.TrimSpace(h) != "healthy" {
				return false, n + " is " + h
			}
		}
		st, err := e.cluster()
		var states []string
		for _, n := range st.GetNodes() {
			states = append(states, n.State)
		}
		slices.Sort(states)
		return err == nil && allNamed(st) && fmt.Sprint(states) == "[Follower Follower Leader]", fmt.Sprint(st, err)
	})
}

// takeIPs starts placeholder containers on the control network until they
// hold every one of ips (addresses containers left), so that those
// containers get others when they come back; release removes them (as the
// test's end does, if it comes first).
func (e *live) takeIPs(ips ...string) (release func()) {
	control := e.network("control")
	var names []string
	release = func() {
		if len(names) > 0 {
			e.docker(append([]string{"rm", "-f"}, names...)...)
			names = nil
		}
	}
	e.t.Cleanup(release)
	want := map[string]bool{}
	for _, ip := range ips {
		want[ip] = true
	}
	for i := 0; len(want) > 0; i++ {
		if i == 40 {
			e.t.Fatalf("40 placeholders, and %v are still free", want)
		}
		name := fmt.Sprintf("%s-placeholder-%d", e.project, len(names))
		names = append(names, name)
		e.mustDocker("run", "-d", "--name", name, "--network", control, "--entrypoint", "sleep", "vmapp/agent:"+e.tag, "1h")
		delete(want, e.ip4(name))
	}
	return release
}

// ip4 is a container's address on the control network.
func (e *live) ip4(container string) string {
	return strings.TrimSpace(e.mustDocker("inspect", "-f", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, e.network("control")), container))
}

// network is the name of one of the project's networks.
func (e *live) network(name string) string {
	out := e.mustDocker("network", "ls", "--format", "{{.Name}}", "--filter", "label=com.docker.compose.project="+e.project,
		"--filter", "label=com.docker.compose.network="+name)
	if n := strings.Fields(out); len(n) == 1 {
		return n[0]
	}
	e.t.Fatalf("network %s of %s: %q", name, e.project, out)
	return ""
}

// inventory maps "machine gallery/app" to "version state".
func (e *live) inventory() map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := pb.NewFleetServiceClient(e.api.Conn()).ListInventory(ctx, &pb.ListInventoryRequest{})
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	inv := map[string]string{}
	for _, en := range r.Entries {
		inv[en.Machine+" "+en.Status.GetApplication()] = en.Status.GetVersion() + " " + en.Status.GetState()
	}
	return inv
}

// replication is a version's replication by region.
func (e *live) replication(app, version string) map[string]*pb.RegionalReplicationStatus {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := map[string]*pb.RegionalReplicationStatus{}
	r, err := e.api.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: "demo", Application: app, Version: version})
	if err != nil {
		e.t.Logf("get %s %s: %v", app, version, err)
		return out
	}
	for _, s := range r.Version.GetReplicationStatus().GetSummary() {
		out[s.Region] = s
	}
	return out
}

func (e *live) cluster() (*pb.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := pb.NewClusterServiceClient(e.api.Conn()).GetClusterStatus(ctx, &pb.GetClusterStatusRequest{})
	return r.GetStatus(), err
}

// allNamed: the nodes' raft addresses are the host names given, not the
// containers' IPs (which change when a container is recreated).
func allNamed(st *pb.ClusterStatus) bool {
	for _, n := range st.GetNodes() {
		if n.RaftAddress != "vmappd-"+strings.TrimPrefix(n.Id, "n")+":7450" {
			return false
		}
	}
	return true
}

// metric sums a counter over the three nodes' /metrics.
func (e *live) metric(name string) float64 {
	var sum float64
	for _, port := range []int{7444, 7446, 7448} {
		resp, err := http.Get(fmt.Sprintf("http://%s:%d/metrics", e.ip, port))
		if err != nil {
			continue // a node restarting
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && (f[0] == name || strings.HasPrefix(f[0], name+"{") && !strings.HasSuffix(name, "}")) {
				v, _ := strconv.ParseFloat(f[1], 64)
				sum += v
			}
		}
		resp.Body.Close()
	}
	return sum
}

// cli runs the CLI in the cli container (as the operator), with the test's
// directory mounted at /pkg.
func (e *live) cli(args ...string) string {
	e.t.Helper()
	out, err := e.dc(append([]string{"run", "--rm", "-T", "-v", e.dir + ":/pkg", "cli"}, args...)...)
	if err != nil {
		e.t.Fatalf("vmapp %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// exec runs a command in a service's container.
func (e *live) exec(service string, cmd ...string) string {
	e.t.Helper()
	return e.mustDocker(append([]string{"exec", e.ids[service]}, cmd...)...)
}

func (e *live) dc(args ...string) (string, error) {
	return e.run(e.compose[0], append(append(append(slices.Clone(e.compose[1:]), "-p", e.project), e.files...), args...)...)
}

func (e *live) docker(args ...string) (string, error) {
	return e.run("docker", args...)
}

func (e *live) mustDocker(args ...string) string {
	e.t.Helper()
	out, err := e.docker(args...)
	if err != nil {
		e.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// run runs a command in this package's directory with the test's
// environment, bounded by commandDeadline; its output is stdout, and stderr
// too when it fails.
func (e *live) run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandDeadline)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Env = e.env
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// eventually polls cond until it holds; detail says what it saw last.
func (e *live) eventually(what string, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("never happened: %s; last seen: %s", what, detail)
		}
		time.Sleep(time.Second)
	}
}

// helloPackage writes the demo's sample application at version as a
// tarball, as deploy/local/demo.sh makes it.
func helloPackage(t *testing.T, version, path string) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	src := "local/sample/hello"
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == src {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(src, p)
		if d.IsDir() {
			return tw.WriteHeader(h)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b = bytes.ReplaceAll(b, []byte("@VERSION@"), []byte(version))
		h.Size = int64(len(b))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = gz.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, buf.Bytes())
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
