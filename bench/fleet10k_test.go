//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// machineToken sends one machine's agent credential with a call, as its
// agent does (over plaintext loopback here).
type machineToken string

func (m machineToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(m)}, nil
}
func (machineToken) RequireTransportSecurity() bool { return false }

// TestFleet10k holds 10,000 goal-state streams (QUICK 2,000) on one vmappd,
// each opened with its machine's own agent credential over real gRPC
// connections from this process (conns of them, streams spread evenly: an
// agent has one connection of its own; 10,000 sockets each way would only
// measure this process). It measures vmappd's resident set per stream, the
// time until every stream delivered the goal state with a version set on
// the machines' scale set (p50/p99/max, drawn to
// results/fleet10k-convergence.png; the goal is p99 < 100 ms), and
// ReportStatus latency when every machine reports at once.
func TestFleet10k(t *testing.T) {
	metrics := freeAddr(t)
	e := startFleetEnv(t, 1, "--metrics", metrics, "--pprof")
	ctx := ctxFor(t, 30*time.Minute)
	r := holdStreams(t, ctx, e, []string{e.d.addr}, []int{e.pid}, filepath.Join("results", "fleet10k-convergence.png"), newProfiler(t, e.bin, metrics))
	report.Scenarios["fleet-10k"] = r
}

