//go:build bench

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/client/download"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestControlPlane measures vmappd's cheap, frequent RPCs under a closed
// loop of 32 concurrent callers on one gRPC connection: GetVersion of a
// published version, and goal-state fetches (WatchGoalState opened for a
// machine whose scale set has the version in its profile, until its first
// message). The baseline is grpc.health.v1 Health/Check, the cheapest RPC
// vmappd serves, at the same concurrency, in the same run, before and
// after the others (A-B-A).
func TestControlPlane(t *testing.T) {
	dur := 10 * time.Second
	if quick {
		dur = 3 * time.Second
	}
	const conc = 32
	const gallery, app, version = "bench", "cp", "1.0.0"
	versionBytes := int64(1 << 20)
	e := startFleetEnv(t, 1)
	pid := e.pid
	ctx := ctxFor(t, 10*time.Minute)
	e.publish(t, ctx, gallery, app, version, randomFile(t, versionBytes), 1)
	names, _ := e.createMachines(t, ctx, "cp", conc, 8)
	if _, err := e.fleet.SetApplication(ctx, &pb.SetApplicationRequest{
		Target:      &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "cp"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: gallery + "/" + app + "/" + version},
	}); err != nil {
		t.Fatal(err)
	}
	health := healthpb.NewHealthClient(e.c.Conn())
	rssReset := resetPeakRSS(pid)
	cpu0 := cpuSeconds(pid)

	run := func(name string, call func(ctx context.Context, w int) error) loadResult {
		t.Helper()
		r, err := hammer(ctx, pid, dur, conc, call)
		if err != nil {
			t.Fatalf("%s: %d of %d calls failed, the first: %v", name, r.ErrCount, r.Calls+r.ErrCount, err)
		}
		t.Logf("%s: %d calls in %.1fs = %.0f/s; p50 %.3f ms, p99 %.3f ms; vmappd CPU %.2fs", name, r.Calls, r.Seconds, r.perSecond(),
			ms(percentile(r.Latency, 50)), ms(percentile(r.Latency, 99)), r.CPU)
		return r
	}
	healthCheck := func(ctx context.Context, _ int) error {
		_, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	// The baseline runs before and after (A-B-A): the rates drift.
	ha := run("health a", healthCheck)
	gv := run("GetVersion", func(ctx context.Context, _ int) error {
		r, err := e.c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: gallery, Application: app, Version: version})
		if err == nil && r.Version.GetPackage().GetSizeBytes() != versionBytes {
			err = fmt.Errorf("GetVersion returned package %v", r.Version.GetPackage())
		}
		return err
	})
	gs := run("goal state", func(ctx context.Context, w int) error {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := e.fleet.WatchGoalState(sctx, &pb.WatchGoalStateRequest{Machine: names[w]})
		if err != nil {
			return err
		}
		r, err := s.Recv()
		if err != nil {
			return err
		}
		if as := r.GoalState.GetApplications(); len(as) != 1 || as[0].Version != version || as[0].Package == nil {
			return fmt.Errorf("goal state of %s: %v", names[w], r.GoalState)
		}
		return nil
	})
	hb := run("health b", healthCheck)
	rss := peakRSS(pid)
	cpu := cpuSeconds(pid) - cpu0
	hc := loadResult{Calls: ha.Calls + hb.Calls, Seconds: ha.Seconds + hb.Seconds, CPU: ha.CPU + hb.CPU, Latency: append(ha.Latency, hb.Latency...)}

	ratio := gv.perSecond() / hc.perSecond()
	gsRatio := gs.perSecond() / hc.perSecond()
	perCall := func(r loadResult) float64 { return round(r.CPU/float64(r.Calls)*1e6, 1) }
	report.Scenarios["controlplane"] = Result{
		"concurrency":               conc,
		"durationSeconds":           dur.Seconds(),
		"versionBytes":              versionBytes,
		"healthCalls":               hc.Calls,
		"healthCallsPerSecond":      round(hc.perSecond(), 0),
		"healthLatencyMs":           latencyMS(hc.Latency),
		"healthRunsCallsPerSecond":  map[string]float64{"a": round(ha.perSecond(), 0), "b": round(hb.perSecond(), 0)},
		"getVersionCalls":           gv.Calls,
		"getVersionCallsPerSecond":  round(gv.perSecond(), 0),
		"getVersionLatencyMs":       latencyMS(gv.Latency),
		"goalStateFetches":          gs.Calls,
		"goalStateFetchesPerSecond": round(gs.perSecond(), 0),
		"goalStateLatencyMs":        latencyMS(gs.Latency),
		"ratio":                     round(ratio, 2),
		"goalStateRatio":            round(gsRatio, 2),
		"vmappdCPUSeconds":          round(cpu, 2),
		"vmappdCPUSecondsByRun":     map[string]float64{"health": round(hc.CPU, 2), "getVersion": round(gv.CPU, 2), "goalState": round(gs.CPU, 2)},
		"vmappdCPUMicrosPerCall":    map[string]float64{"health": perCall(hc), "getVersion": perCall(gv), "goalState": perCall(gs)},
		"vmappdPeakRSSBytes":        rss,
		"vmappdPeakRSSReset":        rssReset,
		"vmapp":                     fmt.Sprintf("GetVersion %.0f/s (p99 %.2f ms); goal state %.0f/s (p99 %.2f ms)", gv.perSecond(), ms(percentile(gv.Latency, 99)), gs.perSecond(), ms(percentile(gs.Latency, 99))),
		"baseline":                  fmt.Sprintf("%.0f/s (p99 %.2f ms) (health Check)", hc.perSecond(), ms(percentile(hc.Latency, 99))),
		"notes": fmt.Sprintf("%d concurrent callers, %.0f s each, one connection; higher ratio is better (≤ 1: health is the ceiling); goal state / health %.2f; vmappd peak RSS %d MiB",
			conc, dur.Seconds(), gsRatio, rss>>20),
		"baselineName": "grpc.health.v1 Health/Check",
	}
	t.Logf("controlplane: GetVersion %.0f/s, goal state %.0f/s, health %.0f/s; ratio %.2f, goal-state ratio %.2f; vmappd CPU %.1fs, peak RSS %d MiB",
		gv.perSecond(), gs.perSecond(), hc.perSecond(), ratio, gsRatio, cpu, rss>>20)
}

