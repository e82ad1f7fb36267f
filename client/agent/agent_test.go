//go:build unix

package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/client/agent"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/proctest"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// env is one cluster shared by the subtests; each has its own machines and
// applications (gallery "g").
type env struct {
	c      *testcluster.Cluster
	fl     pb.FleetServiceClient
	tokens sync.Map // machine -> its agent credential, from CreateMachine
}

func TestAgent(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	e := &env{c: c, fl: pb.NewFleetServiceClient(c.Client.Conn())}
	if _, err := c.Client.Catalog.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "eastus"}}); err != nil {
		t.Fatal(err)
	}
	t.Run("OrderingAllSucceed", e.testOrderingAllSucceed)
	t.Run("OrderingFailureAndRetry", e.testOrderingFailureAndRetry)
	t.Run("Update", e.testUpdate)
	t.Run("Removal", e.testRemoval)
	t.Run("Configuration", e.testConfiguration)
	t.Run("Reboot", e.testReboot)
	t.Run("AgentCrash", e.testAgentCrash)
	t.Run("AutomaticRetry", e.testAutomaticRetry)
	t.Run("CommandTimeout", e.testCommandTimeout)
	t.Run("Reconnect", e.testReconnect)
	t.Run("ScaleSetAutomaticUpgrade", e.testScaleSetAutomaticUpgrade)
	t.Run("SharedGallery", e.testSharedGallery)
	t.Run("TwoGalleries", e.testTwoGalleries)
	t.Run("OldLayout", e.testOldLayout)
	t.Run("MachineDeleted", e.testMachineDeleted)
	t.Run("WrongOS", e.testWrongOS)
	t.Run("HealthCheck", e.testHealthCheck)
	t.Run("CustomActions", e.testCustomActions)
	t.Run("CustomActionsOnScaleSet", e.testCustomActionsOnScaleSet)
	t.Run("ConfigurationReferenceChange", e.testConfigurationReferenceChange)
	t.Run("FirstPlanAfterAnnounce", e.testFirstPlanAfterAnnounce)
}

// An agent that serves peers asks for its first download plan only once
// vmappd has its first announcement (held back here by half a second):
// a plan asked before would not make the machine one of its region's
// swarm, and it would take every piece no peer holds from the stores.
func (e *env) testFirstPlanAfterAnnounce(t *testing.T) {
	t.Parallel()
	e.publish(t, ver{app: "fa", version: "1.0.0", install: "true"})
	e.machine(t, "fa-vm")
	e.set(t, "fa-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/fa/1.0.0"})
	var mu sync.Mutex
	var calls []string
	record := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(method, "/Announce") {
			time.Sleep(500 * time.Millisecond) // vmappd hears of it late
		}
		err := invoke(ctx, method, req, reply, cc, opts...)
		mu.Lock()
		calls = append(calls, path.Base(method))
		mu.Unlock()
		return err
	}
	tok, _ := e.tokens.Load("fa-vm")
	c, err := client.New(e.c.Addr, client.Options{Token: tok.(string), WaitForReady: true, DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(record)}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e.startAgent(t, "fa-vm", func(cfg *agent.Config) { cfg.Client, cfg.PeerListen = c, "127.0.0.1:0" })
	e.states(t, "fa-vm", map[string]string{"g/fa": "Installed"})
	mu.Lock()
	defer mu.Unlock()
	announced, planned := slices.Index(calls, "Announce"), slices.Index(calls, "GetDownloadPlan")
	if announced < 0 || planned < 0 || planned < announced {
		t.Fatalf("the agent's calls: %v; want its first Announce answered before its first GetDownloadPlan", calls)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// --- publishing ---

type ver struct {
	gallery                 string // default "g"
	app, version            string
	install, remove, update string
	settings                *pb.UserArtifactSettings
	pkg, defaultConfig      []byte
	// profile, when set, edits the publishing profile (custom actions,
	// health check).
	profile func(*pb.PublishingProfile)
}

// publish creates gallery/app (once) and the version, uploads its
// artifacts and waits for its replication.
func (e *env) publish(t *testing.T, v ver) {
	t.Helper()
	cat := e.c.Client.Catalog
	if v.gallery == "" {
		v.gallery = "g"
	}
	_, err := cat.CreateApplication(ctx(t), &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: v.gallery, Name: v.app, Location: "eastus", SupportedOsType: "Linux"}})
	if err != nil && !errs.Is(err, errs.AlreadyExists) {
		t.Fatal(err)
	}
	if v.remove == "" {
		v.remove = "true"
	}
	pp := &pb.PublishingProfile{
		ManageActions: &pb.UserArtifactManage{Install: v.install, Remove: v.remove, Update: v.update},
		Settings:      v.settings,
		TargetRegions: []*pb.TargetRegion{testcluster.Target("eastus", 1)},
	}
	if v.profile != nil {
		v.profile(pp)
	}
	if _, err := cat.CreateVersion(ctx(t), &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: v.gallery, Application: v.app, Name: v.version, Location: "eastus", PublishingProfile: pp,
	}}); err != nil {
		t.Fatal(err)
	}
	if v.pkg == nil {
		v.pkg = []byte("package of " + v.app + " " + v.version)
	}
	dir := t.TempDir()
	upload := func(k pb.ArtifactKind, data []byte) {
		path := filepath.Join(dir, k.String())
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Client.Upload(ctx(t), v.gallery, v.app, v.version, k, path, client.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if v.defaultConfig != nil {
		upload(pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION, v.defaultConfig)
	}
	upload(pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, v.pkg)
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := cat.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: v.gallery, Application: v.app, Version: v.version})
		if err != nil {
			t.Fatal(err)
		}
		if s := r.Version.ReplicationStatus.GetAggregatedState(); s == "Completed" {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%s/%s/%s never replicated: %s", v.gallery, v.app, v.version, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --- the fleet ---

func (e *env) machine(t *testing.T, name string) {
	t.Helper()
	e.create(t, &pb.Machine{Name: name, Region: "eastus", OsType: "Linux"})
}

// create creates a machine and keeps its agent credential for startAgent.
func (e *env) create(t *testing.T, m *pb.Machine) {
	t.Helper()
	r, err := e.fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: m})
	if err != nil {
		t.Fatal(err)
	}
	e.tokens.Store(m.Name, r.AgentToken)
}

