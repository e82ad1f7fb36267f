package rollout

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// newRollout is a planned rollout of g/a 2.0.0 over n machines on 1.0.0,
// named m00, m01, ...
func newRollout(t *testing.T, n int, waves, maxErrors, maxConcurrency string, soak time.Duration) *pb.Rollout {
	t.Helper()
	r := &pb.Rollout{Name: "r", Application: "g/a", Version: "2.0.0", Waves: strings.Split(waves, ","), MaxErrors: maxErrors,
		MaxConcurrency: maxConcurrency, Soak: durationpb.New(soak), State: pb.RolloutRunning}
	for i := range n {
		r.Machines = append(r.Machines, &pb.RolloutMachine{Name: fmt.Sprintf("m%02d", i), Region: "eastus", PreviousVersion: "1.0.0", State: pb.RolloutMachinePending})
	}
	if err := resolve(r, []string{"eastus"}); err != nil {
		t.Fatal(err)
	}
	return r
}

// agents answers for machines as their agents would report.
type agents map[string]*pb.ApplicationStatus

func (a agents) set(machine, version, state string) {
	a[machine] = &pb.ApplicationStatus{Application: "g/a", Version: version, State: state, Operation: "update", Reason: "exit 1"}
}

func (a agents) status(m string) *pb.ApplicationStatus { return a[m] }

func states(r *pb.Rollout) map[string]int {
	out := map[string]int{}
	for _, m := range r.Machines {
		out[m.State]++
	}
	return out
}

