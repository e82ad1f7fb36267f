//go:build unix

package agent_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmapp/vmapp/client/agent"
	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func withHealth(script string) func(*pb.PublishingProfile) {
	return func(pp *pb.PublishingProfile) {
		pp.EnableHealthCheck = true
		pp.CustomActions = []*pb.GalleryApplicationCustomAction{{Name: "health", Script: script}}
	}
}

// healthOf waits until app's health check ended (Healthy or Unhealthy).
func (e *env) healthOf(t *testing.T, machine, app string) *pb.ApplicationStatus {
	t.Helper()
	m := e.wait(t, machine, app+" checked", func(m *pb.Machine) bool {
		h := status(m, app).GetHealth()
		return h == pb.HealthHealthy || h == pb.HealthUnhealthy
	})
	return status(m, app)
}

// A version with enableHealthCheck: the agent runs its "health" action
// after the install, HealthAttempts times at most: one that passes is
// Healthy, one that passes at its second attempt too, one that always
// fails is Unhealthy with its output tail and why; all stay Installed.
func (e *env) testHealthCheck(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	e.publish(t, ver{app: "hc-ok", version: "1.0.0", install: "true", profile: withHealth(`echo all good`)})
	e.publish(t, ver{app: "hc-slow", version: "1.0.0", install: "true",
		profile: withHealth(fmt.Sprintf(`%s; [ "$VMAPP_HEALTH_ATTEMPT" = 2 ] && echo up at last`, rec(marks, "slow-$VMAPP_HEALTH_ATTEMPT")))})
	e.publish(t, ver{app: "hc-bad", version: "1.0.0", install: "true",
		profile: withHealth(fmt.Sprintf(`%s; echo "port 8080 refused" >&2; exit 7`, rec(marks, "bad")))})
	e.machine(t, "hc-vm")
	for _, a := range []string{"hc-ok", "hc-slow", "hc-bad"} {
		e.set(t, "hc-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/" + a + "/1.0.0"})
	}
	e.startAgent(t, "hc-vm", func(c *agent.Config) { c.HealthAttempts, c.HealthInterval = 3, time.Millisecond })

	if s := e.healthOf(t, "hc-vm", "g/hc-ok"); s.Health != pb.HealthHealthy || s.State != pb.AppInstalled || !strings.Contains(s.HealthOutputTail, "all good") {
		t.Errorf("hc-ok: %v", s)
	}
	if s := e.healthOf(t, "hc-vm", "g/hc-slow"); s.Health != pb.HealthHealthy || !strings.Contains(s.HealthOutputTail, "up at last") {
		t.Errorf("hc-slow: %v", s)
	}
	s := e.healthOf(t, "hc-vm", "g/hc-bad")
	if s.Health != pb.HealthUnhealthy || s.State != pb.AppInstalled || !strings.Contains(s.HealthOutputTail, "port 8080 refused") ||
		s.HealthReason != "the health action exited with code 7 (3 attempts)" || s.HealthTime == nil {
		t.Errorf("hc-bad: %v", s)
	}
	count := map[string]int{}
	for _, m := range marksOf(t, marks) {
		count[m.label]++
	}
	if count["bad"] != 3 || count["slow-1"] != 1 || count["slow-2"] != 1 || count["slow-3"] != 0 {
		t.Errorf("health attempts: %v", count)
	}
}

// runAction asks for a run and returns it (one machine).
func (e *env) runAction(t *testing.T, target *pb.ProfileTarget, app, action string, params ...*pb.ActionParameterValue) ([]*pb.ActionRun, error) {
	t.Helper()
	r, err := e.fl.RunAction(ctx(t), &pb.RunActionRequest{Target: target, Application: app, Action: action, Parameters: params})
	return r.GetRuns(), err
}