func onVM(name string) *pb.ProfileTarget {
	return &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: name}}
}

func order(n int32) *int32 { return &n }

func (e *env) set(t *testing.T, machine string, app *pb.VMGalleryApplication) {
	t.Helper()
	if _, err := e.fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: onVM(machine), Application: app}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) get(t *testing.T, machine string) *pb.Machine {
	t.Helper()
	r, err := e.fl.GetMachine(ctx(t), &pb.GetMachineRequest{Name: machine})
	if err != nil {
		t.Fatal(err)
	}
	return r.Machine
}

// wait polls the machine until ok.
func (e *env) wait(t *testing.T, machine, what string, ok func(m *pb.Machine) bool) *pb.Machine {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		m := e.get(t, machine)
		if ok(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never %s; instance view:\n%s", machine, what, dump(m))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dump(m *pb.Machine) string {
	var b strings.Builder
	fmt.Fprintf(&b, "provisioning %s, applied %d\n", m.ProvisioningState, m.GetInstanceView().GetAppliedGeneration())
	for _, s := range m.GetInstanceView().GetApplications() {
		fmt.Fprintf(&b, "  %s %s %s op=%s reason=%q exit=%d attempts=%d tail=%q\n", s.Application, s.Version, s.State, s.Operation, s.Reason, s.ExitCode, s.Attempts, s.OutputTail)
	}
	return b.String()
}

func status(m *pb.Machine, app string) *pb.ApplicationStatus {
	for _, s := range m.GetInstanceView().GetApplications() {
		if s.Application == app {
			return s
		}
	}
	return nil
}

// states waits until every named application is in its state (and
// version, when given as "State@version").
func (e *env) states(t *testing.T, machine string, want map[string]string) *pb.Machine {
	t.Helper()
	return e.wait(t, machine, fmt.Sprint(want), func(m *pb.Machine) bool {
		for app, w := range want {
			s := status(m, app)
			state, version, _ := strings.Cut(w, "@")
			if s == nil || s.State != state || (version != "" && s.Version != version) {
				return false
			}
		}
		return true
	})
}

// --- agents ---

type agentProc struct {
	t      *testing.T
	cfg    agent.Config
	boot   atomic.Pointer[string]
	cancel context.CancelFunc
	done   chan error
}

func (e *env) startAgent(t *testing.T, machine string, mod func(*agent.Config)) *agentProc {
	t.Helper()
	p := &agentProc{t: t}
	boot := "boot-1"
	p.boot.Store(&boot)
	tok, _ := e.tokens.Load(machine)
	p.cfg = agent.Config{
		Server: e.c.Addr, Token: tok.(string), Machine: machine, Root: t.TempDir(),
		CommandTimeout: 20 * time.Second,
		BootID:         func() (string, error) { return *p.boot.Load(), nil },
		RetryBase:      time.Hour, RetryMax: time.Hour,
		ReconnectBase: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name()),
	}
	if mod != nil {
		mod(&p.cfg)
	}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *agentProc) start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan error, 1)
	go func() { p.done <- agent.Run(ctx, p.cfg) }()
}

// stop cancels the agent and waits for Run to return.
func (p *agentProc) stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Errorf("agent.Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		p.t.Errorf("agent.Run didn't return after its context ended")
	}
	p.cancel = nil
}

func (p *agentProc) setBoot(id string) { p.boot.Store(&id) }

func (p *agentProc) path(elem ...string) string {
	return filepath.Join(append([]string{p.cfg.Root}, elem...)...)
}

// --- marker files ---

// rec is a command that appends "<unix ns> <label> <pwd>" to marks/log.
func rec(marks, label string) string {
	return fmt.Sprintf(`echo "$(date +%%s%%N) %s $PWD" >> %s/log`, label, marks)
}

// awaitMark is a shell command that waits (a minute at most) until rec
// has written label.
func awaitMark(marks, label string) string {
	return fmt.Sprintf(`for i in $(seq 1200); do grep -q " %s " %s/log 2>/dev/null && break; sleep 0.05; done`, label, marks)
}

type mark struct {
	at    time.Time
	label string
	dir   string
}

// marksOf reads the marks of rec.
func marksOf(t *testing.T, marks string) []mark {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(marks, "log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []mark
	lines := strings.Split(string(b), "\n")
	// Complete lines only: a command may be writing the last one (or have
	// just created the file).
	for _, l := range lines[:len(lines)-1] {
		f := strings.Fields(l)
		if len(f) < 3 {
			t.Fatalf("bad mark %q", l)
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, mark{time.Unix(0, ns), f[1], f[2]})
	}
	return out
}

func labels(ms []mark) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.label)
	}
	return out
}

