package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/metricstest"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/daemon"
)

var metricsRE = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)

// observed is a running vmappd with its health service and metrics.
type observed struct {
	*proc
	t       *testing.T
	c       *client.Client
	health  healthpb.HealthClient
	metrics string // host:port of /metrics, /healthz and /readyz
}

func (o *observed) status(service string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := o.health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return err.Error()
	}
	return r.Status.String()
}

// waitStatus waits until service's health is want (the probes run every
// 100 ms; the deadline only guards against a hang).
func (o *observed) waitStatus(service, want string) {
	o.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for got := o.status(service); got != want; got = o.status(service) {
		if time.Now().After(deadline) {
			o.t.Fatalf("health of %q is %s, want %s\n%s", service, got, want, o.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSample waits until series is want on /metrics; the deadline only
// guards against a hang.
func (o *observed) waitSample(series, want string) {
	o.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for got := o.sample(series); got != want; got = o.sample(series) {
		if time.Now().After(deadline) {
			o.t.Fatalf("%s is %q, want %s", series, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// get GETs path on the metrics port: its status code and body.
func (o *observed) get(path string) (int, string) {
	o.t.Helper()
	return metricstest.Get(o.t, o.metrics, path)
}

// sample returns the value of series on /metrics ("" when absent).
func (o *observed) sample(series string) string {
	o.t.Helper()
	_, body := o.get("/metrics")
	return metricstest.Sample(body, series)
}

// tmpfs mounts a file system of size bytes on a new directory, so that
// the test can fill it; "" where the test may not mount (not root).
func tmpfs(t *testing.T, size int) string {
	dir := t.TempDir()
	if err := syscall.Mount("vmappd-test", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Logf("no tmpfs (%v): the full-disk check is skipped", err)
		return ""
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// fill writes to dir until its file system is full.
func fill(t *testing.T, dir string) string {
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return path
		}
	}
}

// TestHealthAndMetrics runs vmappd over two regions of real MinIO and
// checks that its health follows what happens to it, and that its
// metrics pass Prometheus' linter:
//   - everything SERVING, /healthz and /readyz 200;
//   - a version published to both regions: replication metrics, each
//     region's series there before anything failed, promlint clean;
//   - westus's MinIO stopped: vmapp.region.westus NOT_SERVING (and
//     /readyz?service= 503), vmapp_store_up 0 and store errors counted
//     for it, eastus and vmappd itself still SERVING; started: SERVING;
//   - the data directory's file system full: vmappd NOT_SERVING, /readyz
//     503 saying why; space freed: SERVING;
//   - SIGTERM with a drain delay: NOT_SERVING while calls are still
//     answered; a second SIGTERM ends it.
func TestHealthAndMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the vmappd binary and runs MinIO")
	}
	east := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	west := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	dir := t.TempDir()
	regions := filepath.Join(dir, "regions.yaml")
	writeFileT(t, regions, fmt.Sprintf(`regions:
  - name: eastus
    endpoints: [{url: %q, bucket: vmapp-eastus}]
  - name: westus
    endpoints: [{url: %q, bucket: vmapp-westus}]
`, east.Endpoint(), west.Endpoint()))
	data := tmpfs(t, 8<<20)
	full := data != ""
	if !full {
		data = filepath.Join(dir, "data")
	}
	p := start(t, build(t), data, regions, "--metrics", "127.0.0.1:0", "--health-interval", "100ms", "--drain-delay", "10m")
	m := metricsRE.FindStringSubmatch(p.output())
	if m == nil {
		t.Fatalf("no metrics address in the log:\n%s", p.output())
	}
	c, err := client.New(p.addr, client.Options{Token: p.token})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := &observed{proc: p, t: t, c: c, health: healthpb.NewHealthClient(c.Conn()), metrics: m[1]}

	for _, s := range []string{"", pb.CatalogService_ServiceDesc.ServiceName, daemon.RegionService("eastus"), daemon.RegionService("westus")} {
		o.waitStatus(s, "SERVING")
	}
	if code, body := o.get("/healthz"); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	if code, body := o.get("/readyz"); code != 200 || strings.TrimSpace(body) != "SERVING" {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if code, body := o.get("/readyz?service=vmapp.region.nowhere"); code != 404 {
		t.Fatalf("/readyz of an unknown service: %d %s", code, body)
	}
	for _, s := range []string{`vmapp_replica_copy_attempts_total{region="westus",result="failed"}`, `vmapp_store_errors_total{endpoint="0",region="westus"}`} {
		if v := o.sample(s); v != "0" {
			t.Errorf("%s is %q before anything failed, want 0", s, v)
		}
	}
	publish(t, c, dir)
	reportInstalled(t, c, p.addr, "vm1", "eastus")
	// The replicator counts just after the state says Completed: wait.
	for series, want := range map[string]string{"vmapp_upload_bytes_total": "5000", "vmapp_agents_connected": "0",
		`vmapp_applications{region="eastus",state="installed"}`: "1",
		`vmapp_replicas{region="westus",state="completed"}`:     "1", `vmapp_replication_lag_seconds_count{region="westus"}`: "1"} {
		o.waitSample(series, want)
	}
	_, body := o.get("/metrics")
	metricstest.Lint(t, "vmappd", body)
	exposed := metricstest.Exposed(body)
	for _, n := range metricstest.Names(metricstest.Exprs(t), "") {
		switch {
		case strings.HasPrefix(n, "vmapp_agent_"): // the agent's: its own test
		case strings.HasPrefix(n, "vmapp_raft_"): // a cluster node's
			if !clusterMetric(t, n) {
				t.Errorf("the dashboard or the alerts use %s, which no vmappd node exposes", n)
			}
		case !exposed[n]:
			t.Errorf("the dashboard or the alerts use %s, which vmappd doesn't expose", n)
		}
	}

	west.Stop(t)
	o.waitStatus(daemon.RegionService("westus"), "NOT_SERVING")
	if code, body := o.get("/readyz?service=vmapp.region.westus"); code != 503 {
		t.Errorf("/readyz?service=vmapp.region.westus with westus down: %d %s", code, body)
	}
	if v := o.sample(`vmapp_store_up{endpoint="0",region="westus"}`); v != "0" {
		t.Errorf("vmapp_store_up of westus is %q while it is down", v)
	}
	if v := o.sample(`vmapp_store_errors_total{endpoint="0",region="westus"}`); v == "0" || v == "" {
		t.Errorf("no store errors counted for westus while it is down: %q", v)
	}
	for _, s := range []string{"", daemon.RegionService("eastus")} {
		if got := o.status(s); got != "SERVING" {
			t.Errorf("health of %q is %s while westus is down", s, got)
		}
	}
	west.Restart(t)
	o.waitStatus(daemon.RegionService("westus"), "SERVING")

	if full {
		filler := fill(t, data)
		o.waitStatus("", "NOT_SERVING")
		if code, body := o.get("/readyz"); code != 503 || !strings.Contains(body, "state: the data directory takes no writes") {
			t.Errorf("/readyz with the disk full: %d %s", code, body)
		}
		if v := o.sample("vmapp_state_writable"); v != "0" {
			t.Errorf("vmapp_state_writable is %q with the disk full", v)
		}
		os.Remove(filler)
		o.waitStatus("", "SERVING")
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	o.waitStatus("", "NOT_SERVING")
	if code, body := o.get("/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Catalog.ListGalleries(ctx, &pb.ListGalleriesRequest{}); err != nil {
		t.Errorf("a call while draining: %v", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		t.Fatalf("vmappd still runs after a second SIGTERM:\n%s", p.output())
	}
}

// clusterMetric reports whether a cluster node exposes name: this test's
// vmappd is no cluster node, so the name is looked for where the cluster
// package registers its metrics.
func clusterMetric(t *testing.T, name string) bool {
	b, err := os.ReadFile(metricstest.RepoPath("cluster/metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), `"`+name+`"`)
}

func writeFileT(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// publish uploads a small version to both regions and waits until it is
// replicated.
func publish(t *testing.T, c *client.Client, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	must := must(t)
	createVersion(ctx, t, c, &pb.TargetRegion{Name: "eastus"}, &pb.TargetRegion{Name: "westus"})
	path := filepath.Join(dir, "app.bin")
	writeFileT(t, path, strings.Repeat("vmapp", 1000))
	must(c.Upload(ctx, "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{}))
	for {
		r, err := c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
		must(r, err)
		if r.Version.GetReplicationStatus().GetAggregatedState() == "Completed" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// createVersion creates g/a/1.0.0 in eastus for Linux, to targets.
func createVersion(ctx context.Context, t *testing.T, c *client.Client, targets ...*pb.TargetRegion) {
	t.Helper()
	must := must(t)
	must(c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "eastus"}}))
	must(c.Catalog.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "a", Location: "eastus", SupportedOsType: "Linux"}}))
	must(c.Catalog.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: "g", Application: "a", Name: "1.0.0", Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{
			ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"},
			TargetRegions: targets,
		},
	}}))
}

// reportInstalled makes a machine in region and reports, with its own
// credential, g/a 1.0.0 Installed on it.
func reportInstalled(t *testing.T, c *client.Client, addr, machine, region string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := pb.NewFleetServiceClient(c.Conn()).CreateMachine(ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: machine, Region: region, OsType: "Linux"}})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := client.New(addr, client.Options{Token: r.AgentToken})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	_, err = pb.NewFleetServiceClient(agent.Conn()).ReportStatus(ctx, &pb.ReportStatusRequest{Machine: machine, InstanceView: &pb.InstanceView{
		Applications: []*pb.ApplicationStatus{{Application: "g/a", Version: "1.0.0", State: "Installed", Operation: "install"}}}})
	if err != nil {
		t.Fatal(err)
	}
}
