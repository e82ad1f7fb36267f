//go:build bench

package bench

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// fleetEnv is one region ("eastus") of MinIO endpoints behind a vmappd
// binary, with a client.
type fleetEnv struct {
	bin     string // the vmappd binary
	d       *vmappd
	pid     int
	c       *client.Client
	fleet   pb.FleetServiceClient
	servers []*miniotest.Server
}

const fleetRegion = "eastus"

// startFleetEnv starts endpoints MinIO servers (in parallel), one region
// over them, and vmappd (with args).
func startFleetEnv(t testing.TB, endpoints int, args ...string) *fleetEnv {
	t.Helper()
	const accessKey, secretKey = "vmappbench", "vmappbenchsecret"
	e := &fleetEnv{servers: make([]*miniotest.Server, endpoints)}
	var wg sync.WaitGroup
	for i := range endpoints {
		wg.Go(func() { e.servers[i] = miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey)) })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var yaml strings.Builder
	fmt.Fprintf(&yaml, "regions:\n  - name: %s\n    endpoints:\n", fleetRegion)
	for _, s := range e.servers {
		fmt.Fprintf(&yaml, "      - {url: %q, bucket: vmapp-%s}\n", s.Endpoint(), fleetRegion)
	}
	regionsFile := filepath.Join(t.TempDir(), "regions.yaml")
	if err := os.WriteFile(regionsFile, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	e.bin = buildCmd(t, "vmappd")
	e.d = startVmappdArgs(t, e.bin, regionsFile, args, "VMAPP_S3_ACCESS_KEY="+accessKey, "VMAPP_S3_SECRET_KEY="+secretKey)
	e.pid = e.d.cmd.Process.Pid
	e.connect(t)
	return e
}

