//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gonum.org/v1/plot"

	"github.com/vmapp/vmapp/client/agent"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	"github.com/vmapp/vmapp/internal/testkit/testnet"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// peerStoreRate is the region store's egress cap in the peers scenario
// (10^6 bytes/s, all connections together).
const peerStoreRate = 100e6

// TestPeerScale: machines of one scale set take one version from a region
// store capped at 100 MB/s (a counting proxy in front of MinIO). Each
// machine is an agent in this process (client/agent.Run, the code
// vmapp-agent runs) with its own credential, gRPC connection, root
// directory and, with peers, a real HTTP peer listener on loopback; it
// installs the version like any machine (download, verify, run the install
// command). Four runs on one vmappd: one machine alone (the time a
// machine needs on its own link), the same serving peers (a swarm of
// one, which must be as fast), every machine without peers, every
// machine with peers. Each run is timed from SetApplication on its scale
// set until every machine reports the version Installed; the store's bytes
// are counted at the proxy. 100 machines and 256 MiB (QUICK 12 and 32 MiB).
func TestPeerScale(t *testing.T) {
	machines, size := 100, int64(256<<20)
	if quick {
		machines, size = 12, 32<<20
	}
	const accessKey, secretKey = "vmappbench", "vmappbenchsecret"
	store := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	proxy, err := testnet.NewCappedProxy(strings.TrimPrefix(store.Endpoint(), "http://"), peerStoreRate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	regions := filepath.Join(t.TempDir(), "regions.yaml")
	yaml := fmt.Sprintf("regions:\n  - name: %s\n    endpoints: [{url: %q, bucket: vmapp-%s}]\n", fleetRegion, "http://"+proxy.Addr(), fleetRegion)
	if err := os.WriteFile(regions, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &fleetEnv{bin: buildCmd(t, "vmappd")}
	e.d = startVmappdArgs(t, e.bin, regions, nil, "VMAPP_S3_ACCESS_KEY="+accessKey, "VMAPP_S3_SECRET_KEY="+secretKey)
	e.pid = e.d.cmd.Process.Pid
	e.connect(t)
	ctx := ctxFor(t, 60*time.Minute)
	e.publishWith(t, ctx, "g", "a", "1.0.0", randomFile(t, size), 1, &pb.UserArtifactManage{Install: "true", Remove: "true"})

	solo := runPeerWave(t, ctx, e, proxy, "solo", 1, false)
	soloPeers := runPeerWave(t, ctx, e, proxy, "solo-peers", 1, true) // a swarm of one: as fast?
	without := runPeerWave(t, ctx, e, proxy, "stores", machines, false)
	with := runPeerWave(t, ctx, e, proxy, "peers", machines, true)
	r := Result{
		"machines": machines, "bytes": size, "storeCapMBps": peerStoreRate / 1e6,
		"soloSeconds":                round(solo.all.Seconds(), 2),
		"soloServingPeersSeconds":    round(soloPeers.all.Seconds(), 2),
		"withoutPeersSeconds":        round(without.all.Seconds(), 2),
		"withPeersSeconds":           round(with.all.Seconds(), 2),
		"speedup":                    round(without.all.Seconds()/with.all.Seconds(), 2),
		"withPeersOverSolo":          round(with.all.Seconds()/solo.all.Seconds(), 2),
		"storeEgressPackagesWithout": round(float64(without.egress)/float64(size), 2),
		"storeEgressPackagesWith":    round(float64(with.egress)/float64(size), 2),
		"machineBusyWithoutPeers":    round(without.busy, 2),
		"machineBusyWithPeers":       round(with.busy, 2),
	}
	r["vmapp"] = fmt.Sprintf("with peers: all %d installed in %.1f s; store sent %.2f packages", machines, with.all.Seconds(), r["storeEgressPackagesWith"])
	r["baseline"] = fmt.Sprintf("stores only: %.1f s, store sent %.2f packages", without.all.Seconds(), r["storeEgressPackagesWithout"])
	r["ratio"] = r["speedup"]
	r["notes"] = fmt.Sprintf("%d MiB to %d machines (agents in this process, real peer listeners), store capped at %.0f MB/s; ratio = speedup (without / with), goal ≥ 5; with peers / one machine alone (%.1f s): %.2f, goal ≤ 1.5; store egress with peers %.2f packages, goal ≤ 3; this machine's CPUs were busy %.0f%% of the run with peers (%.0f%% without); one machine alone serving peers (a swarm of one) %.1f s; plot results/peers-completion.png",
		size>>20, machines, peerStoreRate/1e6, solo.all.Seconds(), r["withPeersOverSolo"], r["storeEgressPackagesWith"], 100*with.busy, 100*without.busy, soloPeers.all.Seconds())
	t.Logf("%d machines, %d MiB, store capped at %.0f MB/s: all installed in %.1f s without peers, %.1f s with (%.2f× faster; one machine alone %.1f s); store sent %.2f packages without peers, %.2f with",
		machines, size>>20, peerStoreRate/1e6, without.all.Seconds(), with.all.Seconds(), r["speedup"], solo.all.Seconds(), r["storeEgressPackagesWithout"], r["storeEgressPackagesWith"])
	report.Scenarios["peers"] = r
	if err := plotPeerWaves(filepath.Join("results", "peers-completion.png"), machines, size, without.done, with.done); err != nil {
		t.Error(err)
	}
}

// peerWave is one run of TestPeerScale: when each machine reported the
// version installed (since SetApplication), the time until all had, the
// store's bytes meanwhile, and how busy this machine's CPUs were (0-1:
// with every machine on one host, a wave bound by the host shows near 1).
type peerWave struct {
	done   []time.Duration
	all    time.Duration
	egress int64
	busy   float64
}

// runPeerWave creates scale set name with n instances, runs their agents
// (serving and reading peers when peers is set), sets the version on the
// scale set and waits until every instance reports it installed. The
// agents stop and their roots are removed before it returns.
func runPeerWave(t *testing.T, ctx context.Context, e *fleetEnv, proxy *testnet.Proxy, name string, n int, peers bool) peerWave {
	t.Helper()
	names, tokens, _ := e.createMachinesWithTokens(t, ctx, name, n, 16)
	actx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range names {
		root := filepath.Join(t.TempDir(), "root")
		cfg := agent.Config{Server: e.d.addr, Token: tokens[i], Machine: names[i], Root: root, Logger: quiet, NoPeers: !peers}
		if peers {
			cfg.PeerListen = "127.0.0.1:0"
		}
		wg.Go(func() {
			if err := agent.Run(actx, cfg); err != nil && actx.Err() == nil {
				t.Errorf("agent %s: %v", cfg.Machine, err)
			}
			os.RemoveAll(root)
		})
	}
	before, cpu := proxy.Egress(), hostCPU(t)
	start := time.Now()
	e.setApplication(t, ctx, name, "g/a/1.0.0")
	w := peerWave{}
	seen := map[string]bool{}
	for len(seen) < n {
		if ctx.Err() != nil || t.Failed() {
			t.Fatalf("%s: %d of %d machines installed", name, len(seen), n)
		}
		for _, m := range e.installed(t, ctx, name) {
			if !seen[m] {
				seen[m] = true
				w.done = append(w.done, time.Since(start))
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.all, w.egress = time.Since(start), proxy.Egress()-before
	w.busy = hostCPU(t).busySince(cpu)
	t.Logf("%s: %d machines installed in %.1f s; the store sent %d bytes; the CPUs were busy %.0f%%", name, n, w.all.Seconds(), w.egress, 100*w.busy)
	return w
}

// cpuTimes are the host's CPU times (/proc/stat's first line, in ticks):
// all of them and those idle or waiting for I/O.
type cpuTimes struct{ total, idle int64 }

func hostCPU(t *testing.T) cpuTimes {
	t.Helper()
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var c cpuTimes
	fs := strings.Fields(line)
	for i, f := range fs[1:min(len(fs), 9)] { // user to steal (guest time is in user's)
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("/proc/stat: %q: %v", line, err)
		}
		c.total += v
		if i == 3 || i == 4 { // idle, iowait
			c.idle += v
		}
	}
	return c
}

// busySince is the share of the CPU time since c that was busy.
func (c cpuTimes) busySince(b cpuTimes) float64 {
	if c.total == b.total {
		return 0
	}
	return 1 - float64(c.idle-b.idle)/float64(c.total-b.total)
}

// installed is the machines of scale set that report g/a Installed.
func (e *fleetEnv) installed(t *testing.T, ctx context.Context, scaleSet string) []string {
	t.Helper()
	var out []string
	req := &pb.ListInventoryRequest{Application: "g/a", ScaleSet: scaleSet, State: pb.AppInstalled, PageSize: 1000}
	for {
		r, err := e.fleet.ListInventory(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range r.Entries {
			out = append(out, en.Machine)
		}
		if r.NextPageToken == "" {
			return out
		}
		req.PageToken = r.NextPageToken
	}
}

// plotPeerWaves draws machines installed over time, with and without
// peers.
func plotPeerWaves(path string, machines int, size int64, without, with []time.Duration) error {
	line := func(name string, ds []time.Duration, c series) series {
		c.name, c.step, c.xs, c.ys = name, true, []float64{0}, []float64{0}
		for i, d := range slices.Sorted(slices.Values(ds)) {
			c.xs = append(c.xs, d.Seconds())
			c.ys = append(c.ys, float64(i+1))
		}
		return c
	}
	return writePlot(path, fmt.Sprintf("%d machines take %d MiB (store capped at %.0f MB/s)", machines, size>>20, peerStoreRate/1e6),
		"seconds since SetApplication", "machines installed",
		[]series{line("stores only", without, series{color: plotOrange}), line("with peers", with, series{color: plotBlue})},
		func(p *plot.Plot) { p.X.Min, p.Y.Min, p.Y.Max = 0, 0, float64(machines) })
}