// runEnded waits until every run of ids ended, and returns them.
func (e *env) runsEnded(t *testing.T, target *pb.ProfileTarget, ids ...string) []*pb.ActionRun {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		r, err := e.fl.ListActionRuns(ctx(t), &pb.ListActionRunsRequest{Target: target, Ids: ids})
		if err != nil {
			t.Fatal(err)
		}
		ended := len(r.Runs) == len(ids)
		for _, run := range r.Runs {
			ended = ended && run.State != pb.ActionPending
		}
		if ended {
			return r.Runs
		}
		if time.Now().After(deadline) {
			t.Fatalf("runs %v never ended: %v", ids, r.Runs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func str(name, value string) *pb.ActionParameterValue {
	return &pb.ActionParameterValue{Name: name, Value: value}
}

func logOf(r *pb.ActionRun, name string) *pb.ActionLog {
	for _, l := range r.Logs {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// Custom actions on a machine: each parameter type (a String given and
// defaulted, a ConfigurationDataBlob inline and by URL, a LogOutputBlob
// collected), an application's action, a failing script, output and a log
// over their limits; and the refusals before anything runs: an unknown
// action, a missing required parameter, an unknown one, a value for a
// LogOutputBlob, an application the machine doesn't have.
func (e *env) testCustomActions(t *testing.T) {
	t.Parallel()
	var fetched atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetched.Add(1)
		io.WriteString(w, "config from the url")
	}))
	t.Cleanup(srv.Close)
	cat := e.c.Client.Catalog
	if _, err := cat.CreateApplication(ctx(t), &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "ca-app", Location: "eastus", SupportedOsType: "Linux",
		CustomActions: []*pb.GalleryApplicationCustomAction{{Name: "app-wide", Script: `echo "from the application in $PWD"`}}}}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, ver{app: "ca-app", version: "1.0.0", install: "true", profile: func(pp *pb.PublishingProfile) {
		pp.CustomActions = []*pb.GalleryApplicationCustomAction{
			{Name: "greet", Script: `echo "hello $WHO at $LEVEL"; cp "$CFG" got-config; echo "a log line" > "$LOG"`, Parameters: []*pb.GalleryApplicationCustomActionParameter{
				{Name: "WHO", Required: true}, {Name: "LEVEL", DefaultValue: "info"}, {Name: "UNSET"},
				{Name: "CFG", Type: pb.ParamConfigurationDataBlob, Required: true}, {Name: "LOG", Type: pb.ParamLogOutputBlob},
			}},
			{Name: "big", Script: `head -c 10000 /dev/zero | tr '\0' o; echo END; head -c 100000 /dev/zero | tr '\0' l > "$LOG"; echo last >> "$LOG"`,
				Parameters: []*pb.GalleryApplicationCustomActionParameter{{Name: "LOG", Type: pb.ParamLogOutputBlob}, {Name: "NOLOG", Type: pb.ParamLogOutputBlob}}},
			{Name: "fail", Script: `echo "${UNSET-unset}"; exit 4`, Parameters: []*pb.GalleryApplicationCustomActionParameter{{Name: "UNSET"}}},
		}
	}})
	e.machine(t, "ca-vm")
	e.set(t, "ca-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/ca-app/1.0.0"})
	p := e.startAgent(t, "ca-vm", nil)
	e.states(t, "ca-vm", map[string]string{"g/ca-app": "Installed"})
	vm := onVM("ca-vm")

	// Refusals: nothing is recorded.
	for _, c := range []struct {
		name, app, action string
		params            []*pb.ActionParameterValue
		class             errs.Class
		field             string
	}{
		{"an unknown action", "g/ca-app", "reboot", nil, errs.InvalidArgument, "action"},
		{"no action", "g/ca-app", "", nil, errs.InvalidArgument, "action"},
		{"a required parameter missing", "g/ca-app", "greet", []*pb.ActionParameterValue{{Name: "CFG", Data: []byte("x")}}, errs.InvalidArgument, "parameters"},
		{"an unknown parameter", "g/ca-app", "greet", []*pb.ActionParameterValue{str("WHO", "x"), {Name: "CFG", Data: []byte("x")}, str("WHAT", "y")}, errs.InvalidArgument, "parameters"},
		{"a parameter twice", "g/ca-app", "greet", []*pb.ActionParameterValue{str("WHO", "x"), str("WHO", "y"), {Name: "CFG", Data: []byte("x")}}, errs.InvalidArgument, "parameters"},
		{"a value for a LogOutputBlob", "g/ca-app", "greet", []*pb.ActionParameterValue{str("WHO", "x"), {Name: "CFG", Data: []byte("x")}, str("LOG", "/tmp/x")}, errs.InvalidArgument, "parameters"},
		{"a ConfigurationDataBlob neither a file nor a URL", "g/ca-app", "greet", []*pb.ActionParameterValue{str("WHO", "x"), str("CFG", "not a url")}, errs.InvalidArgument, "parameters"},
		{"a ConfigurationDataBlob too big", "g/ca-app", "greet", []*pb.ActionParameterValue{str("WHO", "x"), {Name: "CFG", Data: make([]byte, pb.MaxInlineConfigSize+1)}}, errs.InvalidArgument, "parameters"},
		{"a file for a String", "g/ca-app", "greet", []*pb.ActionParameterValue{{Name: "WHO", Data: []byte("x")}, {Name: "CFG", Data: []byte("x")}}, errs.InvalidArgument, "parameters"},
		{"an application the machine hasn't", "g/other", "greet", nil, errs.FailedPrecondition, "application"},
		{"no application", "", "greet", nil, errs.InvalidArgument, "application"},
	} {
		_, err := e.runAction(t, vm, c.app, c.action, c.params...)
		if !errs.Is(err, c.class) || errs.FieldOf(err) != c.field {
			t.Errorf("%s: %v (field %q), want %v naming %q", c.name, err, errs.FieldOf(err), c.class, c.field)
		}
	}
	if _, err := e.runAction(t, onVM("nobody"), "g/ca-app", "greet"); !errs.Is(err, errs.NotFound) {
		t.Errorf("an unknown machine: %v", err)
	}
	if r, err := e.fl.ListActionRuns(ctx(t), &pb.ListActionRunsRequest{Target: vm}); err != nil || len(r.Runs) != 0 {
		t.Fatalf("runs after refusals: %v, %v", r.GetRuns(), err)
	}

	inline, err := e.runAction(t, vm, "g/ca-app", "greet", str("WHO", "world"), &pb.ActionParameterValue{Name: "CFG", Data: []byte("inline config")})
	if err != nil || len(inline) != 1 || inline[0].State != pb.ActionPending || inline[0].Version != "1.0.0" {
		t.Fatalf("run: %v, %v", inline, err)
	}
	r := e.runsEnded(t, vm, inline[0].Id)[0]
	if r.State != pb.ActionSucceeded || r.ExitCode != 0 || !strings.Contains(r.OutputTail, "hello world at info") || r.Duration == nil {
		t.Errorf("greet: %v", r)
	}
	if l := logOf(r, "LOG"); l == nil || string(l.Content) != "a log line\n" || l.SizeBytes != 11 || l.Truncated {
		t.Errorf("greet's log: %v", l)
	}
	if got := read(t, p.path("g", "ca-app", "1.0.0", "got-config")); got != "inline config" {
		t.Errorf("the inline ConfigurationDataBlob: %q", got)
	}
	if len(r.Parameters) != 4 || r.Parameters[2].Data != nil || r.Parameters[2].SizeBytes != int64(len("inline config")) {
		t.Errorf("the run's parameters as listed: %v", r.Parameters)
	}

	byURL, err := e.runAction(t, vm, "g/ca-app", "greet", str("WHO", "url"), str("LEVEL", "debug"), str("CFG", srv.URL+"/cfg?sig=x"))
	if err != nil {
		t.Fatal(err)
	}
	big, err := e.runAction(t, vm, "g/ca-app", "big")
	if err != nil {
		t.Fatal(err)
	}
	fail, err := e.runAction(t, vm, "g/ca-app", "fail")
	if err != nil {
		t.Fatal(err)
	}
	wide, err := e.runAction(t, vm, "g/ca-app", "app-wide")
	if err != nil {
		t.Fatal(err)
	}
	runs := e.runsEnded(t, vm, byURL[0].Id, big[0].Id, fail[0].Id, wide[0].Id)
	byID := map[string]*pb.ActionRun{}
	for _, r := range runs {
		byID[r.Id] = r
	}
	if r := byID[byURL[0].Id]; r.State != pb.ActionSucceeded || !strings.Contains(r.OutputTail, "hello url at debug") || fetched.Load() != 1 ||
		read(t, p.path("g", "ca-app", "1.0.0", "got-config")) != "config from the url" {
		t.Errorf("greet by URL: %v (fetched %d)", r, fetched.Load())
	}
	r = byID[big[0].Id]
	if r.State != pb.ActionSucceeded || len(r.OutputTail) > agent.TailSize || !strings.HasSuffix(r.OutputTail, "ooooEND\n") {
		t.Errorf("big: %s, tail of %d bytes", r.State, len(r.OutputTail))
	}
	if l := logOf(r, "LOG"); l == nil || !l.Truncated || l.SizeBytes != 100005 || len(l.Content) != agent.MaxActionLog || !strings.HasSuffix(string(l.Content), "lllllast\n") {
		t.Errorf("big's log: truncated %v, size %d, %d bytes kept", l.GetTruncated(), l.GetSizeBytes(), len(l.GetContent()))
	}
	if l := logOf(r, "NOLOG"); l == nil || l.SizeBytes != -1 || len(l.Content) != 0 {
		t.Errorf("a log not written: %v", l)
	}
	if r := byID[fail[0].Id]; r.State != pb.ActionFailed || r.ExitCode != 4 || r.Reason != "the action's script exited with code 4" || !strings.Contains(r.OutputTail, "unset") {
		t.Errorf("fail: %v", r)
	}
	if r := byID[wide[0].Id]; r.State != pb.ActionSucceeded || !strings.Contains(r.OutputTail, "from the application in "+p.path("g", "ca-app", "1.0.0")) {
		t.Errorf("app-wide: %v", r)
	}
	if all, err := e.fl.ListActionRuns(ctx(t), &pb.ListActionRunsRequest{Target: vm, Application: "g/ca-app"}); err != nil || len(all.Runs) != 5 || all.Runs[0].Id != wide[0].Id {
		t.Errorf("list, newest first: %d runs, %v", len(all.GetRuns()), err)
	}
}