// connect gives e a client of its vmappd with the operator token.
func (e *fleetEnv) connect(t testing.TB) {
	t.Helper()
	c, err := client.New(e.d.addr, client.Options{Token: e.d.token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e.c, e.fleet = c, pb.NewFleetServiceClient(c.Conn())
}

// publish creates gallery/app (Linux) when missing and version with
// replicas replicas in the region, uploads path as its package and waits
// until replication completes. It returns the wall time of the wait.
func (e *fleetEnv) publish(t testing.TB, ctx context.Context, gallery, app, version, path string, replicas int32) time.Duration {
	t.Helper()
	return e.publishWith(t, ctx, gallery, app, version, path, replicas, &pb.UserArtifactManage{Install: "i", Remove: "r"})
}

// publishWith is publish with the version's install and remove commands.
func (e *fleetEnv) publishWith(t testing.TB, ctx context.Context, gallery, app, version, path string, replicas int32, manage *pb.UserArtifactManage) time.Duration {
	t.Helper()
	sum, _, err := client.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: gallery, Location: fleetRegion}}); err != nil && !errs.Is(err, errs.AlreadyExists) {
		t.Fatal(err)
	}
	if _, err := e.c.Catalog.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: gallery, Name: app, Location: fleetRegion, SupportedOsType: "Linux"}}); err != nil && !errs.Is(err, errs.AlreadyExists) {
		t.Fatal(err)
	}
	if _, err := e.c.Catalog.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: gallery, Application: app, Name: version, Location: fleetRegion,
		PublishingProfile: &pb.PublishingProfile{
			ManageActions: manage,
			TargetRegions: []*pb.TargetRegion{{Name: fleetRegion, RegionalReplicaCount: proto.Int32(replicas)}},
		},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Upload(ctx, gallery, app, version, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		r, err := e.c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: gallery, Application: app, Version: version})
		if err != nil {
			t.Fatal(err)
		}
		if r.Version.GetReplicationStatus().GetAggregatedState() == pb.ReplicationCompleted {
			return time.Since(start)
		}
		if ctx.Err() != nil {
			t.Fatalf("replication of %s/%s/%s did not complete: %v", gallery, app, version, r.Version.GetReplicationStatus())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createMachines creates scale set name (Linux, in the region) and n
// instances name-0 … name-(n-1), conc at a time. It returns the machine
// names and the wall time of the CreateMachine calls.
func (e *fleetEnv) createMachines(t testing.TB, ctx context.Context, name string, n, conc int) ([]string, time.Duration) {
	t.Helper()
	names, _, took := e.createMachinesWithTokens(t, ctx, name, n, conc)
	return names, took
}

// forEach runs f(0) … f(n-1), conc at a time, and returns the first error.
func forEach(ctx context.Context, n, conc int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for i := range next {
				if err := f(ctx, i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// loadResult is a closed-loop load run: calls completed and their
// latencies.
type loadResult struct {
	Calls    int
	Seconds  float64
	CPU      float64 // vmappd CPU seconds during the run
	Latency  []time.Duration
	ErrCount int
}

func (r loadResult) perSecond() float64 { return float64(r.Calls) / r.Seconds }

// hammer runs conc workers calling call in a loop for d (closed loop: a
// worker calls again as soon as its call returns) and measures vmappd's
// CPU (pid) meanwhile. Errors are counted; the first is returned.
func hammer(ctx context.Context, pid int, d time.Duration, conc int, call func(ctx context.Context, worker int) error) (loadResult, error) {
	var (
		mu    sync.Mutex
		res   loadResult
		first error
		wg    sync.WaitGroup
	)
	cpu0 := cpuSeconds(pid)
	start := time.Now()
	deadline := start.Add(d)
	for w := range conc {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			errCount := 0
			var werr error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if err := call(ctx, w); err != nil {
					errCount++
					if werr == nil {
						werr = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.Latency = append(res.Latency, lat...)
			res.ErrCount += errCount
			if first == nil {
				first = werr
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.CPU = cpuSeconds(pid) - cpu0
	res.Calls = len(res.Latency)
	return res, first
}

// percentile is the p-th percentile (0 < p ≤ 100, nearest rank) of ds,
// which it sorts.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	k := int(float64(len(ds))*p/100+0.9999999) - 1
	return ds[min(max(k, 0), len(ds)-1)]
}

// ms is d in milliseconds, to 3 places.
func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

// latencyMS is p50/p99/max of ds in milliseconds, for the JSON.
func latencyMS(ds []time.Duration) map[string]float64 {
	return map[string]float64{"p50": ms(percentile(ds, 50)), "p99": ms(percentile(ds, 99)), "max": ms(percentile(ds, 100))}
}

// currentRSS is a process's resident set now (VmRSS), in bytes.
func currentRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// resetPeakRSS makes VmHWM start again from VmRSS; false when the kernel
// refused.
func resetPeakRSS(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// machineHTTPClient is what one agent process would have: its own
// connection pool, sized like client.Download's default.
func machineHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	tr.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{Transport: tr}
}

// plotConvergence draws the fraction of machines converged against
// milliseconds since SetApplication as a step line to a PNG.
func plotConvergence(path string, ds []time.Duration) error {
	if len(ds) == 0 {
		return nil
	}
	ds = slices.Sorted(slices.Values(ds))
	s := series{xs: []float64{0}, ys: []float64{0}, color: plotBlue, step: true}
	for i, d := range ds {
		s.xs = append(s.xs, float64(d)/float64(time.Millisecond))
		s.ys = append(s.ys, 100*float64(i+1)/float64(len(ds)))
	}
	return writePlot(path, fmt.Sprintf("Fleet convergence: %d machines", len(ds)), "ms since SetApplication", "% of machines converged", []series{s}, func(p *plot.Plot) {
		p.X.Min, p.Y.Min, p.Y.Max = 0, 0, 100
	})
}

// createMachinesWithTokens is createMachines keeping each machine's agent
// credential.
func (e *fleetEnv) createMachinesWithTokens(t testing.TB, ctx context.Context, name string, n, conc int) ([]string, []string, time.Duration) {
	t.Helper()
	if _, err := e.fleet.CreateScaleSet(ctx, &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: name, Region: fleetRegion, OsType: "Linux"}}); err != nil {
		t.Fatal(err)
	}
	names, tokens := make([]string, n), make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", name, i)
	}
	start := time.Now()
	err := forEach(ctx, n, conc, func(ctx context.Context, i int) error {
		var err error
		tokens[i], err = e.createMachine(ctx, names[i], name)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names, tokens, time.Since(start)
}

// createMachine creates machine name in scaleSet and returns its agent
// credential. On a cluster a create's outcome may be unknown to the node
// (Aborted: the leader changed while committing it), and the client SDK
// retries a call that failed on the way (Unavailable), which may have
// committed: the machine, this run's own, is then created again or found
// created (AlreadyExists), and given a new credential.
func (e *fleetEnv) createMachine(ctx context.Context, name, scaleSet string) (string, error) {
	for attempt := 1; ; attempt++ {
		r, err := e.fleet.CreateMachine(ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: name, ScaleSet: scaleSet}})
		switch {
		case err == nil && r.AgentToken == "":
			return "", fmt.Errorf("machine %s: no agent credential", name)
		case err == nil:
			return r.AgentToken, nil
		case errs.Is(err, errs.AlreadyExists):
			ir, err := pb.NewAccessServiceClient(e.c.Conn()).IssueAgentToken(ctx, &pb.IssueAgentTokenRequest{Machine: name})
			return ir.GetAgentToken(), err
		case !errs.Is(err, errs.Aborted) || attempt == 5:
			return "", fmt.Errorf("machine %s: %w", name, err)
		}
	}
}

// setApplication sets the version ref (gallery/app/version) on scale set
// scaleSet's profile.
func (e *fleetEnv) setApplication(t testing.TB, ctx context.Context, scaleSet, ref string) {
	t.Helper()
	if _, err := e.fleet.SetApplication(ctx, &pb.SetApplicationRequest{
		Target:      &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: scaleSet}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: ref},
	}); err != nil {
		t.Fatal(err)
	}
}