func at(t *testing.T, ms []mark, label string) time.Time {
	t.Helper()
	for _, m := range ms {
		if m.label == label {
			return m.at
		}
	}
	t.Fatalf("no mark %s in %v", label, labels(ms))
	return time.Time{}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// --- the tests ---

// The seeds' table, everything succeeding: order 1 (two applications, run
// together), then 2, then 3, then the unordered ones.
func (e *env) testOrderingAllSucceed(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	apps := []struct {
		name  string
		order *int32
	}{{"os-a1", order(1)}, {"os-b1", order(1)}, {"os-c2", order(2)}, {"os-d3", order(3)}, {"os-u1", nil}, {"os-u2", nil}}
	// Applications meant to run together each wait for the other's start
	// before they end (a bound of a minute only guards against a hang), so
	// that running them together is seen by the marks' order, not by how
	// soon a loaded machine starts the second one.
	partner := map[string]string{"os-a1": "os-b1", "os-b1": "os-a1", "os-u1": "os-u2", "os-u2": "os-u1"}
	for _, a := range apps {
		wait := "sleep 0.3"
		if p, ok := partner[a.name]; ok {
			wait = awaitMark(marks, p+"-start")
		}
		e.publish(t, ver{app: a.name, version: "1.0.0",
			install: rec(marks, a.name+"-start") + "; " + wait + "; " + rec(marks, a.name+"-end")})
	}
	e.machine(t, "os-vm")
	for _, a := range apps {
		e.set(t, "os-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/" + a.name + "/1.0.0", Order: a.order})
	}
	e.startAgent(t, "os-vm", nil)
	want := map[string]string{}
	for _, a := range apps {
		want["g/"+a.name] = "Installed"
	}
	e.states(t, "os-vm", want)
	ms := marksOf(t, marks)
	end := func(names ...string) time.Time {
		var last time.Time
		for _, n := range names {
			if x := at(t, ms, n+"-end"); x.After(last) {
				last = x
			}
		}
		return last
	}
	start := func(names ...string) time.Time {
		first := at(t, ms, names[0]+"-start")
		for _, n := range names[1:] {
			if x := at(t, ms, n+"-start"); x.Before(first) {
				first = x
			}
		}
		return first
	}
	if !end("os-a1", "os-b1").Before(start("os-c2")) || !end("os-c2").Before(start("os-d3")) || !end("os-d3").Before(start("os-u1", "os-u2")) {
		t.Fatalf("out of order: %v", labels(ms))
	}
	// The same order (and the unordered) run concurrently.
	if !start("os-a1", "os-b1").Before(end("os-a1")) || !at(t, ms, "os-b1-start").Before(at(t, ms, "os-a1-end")) || !at(t, ms, "os-a1-start").Before(at(t, ms, "os-b1-end")) {
		t.Fatalf("order 1 didn't run concurrently: %v", labels(ms))
	}
	if !at(t, ms, "os-u1-start").Before(at(t, ms, "os-u2-end")) || !at(t, ms, "os-u2-start").Before(at(t, ms, "os-u1-end")) {
		t.Fatalf("the unordered didn't run concurrently: %v", labels(ms))
	}
	ws, err := e.fl.WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: "os-vm"})
	if err != nil {
		t.Fatal(err)
	}
	gs, err := ws.Recv()
	if err != nil {
		t.Fatal(err)
	}
	gen := agent.GenerationNumber(gs.GoalState.Generation)
	m := e.wait(t, "os-vm", "applied", func(m *pb.Machine) bool { return m.InstanceView.AppliedGeneration == gen })
	if m.ProvisioningState != "Succeeded" || m.InstanceView.BootId != "boot-1" || m.InstanceView.AgentVersion == "" || m.InstanceView.AppliedGeneration == 0 || !m.InstanceView.Connected {
		t.Fatalf("machine %v", m)
	}
	s := status(m, "g/os-a1")
	if s.Version != "1.0.0" || s.Operation != "install" || s.ExitCode != 0 || s.Attempts != 1 || s.StartTime == nil || s.EndTime == nil || s.BytesDone != s.BytesTotal || s.BytesTotal == 0 {
		t.Fatalf("status %v", s)
	}
}

// The seeds' failure rules: order 1 has a failing and a succeeding
// application (both run), orders 2 and 3 are skipped, the unordered
// install whatever failed (one of them failing doesn't stop the other).
// Then the failed one is fixed and retried: the higher orders follow.
func (e *env) testOrderingFailureAndRetry(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	flag := filepath.Join(marks, "fixed")
	e.publish(t, ver{app: "of-x1", version: "1.0.0",
		install: rec(marks, "of-x1") + fmt.Sprintf("; sleep 0.2; test -f %s || { echo 'the flag is missing' >&2; exit 3; }", flag)})
	e.publish(t, ver{app: "of-y1", version: "1.0.0", install: "sleep 0.2; " + rec(marks, "of-y1")})
	e.publish(t, ver{app: "of-z2", version: "1.0.0", install: rec(marks, "of-z2")})
	e.publish(t, ver{app: "of-w3", version: "1.0.0", install: rec(marks, "of-w3")})
	e.publish(t, ver{app: "of-u", version: "1.0.0", install: rec(marks, "of-u")})
	e.publish(t, ver{app: "of-ubad", version: "1.0.0", install: rec(marks, "of-ubad") + "; echo broken; exit 7"})
	e.publish(t, ver{app: "of-u2", version: "1.0.0", install: "sleep 0.5; " + rec(marks, "of-u2")})
	e.machine(t, "of-vm")
	e.set(t, "of-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/of-x1/1.0.0", Order: order(1), TreatFailureAsDeploymentFailure: true})
	e.set(t, "of-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/of-y1/1.0.0", Order: order(1)})
	e.set(t, "of-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/of-z2/1.0.0", Order: order(2)})
	e.set(t, "of-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/of-w3/1.0.0", Order: order(3)})
	e.set(t, "of-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/of-u/1.0.0"})
	e.set(t, "of-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/of-ubad/1.0.0"})
	e.set(t, "of-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/of-u2/1.0.0"})
	e.startAgent(t, "of-vm", nil)
	m := e.states(t, "of-vm", map[string]string{"g/of-x1": "Failed", "g/of-y1": "Installed", "g/of-z2": "Skipped", "g/of-w3": "Skipped",
		"g/of-u": "Installed", "g/of-ubad": "Failed", "g/of-u2": "Installed"})
	ms := marksOf(t, marks)
	if got := labels(ms); !slices.Contains(got, "of-x1") || !slices.Contains(got, "of-y1") || slices.Contains(got, "of-z2") || slices.Contains(got, "of-w3") {
		t.Fatalf("ran %v", got)
	}
	if !at(t, ms, "of-x1").Before(at(t, ms, "of-u")) || !at(t, ms, "of-y1").Before(at(t, ms, "of-u")) {
		t.Fatalf("the unordered ran before order 1: %v", labels(ms))
	}
	x := status(m, "g/of-x1")
	if x.Reason != "the install command exited with code 3" || x.ExitCode != 3 || !strings.Contains(x.OutputTail, "the flag is missing") ||
		!x.TreatFailureAsDeploymentFailure || x.Attempts != 1 || x.Operation != "install" {
		t.Fatalf("of-x1 %v", x)
	}
	for _, app := range []string{"g/of-z2", "g/of-w3"} {
		if s := status(m, app); s.Reason != "an application with a lower order (1) failed: g/of-x1" {
			t.Fatalf("%s %v", app, s)
		}
	}
	if s := status(m, "g/of-ubad"); s.ExitCode != 7 || !strings.Contains(s.OutputTail, "broken") || s.TreatFailureAsDeploymentFailure {
		t.Fatalf("of-ubad %v", s)
	}
	if m.ProvisioningState != "Failed" {
		t.Fatalf("provisioning state %s with a treatFailureAsDeploymentFailure application failed", m.ProvisioningState)
	}

	// Fixed and retried: order 1 succeeds, 2 and 3 follow.
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fl.RetryApplication(ctx(t), &pb.RetryApplicationRequest{Target: onVM("of-vm"), Application: "g/of-x1"}); err != nil {
		t.Fatal(err)
	}
	m = e.states(t, "of-vm", map[string]string{"g/of-x1": "Installed", "g/of-z2": "Installed", "g/of-w3": "Installed", "g/of-ubad": "Failed"})
	if s := status(m, "g/of-x1"); s.Attempts != 2 || s.ExitCode != 0 {
		t.Fatalf("of-x1 %v", s)
	}
	if m.ProvisioningState != "Succeeded" {
		t.Fatalf("provisioning state %s", m.ProvisioningState)
	}
	ms = marksOf(t, marks)
	if !at(t, ms, "of-z2").Before(at(t, ms, "of-w3")) {
		t.Fatalf("out of order: %v", labels(ms))
	}
	// Only the retried application ran again; the rest stayed put.
	if n := strings.Count(strings.Join(labels(ms), " "), "of-y1"); n != 1 {
		t.Fatalf("of-y1 ran %d times", n)
	}
}

