package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/client/agent"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// rolloutEnv is a real vmappd process on a real MinIO, gallery g with
// application a, and real agents (in this process) on scale sets' machines,
// each with its own root under dir/agents/<machine>. Versions' commands
// append "<unix ns> <version> <what> <working directory>" to marks.
type rolloutEnv struct {
	t   *testing.T
	ctx context.Context
	d   *fixed    // the vmappd process; nil on a cluster (vc)
	vc  *vcluster // the cluster, when it is one
	// c calls vmappd (every node of a cluster); addr is where agents
	// reach it.
	c     *client.Client
	addr  string
	fl    pb.FleetServiceClient
	ro    pb.RolloutServiceClient
	dir   string
	marks string
	// tokens are the machines' agent credentials; stops stop their agents.
	tokens map[string]string
	stops  map[string]func()
	// agentLog has every agent's warnings and errors.
	agentLog     strings.Builder
	agentLogLock lockedWriter
}

// rolloutRegions is the regions file of a region on MinIO m.
func rolloutRegions(m *miniotest.Server) string {
	return fmt.Sprintf("regions:\n  - name: eastus\n    endpoints: [{url: %q, bucket: vmapp-eastus}]\n", m.Endpoint())
}

func newRolloutEnv(t *testing.T) *rolloutEnv {
	if testing.Short() {
		t.Skip("builds vmappd and runs MinIO")
	}
	d := startFixed(t, rolloutRegions(miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))))
	return setupRolloutEnv(t, &rolloutEnv{d: d, c: d.c, addr: d.addr})
}

// newClusterRolloutEnv is newRolloutEnv on a cluster of three nodes.
func newClusterRolloutEnv(t *testing.T) *rolloutEnv {
	if testing.Short() {
		t.Skip("builds vmappd and runs MinIO")
	}
	vc := startCluster(t, rolloutRegions(miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))), clusterOpts{nodes: 3})
	return setupRolloutEnv(t, &rolloutEnv{vc: vc, c: vc.c, addr: vc.servers()})
}

// setupRolloutEnv makes gallery g and application a with e.c.
func setupRolloutEnv(t *testing.T, e *rolloutEnv) *rolloutEnv {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // guards against hangs only
	t.Cleanup(cancel)
	e.t, e.ctx, e.dir, e.tokens, e.stops = t, ctx, t.TempDir(), map[string]string{}, map[string]func(){}
	e.agentLogLock.w = &e.agentLog
	e.fl, e.ro = pb.NewFleetServiceClient(e.c.Conn()), pb.NewRolloutServiceClient(e.c.Conn())
	e.marks = filepath.Join(e.dir, "marks")
	must := must(t)
	must(e.c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "eastus"}}))
	must(e.c.Catalog.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "a", Location: "eastus", SupportedOsType: "Linux"}}))
	return e
}

// logs is the end of vmappd's log (every node's), for failures.
func (e *rolloutEnv) logs() string {
	if e.vc != nil {
		return e.vc.logs()
	}
	return e.d.output()
}

// mark is the shell command that appends a mark.
func (e *rolloutEnv) mark(version, what string) string {
	return fmt.Sprintf(`echo "$(date +%%s%%N) %s %s $(pwd)" >> %s`, version, what, e.marks)
}

// failIfMarked fails the command when a directory above it (the agent's
// root) holds a file FAIL.
const failIfMarked = `r=$(pwd); while [ "$r" != / ]; do if [ -e "$r/FAIL" ]; then echo "FAIL is in $r" >&2; exit 3; fi; r=$(dirname "$r"); done`

// publish creates version with install and update commands (update may be
// empty), uploads its package and waits until it is replicated.
func (e *rolloutEnv) publish(version, install, update string) {
	e.t.Helper()
	e.publishProfile(version, &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: install, Update: update}})
}

