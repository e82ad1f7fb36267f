package main

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

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