// A run asked for a scale set runs on every instance.
func (e *env) testCustomActionsOnScaleSet(t *testing.T) {
	t.Parallel()
	e.publish(t, ver{app: "ca-ss-app", version: "1.0.0", install: "true", profile: func(pp *pb.PublishingProfile) {
		pp.CustomActions = []*pb.GalleryApplicationCustomAction{{Name: "whoami", Script: `echo "I am $VMAPP_APPLICATION $VMAPP_VERSION"`}}
	}})
	if _, err := e.fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "ca-ss", Region: "eastus", OsType: "Linux"}}); err != nil {
		t.Fatal(err)
	}
	ss := &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "ca-ss"}}
	if _, err := e.runAction(t, ss, "g/ca-ss-app", "whoami"); !errs.Is(err, errs.FailedPrecondition) || errs.FieldOf(err) != "target" {
		t.Errorf("a scale set without instances: %v", err)
	}
	for i := range 2 {
		name := fmt.Sprintf("ca-ss-%d", i)
		e.create(t, &pb.Machine{Name: name, ScaleSet: "ca-ss"})
		e.startAgent(t, name, nil)
	}
	if _, err := e.fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: ss, Application: &pb.VMGalleryApplication{PackageReferenceId: "g/ca-ss-app/1.0.0"}}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		e.states(t, fmt.Sprintf("ca-ss-%d", i), map[string]string{"g/ca-ss-app": "Installed"})
	}
	runs, err := e.runAction(t, ss, "g/ca-ss-app", "whoami")
	if err != nil || len(runs) != 2 {
		t.Fatalf("runs: %v, %v", runs, err)
	}
	machines := map[string]bool{}
	for _, r := range e.runsEnded(t, ss, runs[0].Id, runs[1].Id) {
		machines[r.Machine] = true
		if r.State != pb.ActionSucceeded || r.ScaleSet != "ca-ss" || !strings.Contains(r.OutputTail, "I am ca-ss-app 1.0.0") {
			t.Errorf("run on %s: %v", r.Machine, r)
		}
	}
	if len(machines) != 2 {
		t.Errorf("ran on %v", machines)
	}
}