// TestFleet simulates a fleet: N machines of one scale set (1000, QUICK
// 100) hold their goal-state streams from this process (over a few gRPC
// connections); a package (64 MiB, QUICK 16 MiB) is published with three
// replicas over the region's two MinIO endpoints and set on the scale set.
// It measures how long each machine's stream takes to deliver the goal
// state with the package (convergence: absolute figures, no baseline),
// then D machines (100, QUICK 20) download it at once with client.Download
// and every machine reports it Installed. The download baseline is D
// concurrent plain HTTP GETs of the same presigned URLs (the replica each
// machine's ID picks), without verification, before and after vmapp
// (after a warm-up run), and once more with fsync.
func TestFleet(t *testing.T) {
	n, downloads, size := 1000, 100, int64(64<<20)
	idle := 4 * time.Second
	if quick {
		n, downloads, size = 100, 20, 16<<20
		idle = 2 * time.Second
	}
	const conns, replicas = 8, 3
	const gallery, app, version = "bench", "fleetapp", "1.0.0"
	const scaleSet = "fleet"
	e := startFleetEnv(t, 2)
	pid := e.pid
	ctx := ctxFor(t, 30*time.Minute)
	rssIdle := currentRSS(pid)
	rssReset := resetPeakRSS(pid)
	cpuStart := cpuSeconds(pid)
	cpuPhase := map[string]float64{}
	phase := func(name string, since float64) float64 {
		now := cpuSeconds(pid)
		cpuPhase[name] = round(now-since, 2)
		return now
	}

	// N machines.
	names, createTook := e.createMachines(t, ctx, scaleSet, n, 16)
	cpuMark := phase("createMachines", cpuStart)

	// N goal-state streams over a few connections; each goroutine holds
	// only its stream (no buffers of its own).
	var streamClients []pb.FleetServiceClient
	for range conns {
		c, err := client.New(e.d.addr, client.Options{Token: e.d.token})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		streamClients = append(streamClients, pb.NewFleetServiceClient(c.Conn()))
	}
	sctx, stopStreams := context.WithCancel(ctx)
	var (
		opened, converged sync.WaitGroup
		streams           sync.WaitGroup
		got               = make([]time.Time, n) // when machine i got the package's goal state
		errMu             sync.Mutex
		streamErr         error
	)
	defer func() { stopStreams(); streams.Wait() }()
	fail := func(err error) {
		errMu.Lock()
		if streamErr == nil {
			streamErr = err
		}
		errMu.Unlock()
	}
	opened.Add(n)
	converged.Add(n)
	openStart := time.Now()
	for i := range n {
		streams.Go(func() {
			first, done := true, false
			defer func() {
				if first {
					opened.Done()
				}
				if !done {
					converged.Done()
				}
			}()
			s, err := streamClients[i%conns].WatchGoalState(sctx, &pb.WatchGoalStateRequest{Machine: names[i]})
			if err != nil {
				fail(fmt.Errorf("WatchGoalState %s: %w", names[i], err))
				return
			}
			for {
				r, err := s.Recv()
				if err != nil {
					if sctx.Err() == nil {
						fail(fmt.Errorf("goal-state stream of %s: %w", names[i], err))
					}
					return
				}
				if first {
					first = false
					opened.Done()
				}
				for _, a := range r.GoalState.GetApplications() {
					if !done && a.Application == app && a.Version == version && a.Package != nil {
						got[i] = time.Now()
						done = true
						converged.Done()
					}
				}
			}
		})
	}
	if !waitTimeout(&opened, 2*time.Minute) {
		t.Fatal("the goal-state streams did not all open within 2 minutes")
	}
	openTook := time.Since(openStart)
	if streamErr != nil {
		t.Fatal(streamErr)
	}
	cpuMark = phase("openStreams", cpuMark)
	// The streams idle: vmappd rechecks each every 2 s.
	time.Sleep(idle)
	idleCPU := cpuSeconds(pid) - cpuMark
	cpuMark = phase("idleStreams", cpuMark)
	rssStreams := currentRSS(pid)
	t.Logf("%d machines created in %.2fs; %d streams open in %.2fs; idle: vmappd %.3f CPU s/s, RSS %d MiB (%d MiB before)",
		n, createTook.Seconds(), n, openTook.Seconds(), idleCPU/idle.Seconds(), rssStreams>>20, rssIdle>>20)

	// The package, replicated three times over the region's two endpoints.
	path := randomFile(t, size)
	replTook := e.publish(t, ctx, gallery, app, version, path, replicas)
	cpuMark = phase("publish", cpuMark)

	// Convergence: SetApplication on the scale set until every stream has
	// delivered the goal state with the package.
	setAt := time.Now()
	e.setApplication(t, ctx, scaleSet, gallery+"/"+app+"/"+version)
	setTook := time.Since(setAt)
	if !waitTimeout(&converged, 2*time.Minute) {
		k := 0
		for _, g := range got {
			if !g.IsZero() {
				k++
			}
		}
		t.Fatalf("only %d of %d machines got the goal state within 2 minutes (stream error: %v)", k, n, streamErr)
	}
	if streamErr != nil {
		t.Fatal(streamErr)
	}
	conv := make([]time.Duration, n)
	for i, g := range got {
		conv[i] = g.Sub(setAt)
	}
	convMS := latencyMS(conv)
	cpuMark = phase("converge", cpuMark)
	t.Logf("SetApplication %.1f ms; converged: p50 %.1f ms, p99 %.1f ms, max %.1f ms", ms(setTook), convMS["p50"], convMS["p99"], convMS["max"])
	plotPath := filepath.Join("results", "fleet-convergence.png")
	if err := plotConvergence(plotPath, conv); err != nil {
		t.Logf("convergence plot: %v", err)
		plotPath = ""
	}

	// Downloads: baseline (a), vmapp with ReportStatus, baseline (b).
	dir := t.TempDir()
	dlMachines := names[:downloads]
	baseline := func(run string, sync bool) float64 {
		t.Helper()
		syscall.Sync()
		took, err := baselineFleetDownloads(ctx, e, gallery, app, version, dlMachines, filepath.Join(dir, "baseline-"+run), size, sync)
		if err != nil {
			t.Fatalf("baseline %s: %v", run, err)
		}
		t.Logf("baseline %s: %d × %d MiB in %.2fs = %.0f MB/s", run, downloads, size>>20, took.Seconds(), mbps(int64(downloads)*size, took))
		return took.Seconds()
	}
	// A first run warms MinIO and the page cache up: the first is always
	// the slowest. It is recorded, not counted.
	baseWarm := baseline("warmup", false)
	baseA := baseline("a", false)
	cpuMark = cpuSeconds(pid)

	var (
		mu        sync.Mutex
		reportLat []time.Duration
		dlEnd     time.Duration
		dlLat     []time.Duration
		firstRep  = map[int32]int{}
	)
	installed := func(machine string, start, end time.Time) error {
		t0 := time.Now()
		_, err := e.fleet.ReportStatus(ctx, &pb.ReportStatusRequest{Machine: machine, InstanceView: &pb.InstanceView{
			AgentVersion: "bench",
			Applications: []*pb.ApplicationStatus{{
				Application: gallery + "/" + app, Version: version, State: "Installed", Operation: "install",
				BytesDone: size, BytesTotal: size, StartTime: timestamppb.New(start), EndTime: timestamppb.New(end), Attempts: 1,
			}},
		}})
		lat := time.Since(t0)
		mu.Lock()
		reportLat = append(reportLat, lat)
		mu.Unlock()
		return err
	}
	syscall.Sync()
	vmDir := filepath.Join(dir, "vmapp")
	if err := os.MkdirAll(vmDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dlStart := time.Now()
	err := forEach(ctx, downloads, downloads, func(ctx context.Context, i int) error {
		hc := machineHTTPClient()
		defer hc.CloseIdleConnections()
		start := time.Now()
		dest := filepath.Join(vmDir, dlMachines[i])
		plan, err := e.c.Download(ctx, gallery, app, version, dest, client.DownloadOptions{Region: fleetRegion, MachineID: dlMachines[i], HTTPClient: hc})
		end := time.Now()
		if err != nil {
			return fmt.Errorf("download on %s: %w", dlMachines[i], err)
		}
		if fi, err := os.Stat(dest); err != nil || fi.Size() != size {
			return fmt.Errorf("download on %s: %v, %v", dlMachines[i], fi, err)
		}
		mu.Lock()
		dlEnd = max(dlEnd, end.Sub(dlStart))
		dlLat = append(dlLat, end.Sub(start))
		if src := download.OrderSources(plan, dlMachines[i]); len(src) > 0 {
			firstRep[src[0].Replica]++
		}
		mu.Unlock()
		return installed(dlMachines[i], start, end)
	})
	if err != nil {
		t.Fatal(err)
	}
	dlCPU := cpuSeconds(pid) - cpuMark
	reportDuring := slices.Clone(reportLat)
	cpuMark = phase("downloads", cpuMark)
	os.RemoveAll(vmDir)
	// The machines that didn't download report too (as if they had), as
	// many at once as downloaded.
	rest := names[downloads:]
	now := time.Now()
	if err := forEach(ctx, len(rest), downloads, func(ctx context.Context, i int) error {
		return installed(rest[i], now, now)
	}); err != nil {
		t.Fatal(err)
	}
	cpuMark = phase("reportStatus", cpuMark)
	reportAfter := slices.Clone(reportLat[len(reportDuring):])
	rss := peakRSS(pid)
	cpuTotal := cpuMark - cpuStart

	// Every machine is Installed in the inventory.
	listed, token := 0, ""
	for {
		inv, err := e.fleet.ListInventory(ctx, &pb.ListInventoryRequest{Application: gallery + "/" + app, State: "Installed", PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		listed += len(inv.Entries)
		if token = inv.NextPageToken; token == "" {
			break
		}
	}
	if listed != n {
		t.Fatalf("inventory has %d machines with %s Installed, want %d", listed, app, n)
	}
	baseB := baseline("b", false)
	// The same GETs with an fsync of each file before it is closed, as
	// Download does: the cost of durability, apart.
	baseSync := baseline("sync", true)

	stopStreams()
	streams.Wait()

	total := int64(downloads) * size
	vm := mbps(total, dlEnd)
	baseSeconds := (baseA + baseB) / 2
	base := round(float64(total)/baseSeconds/1e6, 1)
	ratio := vm / base
	syncBase := round(float64(total)/baseSync/1e6, 1)
	report.Scenarios["fleet"] = Result{
		"machines":                  n,
		"streamConnections":         conns,
		"bytes":                     size,
		"replicas":                  replicas,
		"endpoints":                 len(e.servers),
		"createMachinesSeconds":     round(createTook.Seconds(), 2),
		"openStreamsSeconds":        round(openTook.Seconds(), 2),
		"idleStreamsCPUPerSecond":   round(idleCPU/idle.Seconds(), 3),
		"replicationSeconds":        round(replTook.Seconds(), 2),
		"setApplicationMs":          ms(setTook),
		"convergenceMs":             convMS,
		"convergencePlot":           plotPath,
		"downloads":                 downloads,
		"downloadSeconds":           round(dlEnd.Seconds(), 2),
		"downloadMBps":              vm,
		"downloadPerMachineSeconds": map[string]float64{"p50": round(percentile(dlLat, 50).Seconds(), 2), "p99": round(percentile(dlLat, 99).Seconds(), 2), "max": round(percentile(dlLat, 100).Seconds(), 2)},
		"downloadFirstReplica":      firstRep,
		"downloadVmappdCPUSeconds":  round(dlCPU, 2),
		"baselineDownloadSeconds":   round(baseSeconds, 2),
		"baselineDownloadMBps":      base,
		"baselineRuns":              map[string]float64{"warmup": round(baseWarm, 2), "a": round(baseA, 2), "b": round(baseB, 2)},
		"ratio":                     round(ratio, 2),
		"reportStatusCalls":         len(reportLat),
		"reportStatusLatencyMs":     latencyMS(reportLat),
		"reportStatusLatencyMsByPhase": map[string]map[string]float64{
			"duringDownloads": latencyMS(reportDuring),
			"afterDownloads":  latencyMS(reportAfter),
		},
		"vmappdIdleRSSBytes":        rssIdle,
		"vmappdRSSWithStreamsBytes": rssStreams,
		"vmappdPeakRSSBytes":        rss,
		"vmappdPeakRSSReset":        rssReset,
		"vmappdCPUSeconds":          round(cpuTotal, 2),
		"vmappdCPUSecondsByPhase":   cpuPhase,
		"convergenceBaseline":       "none: absolute figures",
		"baselineName":              "concurrent net/http GETs of the presigned URLs, no verification",
		"vmapp":                     fmt.Sprintf("%.0f MB/s (%d × %d MiB); converged p99 %.0f ms", vm, downloads, size>>20, convMS["p99"]),
		"baseline":                  fmt.Sprintf("%.0f MB/s (plain GETs); convergence: none", base),
		"notes": fmt.Sprintf("%d machines, %d streams; convergence p50/p99/max %.0f/%.0f/%.0f ms (no baseline); ReportStatus p99 %.1f ms; higher ratio is better, vs GETs with fsync %.2f; vmappd peak RSS %d MiB, CPU %.1fs",
			n, n, convMS["p50"], convMS["p99"], convMS["max"], ms(percentile(reportLat, 99)), vm/syncBase, rss>>20, cpuTotal),
	}
	t.Logf("fleet %d machines: converged p50 %.0f ms, p99 %.0f ms, max %.0f ms; %d downloads of %d MiB: vmapp %.0f MB/s, baseline %.0f MB/s (%.0f with fsync), ratio %.2f; ReportStatus p50 %.2f ms, p99 %.2f ms; vmappd peak RSS %d MiB, CPU %.1fs %v",
		n, convMS["p50"], convMS["p99"], convMS["max"], downloads, size>>20, vm, base, syncBase, ratio, ms(percentile(reportLat, 50)), ms(percentile(reportLat, 99)), rss>>20, cpuTotal, cpuPhase)
}

// waitTimeout waits for wg at most d; false when it timed out.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// baselineFleetDownloads GETs the package once per machine, all at once,
// from the presigned URL of the replica the machine's ID picks first
// (download.OrderSources), each with its own connection pool, into dir;
// no ranges, no verification and, unless sync, no fsync: what curl -o
// would do. The plan request is not timed. It checks each file's size and
// removes dir.
func baselineFleetDownloads(ctx context.Context, e *fleetEnv, gallery, app, version string, machines []string, dir string, size int64, sync bool) (time.Duration, error) {
	r, err := pb.NewDownloadServiceClient(e.c.Conn()).GetDownloadPlan(ctx, &pb.GetDownloadPlanRequest{
		Gallery: gallery, Application: app, Version: version, Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Region: fleetRegion,
	})
	if err != nil {
		return 0, err
	}
	if !r.Plan.GetDirect() || len(r.Plan.GetSources()) == 0 {
		return 0, errors.New("the download plan has no presigned URLs")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	err = forEach(ctx, len(machines), len(machines), func(ctx context.Context, i int) error {
		hc := machineHTTPClient()
		defer hc.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, download.OrderSources(r.Plan, machines[i])[0].Url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET for %s: %s", machines[i], resp.Status)
		}
		f, err := os.Create(filepath.Join(dir, machines[i]))
		if err != nil {
			return err
		}
		n, err := io.Copy(f, resp.Body)
		if err == nil && sync {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil && n != size {
			err = fmt.Errorf("GET for %s: %d bytes, want %d", machines[i], n, size)
		}
		return err
	})
	return time.Since(start), err
}