// Updates: with an update command (run in the new directory), and without
// (the old version's remove in the old directory, then the new install).
func (e *env) testUpdate(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	for _, app := range []string{"up-u", "up-r"} {
		e.publish(t, ver{app: app, version: "1.0.0", install: rec(marks, app+"-install-1"), remove: rec(marks, app+"-remove-1")})
	}
	e.publish(t, ver{app: "up-u", version: "2.0.0", install: rec(marks, "up-u-install-2"), remove: rec(marks, "up-u-remove-2"),
		update: rec(marks, "up-u-update-2-from-$VMAPP_PREVIOUS_VERSION")})
	e.publish(t, ver{app: "up-r", version: "2.0.0", install: rec(marks, "up-r-install-2"), remove: rec(marks, "up-r-remove-2")})
	e.machine(t, "up-vm")
	e.set(t, "up-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/up-u/1.0.0"})
	e.set(t, "up-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/up-r/1.0.0"})
	p := e.startAgent(t, "up-vm", nil)
	e.states(t, "up-vm", map[string]string{"g/up-u": "Installed@1.0.0", "g/up-r": "Installed@1.0.0"})
	if got := read(t, p.path("g", "up-u", "1.0.0", "up-u")); got != "package of up-u 1.0.0" {
		t.Fatalf("package %q", got)
	}
	e.set(t, "up-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/up-u/2.0.0"})
	e.set(t, "up-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/up-r/2.0.0"})
	m := e.states(t, "up-vm", map[string]string{"g/up-u": "Installed@2.0.0", "g/up-r": "Installed@2.0.0"})
	if s := status(m, "g/up-u"); s.Operation != "update" {
		t.Fatalf("up-u %v", s)
	}
	ms := marksOf(t, marks)
	var u, r []string
	for _, x := range ms {
		if strings.HasPrefix(x.label, "up-u") {
			u = append(u, x.label+" "+filepath.Base(x.dir))
		} else {
			r = append(r, x.label+" "+filepath.Base(x.dir))
		}
	}
	if want := []string{"up-u-install-1 1.0.0", "up-u-update-2-from-1.0.0 2.0.0"}; !slices.Equal(u, want) {
		t.Fatalf("up-u ran %v, want %v", u, want)
	}
	if want := []string{"up-r-install-1 1.0.0", "up-r-remove-1 1.0.0", "up-r-install-2 2.0.0"}; !slices.Equal(r, want) {
		t.Fatalf("up-r ran %v, want %v", r, want)
	}
	for _, app := range []string{"up-u", "up-r"} {
		if exists(p.path("g", app, "1.0.0")) || read(t, p.path("g", app, "2.0.0", app)) != "package of "+app+" 2.0.0" {
			t.Fatalf("%s: the old directory is still there, or the new package is wrong", app)
		}
	}

	// Idempotent across restarts: nothing runs again.
	p.stop()
	p.start()
	time.Sleep(1500 * time.Millisecond)
	e.states(t, "up-vm", map[string]string{"g/up-u": "Installed@2.0.0", "g/up-r": "Installed@2.0.0"})
	if n := len(marksOf(t, marks)); n != len(ms) {
		t.Fatalf("a restarted agent ran %d commands", n-len(ms))
	}
}

// Removal when the application leaves the profile.
func (e *env) testRemoval(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	e.publish(t, ver{app: "rm-a", version: "1.0.0", install: rec(marks, "install"), remove: rec(marks, "remove")})
	e.publish(t, ver{app: "rm-b", version: "1.0.0", install: rec(marks, "install-b")})
	e.machine(t, "rm-vm")
	e.set(t, "rm-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/rm-a/1.0.0", Order: order(1)})
	p := e.startAgent(t, "rm-vm", nil)
	e.states(t, "rm-vm", map[string]string{"g/rm-a": "Installed"})
	if _, err := e.fl.RemoveApplication(ctx(t), &pb.RemoveApplicationRequest{Target: onVM("rm-vm"), Application: "g/rm-a"}); err != nil {
		t.Fatal(err)
	}
	e.set(t, "rm-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/rm-b/1.0.0"})
	e.wait(t, "rm-vm", "without rm-a", func(m *pb.Machine) bool {
		return status(m, "g/rm-a") == nil && status(m, "g/rm-b").GetState() == "Installed"
	})
	ms := marksOf(t, marks)
	if got := labels(ms); !slices.Equal(got, []string{"install", "remove", "install-b"}) {
		t.Fatalf("ran %v", got)
	}
	if ms[1].dir != p.path("g", "rm-a", "1.0.0") || exists(p.path("g", "rm-a")) {
		t.Fatalf("remove ran in %s; directory left: %v", ms[1].dir, exists(p.path("g", "rm-a")))
	}
}

