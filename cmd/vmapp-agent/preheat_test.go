//go:build unix

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/client/agent"
	"github.com/vmapp/vmapp/internal/testkit/metricstest"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestPreheat runs real vmapp-agent processes serving peers, instances of
// a scale set whose profile doesn't name the version yet. A preheat of two
// machines has those two (and not the third) fetch the package into their
// caches, verified, while nothing is installed; vmappd counts them as
// holding it; their /metrics count the cache. Then the rollout: the two
// install from their caches (no download), the third from them, and the
// store sends nothing more.
func TestPreheat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vmapp-agent and runs MinIO and 3 agents")
	}
	bin, c, egress := countedCluster(t, 0)
	data := make([]byte, 2*testcluster.PartSize+1000)
	rand.NewChaCha8([32]byte{9}).Read(data)
	sum := sha256.Sum256(data)
	c.Publish(t, "1.0.0", data, testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	e := &env{c: c, bin: bin, fl: pb.NewFleetServiceClient(c.Client.Conn())}
	if _, err := e.fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "web", Region: "eastus", OsType: "Linux"}}); err != nil {
		t.Fatal(err)
	}
	roots, agents := map[string]string{}, map[string]*agentProc{}
	names := []string{"web-0", "web-1", "web-2"}
	for _, name := range names {
		args := e.instance(t, name, "web")
		roots[name] = args[len(args)-1]
		agents[name] = e.start(t, append(args, "--peer-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")...)
		e.pollLong(t, name+" serving peers", func() bool { return c.Daemon.Tracker.Serving("default", name) })
	}
	cached := func(name string) bool {
		b, err := os.ReadFile(filepath.Join(roots[name], agent.StateDir, agent.CacheDir, hex.EncodeToString(sum[:])))
		return err == nil && sha256.Sum256(b) == sum
	}
	status := func() *pb.PreheatStatus {
		r, err := c.Client.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Version.Preheat) != 1 {
			t.Fatalf("preheat %v", r.Version.Preheat)
		}
		return r.Version.Preheat[0]
	}

	// Two machines preheat: web-0 and web-1 (all serve; by name).
	r, err := pb.NewDownloadServiceClient(c.Client.Conn()).Preheat(ctx(t), &pb.PreheatRequest{Gallery: "g", Application: "a", Version: "1.0.0", Region: "eastus", Machines: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(r.Status.Machines); got != "[web-0 web-1]" {
		t.Fatalf("chosen: %s", got)
	}
	e.pollLong(t, "two machines holding it", func() bool { return status().Holding == 2 })
	if st := status(); st.Wanted != 2 || st.HoldingInRegion != 2 {
		t.Fatalf("status %v", st)
	}
	for _, name := range names[:2] {
		if !cached(name) {
			t.Fatalf("%s holds no verified package in its cache", name)
		}
		if _, err := os.Stat(filepath.Join(roots[name], "g", "a")); err == nil {
			t.Fatalf("%s installed the version it was to preheat", name)
		}
	}
	if cached("web-2") {
		t.Fatal("web-2, not chosen, cached the package")
	}
	afterPreheat := egress()
	t.Logf("preheat of two machines: the store sent %d bytes for a %d-byte package", afterPreheat, len(data))
	addr := metricsAddr(t, e, agents["web-0"])
	for series, want := range map[string]float64{
		"vmapp_agent_cache_entries": 1,
		"vmapp_agent_cache_bytes":   float64(len(data)),
	} {
		_, body := metricstest.Get(t, addr, "/metrics")
		if got, err := strconv.ParseFloat(metricstest.Sample(body, series), 64); err != nil || got != want {
			t.Errorf("web-0's %s is %v (%v), want %v", series, got, err, want)
		}
	}

	// The rollout.
	if _, err := e.fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "web"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		e.pollLong(t, name+" installed", func() bool {
			b, err := os.ReadFile(filepath.Join(roots[name], "g", "a", "1.0.0", "a"))
			return err == nil && sha256.Sum256(b) == sum
		})
	}
	for _, name := range names[:2] {
		if !strings.Contains(agents[name].log.String(), "the package is in the cache") {
			t.Errorf("%s didn't install from its cache:\n%s", name, agents[name].log)
		}
		_, body := metricstest.Get(t, metricsAddr(t, e, agents[name]), "/metrics")
		if got := metricstest.Sample(body, "vmapp_agent_cache_hits_total"); got != "1" {
			t.Errorf("%s's vmapp_agent_cache_hits_total is %q, want 1", name, got)
		}
	}
	if !strings.Contains(agents["web-2"].log.String(), "bytes_from.peer/") {
		t.Errorf("web-2's log doesn't say it read from a peer:\n%s", agents["web-2"].log)
	}
	rollout := egress() - afterPreheat
	t.Logf("the rollout to three machines: the store sent %d bytes more", rollout)
	if rollout >= int64(len(data)) {
		t.Fatalf("the store sent %d bytes during the rollout: a package's worth (%d) or more after the preheat", rollout, len(data))
	}
}

// metricsAddr is where an agent started with --metrics-listen serves
// /metrics, as it logged it.
func metricsAddr(t *testing.T, e *env, p *agentProc) string {
	t.Helper()
	var addr string
	e.poll(t, "the metrics address logged", func() bool {
		for line := range strings.Lines(p.log.String()) {
			if _, rest, ok := strings.Cut(line, "metrics listening"); ok {
				if _, a, ok := strings.Cut(rest, "addr="); ok {
					addr = strings.Fields(a)[0]
				}
			}
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "metrics listening" {
				addr = rec.Addr
			}
		}
		return addr != ""
	})
	return addr
}