// publishProfile is publish with more of the version's profile.
func (e *rolloutEnv) publishProfile(version string, pp *pb.PublishingProfile) {
	e.t.Helper()
	must := must(e.t)
	pp.ManageActions.Remove, pp.ReplicaCount = e.mark(version, "remove"), proto.Int32(1)
	must(e.c.Catalog.CreateVersion(e.ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: "g", Application: "a", Name: version, Location: "eastus", PublishingProfile: pp,
	}}))
	pkg := filepath.Join(e.dir, "pkg-"+version)
	if err := os.WriteFile(pkg, []byte("package "+version), 0o600); err != nil {
		e.t.Fatal(err)
	}
	must(e.c.Upload(e.ctx, "g", "a", version, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, pkg, client.UploadOptions{}))
	e.until("replication of "+version, func() (bool, string) {
		r, err := e.c.Catalog.GetVersion(e.ctx, &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: version})
		return err == nil && r.Version.ReplicationStatus.GetAggregatedState() == pb.ReplicationCompleted, fmt.Sprint(r.GetVersion().GetReplicationStatus(), err)
	})
}

// scaleSet creates scale set name with n instances running agents, and
// version in its profile, and waits until every instance has installed it.
func (e *rolloutEnv) scaleSet(name string, n int, version string) []string {
	e.t.Helper()
	must := must(e.t)
	must(e.fl.CreateScaleSet(e.ctx, &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: name, Region: "eastus", OsType: "Linux"}}))
	must(e.fl.SetApplication(e.ctx, &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: name}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/" + version}}))
	var names []string
	for i := range n {
		m := fmt.Sprintf("%s-%02d", name, i)
		r, err := e.fl.CreateMachine(e.ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: m, ScaleSet: name}})
		if err != nil {
			e.t.Fatal(err)
		}
		e.startAgent(m, r.AgentToken)
		names = append(names, m)
	}
	e.waitVersion(names, version)
	return names
}

func (e *rolloutEnv) root(machine string) string { return filepath.Join(e.dir, "agents", machine) }

