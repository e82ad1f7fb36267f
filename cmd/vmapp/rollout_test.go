package main

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func TestParseRolloutTarget(t *testing.T) {
	for _, c := range []struct {
		target, machines string
		want             *pb.RolloutTarget
		err              string
	}{
		{"vmss:web", "", &pb.RolloutTarget{ScaleSet: "web"}, ""},
		{"", "region=eastus,tag:env=prod,tag:team=a=b", &pb.RolloutTarget{Machines: &pb.MachineSelector{Region: "eastus", Tags: map[string]string{"env": "prod", "team": "a=b"}}}, ""},
		{"", "tag:env=", &pb.RolloutTarget{Machines: &pb.MachineSelector{Tags: map[string]string{"env": ""}}}, ""},
		{"", "", nil, "give --target vmss:NAME or --machines SELECTOR (one of them)"},
		{"vmss:web", "region=eastus", nil, "one of them"},
		{"web", "", nil, `--target "web": want vmss:NAME`},
		{"vmss:", "", nil, "want vmss:NAME"},
		{"", "env=prod", nil, `"env=prod" isn't region=R or tag:KEY=VALUE`},
		{"", "tag:=x", nil, "isn't region=R or tag:KEY=VALUE"},
	} {
		got, err := parseRolloutTarget(c.target, c.machines)
		var usage usageError
		switch {
		case c.err == "" && (err != nil || !proto.Equal(got, c.want)):
			t.Errorf("%q %q: %v %v, want %v", c.target, c.machines, got, err, c.want)
		case c.err != "" && (!errors.As(err, &usage) || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q %q: %v, want a usage error %q", c.target, c.machines, err, c.err)
		}
	}
}

func TestProgressLine(t *testing.T) {
	r := &pb.Rollout{State: pb.RolloutHalted, Reason: "2 machines failed; maxErrors 1 tolerates 1", CurrentWave: 1,
		WavePlan: []*pb.RolloutWave{{}, {}, {}}, Machines: []*pb.RolloutMachine{{State: "Succeeded"}, {State: "Failed"}, {State: "Failed"}, {State: "Pending"}}}
	want := "Halted wave 2/3: Pending 1, Succeeded 1, Failed 2 (2 machines failed; maxErrors 1 tolerates 1)"
	if got := progressLine(r); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestRolloutWatch follows a rollout through the CLI against a whole
// deployment: vm1's agent never reports, so the rollout stays Running
// until it is paused and aborted; the watch of the aborted rollout prints
// its line (its JSON with -o json) and exits 1 saying why.
func TestRolloutWatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO processes")
	}
	c := testcluster.Start(t, testcluster.Options{})
	for _, v := range []string{"1.0.0", "2.0.0"} {
		c.Publish(t, v, []byte("package "+v), testcluster.Target("eastus", 1))
		c.WaitState(t, v, "Completed")
	}
	e := clusterEnv(t, c)
	e.ok("vm", "create", "--name", "vm1", "--region", "eastus", "--os", "linux")
	e.ok("vm", "app", "set", "--vm", "vm1", "--app", "g/a/1.0.0")
	e.ok("rollout", "create", "r1", "--app", "g/a", "--version", "2.0.0", "--machines", "region=eastus", "--waves", "100%")
	if st := at(e.okJSON("rollout", "pause", "r1"), "state"); st != "Paused" {
		t.Fatalf("paused: %v", st)
	}
	e.ok("rollout", "abort", "r1")
	r := e.vmapp("rollout", "watch", "r1")
	if r.code != 1 || !strings.Contains(r.stderr, "rollout 'r1' is Aborted: aborted") ||
		!regexp.MustCompile(`^\d\d:\d\d:\d\d Aborted wave 1/1: Updating 1 \(aborted\)\n$`).MatchString(r.stdout) {
		t.Fatalf("watch of an aborted rollout: %v", r)
	}
	r = e.vmapp("-o", "json", "rollout", "watch", "r1")
	var js map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || r.code != 1 || js["state"] != "Aborted" || at(js, "machines", 0, "name") != "vm1" {
		t.Fatalf("watch -o json of an aborted rollout (%v): %v", err, r)
	}
	e.fails(1, "Rollout 'nope' doesn't exist.", "rollout", "watch", "nope")
}