// TestFleet10kCluster is TestFleet10k on a three-node cluster (every
// node on this machine, one MinIO): the connections, and so the streams,
// spread evenly over the nodes, each of which serves its streams from its
// own applied state; the version is set through the client given every
// node's address (a follower forwards it to the leader). Resident set and
// CPU are the three nodes' sums.
func TestFleet10kCluster(t *testing.T) {
	const accessKey, secretKey = "vmappbench", "vmappbenchsecret"
	east := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	regions := filepath.Join(t.TempDir(), "regions.yaml")
	yaml := fmt.Sprintf("regions:\n  - name: %s\n    endpoints: [{url: %q, bucket: vmapp-eastus}]\n", fleetRegion, east.Endpoint())
	if err := os.WriteFile(regions, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	bc := startBenchCluster(t, buildCmd(t, "vmappd"), regions, 3, "VMAPP_S3_ACCESS_KEY="+accessKey, "VMAPP_S3_SECRET_KEY="+secretKey)
	defer func() {
		for _, n := range bc.nodes {
			n.d.cmd.Process.Kill()
			n.d.cmd.Wait()
		}
	}()
	var addrs []string
	var pids []int
	for _, n := range bc.nodes {
		addrs, pids = append(addrs, n.d.addr), append(pids, n.d.cmd.Process.Pid)
	}
	e := &fleetEnv{c: bc.c, fleet: pb.NewFleetServiceClient(bc.c.Conn())}
	ctx := ctxFor(t, 30*time.Minute)
	r := holdStreams(t, ctx, e, addrs, pids, filepath.Join("results", "fleet10k-cluster-convergence.png"), nil)
	r["nodes"] = len(addrs)
	r["baselineName"] = "none: absolute figures; ratio = convergence p99 / the 100 ms goal (lower is better); 3 vmappd nodes on this machine's 2 cores"
	report.Scenarios["fleet-10k-cluster"] = r
}

// holdStreams is fleet-10k's measurement on the vmappd processes pids,
// serving at addrs (connections spread evenly over them), with e's
// client (an operator's) for publishing and profiles. With prof, vmappd's
// CPU profile of the change (from SetApplication sent, 6 s) is written
// to results/fleet10k-profile.txt.
func holdStreams(t *testing.T, ctx context.Context, e *fleetEnv, addrs []string, pids []int, plotPath string, prof *profiler) Result {
	n, conns := 10_000, 500
	if quick {
		n, conns = 2_000, 100
	}
	const gallery, app, version, scaleSet = "bench", "fleet10k", "1.0.0", "big"
	const goalMs = 100.0
	e.publish(t, ctx, gallery, app, version, randomFile(t, 1<<20), 1)
	cpu := func() (s float64) {
		for _, p := range pids {
			s += cpuSeconds(p)
		}
		return s
	}
	rss := func() (s int64) {
		for _, p := range pids {
			s += currentRSS(p)
		}
		return s
	}

	cpuPhase := map[string]float64{}
	mark := cpu()
	phase := func(name string) {
		now := cpu()
		cpuPhase[name] = round(now-mark, 2)
		mark = now
	}
	names, tokens, createTook := e.createMachinesWithTokens(t, ctx, scaleSet, n, 16)
	phase("createMachines")
	rssBefore := rss()

	// Connections with no credential of their own: each call carries its
	// machine's. Small transport buffers on this side: this process plays
	// every agent.
	var fleets []pb.FleetServiceClient
	for i := range conns {
		c, err := client.New(addrs[i%len(addrs)], client.Options{DialOptions: []grpc.DialOption{grpc.WithReadBufferSize(32 << 10), grpc.WithWriteBufferSize(32 << 10)}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fleets = append(fleets, pb.NewFleetServiceClient(c.Conn()))
	}
	w := newStreamWatch(n, app, version)
	sctx, stop := context.WithCancel(ctx)
	defer func() { stop(); w.wait() }()
	openStart := time.Now()
	for i := range n {
		w.watch(sctx, fleets[i%conns], names[i], grpc.PerRPCCredentials(machineToken(tokens[i])))
	}
	if !waitTimeout(&w.opened, 5*time.Minute) {
		t.Fatalf("the goal-state streams did not all open within 5 minutes (first error: %v)", w.err())
	}
	if err := w.err(); err != nil {
		t.Fatal(err)
	}
	openTook := time.Since(openStart)
	phase("openStreams")
	time.Sleep(2 * time.Second)
	rssStreams := rss()
	idleCPU := (cpu() - mark) / 2
	phase("idle2s")
	perStream := float64(rssStreams-rssBefore) / float64(n)
	t.Logf("%d machines in %.1fs; %d streams over %d connections open in %.1fs; vmappd RSS %d → %d MiB (%.1f KiB per stream), idle %.3f CPU s/s",
		n, createTook.Seconds(), n, conns, openTook.Seconds(), rssBefore>>20, rssStreams>>20, perStream/1024, idleCPU)

	var profiled func() string
	if prof != nil {
		profiled = prof.cpu(ctx, 6)
	}
	setAt := time.Now()
	e.setApplication(t, ctx, scaleSet, gallery+"/"+app+"/"+version)
	setTook := time.Since(setAt)
	if !waitTimeout(&w.converged, 5*time.Minute) {
		t.Fatalf("not every machine got the goal state within 5 minutes (first error: %v)", w.err())
	}
	if err := w.err(); err != nil {
		t.Fatal(err)
	}
	conv := w.since(setAt)
	convMS := latencyMS(conv)
	convMS["min"] = ms(slices.Min(conv))
	convMS["setApplication"] = ms(setTook)
	phase("converge")
	t.Logf("converged: first %.0f ms, p50 %.0f ms, p99 %.0f ms, max %.0f ms (SetApplication answered after %.0f ms); streams opened again after Unavailable so far: %d",
		convMS["min"], convMS["p50"], convMS["p99"], convMS["max"], convMS["setApplication"], w.reopened.Load())
	if err := plotConvergence(plotPath, conv); err != nil {
		t.Logf("convergence plot: %v", err)
		plotPath = ""
	}
	var cpuTop []string
	if profiled != nil {
		if path := profiled(); path != "" {
			cpuTop = prof.top(path, 25)
			text := fmt.Sprintf("# vmappd CPU profile of a change of the scale set's profile: SetApplication, then %d streams (go tool pprof -top)\n\n", n) + strings.Join(cpuTop, "\n") + "\n"
			if err := os.WriteFile(filepath.Join("results", "fleet10k-profile.txt"), []byte(text), 0o644); err != nil {
				t.Log(err)
			}
		}
	}

	// Every machine reports at once, with its own credential; vmappd's CPU
	// profile of the first 6 s goes to results/fleet10k-report-profile.txt.
	var reportProfiled func() string
	if prof != nil {
		reportProfiled = prof.cpu(ctx, 6)
	}
	reportLat := make([]time.Duration, n)
	var wg sync.WaitGroup
	var errOnce sync.Once
	var reportErr error
	var reportsRetried atomic.Int64
	now := time.Now()
	for i := range n {
		wg.Go(func() {
			t0 := time.Now()
			req := &pb.ReportStatusRequest{Machine: names[i], InstanceView: &pb.InstanceView{
				AgentVersion: "bench",
				Applications: []*pb.ApplicationStatus{{Application: gallery + "/" + app, Version: version, State: "Installed", Operation: "install",
					StartTime: timestamppb.New(now), EndTime: timestamppb.New(now), Attempts: 1}},
			}}
			// Unavailable (a node between leaders) and Aborted (a report
			// whose outcome is unknown: the leader changed as it was
			// committed) are sent again, as an agent does (a report is
			// the machine's whole state: sending it twice does no harm);
			// the latency counts the retries.
			_, err := fleets[i%conns].ReportStatus(ctx, req, grpc.PerRPCCredentials(machineToken(tokens[i])))
			for try := 0; (errs.Is(err, errs.Unavailable) || errs.Is(err, errs.Aborted)) && try < 50; try++ {
				reportsRetried.Add(1)
				time.Sleep(100 * time.Millisecond)
				_, err = fleets[i%conns].ReportStatus(ctx, req, grpc.PerRPCCredentials(machineToken(tokens[i])))
			}
			reportLat[i] = time.Since(t0)
			if err != nil {
				errOnce.Do(func() { reportErr = fmt.Errorf("ReportStatus of %s: %w", names[i], err) })
			}
		})
	}
	wg.Wait()
	if reportErr != nil {
		t.Fatal(reportErr)
	}
	phase("reportStatus")
	if reportProfiled != nil {
		if path := reportProfiled(); path != "" {
			text := fmt.Sprintf("# vmappd CPU profile of %d machines' ReportStatus at once, the first 6 s (go tool pprof -top)\n\n", n) + strings.Join(prof.top(path, 40, "-cum"), "\n") + "\n"
			if err := os.WriteFile(filepath.Join("results", "fleet10k-report-profile.txt"), []byte(text), 0o644); err != nil {
				t.Log(err)
			}
		}
	}
	repMS := latencyMS(reportLat)
	rssEnd := rss()
	stop()
	w.wait()

	t.Logf("%d streams, converged (SetApplication answered after %.0f ms) first %.0f ms, p50 %.0f ms, p99 %.0f ms, max %.0f ms; ReportStatus p50 %.0f ms, p99 %.0f ms; RSS %.1f KiB/stream, %d MiB after reports; CPU %v",
		n, convMS["setApplication"], convMS["min"], convMS["p50"], convMS["p99"], convMS["max"], repMS["p50"], repMS["p99"], perStream/1024, rssEnd>>20, cpuPhase)
	r := Result{
		"machines":                n,
		"connections":             conns,
		"createMachinesSeconds":   round(createTook.Seconds(), 2),
		"openStreamsSeconds":      round(openTook.Seconds(), 2),
		"idleStreamsCPUPerSecond": round(idleCPU, 3),
		"convergenceMs":           convMS,
		"convergenceGoalMs":       goalMs,
		"convergenceGoalMet":      convMS["p99"] < goalMs,
		"convergencePlot":         plotPath,
		"reportStatusLatencyMs":   repMS,
		"vmappdRSSBeforeStreams":  rssBefore,
		"vmappdRSSWithStreams":    rssStreams,
		"vmappdRSSPerStreamBytes": int64(perStream),
		"vmappdRSSAfterReports":   rssEnd,
		"vmappdCPUSecondsByPhase": cpuPhase,
		"streamsReopened":         w.reopened.Load(),
		"reportsRetried":          reportsRetried.Load(),
		"ratio":                   round(convMS["p99"]/goalMs, 2),
		"baselineName":            "none: absolute figures; ratio = convergence p99 / the 100 ms goal (lower is better)",
		"vmapp":                   fmt.Sprintf("%d streams: converged p50/p99 %.0f/%.0f ms; ReportStatus ×%d at once p99 %.0f ms", n, convMS["p50"], convMS["p99"], n, repMS["p99"]),
		"baseline":                "none (goal p99 < 100 ms)",
		"notes": fmt.Sprintf("one credential per machine, %d gRPC connections; SetApplication answered after %.0f ms, first stream %.0f ms; vmappd RSS %.1f KiB per stream (%d → %d MiB), %d MiB after the reports; idle %.3f CPU s/s; streams opened in %.1f s; convergence max %.0f ms; ReportStatus p50 %.0f ms, max %.0f ms",
			conns, convMS["setApplication"], convMS["min"], perStream/1024, rssBefore>>20, rssStreams>>20, rssEnd>>20, idleCPU, openTook.Seconds(), convMS["max"], repMS["p50"], repMS["max"]),
	}
	if cpuTop != nil {
		r["cpuProfileTop"] = cpuTop
	}
	return r
}

// streamWatch holds goal-state streams and notes when each delivered the
// goal state holding app's version.
type streamWatch struct {
	app, version      string
	opened, converged sync.WaitGroup
	streams           sync.WaitGroup
	got               []time.Time
	next              int
	reopened          atomic.Int64 // streams opened again after Unavailable
	mu                sync.Mutex
	first             error
}

func newStreamWatch(n int, app, version string) *streamWatch {
	w := &streamWatch{app: app, version: version, got: make([]time.Time, n)}
	w.opened.Add(n)
	w.converged.Add(n)
	return w
}

func (w *streamWatch) fail(err error) {
	w.mu.Lock()
	if w.first == nil {
		w.first = err
	}
	w.mu.Unlock()
}

func (w *streamWatch) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}

func (w *streamWatch) wait() { w.streams.Wait() }

// watch opens the next machine's stream and reads it until ctx ends.
func (w *streamWatch) watch(ctx context.Context, fc pb.FleetServiceClient, machine string, opts ...grpc.CallOption) {
	i := w.next
	w.next++
	w.streams.Go(func() {
		first, done := true, false
		defer func() {
			if first {
				w.opened.Done()
			}
			if !done {
				w.converged.Done()
			}
		}()
		// A stream refused or broken as Unavailable (a node between
		// leaders) is opened again after 100 ms, as an agent does; any
		// other error fails the scenario.
		for ctx.Err() == nil {
			err := w.follow(ctx, fc, machine, i, &first, &done, opts...)
			if ctx.Err() != nil {
				return
			}
			if !errs.Is(err, errs.Unavailable) { // the client's class of the status

				w.fail(fmt.Errorf("goal-state stream of %s: %w", machine, err))
				return
			}
			w.reopened.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// follow opens machine's stream and reads it until it breaks.
func (w *streamWatch) follow(ctx context.Context, fc pb.FleetServiceClient, machine string, i int, first, done *bool, opts ...grpc.CallOption) error {
	s, err := fc.WatchGoalState(ctx, &pb.WatchGoalStateRequest{Machine: machine}, opts...)
	if err != nil {
		return err
	}
	for {
		r, err := s.Recv()
		if err != nil {
			return err
		}
		if *first {
			*first = false
			w.opened.Done()
		}
		for _, a := range r.GoalState.GetApplications() {
			if !*done && a.Application == w.app && a.Version == w.version && a.Package != nil {
				w.got[i] = time.Now()
				*done = true
				w.converged.Done()
			}
		}
	}
}

// since is each stream's delivery time after t.
func (w *streamWatch) since(t time.Time) []time.Duration {
	out := make([]time.Duration, len(w.got))
	for i, g := range w.got {
		out[i] = g.Sub(t)
	}
	return out
}