func (e *rolloutEnv) startAgent(machine, token string) {
	e.tokens[machine] = token
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := agent.Run(ctx, agent.Config{
			Server: e.addr, Token: token, Machine: machine, Root: e.root(machine),
			CommandTimeout: 5 * time.Minute,
			BootID:         func() (string, error) { return "boot-1", nil },
			RetryBase:      time.Hour, RetryMax: time.Hour, // a failed update is not retried on its own
			HealthAttempts: 1, HealthInterval: -1, // a failed health check is the verdict
			ReconnectBase: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(&e.agentLogLock, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			e.t.Errorf("agent %s: %v", machine, err)
		}
	}()
	e.stops[machine] = func() { cancel(); <-done }
	e.t.Cleanup(e.stops[machine])
}

// until polls cond until it holds; the deadline only guards against hangs.
func (e *rolloutEnv) until(what string, cond func() (bool, string)) {
	e.t.Helper()
	for {
		ok, state := cond()
		if ok {
			return
		}
		if e.ctx.Err() != nil {
			e.t.Fatalf("%s never happened; last: %s\nvmappd:\n%s", what, state, e.logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitVersion waits until each machine reports version Installed.
func (e *rolloutEnv) waitVersion(machines []string, version string) {
	e.t.Helper()
	for _, m := range machines {
		e.until(m+" on "+version, func() (bool, string) {
			r, err := e.fl.GetMachine(e.ctx, &pb.GetMachineRequest{Name: m})
			apps := r.GetMachine().GetInstanceView().GetApplications()
			return err == nil && len(apps) == 1 && apps[0].Version == version && apps[0].State == pb.AppInstalled, fmt.Sprint(apps, err)
		})
	}
}

// waitRollout waits until the rollout is no longer active.
func (e *rolloutEnv) waitRollout(name string) *pb.Rollout {
	e.t.Helper()
	var r *pb.Rollout
	e.until("the end of rollout "+name, func() (bool, string) {
		g, err := e.ro.GetRollout(e.ctx, &pb.GetRolloutRequest{Name: name})
		r = g.GetRollout()
		return err == nil && !pb.RolloutActive(r.State), fmt.Sprint(r, err)
	})
	return r
}

type mark struct {
	ns            int64
	version, what string
	machine       string
}

var markRE = regexp.MustCompile(`^(\d+) (\S+) (\S+) .*/agents/([^/]+)/`)

func (e *rolloutEnv) readMarks() []mark {
	e.t.Helper()
	b, err := os.ReadFile(e.marks)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []mark
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		m := markRE.FindStringSubmatch(line)
		if m == nil {
			e.t.Fatalf("mark %q", line)
		}
		ns, _ := strconv.ParseInt(m[1], 10, 64)
		out = append(out, mark{ns, m[2], m[3], m[4]})
	}
	return out
}

// rollout starts a rollout of g/a over scale set ss.
func (e *rolloutEnv) rollout(name, ss, version string, edit func(r *pb.Rollout)) (*pb.Rollout, error) {
	r := &pb.Rollout{Name: name, Application: "g/a", Version: version, Target: &pb.RolloutTarget{ScaleSet: ss}, Waves: []string{"100%"}}
	edit(r)
	c, err := e.ro.CreateRollout(e.ctx, &pb.CreateRolloutRequest{Rollout: r})
	return c.GetRollout(), err
}

// failOn makes 2.0.0's commands that check FAIL fail on machines.
func (e *rolloutEnv) failOn(machines ...string) {
	e.t.Helper()
	for _, m := range machines {
		if err := os.WriteFile(filepath.Join(e.root(m), "FAIL"), nil, 0o600); err != nil {
			e.t.Fatal(err)
		}
	}
}

// halted waits until rollout name (maxErrors 1) ends, and checks that it
// halted at its second failure with its machines in the states want, the
// failed ones for a reason starting with why.
func (e *rolloutEnv) halted(name, why string, want map[string]string) {
	e.t.Helper()
	r := e.waitRollout(name)
	got := map[string]string{}
	for _, m := range r.Machines {
		got[m.Name] = m.State
		if m.State == pb.RolloutMachineFailed && !strings.HasPrefix(m.Reason, why) {
			e.t.Errorf("%s failed for %q, want %q...", m.Name, m.Reason, why)
		}
	}
	if r.State != pb.RolloutHalted || r.Failures != 2 || fmt.Sprint(got) != fmt.Sprint(want) || !strings.Contains(r.Reason, "2 machines failed; maxErrors 1 tolerates 1") {
		e.t.Fatalf("rollout %s: %s (%s), failures %d, machines %v, want %v", name, r.State, r.Reason, r.Failures, got, want)
	}
}

// rolledBack waits until rollout name (rollbackOnHalt) ends, and checks
// that it rolled back every machine to 1.0.0.
func (e *rolloutEnv) rolledBack(name string, machines []string) {
	e.t.Helper()
	r := e.waitRollout(name)
	if r.State != pb.RolloutRolledBack || r.Failures < 2 || !strings.Contains(r.Reason, "machines failed") {
		e.t.Fatalf("rollout %s: %s (%s), failures %d", name, r.State, r.Reason, r.Failures)
	}
	for _, m := range r.Machines {
		if m.State != pb.RolloutMachineRolledBack {
			e.t.Errorf("%s: %s is %s (%s)", name, m.Name, m.State, m.Reason)
		}
	}
	e.waitVersion(machines, "1.0.0")
}

// TestRolloutWaves: 20 machines of a scale set move to 2.0.0 in waves of 1,
// 25% and 100% with a soak: each wave's updates start after every update of
// the wave before ended and its soak passed; every machine updates once;
// the scale set's profile says 2.0.0 at the end.
func TestRolloutWaves(t *testing.T) {
	e := newRolloutEnv(t)
	e.publish("1.0.0", e.mark("1.0.0", "install"), "")
	e.publish("2.0.0", e.mark("2.0.0", "install"), e.mark("2.0.0", "update"))
	machines := e.scaleSet("web", 20, "1.0.0")
	const soak = 2 * time.Second
	r, err := e.rollout("r1", "web", "2.0.0", func(r *pb.Rollout) {
		r.Waves, r.Soak = []string{"1", "25%", "100%"}, durationpb.New(soak)
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.State != pb.RolloutRunning || len(r.WavePlan) != 3 || r.WavePlan[0].Machines != 1 || r.WavePlan[1].Machines != 4 || r.WavePlan[2].Machines != 15 {
		t.Fatalf("created: %v", r)
	}
	r = e.waitRollout("r1")
	if r.State != pb.RolloutSucceeded || r.Failures != 0 {
		t.Fatalf("rollout: %s (%s)", r.State, r.Reason)
	}
	e.waitVersion(machines, "2.0.0")
	waveOf := map[string]int32{}
	for _, m := range r.Machines {
		waveOf[m.Name] = m.Wave
	}
	first, last := map[int32]int64{}, map[int32]int64{}
	updates := map[string]int{}
	for _, m := range e.readMarks() {
		if m.version != "2.0.0" {
			continue
		}
		if m.what != "update" {
			t.Fatalf("%s ran %s of 2.0.0", m.machine, m.what)
		}
		updates[m.machine]++
		w := waveOf[m.machine]
		if first[w] == 0 || m.ns < first[w] {
			first[w] = m.ns
		}
		last[w] = max(last[w], m.ns)
	}
	for _, m := range machines {
		if updates[m] != 1 {
			t.Errorf("%s updated to 2.0.0 %d times", m, updates[m])
		}
	}
	for w := int32(1); w < 3; w++ {
		if gap := time.Duration(first[w] - last[w-1]); gap < soak {
			t.Errorf("wave %d started %s after wave %d's last update: less than the soak, %s", w+1, gap, w, soak)
		}
	}
	ss, err := e.fl.GetScaleSet(e.ctx, &pb.GetScaleSetRequest{Name: "web"})
	if err != nil || ss.ScaleSet.ApplicationProfile.GalleryApplications[0].PackageReferenceId != "g/a/2.0.0" {
		t.Fatalf("scale set's profile after the rollout: %v %v", ss.GetScaleSet().GetApplicationProfile(), err)
	}
}

// TestRolloutHaltAndRollback: 2.0.0's update fails on machines whose root
// holds FAIL. Scale set a (one machine at a time, maxErrors 1) halts at
// its second failure and starts no machine after it; a rollout of 1.0.0
// brings it back. Scale set b, with rollbackOnHalt, ends with every
// machine on 1.0.0.
func TestRolloutHaltAndRollback(t *testing.T) {
	e := newRolloutEnv(t)
	e.publish("1.0.0", e.mark("1.0.0", "install"), "")
	e.publish("2.0.0", failIfMarked+"; "+e.mark("2.0.0", "install"), failIfMarked+"; "+e.mark("2.0.0", "update"))
	a := e.scaleSet("a", 6, "1.0.0")
	b := e.scaleSet("b", 6, "1.0.0")
	e.failOn("a-02", "a-04", "b-02", "b-04")
	if _, err := e.rollout("ra", "a", "2.0.0", func(r *pb.Rollout) { r.MaxErrors, r.MaxConcurrency = "1", "1" }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rollout("rb", "b", "2.0.0", func(r *pb.Rollout) { r.Waves, r.MaxErrors, r.RollbackOnHalt = []string{"1", "100%"}, "1", true }); err != nil {
		t.Fatal(err)
	}
	e.halted("ra", "update failed: ", map[string]string{"a-00": "Succeeded", "a-01": "Succeeded", "a-02": "Failed", "a-03": "Succeeded", "a-04": "Failed", "a-05": "Pending"})
	for _, m := range e.readMarks() {
		if m.machine == "a-05" && m.version == "2.0.0" {
			t.Fatal("a-05 got 2.0.0 after the rollout halted")
		}
	}
	e.waitVersion([]string{"a-00", "a-01", "a-03"}, "2.0.0")
	// Back to 1.0.0 with a rollout of it.
	if _, err := e.rollout("ra-back", "a", "1.0.0", func(r *pb.Rollout) {}); err != nil {
		t.Fatal(err)
	}
	if r := e.waitRollout("ra-back"); r.State != pb.RolloutSucceeded {
		t.Fatalf("ra-back: %s (%s)", r.State, r.Reason)
	}
	e.waitVersion(a, "1.0.0")

	e.rolledBack("rb", b)
	ss, err := e.fl.GetScaleSet(e.ctx, &pb.GetScaleSetRequest{Name: "b"})
	if err != nil || ss.ScaleSet.ApplicationProfile.GalleryApplications[0].PackageReferenceId != "g/a/1.0.0" {
		t.Fatalf("scale set b's profile after the rollback: %v %v", ss.GetScaleSet().GetApplicationProfile(), err)
	}
}

// TestRolloutHealthHalt: 2.0.0 checks its health, and its health action
// fails on machines whose root holds FAIL, though their updates succeed.
// Scale set h (one machine at a time, maxErrors 1) halts at its second
// Unhealthy machine and starts no machine after it; scale set hb, with
// rollbackOnHalt, ends with every machine on 1.0.0.
func TestRolloutHealthHalt(t *testing.T) {
	e := newRolloutEnv(t)
	e.publish("1.0.0", e.mark("1.0.0", "install"), "")
	e.publishProfile("2.0.0", &pb.PublishingProfile{
		ManageActions:     &pb.UserArtifactManage{Install: e.mark("2.0.0", "install"), Update: e.mark("2.0.0", "update")},
		EnableHealthCheck: true,
		CustomActions:     []*pb.GalleryApplicationCustomAction{{Name: pb.HealthAction, Script: e.mark("2.0.0", "health") + "; " + failIfMarked}},
	})
	h := e.scaleSet("h", 5, "1.0.0")
	hb := e.scaleSet("hb", 4, "1.0.0")
	e.failOn("h-01", "h-03", "hb-01", "hb-02")
	if _, err := e.rollout("rh", "h", "2.0.0", func(r *pb.Rollout) { r.MaxErrors, r.MaxConcurrency = "1", "1" }); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rollout("rhb", "hb", "2.0.0", func(r *pb.Rollout) { r.Waves, r.MaxErrors, r.RollbackOnHalt = []string{"1", "100%"}, "1", true }); err != nil {
		t.Fatal(err)
	}
	e.halted("rh", "Unhealthy after update: the health action exited with code 3", map[string]string{"h-00": "Succeeded", "h-01": "Failed", "h-02": "Succeeded", "h-03": "Failed", "h-04": "Pending"})
	ran := map[string]int{}
	for _, m := range e.readMarks() {
		if m.version == "2.0.0" {
			ran[m.machine+" "+m.what]++
		}
	}
	for _, m := range h[:4] {
		if ran[m+" update"] != 1 || ran[m+" health"] != 1 {
			t.Errorf("%s: 2.0.0's update ran %d times, its health check %d", m, ran[m+" update"], ran[m+" health"])
		}
	}
	if ran["h-04 update"] != 0 {
		t.Fatal("h-04 got 2.0.0 after the rollout halted")
	}
	g, err := e.fl.GetMachine(e.ctx, &pb.GetMachineRequest{Name: "h-03"})
	if err != nil {
		t.Fatal(err)
	}
	if s := g.Machine.InstanceView.Applications[0]; s.Version != "2.0.0" || s.State != pb.AppInstalled || s.Health != pb.HealthUnhealthy || !strings.Contains(s.HealthOutputTail, "FAIL is in") {
		t.Fatalf("h-03's instance view: %v", s)
	}

	e.rolledBack("rhb", hb)
}

// TestRolloutUnhealthyDuringSoak: the canary of a rollout with a soak of an
// hour is Healthy and succeeds; then its application reports Unhealthy
// (its agent stopped, the report sent with its credential as the agent
// would): the driver re-reads the soaking wave's machines, so the rollout
// halts at once, long before the soak would end, and starts no other
// machine.
func TestRolloutUnhealthyDuringSoak(t *testing.T) {
	e := newRolloutEnv(t)
	e.publish("1.0.0", e.mark("1.0.0", "install"), "")
	e.publishProfile("2.0.0", &pb.PublishingProfile{
		ManageActions:     &pb.UserArtifactManage{Install: e.mark("2.0.0", "install"), Update: e.mark("2.0.0", "update")},
		EnableHealthCheck: true,
		CustomActions:     []*pb.GalleryApplicationCustomAction{{Name: pb.HealthAction, Script: e.mark("2.0.0", "health")}},
	})
	e.scaleSet("u", 3, "1.0.0")
	if _, err := e.rollout("ru", "u", "2.0.0", func(r *pb.Rollout) { r.Waves, r.Soak = []string{"1", "100%"}, durationpb.New(time.Hour) }); err != nil {
		t.Fatal(err)
	}
	e.until("the canary succeeded", func() (bool, string) {
		g, err := e.ro.GetRollout(e.ctx, &pb.GetRolloutRequest{Name: "ru"})
		r := g.GetRollout()
		return err == nil && r.Machines[0].State == pb.RolloutMachineSucceeded && r.SoakStart != nil, fmt.Sprint(r, err)
	})
	e.stops["u-00"]()
	g, err := e.fl.GetMachine(e.ctx, &pb.GetMachineRequest{Name: "u-00"})
	if err != nil {
		t.Fatal(err)
	}
	iv := g.Machine.InstanceView
	if s := iv.Applications[0]; s.Version != "2.0.0" || s.Health != pb.HealthHealthy {
		t.Fatalf("the canary's application: %v", s)
	}
	iv.Applications[0].Health, iv.Applications[0].HealthReason = pb.HealthUnhealthy, "port 8080 refused"
	ac, err := client.New(e.addr, client.Options{Token: e.tokens["u-00"]})
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	if _, err := pb.NewFleetServiceClient(ac.Conn()).ReportStatus(e.ctx, &pb.ReportStatusRequest{Machine: "u-00", InstanceView: iv}); err != nil {
		t.Fatal(err)
	}
	r := e.waitRollout("ru")
	m := r.Machines[0]
	if r.State != pb.RolloutHalted || r.Failures != 1 || m.State != pb.RolloutMachineFailed || m.Reason != "Unhealthy after update: port 8080 refused" ||
		r.Machines[1].State != pb.RolloutMachinePending || r.Machines[2].State != pb.RolloutMachinePending {
		t.Fatalf("rollout ru: %s (%s), failures %d, machines %v", r.State, r.Reason, r.Failures, r.Machines)
	}
}

// TestRolloutResumesAfterKill: vmappd is killed with SIGKILL while machines
// of a later wave than the first update; restarted, it finishes the
// rollout, and no machine runs 2.0.0's update twice.
func TestRolloutResumesAfterKill(t *testing.T) {
	e := newRolloutEnv(t)
	e.resumes(func() {
		e.d.kill9(t)
		e.d.restart(t)
	})
}

// TestRolloutResumesAfterLeaderChange: on a cluster of three nodes, the
// leader (whose driver moves the rollout) is killed with SIGKILL while
// machines of a later wave than the first update; the new leader's driver
// finishes the rollout, and no machine runs 2.0.0's update twice. (A
// machine whose goal state changed as the leader died once failed its
// update: no node could give its download plan before the election. The
// download asks again now: TestClusterDownloadWaitsForLeader.)
func TestRolloutResumesAfterLeaderChange(t *testing.T) {
	e := newClusterRolloutEnv(t)
	e.resumes(func() {
		leader := e.vc.leader(e.vc.nodes...)
		e.vc.kill9(leader)
		t.Logf("killed %s, the leader", leader.id)
	})
}

// resumes runs a rollout of 2.0.0 in three waves over 6 machines, calls
// stop while machines of the second or third wave update, and checks that
// the rollout succeeds with every machine updated once.
func (e *rolloutEnv) resumes(stop func()) {
	t := e.t
	e.publish("1.0.0", e.mark("1.0.0", "install"), "")
	e.publish("2.0.0", e.mark("2.0.0", "install"), e.mark("2.0.0", "start")+"; sleep 2; "+e.mark("2.0.0", "update"))
	machines := e.scaleSet("k", 6, "1.0.0")
	if _, err := e.rollout("rk", "k", "2.0.0", func(r *pb.Rollout) { r.Waves = []string{"1", "50%", "100%"} }); err != nil {
		t.Fatal(err)
	}
	e.until("a later wave updating", func() (bool, string) {
		g, err := e.ro.GetRollout(e.ctx, &pb.GetRolloutRequest{Name: "rk"})
		r := g.GetRollout()
		return err == nil && slices.ContainsFunc(r.Machines, func(m *pb.RolloutMachine) bool {
			return m.Wave >= 1 && m.State == pb.RolloutMachineUpdating
		}), fmt.Sprint(r, err)
	})
	stop()
	r := e.waitRollout("rk")
	if r.State != pb.RolloutSucceeded {
		var ms []string
		for _, m := range r.Machines {
			ms = append(ms, fmt.Sprintf("%s %s %q", m.Name, m.State, m.Reason))
		}
		t.Fatalf("after the stop: %s (%s); machines: %s", r.State, r.Reason, strings.Join(ms, "; "))
	}
	e.waitVersion(machines, "2.0.0")
	e.agentLogLock.mu.Lock()
	t.Logf("times an agent's download asked again for its plan (no node led): %d", strings.Count(e.agentLog.String(), "can't give the download plan now"))
	e.agentLogLock.mu.Unlock()
	starts := map[string]int{}
	for _, m := range e.readMarks() {
		if m.version == "2.0.0" && m.what == "start" {
			starts[m.machine]++
		}
	}
	for _, m := range machines {
		if starts[m] != 1 {
			t.Errorf("%s started 2.0.0's update %d times", m, starts[m])
		}
	}
}

// TestRolloutBadInput: refusals with their field, before anything is
// stored.
func TestRolloutBadInput(t *testing.T) {
	e := newRolloutEnv(t)
	e.publish("1.0.0", e.mark("1.0.0", "install"), "")
	e.publish("2.0.0", e.mark("2.0.0", "install"), "sleep 600")
	e.scaleSet("s", 4, "1.0.0")
	must(t)(e.fl.CreateScaleSet(e.ctx, &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "empty", Region: "eastus", OsType: "Linux"}}))
	must(t)(e.fl.SetApplication(e.ctx, &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "empty"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}}))
	for _, c := range []struct {
		edit       func(r *pb.Rollout)
		class      errs.Class
		field, msg string
	}{
		{func(r *pb.Rollout) { r.Waves = []string{"50%", "25%", "100%"} }, errs.InvalidArgument, "waves", "waves must grow"},
		{func(r *pb.Rollout) { r.Waves = []string{"1", "120%"} }, errs.InvalidArgument, "waves", "'120%' is over 100%"},
		{func(r *pb.Rollout) { r.MaxErrors = "-1" }, errs.InvalidArgument, "maxErrors", "maxErrors '-1' is negative"},
		{func(r *pb.Rollout) { r.MaxConcurrency = "101%" }, errs.InvalidArgument, "maxConcurrency", "over 100%"},
		{func(r *pb.Rollout) { r.Soak = durationpb.New(-time.Second) }, errs.InvalidArgument, "soak", "soak -1s is invalid"},
		{func(r *pb.Rollout) { r.Target = &pb.RolloutTarget{ScaleSet: "empty"} }, errs.InvalidArgument, "target", "the target has no machines"},
		{func(r *pb.Rollout) { r.Target = &pb.RolloutTarget{Machines: &pb.MachineSelector{Region: "eastus"}} }, errs.InvalidArgument, "target", "the target has no machines"},
		{func(r *pb.Rollout) { r.Target = &pb.RolloutTarget{} }, errs.InvalidArgument, "target", "name either a scale set or a machine selector"},
		{func(r *pb.Rollout) { r.Version = "9.9.9" }, errs.NotFound, "version", "The version doesn't exist"},
		{func(r *pb.Rollout) { r.Application = "g" }, errs.InvalidArgument, "application", "want gallery/application"},
		{func(r *pb.Rollout) { r.Name = "bad name" }, errs.InvalidArgument, "name", "is invalid"},
	} {
		_, err := e.rollout("r", "s", "2.0.0", c.edit)
		if errs.ClassOf(err) != c.class || errs.FieldOf(err) != c.field || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("got %v (field %q), want %v on %s: %q", err, errs.FieldOf(err), c.class, c.field, c.msg)
		}
	}
	if l, err := e.ro.ListRollouts(e.ctx, &pb.ListRolloutsRequest{}); err != nil || len(l.Rollouts) != 0 {
		t.Fatalf("refused rollouts were stored: %v %v", l, err)
	}
	// A second rollout of the application over the same machines is
	// refused, naming the first; the first, paused, holds the profile.
	if _, err := e.rollout("first", "s", "2.0.0", func(r *pb.Rollout) { r.Waves = []string{"1", "100%"} }); err != nil {
		t.Fatal(err)
	}
	_, err := e.rollout("second", "s", "2.0.0", func(r *pb.Rollout) {})
	if errs.ClassOf(err) != errs.FailedPrecondition || errs.FieldOf(err) != "target" || !strings.Contains(err.Error(), "Rollout 'first' of g/a is active on machine 's-00'") {
		t.Fatalf("overlapping rollout: %v", err)
	}
	_, err = e.fl.SetApplication(e.ctx, &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "s"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/2.0.0"}})
	if errs.ClassOf(err) != errs.FailedPrecondition || !strings.Contains(err.Error(), "Rollout 'first' is moving g/a") {
		t.Fatalf("profile change during the rollout: %v", err)
	}
	p, err := e.ro.PauseRollout(e.ctx, &pb.PauseRolloutRequest{Name: "first"})
	if err != nil || p.Rollout.State != pb.RolloutPaused {
		t.Fatalf("pause: %v %v", p, err)
	}
	if _, err := e.ro.ResumeRollout(e.ctx, &pb.ResumeRolloutRequest{Name: "nope"}); errs.ClassOf(err) != errs.NotFound {
		t.Fatalf("resume of a rollout that doesn't exist: %v", err)
	}
	a, err := e.ro.AbortRollout(e.ctx, &pb.AbortRolloutRequest{Name: "first"})
	if err != nil || a.Rollout.State != pb.RolloutAborted {
		t.Fatalf("abort: %v %v", a, err)
	}
	if _, err := e.ro.ResumeRollout(e.ctx, &pb.ResumeRolloutRequest{Name: "first"}); errs.ClassOf(err) != errs.FailedPrecondition || !strings.Contains(err.Error(), "is Aborted: it can't resume") {
		t.Fatalf("resume of an aborted rollout: %v", err)
	}
	// Ended, it no longer holds its machines.
	if _, err := e.rollout("second", "s", "2.0.0", func(r *pb.Rollout) { r.Waves = []string{"1", "100%"} }); err != nil {
		t.Fatalf("a rollout after the first was aborted: %v", err)
	}
}
