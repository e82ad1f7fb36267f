//go:build unix

package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/client/download"
	"github.com/vmapp/vmapp/internal/testkit/metricstest"
	"github.com/vmapp/vmapp/internal/testkit/signtest"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	"github.com/vmapp/vmapp/internal/testkit/testnet"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/tracker"
)

// peerAgents is how many agent processes TestPeerSwarm runs.
const peerAgents = 20

// TestPeerSwarm runs real vmapp-agent processes, on loopback, with the
// stores behind proxies that count their egress: the first instance of a
// scale set installs from the store; then the others, started at once,
// install from it and from each other: every file is the package, and the
// store sent at most three packages' worth. Peers that send flipped bytes,
// stall or close mid-piece don't keep a machine from installing the right
// bytes, and the liar is reported; requests without a grant, with another
// artifact's, or a changed one, are refused.
func TestPeerSwarm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vmapp-agent and runs MinIO and 20 agents")
	}
	bin, c, egress := countedCluster(t, 0)
	data := make([]byte, 3*testcluster.PartSize-1000) // three pieces
	rand.NewChaCha8([32]byte{7}).Read(data)
	sum := sha256.Sum256(data)
	c.Publish(t, "1.0.0", data, testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	e := &env{c: c, bin: bin, fl: pb.NewFleetServiceClient(c.Client.Conn())}
	for _, set := range []string{"web", "bad"} {
		if _, err := e.fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: set, Region: "eastus", OsType: "Linux"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: set}},
			Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}}); err != nil {
			t.Fatal(err)
		}
	}
	art := tracker.Artifact{Tenant: "default", Gallery: "g", Application: "a", Version: "1.0.0", Kind: int32(pb.ArtifactKind_ARTIFACT_KIND_PACKAGE)}
	holders := func(n int) func() bool { return func() bool { return c.Daemon.Tracker.Holders(art, "eastus") >= n } }
	roots, tokens := map[string]string{}, map[string]string{}
	agents := map[string]*agentProc{}
	start := func(name, set string) {
		args := e.instance(t, name, set)
		roots[name], tokens[name] = args[len(args)-1], args[5]
		agents[name] = e.start(t, append(args, "--peer-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")...)
	}
	installed := func(name string) func() bool {
		return func() bool {
			b, err := os.ReadFile(filepath.Join(roots[name], "g", "a", "1.0.0", "a"))
			return err == nil && sha256.Sum256(b) == sum
		}
	}

	// The first instance installs from the store, and announces it holds
	// the package.
	start("web-0", "web")
	e.poll(t, "web-0 installed", installed("web-0"))
	e.poll(t, "web-0 announced", holders(1))
	first := egress()
	t.Logf("the first instance: the store sent %d bytes for a %d-byte package", first, len(data))

	// The others, at once.
	for i := 1; i < peerAgents; i++ {
		start(fmt.Sprint("web-", i), "web")
	}
	for i := 1; i < peerAgents; i++ {
		e.pollLong(t, fmt.Sprint("web-", i, " installed"), installed(fmt.Sprint("web-", i)))
	}
	total := egress()
	t.Logf("%d instances: the store sent %d bytes (%.2f packages)", peerAgents, total, float64(total)/float64(len(data)))
	if total > 3*int64(len(data)) {
		t.Fatalf("the store sent %d bytes for %d machines installing a %d-byte package: more than 3 packages' worth", total, peerAgents, len(data))
	}
	if !strings.Contains(agents["web-1"].log.String(), "bytes_from.peer/") {
		t.Fatalf("web-1's log doesn't say it read from a peer:\n%s", agents["web-1"].log)
	}
	e.poll(t, "every instance announced", holders(peerAgents))

	// Bad peers, the only ones of scale set "bad": one flips bytes, one
	// stalls, one closes mid-piece. Its instance installs the right bytes
	// and reports the liar.
	var liar, staller, cutter atomic.Int32
	bad := map[string]http.HandlerFunc{
		"liar": func(w http.ResponseWriter, r *http.Request) {
			liar.Add(1)
			b := bytes.Clone(data)
			for i := range b {
				b[i] ^= 0x55
			}
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
		},
		"staller": func(w http.ResponseWriter, r *http.Request) {
			staller.Add(1)
			w.WriteHeader(http.StatusPartialContent)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		},
		"cutter": func(w http.ResponseWriter, r *http.Request) {
			cutter.Add(1)
			conn, buf, _ := w.(http.Hijacker).Hijack()
			fmt.Fprintf(buf, "HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n\r\n", testcluster.PartSize)
			buf.Write(data[:1000])
			buf.Flush()
			conn.Close()
		},
	}
	for name, h := range bad {
		args := e.instance(t, name, "bad")
		tok, err := os.ReadFile(args[5])
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		cl := e.machineClient(t, strings.TrimSpace(string(tok)))
		if _, err := cl.Announce(ctx(t), &pb.AnnounceRequest{Machine: name, Address: l.Addr().String(), Held: []*pb.HeldArtifact{{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE}}}); err != nil {
			t.Fatal(err)
		}
	}
	start("victim", "bad")
	e.pollLong(t, "the victim installed", installed("victim"))
	// The bad peers are the victim's scale set's: asked first.
	t.Logf("asked: liar %d, staller %d, cutter %d", liar.Load(), staller.Load(), cutter.Load())
	if liar.Load() == 0 || !strings.Contains(agents["victim"].log.String(), "a peer sent a piece that failed verification") {
		t.Fatalf("the victim never read from the liar, or didn't say so:\n%s", agents["victim"].log)
	}
	metric := func(name, series string) float64 {
		_, body := metricstest.Get(t, metricsAddr(t, e, agents[name]), "/metrics")
		v, _ := strconv.ParseFloat(metricstest.Sample(body, series), 64)
		return v
	}
	if n := metric("victim", "vmapp_agent_bad_peers_total"); n != 1 {
		t.Errorf("the victim's vmapp_agent_bad_peers_total is %v, want 1 (the liar)", n)
	}
	served := 0.0
	for i := range peerAgents {
		served += metric(fmt.Sprint("web-", i), "vmapp_agent_peer_served_bytes_total")
	}
	if served < float64((peerAgents-1)*len(data))-float64(total) {
		t.Errorf("the instances served peers %v bytes in all; %d installed %d bytes each, and the store sent %d", served, peerAgents-1, len(data), total)
	}
	e.poll(t, "the liar reported", func() bool {
		for _, p := range c.Daemon.Tracker.Peers(art, tracker.Machine{Tenant: "default", Name: "another", Region: "eastus", ScaleSet: "bad"}, tracker.MaxPeers) {
			if p.Name == "liar" {
				return false
			}
		}
		return true
	})

	// Refusals, from web-0's peer server.
	addr := ""
	for _, p := range c.Daemon.Tracker.Peers(art, tracker.Machine{Tenant: "default", Name: "another", Region: "eastus"}, tracker.MaxPeers) {
		if p.Name == "web-0" {
			addr = p.Address
		}
	}
	get := func(q, auth string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+download.PeerPath+"?"+q, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	tok, err := os.ReadFile(tokens["web-1"])
	if err != nil {
		t.Fatal(err)
	}
	web1 := e.machineClient(t, strings.TrimSpace(string(tok)))
	pr, err := web1.GetDownloadPlan(ctx(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Region: "eastus"})
	if err != nil || pr.Plan.PeerGrant == "" {
		t.Fatalf("web-1's plan: %v, %v", pr, err)
	}
	g := download.GrantScheme + " " + pr.Plan.PeerGrant
	const right = "gallery=g&application=a&version=1.0.0&kind=PACKAGE"
	for _, c := range []struct {
		name, q, auth string
		want          int
	}{
		{"with web-1's grant", right, g, http.StatusOK},
		{"no grant", right, "", http.StatusUnauthorized},
		{"another version", "gallery=g&application=a&version=2.0.0&kind=PACKAGE", g, http.StatusForbidden},
		{"a changed grant", right, signtest.Tamper(g), http.StatusForbidden},
		{"another scheme", right, "Bearer " + pr.Plan.PeerGrant, http.StatusUnauthorized},
	} {
		if got := get(c.q, c.auth); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// countedCluster builds vmapp-agent and starts a deployment whose stores
// sit behind proxies, capped at storeRate bytes per second each (0: no
// cap); egress counts what eastus's sent.
func countedCluster(t *testing.T, storeRate int64) (bin string, c *testcluster.Cluster, egress func() int64) {
	bin = filepath.Join(t.TempDir(), "vmapp-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build vmapp-agent: %v\n%s", err, out)
	}
	f := testnet.NewFronts(t, "127.0.0.1", storeRate, "eastus")
	c = testcluster.Start(t, testcluster.Options{Front: f.Front})
	return bin, c, f.Egress
}

// instance creates an instance of scale set set and returns its agent's
// flags; --root's value last, --token-file's at [5].
func (e *env) instance(t *testing.T, name, set string) []string {
	t.Helper()
	r, err := e.fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: name, ScaleSet: set}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	token := filepath.Join(dir, "agent.token")
	if err := os.WriteFile(token, []byte(r.AgentToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--server", e.c.Addr, "--vm", name, "--token-file", token, "--log-level", "info", "--root", filepath.Join(dir, "root")}
}

// machineClient is a download client with a machine's credential.
func (e *env) machineClient(t *testing.T, token string) pb.DownloadServiceClient {
	t.Helper()
	cl, err := client.New(e.c.Addr, client.Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return pb.NewDownloadServiceClient(cl.Conn())
}

// pollLong is poll for what many loaded processes do: its deadline only
// guards against a hang.
func (e *env) pollLong(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("never %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waveAgents is how many agent processes TestPeerWave starts at once.
const waveAgents = 6

// TestPeerWave: agents of one scale set, started at once, install a
// version of ten pieces from a store capped at 10 MiB/s: they serve each
// other the pieces they verified while downloading, and the store sends
// less than the package once per machine but one (counted at its proxy:
// 2.2 packages for 6 machines on a loaded 2-core machine; the bound is
// loose because how much peers take depends on how fast the machine
// announces, and speed is the bench's job). Every file is the package.
func TestPeerWave(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vmapp-agent and runs MinIO and 6 agents")
	}
	bin, c, egress := countedCluster(t, 10<<20)
	data := make([]byte, 10*testcluster.PartSize-1000)
	rand.NewChaCha8([32]byte{9}).Read(data)
	sum := sha256.Sum256(data)
	c.Publish(t, "1.0.0", data, testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	before := egress()
	e := &env{c: c, bin: bin, fl: pb.NewFleetServiceClient(c.Client.Conn())}
	if _, err := e.fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "web", Region: "eastus", OsType: "Linux"}}); err != nil {
		t.Fatal(err)
	}
	roots := map[string]string{}
	var args [][]string
	for i := range waveAgents {
		name := fmt.Sprint("web-", i)
		a := e.instance(t, name, "web")
		roots[name] = a[len(a)-1]
		args = append(args, append(a, "--peer-listen", "127.0.0.1:0"))
	}
	agents := map[string]*agentProc{}
	for i, a := range args {
		agents[fmt.Sprint("web-", i)] = e.start(t, a...)
	}
	// Every agent serves peers before the version is given to them.
	e.pollLong(t, "every agent announced", func() bool {
		for name := range roots {
			if !c.Daemon.Tracker.Serving("default", name) {
				return false
			}
		}
		return true
	})
	if _, err := e.fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "web"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}}); err != nil {
		t.Fatal(err)
	}
	for name, root := range roots {
		e.pollLong(t, name+" installed", func() bool {
			b, err := os.ReadFile(filepath.Join(root, "g", "a", "1.0.0", "a"))
			return err == nil && sha256.Sum256(b) == sum
		})
	}
	sent := egress() - before
	fromPeers := 0
	for _, a := range agents {
		if strings.Contains(a.log.String(), "bytes_from.peer/") {
			fromPeers++
		}
	}
	t.Logf("%d machines: the store sent %d bytes (%.2f packages); %d read from peers", waveAgents, sent, float64(sent)/float64(len(data)), fromPeers)
	if sent > (waveAgents-1)*int64(len(data)) {
		t.Fatalf("the store sent %d bytes for %d machines installing a %d-byte package: peers saved it not even one package", sent, waveAgents, len(data))
	}
}