func TestPlanWaves(t *testing.T) {
	r := newRollout(t, 20, "1,25%,100%", "", "", 0)
	var sizes []int32
	for _, w := range r.WavePlan {
		sizes = append(sizes, w.Machines)
	}
	if fmt.Sprint(sizes) != "[1 4 15]" {
		t.Fatalf("wave sizes %v, want [1 4 15]", sizes)
	}
	if r.Machines[0].Wave != 0 || r.Machines[1].Wave != 1 || r.Machines[4].Wave != 1 || r.Machines[5].Wave != 2 {
		t.Fatalf("waves of machines: %v", r.Machines)
	}
	// By region: the waves within each region, one region after another.
	br := &pb.Rollout{Waves: []string{"1", "100%"}, ByRegion: true}
	for _, m := range []string{"w1:westus", "e1:eastus", "e2:eastus", "w2:westus", "e3:eastus"} {
		name, region, _ := strings.Cut(m, ":")
		br.Machines = append(br.Machines, &pb.RolloutMachine{Name: name, Region: region})
	}
	if err := resolve(br, []string{"eastus", "westus"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range br.Machines {
		got = append(got, fmt.Sprintf("%s:%d", m.Name, m.Wave))
	}
	if strings.Join(got, " ") != "e1:0 e2:1 e3:1 w1:2 w2:3" || br.WavePlan[2].Region != "westus" {
		t.Fatalf("by region: %v, plan %v", got, br.WavePlan)
	}
}

func TestBadSpecs(t *testing.T) {
	for _, c := range []struct{ waves, maxErrors, maxConcurrency, field, msg string }{
		{"1,1,100%", "", "", "waves", "waves must grow: wave 2 (1) reaches 1 of the 20 machines, no more than wave 1 (1)"},
		{"50%,10%,100%", "", "", "waves", "wave 2 (10%) reaches 2"},
		{"1,150%", "", "", "waves", "'150%' is over 100%"},
		{"0,100%", "", "", "waves", "'0' is zero"},
		{"1,50%", "", "", "waves", "the last wave (50%) reaches 10 of the 20 machines: end with 100%"},
		{"x", "", "", "waves", "'x' is invalid"},
		{"100%", "-1", "", "maxErrors", "maxErrors '-1' is negative"},
		{"100%", "101%", "", "maxErrors", "over 100%"},
		{"100%", "", "0", "maxConcurrency", "is zero"},
	} {
		r := &pb.Rollout{Waves: strings.Split(c.waves, ","), MaxErrors: c.maxErrors, MaxConcurrency: c.maxConcurrency}
		for i := range 20 {
			r.Machines = append(r.Machines, &pb.RolloutMachine{Name: fmt.Sprint(i)})
		}
		err := resolve(r, nil)
		if errs.ClassOf(err) != errs.InvalidArgument || errs.FieldOf(err) != c.field || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: %v (field %q)", c, err, errs.FieldOf(err))
		}
	}
}

// TestSoak: the next wave starts when the soak has run its full time on
// the injected clock, not a nanosecond before.
func TestSoak(t *testing.T) {
	r := newRollout(t, 5, "1,100%", "", "", time.Minute)
	a := agents{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if changed, _ := Step(r, a.status, t0); !changed || r.Machines[0].State != pb.RolloutMachineUpdating || states(r)[pb.RolloutMachinePending] != 4 {
		t.Fatalf("first step: %v", r.Machines)
	}
	if changed, _ := Step(r, a.status, t0.Add(time.Second)); changed {
		t.Fatal("a step without news changed the rollout")
	}
	a.set("m00", "2.0.0", pb.AppInstalled)
	t1 := t0.Add(2 * time.Second)
	_, wake := Step(r, a.status, t1)
	if r.Machines[0].State != pb.RolloutMachineSucceeded || !wake.Equal(t1.Add(time.Minute)) || r.CurrentWave != 0 {
		t.Fatalf("after the canary: wake %v, wave %d, %v", wake, r.CurrentWave, r.Machines[0])
	}
	if Step(r, a.status, t1.Add(time.Minute-time.Nanosecond)); r.CurrentWave != 0 || states(r)[pb.RolloutMachinePending] != 4 {
		t.Fatalf("the next wave started before the soak ended: %v", states(r))
	}
	if Step(r, a.status, t1.Add(time.Minute)); r.CurrentWave != 1 || states(r)[pb.RolloutMachineUpdating] != 4 {
		t.Fatalf("the soak ended and the next wave didn't start: %v", states(r))
	}
	for _, m := range r.Machines[1:] {
		a.set(m.Name, "2.0.0", pb.AppInstalled)
	}
	t2 := t1.Add(2 * time.Minute)
	Step(r, a.status, t2)
	if Step(r, a.status, t2.Add(time.Minute)); r.State != pb.RolloutSucceeded {
		t.Fatalf("every wave done and soaked: %s", r.State)
	}
}

// TestHaltExceedsMaxErrors: maxErrors 2 tolerates two failed machines;
// the third halts the rollout at once, and no machine starts after it.
func TestHaltExceedsMaxErrors(t *testing.T) {
	r := newRollout(t, 10, "100%", "2", "1", 0)
	a := agents{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		Step(r, a.status, now)
		m := r.Machines[i]
		if m.State != pb.RolloutMachineUpdating || r.State != pb.RolloutRunning {
			t.Fatalf("failure %d: machine %s %s, rollout %s", i, m.Name, m.State, r.State)
		}
		a.set(m.Name, "2.0.0", pb.AppFailed)
	}
	Step(r, a.status, now)
	if r.State != pb.RolloutHalted || r.Failures != 3 || states(r)[pb.RolloutMachinePending] != 7 || !strings.Contains(r.Reason, "3 machines failed; maxErrors 2 tolerates 2") {
		t.Fatalf("after the third failure: %s (%s), %v", r.State, r.Reason, states(r))
	}
}

// TestRollback: on halt with rollbackOnHalt every machine moved goes back;
// the rollout ends RolledBack once their agents report the previous
// version.
func TestRollback(t *testing.T) {
	r := newRollout(t, 4, "100%", "1", "", 0)
	r.RollbackOnHalt = true
	a := agents{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	Step(r, a.status, now)
	a.set("m00", "2.0.0", pb.AppInstalled)
	a.set("m01", "2.0.0", pb.AppFailed)
	a.set("m02", "2.0.0", pb.AppFailed)
	Step(r, a.status, now)
	if r.State != pb.RolloutRollingBack || states(r)[pb.RolloutMachineRollingBack] != 4 {
		t.Fatalf("halted: %s %v", r.State, states(r))
	}
	for _, m := range r.Machines {
		a.set(m.Name, "1.0.0", pb.AppInstalled)
	}
	a.set("m03", "1.0.0", pb.AppFailed)
	Step(r, a.status, now)
	if r.State != pb.RolloutRolledBack || states(r)[pb.RolloutMachineRolledBack] != 3 || states(r)[pb.RolloutMachineRollbackFailed] != 1 {
		t.Fatalf("rolled back: %s %v", r.State, states(r))
	}
}

// TestPaused: a paused rollout starts nothing but still records results
// and halts on failures.
func TestPaused(t *testing.T) {
	r := newRollout(t, 4, "50%,100%", "0", "", 0)
	a := agents{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	Step(r, a.status, now)
	r.State = pb.RolloutPaused
	a.set("m00", "2.0.0", pb.AppInstalled)
	a.set("m01", "2.0.0", pb.AppInstalled)
	if Step(r, a.status, now); states(r)[pb.RolloutMachineSucceeded] != 2 || states(r)[pb.RolloutMachinePending] != 2 {
		t.Fatalf("paused: %v", states(r))
	}
	r.State = pb.RolloutRunning
	if Step(r, a.status, now); states(r)[pb.RolloutMachineUpdating] != 2 {
		t.Fatalf("resumed: %v", states(r))
	}
}

// health sets machine's report: 2.0.0 Installed by an update, with health h.
func (a agents) health(machine, h string) {
	a[machine] = &pb.ApplicationStatus{Application: "g/a", Version: "2.0.0", State: pb.AppInstalled, Operation: "update", Health: h, HealthReason: "exit 7"}
}

// TestHealthDuringSoak: with health checks a machine succeeds once it is
// Healthy, not while Checking; one that turns Unhealthy while its wave
// soaks is re-read and fails before the wave completes (the step at the
// soak's end reads the reports before it goes on); once the next wave
// started, its verdict is final.
func TestHealthDuringSoak(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name      string
		turn      time.Duration // when m00 turns Unhealthy, after it succeeded
		maxErrors string
		state     string // the rollout's, after
		failures  int32
		m00       string
	}{
		{"unhealthy in the soak halts", 30 * time.Second, "0", pb.RolloutHalted, 1, pb.RolloutMachineFailed},
		{"unhealthy when the soak ends halts", time.Minute, "0", pb.RolloutHalted, 1, pb.RolloutMachineFailed},
		{"unhealthy in the soak, within the budget", 30 * time.Second, "1", pb.RolloutRunning, 1, pb.RolloutMachineFailed},
		{"unhealthy after the next wave started is not counted", time.Minute + time.Second, "0", pb.RolloutRunning, 0, pb.RolloutMachineSucceeded},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRollout(t, 5, "1,100%", c.maxErrors, "", time.Minute)
			a := agents{}
			Step(r, a.status, t0)
			a.health("m00", pb.HealthChecking)
			if Step(r, a.status, t0); r.Machines[0].State != pb.RolloutMachineUpdating {
				t.Fatalf("Checking: m00 is %s", r.Machines[0].State)
			}
			a.health("m00", pb.HealthHealthy)
			if _, wake := Step(r, a.status, t0); r.Machines[0].State != pb.RolloutMachineSucceeded || !wake.Equal(t0.Add(time.Minute)) {
				t.Fatalf("Healthy: m00 is %s, wake %v", r.Machines[0].State, wake)
			}
			if c.turn > time.Minute {
				Step(r, a.status, t0.Add(time.Minute)) // the soak ends: the next wave starts
			}
			a.health("m00", pb.HealthUnhealthy)
			Step(r, a.status, t0.Add(c.turn))
			m := r.Machines[0]
			if r.State != c.state || r.Failures != c.failures || m.State != c.m00 {
				t.Fatalf("rollout %s, failures %d, m00 %s (%s); want %s, %d, %s", r.State, r.Failures, m.State, m.Reason, c.state, c.failures, c.m00)
			}
			if m.State == pb.RolloutMachineFailed && m.Reason != "Unhealthy after update: exit 7" {
				t.Fatalf("m00's reason: %q", m.Reason)
			}
			if c.state == pb.RolloutHalted && states(r)[pb.RolloutMachinePending] != 4 {
				t.Fatalf("the next wave started: %v", states(r))
			}
		})
	}
}

// TestWatched: the machines whose reports a step reads.
func TestWatched(t *testing.T) {
	r := newRollout(t, 2, "1,100%", "", "", time.Minute)
	r.CurrentWave = 1
	for _, c := range []struct {
		rollout, machine string
		wave             int32
		want             bool
	}{
		{pb.RolloutRunning, pb.RolloutMachineUpdating, 1, true},
		{pb.RolloutRollingBack, pb.RolloutMachineRollingBack, 0, true},
		{pb.RolloutRunning, pb.RolloutMachineSucceeded, 1, true},
		{pb.RolloutPaused, pb.RolloutMachineSucceeded, 1, true},
		{pb.RolloutRunning, pb.RolloutMachineSucceeded, 0, false},
		{pb.RolloutRollingBack, pb.RolloutMachineSucceeded, 1, false},
		{pb.RolloutRunning, pb.RolloutMachineFailed, 1, false},
		{pb.RolloutRunning, pb.RolloutMachinePending, 1, false},
	} {
		r.State = c.rollout
		if got := Watched(r, &pb.RolloutMachine{State: c.machine, Wave: c.wave}); got != c.want {
			t.Errorf("%+v: %v", c, got)
		}
	}
}
