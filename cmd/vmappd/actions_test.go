package main

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/metricstest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestActionRunsOnScaleSet: a custom action asked for a scale set runs on
// the instances it has then, as in Azure: an instance that joins after
// gets no run of it, though it installs the version. Every run that ends
// counts once in vmapp_action_runs_total{result}: an agent's report sent
// again neither counts again nor changes the run.
func TestActionRunsOnScaleSet(t *testing.T) {
	e := newRolloutEnv(t)
	e.publishProfile("1.0.0", &pb.PublishingProfile{
		ManageActions: &pb.UserArtifactManage{Install: e.mark("1.0.0", "install")},
		CustomActions: []*pb.GalleryApplicationCustomAction{
			{Name: "hello", Script: e.mark("1.0.0", "hello")},
			{Name: "fail", Script: e.mark("1.0.0", "fail") + "; exit 4"},
		},
	})
	e.scaleSet("s", 2, "1.0.0")
	ss := &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "s"}}
	metrics := metricsRE.FindStringSubmatch(e.d.output())
	if metrics == nil {
		t.Fatalf("no metrics address in vmappd's log:\n%s", e.d.output())
	}
	sample := func(result string) int {
		_, body := metricstest.Get(t, metrics[1], "/metrics")
		n, err := strconv.Atoi(metricstest.Sample(body, `vmapp_action_runs_total{result="`+result+`"}`))
		if err != nil {
			t.Fatalf("vmapp_action_runs_total{result=%q}: %v", result, err)
		}
		return n
	}
	if s, f := sample(pb.ActionSucceeded), sample(pb.ActionFailed); s != 0 || f != 0 {
		t.Fatalf("before any run: %d succeeded, %d failed", s, f)
	}

	r, err := e.fl.RunAction(e.ctx, &pb.RunActionRequest{Target: ss, Application: "g/a", Action: "hello"})
	if err != nil || len(r.Runs) != 2 {
		t.Fatalf("run on the scale set: %v %v", r, err)
	}
	// s-02 joins while the runs are pending.
	c, err := e.fl.CreateMachine(e.ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "s-02", ScaleSet: "s"}})
	if err != nil {
		t.Fatal(err)
	}
	e.startAgent("s-02", c.AgentToken)
	e.waitVersion([]string{"s-02"}, "1.0.0")
	ended := e.runsEnded(ss, 2)
	for _, run := range ended {
		if run.Machine == "s-02" || run.State != pb.ActionSucceeded {
			t.Errorf("run %s on %s: %s (%s)", run.Id, run.Machine, run.State, run.Reason)
		}
	}
	e.until("the runs counted", func() (bool, string) {
		return sample(pb.ActionSucceeded) == 2, fmt.Sprint(sample(pb.ActionSucceeded))
	})

	f, err := e.fl.RunAction(e.ctx, &pb.RunActionRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "s-02"}}, Application: "g/a", Action: "fail"})
	if err != nil || len(f.Runs) != 1 {
		t.Fatalf("run on s-02: %v %v", f, err)
	}
	e.runsEnded(ss, 3)
	if s, f := sample(pb.ActionSucceeded), sample(pb.ActionFailed); s != 2 || f != 1 {
		t.Fatalf("after a failed run: %d succeeded, %d failed; want 2, 1", s, f)
	}
	runs := map[string]int{}
	for _, m := range e.readMarks() {
		runs[m.machine+" "+m.what]++
	}
	if runs["s-00 hello"] != 1 || runs["s-01 hello"] != 1 || runs["s-02 hello"] != 0 || runs["s-02 fail"] != 1 {
		t.Fatalf("scripts run: %v", runs)
	}

	// s-00's agent sends its report again, saying otherwise.
	ac, err := client.New(e.d.addr, client.Options{Token: e.tokens["s-00"]})
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	first := ended[0]
	if first.Machine != "s-00" {
		first = ended[1]
	}
	if _, err := pb.NewFleetServiceClient(ac.Conn()).ReportActionResult(e.ctx, &pb.ReportActionResultRequest{Machine: "s-00",
		Run: &pb.ActionRun{Id: first.Id, State: pb.ActionFailed, ExitCode: 9}}); err != nil {
		t.Fatalf("a report sent again: %v", err)
	}
	if s, f := sample(pb.ActionSucceeded), sample(pb.ActionFailed); s != 2 || f != 1 {
		t.Fatalf("after a report sent again: %d succeeded, %d failed; want 2, 1", s, f)
	}
	l, err := e.fl.ListActionRuns(e.ctx, &pb.ListActionRunsRequest{Target: ss, Ids: []string{first.Id}})
	if err != nil || len(l.Runs) != 1 || l.Runs[0].State != pb.ActionSucceeded {
		t.Fatalf("the run after a report sent again: %v %v", l, err)
	}
}

// runsEnded waits until the runs of target are n, all ended, and returns
// them.
func (e *rolloutEnv) runsEnded(target *pb.ProfileTarget, n int) []*pb.ActionRun {
	e.t.Helper()
	var runs []*pb.ActionRun
	e.until(fmt.Sprintf("%d runs ended", n), func() (bool, string) {
		l, err := e.fl.ListActionRuns(e.ctx, &pb.ListActionRunsRequest{Target: target})
		runs = l.GetRuns()
		for _, r := range runs {
			if r.State == pb.ActionPending {
				return false, fmt.Sprint(runs)
			}
		}
		return err == nil && len(runs) == n, fmt.Sprint(runs, err)
	})
	return runs
}