// The configuration: inline override, configurationReference, the default,
// none; the file names with and without packageFileName / configFileName.
func (e *env) testConfiguration(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from the url")
	}))
	t.Cleanup(srv.Close)
	def := []byte(`{"default": true}`)
	e.publish(t, ver{app: "cf-inline", version: "1.0.0", install: "true", defaultConfig: def})
	e.publish(t, ver{app: "cf-url", version: "1.0.0", install: "true", defaultConfig: def})
	e.publish(t, ver{app: "cf-default", version: "1.0.0", install: "test -f cf-default && test -f cf-default-config", defaultConfig: def})
	e.publish(t, ver{app: "cf-none", version: "1.0.0", install: "true"})
	e.publish(t, ver{app: "cf-named", version: "1.0.0", install: "test -f tool.bin && test -f conf.json", defaultConfig: def,
		settings: &pb.UserArtifactSettings{PackageFileName: "tool.bin", ConfigFileName: "conf.json"}})
	e.machine(t, "cf-vm")
	e.set(t, "cf-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/cf-inline/1.0.0", Configuration: []byte("inline!")})
	e.set(t, "cf-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/cf-url/1.0.0", ConfigurationReference: srv.URL + "/cfg?sig=x"})
	e.set(t, "cf-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/cf-default/1.0.0"})
	e.set(t, "cf-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/cf-none/1.0.0"})
	e.set(t, "cf-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/cf-named/1.0.0"})
	p := e.startAgent(t, "cf-vm", nil)
	e.states(t, "cf-vm", map[string]string{"g/cf-inline": "Installed", "g/cf-url": "Installed", "g/cf-default": "Installed", "g/cf-none": "Installed", "g/cf-named": "Installed"})
	files := func(app string) []string {
		es, err := os.ReadDir(p.path("g", app, "1.0.0"))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	for app, want := range map[string][]string{
		"cf-inline": {"cf-inline", "cf-inline-config"}, "cf-url": {"cf-url", "cf-url-config"}, "cf-default": {"cf-default", "cf-default-config"},
		"cf-none": {"cf-none"}, "cf-named": {"conf.json", "tool.bin"},
	} {
		if got := files(app); !slices.Equal(got, want) {
			t.Errorf("%s has %v, want %v", app, got, want)
		}
	}
	for path, want := range map[string]string{
		"cf-inline/1.0.0/cf-inline-config": "inline!", "cf-url/1.0.0/cf-url-config": "from the url",
		"cf-default/1.0.0/cf-default-config": string(def), "cf-named/1.0.0/conf.json": string(def),
		"cf-named/1.0.0/tool.bin": "package of cf-named 1.0.0", "cf-none/1.0.0/cf-none": "package of cf-none 1.0.0",
	} {
		if got := read(t, p.path("g", path)); got != want {
			t.Errorf("%s is %q, want %q", path, got, want)
		}
	}

	// A new configuration of the same version is an update.
	e.set(t, "cf-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/cf-inline/1.0.0", Configuration: []byte("inline 2")})
	e.wait(t, "cf-vm", "reconfigured", func(m *pb.Machine) bool {
		s := status(m, "g/cf-inline")
		return s.GetState() == "Installed" && s.Operation == "update"
	})
	if got := read(t, p.path("g", "cf-inline/1.0.0/cf-inline-config")); got != "inline 2" {
		t.Fatalf("configuration %q", got)
	}
}

// sleepy is an install command that records each run and sleeps through
// the first one.
func sleepy(marks, label string) string {
	return fmt.Sprintf(`n=$(grep -c ' %[2]s ' %[1]s/log 2>/dev/null); %[3]s; if [ "${n:-0}" = 0 ]; then sleep 60; fi`, marks, label, rec(marks, label))
}

// A reboot during installs: Rerun runs the install again, None records it
// interrupted (until retried).
func (e *env) testReboot(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	e.publish(t, ver{app: "rb-rerun", version: "1.0.0", install: sleepy(marks, "rerun"), settings: &pb.UserArtifactSettings{ScriptBehaviorAfterReboot: "Rerun"}})
	e.publish(t, ver{app: "rb-none", version: "1.0.0", install: sleepy(marks, "none"), settings: &pb.UserArtifactSettings{ScriptBehaviorAfterReboot: "None"}})
	e.machine(t, "rb-vm")
	e.set(t, "rb-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/rb-rerun/1.0.0"})
	e.set(t, "rb-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/rb-none/1.0.0", TreatFailureAsDeploymentFailure: true})
	p := e.startAgent(t, "rb-vm", nil)
	e.states(t, "rb-vm", map[string]string{"g/rb-rerun": "Installing", "g/rb-none": "Installing"})
	waitMarks(t, marks, 2)
	p.stop() // the machine goes down mid-install
	p.setBoot("boot-2")
	p.start()
	m := e.states(t, "rb-vm", map[string]string{"g/rb-rerun": "Installed", "g/rb-none": "Failed"})
	if s := status(m, "g/rb-none"); s.Reason != "interrupted by a reboot" || s.Operation != "install" || s.Attempts != 1 {
		t.Fatalf("rb-none %v", s)
	}
	if s := status(m, "g/rb-rerun"); s.Attempts != 2 {
		t.Fatalf("rb-rerun %v: want 2 attempts", s)
	}
	if m.InstanceView.BootId != "boot-2" || m.ProvisioningState != "Failed" {
		t.Fatalf("machine %s", dump(m))
	}
	if got := labels(marksOf(t, marks)); !slices.Equal(sorted(got), []string{"none", "rerun", "rerun"}) {
		t.Fatalf("ran %v", got)
	}
	if _, err := e.fl.RetryApplication(ctx(t), &pb.RetryApplicationRequest{Target: onVM("rb-vm"), Application: "g/rb-none"}); err != nil {
		t.Fatal(err)
	}
	e.states(t, "rb-vm", map[string]string{"g/rb-none": "Installed"})
	if got := labels(marksOf(t, marks)); !slices.Equal(sorted(got), []string{"none", "none", "rerun", "rerun"}) {
		t.Fatalf("ran %v", got)
	}
}

// An agent killed mid-command (same boot) runs the command again, whatever
// scriptBehaviorAfterReboot says.
func (e *env) testAgentCrash(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	e.publish(t, ver{app: "cr-a", version: "1.0.0", install: sleepy(marks, "a")})
	e.machine(t, "cr-vm")
	e.set(t, "cr-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/cr-a/1.0.0"})
	p := e.startAgent(t, "cr-vm", nil)
	waitMarks(t, marks, 1)
	p.stop()
	p.start()
	m := e.states(t, "cr-vm", map[string]string{"g/cr-a": "Installed"})
	if got := labels(marksOf(t, marks)); !slices.Equal(got, []string{"a", "a"}) {
		t.Fatalf("ran %v", got)
	}
	if s := status(m, "g/cr-a"); s.Attempts != 2 || s.Operation != "install" {
		t.Fatalf("status %v: want install, 2 attempts (the one cut short counts)", s)
	}
}