// A new configurationReference for the same version runs the update
// command again, with the new configuration in place.
func (e *env) testConfigurationReferenceChange(t *testing.T) {
	t.Parallel()
	marks := t.TempDir()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "configuration at "+r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	e.publish(t, ver{app: "cfgref-app", version: "1.0.0", install: rec(marks, "install"), update: rec(marks, "update")})
	e.machine(t, "cfgref-vm")
	e.set(t, "cfgref-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/cfgref-app/1.0.0", ConfigurationReference: srv.URL + "/v1"})
	p := e.startAgent(t, "cfgref-vm", nil)
	e.states(t, "cfgref-vm", map[string]string{"g/cfgref-app": "Installed"})
	e.set(t, "cfgref-vm", &pb.VMGalleryApplication{PackageReferenceId: "g/cfgref-app/1.0.0", ConfigurationReference: srv.URL + "/v2"})
	e.wait(t, "cfgref-vm", "reconfigured", func(m *pb.Machine) bool {
		s := status(m, "g/cfgref-app")
		return s.GetState() == pb.AppInstalled && s.Operation == "update"
	})
	if got := labels(marksOf(t, marks)); strings.Join(got, " ") != "install update" {
		t.Errorf("ran %v", got)
	}
	if got := read(t, p.path("g", "cfgref-app", "1.0.0", "cfgref-app-config")); got != "configuration at /v2" {
		t.Errorf("configuration %q", got)
	}
}
