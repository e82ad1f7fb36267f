package console

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestMatrix renders the matrix of a status whose regions want different
// replica counts: a column per replica index, each replica's state,
// progress and details in its cell, "·" past a region's count.
func TestMatrix(t *testing.T) {
	st := &pb.ReplicationStatus{AggregatedState: pb.ReplicationInProgress, Summary: []*pb.RegionalReplicationStatus{
		{Region: "eastus", State: pb.ReplicationCompleted, ReplicasWanted: 1, ReplicasCompleted: 1, Progress: 100, BytesDone: 2048, BytesTotal: 2048,
			Replicas: []*pb.ReplicaStatus{{Index: 0, Artifact: "package", State: pb.ReplicationCompleted, Progress: 100, BytesDone: 2048, SizeBytes: 2048}}},
		{Region: "westus", State: pb.ReplicationFailed, ReplicasWanted: 2, Progress: 25, BytesDone: 1024, BytesTotal: 4096, Eta: durationpb.New(0),
			Details: "replica 1 (package): store down",
			Replicas: []*pb.ReplicaStatus{
				{Index: 0, Artifact: "package", State: "Copying", Progress: 50, BytesDone: 1024, SizeBytes: 2048},
				{Index: 1, Artifact: "package", State: pb.ReplicationFailed, SizeBytes: 2048, Attempts: 3, Details: "store down <b>"},
			}},
	}}
	m := matrixOf(st)
	if len(m.Columns) != 2 || len(m.Rows) != 2 || len(m.Rows[0].Cells[1]) != 0 || len(m.Rows[1].Cells[1]) != 1 {
		t.Fatalf("matrix: %d columns, rows %+v", len(m.Columns), m.Rows)
	}
	c := &Console{pages: parsePages()}
	html, err := c.fragment("version", "matrix", m)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Replica 0", "Replica 1", `data-region="westus"`, "50%", "1.0 KiB / 2.0 KiB", "store down &lt;b&gt;", `aria-label="no such replica"`, "1/1 done", "0/2 done"} {
		if !strings.Contains(html, want) {
			t.Errorf("the matrix lacks %q:\n%s", want, html)
		}
	}
}

// TestPagesParse renders every page's template with no data: each parses
// with the layout, and an empty listing says how to fill it.
func TestPagesParse(t *testing.T) {
	c := &Console{pages: parsePages()}
	for name, data := range map[string]any{"galleries": listing{}, "machines": listing{}, "scalesets": listing{}, "rollouts": listing{}, "peers": peersData{}} {
		var b strings.Builder
		if err := c.pages[name].ExecuteTemplate(&b, "layout", page{Title: name, Data: data}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(b.String(), `class="empty"`) {
			t.Errorf("%s has no empty state:\n%s", name, b.String())
		}
	}
}

// TestSafeNext keeps the page a sign-in returns to inside the console.
func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/inventory?state=Failed": "/ui/inventory?state=Failed",
		"//evil.example/ui/":         "/ui/",
		"https://evil.example/":      "/ui/",
		"/ui/\\evil":                 "/ui/",
		"":                           "/ui/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRolloutView counts a rollout's machines per wave and state, dates
// the current wave's soak, and offers the actions its state allows to a
// token that may act only.
func TestRolloutView(t *testing.T) {
	soakStart := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	r := &pb.Rollout{Name: "r1", Application: "g/app", Version: "2.0.0", State: pb.RolloutRunning, CurrentWave: 0,
		Soak: durationpb.New(time.Hour), SoakStart: timestamppb.New(soakStart),
		WavePlan: []*pb.RolloutWave{{Spec: "2", Machines: 2}, {Spec: "100%", Machines: 3}},
		Machines: []*pb.RolloutMachine{
			{Name: "a", Wave: 0, State: pb.RolloutMachineSucceeded}, {Name: "b", Wave: 0, State: pb.RolloutMachineFailed, Reason: "exit 3 <x>"},
			{Name: "c", Wave: 1, State: pb.RolloutMachinePending}, {Name: "d", Wave: 1, State: pb.RolloutMachinePending},
			{Name: "e", Wave: 1, State: pb.RolloutMachineRolledBack},
		}}
	v := viewOf(r, true)
	w0, w1 := v.Waves[0], v.Waves[1]
	if w0.Succeeded != 1 || w0.Failed != 1 || !w0.Current || w1.Pending != 2 || w1.RolledBack != 1 || w1.Current {
		t.Fatalf("waves: %+v %+v", w0, w1)
	}
	if !v.SoakEnd.Equal(soakStart.Add(time.Hour)) {
		t.Fatalf("soak ends %v", v.SoakEnd)
	}
	c := &Console{pages: parsePages()}
	html, err := c.fragment("rollout", "rollout", v)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="pause"`, `id="abort"`, "wave 1 soaks until 09:00:00 UTC", `data-end="` + fmt.Sprint(soakStart.Add(time.Hour).UnixMilli()), "exit 3 &lt;x&gt;", `aria-current="step"`} {
		if !strings.Contains(html, want) {
			t.Errorf("the rollout lacks %q:\n%s", want, html)
		}
	}
	if strings.Contains(html, `id="resume"`) {
		t.Error("a running rollout offers Resume")
	}
	r.State = pb.RolloutPaused
	if html, _ := c.fragment("rollout", "rollout", viewOf(r, true)); !strings.Contains(html, `id="resume"`) || strings.Contains(html, `id="pause"`) {
		t.Errorf("a paused rollout's actions:\n%s", html)
	}
	r.State = pb.RolloutSucceeded
	if html, _ := c.fragment("rollout", "rollout", viewOf(r, true)); strings.Contains(html, "<form") || strings.Contains(html, "soaks until") {
		t.Errorf("a finished rollout offers actions or a soak:\n%s", html)
	}
	r.State = pb.RolloutRunning
	if html, _ := c.fragment("rollout", "rollout", viewOf(r, false)); strings.Contains(html, "<form") {
		t.Errorf("a token that may not act is offered actions:\n%s", html)
	}
}