// A failed install is retried on its own, with backoff. The test's clock
// moves time: each state holds until the test acts, whatever the speed of
// the machine.
func (e *env) testAutomaticRetry(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	flag := filepath.Join(marks, "fixed")
	e.publish(t, ver{app: "ar-a", version: "1.0.0", install: rec(marks, "a") + fmt.Sprintf("; test -f %s", flag)})
	e.machine(t, "ar-vm")
	e.set(t, "ar-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/ar-a/1.0.0"})
	clk := clockwork.NewFakeClockAt(time.Now())
	e.startAgent(t, "ar-vm", func(c *agent.Config) { c.Clock, c.RetryBase, c.RetryMax = clk, time.Minute, 4*time.Minute })
	attempt := func(n int32, state string) {
		t.Helper()
		e.wait(t, "ar-vm", fmt.Sprintf("%s at attempt %d", state, n), func(m *pb.Machine) bool {
			s := status(m, "g/ar-a")
			return s.GetState() == state && s.Attempts == n
		})
		if got := len(marksOf(t, marks)); got != int(n) {
			t.Fatalf("the install ran %d times in %d attempts", got, n)
		}
	}
	retry := func() {
		t.Helper()
		// The retry's timer is the agent's only one while the stream holds.
		if err := clk.BlockUntilContext(ctx(t), 1); err != nil {
			t.Fatalf("the agent set no timer for the retry: %v", err)
		}
		clk.Advance(5 * time.Minute) // past the longest backoff: 4m +25%
	}
	attempt(1, "Failed")
	retry()
	attempt(2, "Failed")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	retry()
	attempt(3, "Installed")
}

// A command past the timeout is killed with its process group. The
// test's clock moves the timeout once the command started its process.
func (e *env) testCommandTimeout(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	bg := filepath.Join(marks, "bg")
	e.publish(t, ver{app: "to-a", version: "1.0.0", install: fmt.Sprintf("echo started; sleep 60 & echo $! > %s; sleep 60", bg)})
	e.machine(t, "to-vm")
	e.set(t, "to-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/to-a/1.0.0"})
	clk := clockwork.NewFakeClockAt(time.Now())
	e.startAgent(t, "to-vm", func(c *agent.Config) { c.Clock, c.CommandTimeout = clk, time.Minute })
	deadline := time.Now().Add(45 * time.Second)
	for !exists(bg) || read(t, bg) == "" {
		if time.Now().After(deadline) {
			t.Fatal("the install never started its process")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The command's timeout is the agent's only timer now.
	if err := clk.BlockUntilContext(ctx(t), 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	m := e.states(t, "to-vm", map[string]string{"g/to-a": "Failed"})
	if s := status(m, "g/to-a"); s.Reason != "the install command timed out after 1m0s" || !strings.Contains(s.OutputTail, "started") || s.ExitCode != -1 {
		t.Fatalf("status %v", s)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(read(t, bg)))
	if err != nil {
		t.Fatal(err)
	}
	proctest.WaitGone(t, pid)
}

// The stream breaks (vmappd goes away for a while): the agent reconnects
// and applies what changed meanwhile.
func (e *env) testReconnect(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	e.publish(t, ver{app: "rc-a", version: "1.0.0", install: rec(marks, "a")})
	e.publish(t, ver{app: "rc-b", version: "1.0.0", install: rec(marks, "b")})
	e.machine(t, "rc-vm")
	e.set(t, "rc-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/rc-a/1.0.0"})
	px := startProxy(t, e.c.Addr)
	e.startAgent(t, "rc-vm", func(c *agent.Config) { c.Server = px.addr })
	e.states(t, "rc-vm", map[string]string{"g/rc-a": "Installed"})
	px.down()
	e.wait(t, "rc-vm", "disconnected", func(m *pb.Machine) bool { return !m.InstanceView.Connected })
	e.set(t, "rc-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/rc-b/1.0.0"})
	time.Sleep(500 * time.Millisecond)
	px.up()
	m := e.states(t, "rc-vm", map[string]string{"g/rc-a": "Installed", "g/rc-b": "Installed"})
	if !m.InstanceView.Connected {
		t.Fatal("not connected")
	}
	if got := labels(marksOf(t, marks)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("ran %v", got)
	}
}

func sorted(s []string) []string { slices.Sort(s); return s }

func waitMarks(t *testing.T, marks string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(marksOf(t, marks)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("never %d marks: %v", n, labels(marksOf(t, marks)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxy forwards a port to vmappd; down closes it and every connection
// (as a vmappd going away would), up listens on the same port again.
type proxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	lis    net.Listener
	conns  map[net.Conn]bool
}

func startProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target, conns: map[net.Conn]bool{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = lis.Addr().String()
	p.serve(lis)
	t.Cleanup(p.down)
	return p
}

func (p *proxy) serve(lis net.Listener) {
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[s] = true, true
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) up() {
	var lis net.Listener
	var err error
	for range 50 {
		if lis, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(lis)
}

// A scale set of 5 instances, each with its agent, gets the scale set's
// application at "latest" with automatic upgrade: every instance installs
// it, then moves to a newer version once it is published and replicated.
func (e *env) testScaleSetAutomaticUpgrade(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	e.publish(t, ver{app: "ss-app", version: "1.0.0", install: rec(marks, "install-1"), remove: rec(marks, "remove-1")})
	if _, err := e.fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "ss", Region: "eastus", OsType: "Linux"}}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 5 {
		name := fmt.Sprintf("ss-%d", i)
		e.create(t, &pb.Machine{Name: name, ScaleSet: "ss"})
		e.startAgent(t, name, nil)
		names = append(names, name)
	}
	if _, err := e.fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "ss"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/ss-app/latest", EnableAutomaticUpgrade: true}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		e.states(t, n, map[string]string{"g/ss-app": "Installed@1.0.0"})
	}
	e.publish(t, ver{app: "ss-app", version: "2.0.0", install: rec(marks, "install-2"), remove: rec(marks, "remove-2")})
	for _, n := range names {
		e.states(t, n, map[string]string{"g/ss-app": "Installed@2.0.0"})
	}
	count := map[string]int{}
	for _, m := range marksOf(t, marks) {
		count[m.label]++
	}
	if count["install-1"] != 5 || count["remove-1"] != 5 || count["install-2"] != 5 {
		t.Fatalf("commands run across the 5 instances: %v", count)
	}
}

// testSharedGallery: a machine of tenant "other" installs a version from
// gallery g of tenant "default", shared with "other"; its agent runs with
// its own credential and names no tenant.
func (e *env) testSharedGallery(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	e.publish(t, ver{app: "sh-app", version: "1.0.0", install: rec(marks, "shared")})
	if _, err := pb.NewAccessServiceClient(e.c.Client.Conn()).ShareGallery(ctx(t), &pb.ShareGalleryRequest{Gallery: "g", Grantee: "other"}); err != nil {
		t.Fatal(err)
	}
	inOther := func() context.Context { return client.InTenant(ctx(t), "other") }
	r, err := e.fl.CreateMachine(inOther(), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "sh-vm", Region: "eastus", OsType: "Linux"}})
	if err != nil {
		t.Fatal(err)
	}
	e.tokens.Store("sh-vm", r.AgentToken)
	if _, err := e.fl.SetApplication(inOther(), &pb.SetApplicationRequest{Target: onVM("sh-vm"),
		Application: &pb.VMGalleryApplication{PackageReferenceId: "default:g/sh-app/1.0.0"}}); err != nil {
		t.Fatal(err)
	}
	p := e.startAgent(t, "sh-vm", nil)
	deadline := time.Now().Add(45 * time.Second)
	for {
		m, err := e.fl.GetMachine(inOther(), &pb.GetMachineRequest{Name: "sh-vm"})
		if err != nil {
			t.Fatal(err)
		}
		if s := status(m.Machine, "default:g/sh-app"); s != nil && s.State == "Installed" && s.Version == "1.0.0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sh-vm never installed default:g/sh-app:\n%s", dump(m.Machine))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Its directory names the gallery's tenant, as its packageReferenceId
	// does.
	if ms := marksOf(t, marks); !slices.Equal(labels(ms), []string{"shared"}) || ms[0].dir != p.path("default:g", "sh-app", "1.0.0") {
		t.Fatalf("ran %v in %s", labels(ms), ms[0].dir)
	}
}

// Applications of one name in two galleries install side by side, each in
// <root>/<gallery>/<application>/<version>; removing one leaves the other.
// A gallery named as the agent's own directory can't be installed and
// harms nothing.
func (e *env) testTwoGalleries(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	for _, g := range []string{"g2", ".vmapp-agent"} {
		if _, err := e.c.Client.Catalog.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: g, Location: "eastus"}}); err != nil {
			t.Fatal(err)
		}
	}
	e.publish(t, ver{app: "tg-tools", version: "1.0.0", install: rec(marks, "g"), remove: rec(marks, "g-remove")})
	e.publish(t, ver{gallery: "g2", app: "tg-tools", version: "2.0.0", install: rec(marks, "g2")})
	e.publish(t, ver{gallery: ".vmapp-agent", app: "tg-tools", version: "1.0.0", install: rec(marks, "dot")})
	e.machine(t, "tg-vm")
	for _, ref := range []string{"g/tg-tools/1.0.0", "g2/tg-tools/2.0.0", ".vmapp-agent/tg-tools/1.0.0"} {
		e.set(t, "tg-vm", &pb.VMGalleryApplication{PackageReferenceId: ref})
	}
	p := e.startAgent(t, "tg-vm", nil)
	m := e.states(t, "tg-vm", map[string]string{"g/tg-tools": "Installed@1.0.0", "g2/tg-tools": "Installed@2.0.0", ".vmapp-agent/tg-tools": "Failed"})
	if s, want := status(m, ".vmapp-agent/tg-tools"), "gallery '.vmapp-agent' can't name a directory under the root: the agent keeps its own files in "+p.path(".vmapp-agent"); s.Reason != want {
		t.Fatalf(".vmapp-agent/tg-tools: %q, want %q", s.Reason, want)
	}
	ran := map[string]string{}
	for _, x := range marksOf(t, marks) {
		ran[x.label] = x.dir
	}
	if want := map[string]string{"g": p.path("g", "tg-tools", "1.0.0"), "g2": p.path("g2", "tg-tools", "2.0.0")}; !maps.Equal(ran, want) {
		t.Fatalf("ran %v, want %v", ran, want)
	}
	for path, want := range map[string]string{"g/tg-tools/1.0.0/tg-tools": "package of tg-tools 1.0.0", "g2/tg-tools/2.0.0/tg-tools": "package of tg-tools 2.0.0"} {
		if got := read(t, p.path(path)); got != want {
			t.Fatalf("%s is %q, want %q", path, got, want)
		}
	}
	if exists(p.path(".vmapp-agent", "tg-tools")) {
		t.Fatal("the agent wrote into its own directory for gallery .vmapp-agent")
	}

	if _, err := e.fl.RemoveApplication(ctx(t), &pb.RemoveApplicationRequest{Target: onVM("tg-vm"), Application: "g/tg-tools"}); err != nil {
		t.Fatal(err)
	}
	e.wait(t, "tg-vm", "without g/tg-tools", func(m *pb.Machine) bool { return status(m, "g/tg-tools") == nil })
	if ran := marksOf(t, marks); labels(ran)[len(ran)-1] != "g-remove" || ran[len(ran)-1].dir != p.path("g", "tg-tools", "1.0.0") {
		t.Fatalf("ran %v", labels(ran))
	}
	if exists(p.path("g")) || !exists(p.path("g2", "tg-tools", "2.0.0", "tg-tools")) {
		t.Fatalf("after removing g/tg-tools: %s is there: %v; g2's package is there: %v", p.path("g"), exists(p.path("g")), exists(p.path("g2", "tg-tools", "2.0.0", "tg-tools")))
	}
}

// An agent upgraded over an earlier one's installs, laid out as
// <root>/<application>/<version>: each stays where it is until it is
// updated or removed, which runs its remove command in its directory and
// deletes the directory.
func (e *env) testOldLayout(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	e.publish(t, ver{app: "ol-up", version: "2.0.0", install: rec(marks, "up-install-2")})
	e.publish(t, ver{app: "ol-keep", version: "1.0.0", install: rec(marks, "keep-install")})
	e.machine(t, "ol-vm")
	e.set(t, "ol-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/ol-up/2.0.0"})
	e.set(t, "ol-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/ol-keep/1.0.0"})
	p := e.startAgent(t, "ol-vm", func(c *agent.Config) {
		apps := map[string]any{}
		for _, app := range []string{"ol-up", "ol-rm", "ol-keep"} {
			dir := filepath.Join(c.Root, app, "1.0.0")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, app), []byte("package of "+app+" 1.0.0"), 0o600); err != nil {
				t.Fatal(err)
			}
			apps["g/"+app] = map[string]any{"gallery": "g", "application": app, "attempts": 1,
				"installed": map[string]any{"version": "1.0.0", "dir": dir, "remove": rec(marks, app+"-remove"), "time": time.Now()},
				"status":    map[string]any{"version": "1.0.0", "state": "Installed", "operation": "install", "attempts": 1}}
		}
		b, err := json.Marshal(map[string]any{"schema": 1, "bootId": "boot-1", "apps": apps})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(c.Root, agent.StateDir), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.Root, agent.StateDir, agent.StateFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
	})
	e.wait(t, "ol-vm", "ol-up updated, ol-rm removed", func(m *pb.Machine) bool {
		return status(m, "g/ol-up").GetState() == "Installed" && status(m, "g/ol-up").GetVersion() == "2.0.0" &&
			status(m, "g/ol-keep").GetState() == "Installed" && status(m, "g/ol-rm") == nil
	})
	ran := map[string]string{}
	for _, x := range marksOf(t, marks) {
		ran[x.label] = x.dir
	}
	want := map[string]string{"ol-rm-remove": p.path("ol-rm", "1.0.0"), "ol-up-remove": p.path("ol-up", "1.0.0"), "up-install-2": p.path("g", "ol-up", "2.0.0")}
	if !maps.Equal(ran, want) {
		t.Fatalf("ran %v, want %v", ran, want)
	}
	if exists(p.path("ol-rm")) || exists(p.path("ol-up")) || read(t, p.path("ol-keep", "1.0.0", "ol-keep")) != "package of ol-keep 1.0.0" {
		t.Fatal("the old directories of the updated and the removed applications are still there, or the kept one's package is gone")
	}

	if _, err := e.fl.RemoveApplication(ctx(t), &pb.RemoveApplicationRequest{Target: onVM("ol-vm"), Application: "g/ol-keep"}); err != nil {
		t.Fatal(err)
	}
	e.wait(t, "ol-vm", "without ol-keep", func(m *pb.Machine) bool { return status(m, "g/ol-keep") == nil })
	if ms := marksOf(t, marks); ms[len(ms)-1].label != "ol-keep-remove" || ms[len(ms)-1].dir != p.path("ol-keep", "1.0.0") || exists(p.path("ol-keep")) {
		t.Fatalf("ran %v; %s is there: %v", labels(ms), p.path("ol-keep"), exists(p.path("ol-keep")))
	}
}

// errorLog keeps the error records of a logger.
type errorLog struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *errorLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelError }
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler            { return l }
func (l *errorLog) WithGroup(string) slog.Handler                 { return l }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r.Clone())
	return nil
}

func (l *errorLog) records() []slog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

func attr(r slog.Record, key string) slog.Value {
	var v slog.Value
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
		}
		return true
	})
	return v
}

// The machine is deleted under its agent: the agent logs an error naming
// the cause and asks again after RevokedRetry (±25%) only. The test's
// clock moves time, and counts the agent's timers.
func (e *env) testMachineDeleted(t *testing.T) {
	t.Parallel()
	e.machine(t, "del-vm")
	clk := clockwork.NewFakeClockAt(time.Now())
	errLog := &errorLog{}
	e.startAgent(t, "del-vm", func(c *agent.Config) {
		c.Clock, c.RevokedRetry = clk, 10*time.Minute
		c.Logger = slog.New(slog.NewMultiHandler(c.Logger.Handler(), errLog))
	})
	e.wait(t, "del-vm", "connected", func(m *pb.Machine) bool { return m.GetInstanceView().GetConnected() })
	if _, err := e.fl.DeleteMachine(ctx(t), &pb.DeleteMachineRequest{Name: "del-vm"}); err != nil {
		t.Fatal(err)
	}
	// Refused: the agent waits on its only timer.
	waited := func(n int) time.Duration {
		t.Helper()
		if err := clk.BlockUntilContext(ctx(t), 1); err != nil {
			t.Fatal(err)
		}
		recs := errLog.records()
		if len(recs) != n {
			t.Fatalf("%d error records, want %d: %v", len(recs), n, recs)
		}
		r := recs[n-1]
		d := attr(r, "retry_in").Duration()
		if !strings.Contains(r.Message, "deleted") || d < 7*time.Minute || d > 13*time.Minute {
			t.Fatalf("record %q retry_in %v: want the cause, and 10m ±25%%", r.Message, d)
		}
		return d
	}
	d := waited(1)
	clk.Advance(d - time.Second)
	if n := len(errLog.records()); n != 1 {
		t.Fatalf("the agent asked again %v after the refusal, before retry_in %v", d-time.Second, d)
	}
	clk.Advance(2 * time.Second) // retry_in is rounded to the second
	waited(2)
}

// An agent that runs on another OS than its machine's osType is refused
// for good: with ExitOnRevoked it stops, saying why, having run nothing.
func (e *env) testWrongOS(t *testing.T) {
	t.Parallel()
	e.create(t, &pb.Machine{Name: "win-vm", Region: "eastus", OsType: "Windows"})
	tok, _ := e.tokens.Load("win-vm")
	err := agent.Run(ctx(t), agent.Config{Server: e.c.Addr, Token: tok.(string), Machine: "win-vm", Root: t.TempDir(),
		BootID: func() (string, error) { return "boot-1", nil }, ExitOnRevoked: true, ReconnectBase: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if !errors.Is(err, agent.ErrRevoked) || !strings.Contains(err.Error(), "machine 'win-vm' was created with osType Windows, but its agent runs on Linux") {
		t.Fatalf("agent.Run: %v; want ErrRevoked for the osType", err)
	}
}
