package server_test

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestWatchGoalStateOSType: an agent says which OS it runs on; vmappd
// refuses its goal-state stream when the machine was created with another
// osType (FailedPrecondition on osType, naming both), and an OS it doesn't
// know (InvalidArgument). An agent that doesn't say is served.
func TestWatchGoalStateOSType(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	fl := pb.NewFleetServiceClient(c.Client.Conn())
	watch := func(machine, os string) func(string) error {
		r, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: machine, Region: "eastus", OsType: os}})
		mustOK(t, err)
		cl, err := client.New(c.Addr, client.Options{Token: r.AgentToken})
		mustOK(t, err)
		t.Cleanup(func() { cl.Close() })
		agent := pb.NewFleetServiceClient(cl.Conn())
		return func(os string) error {
			return firstRecv(agent.WatchGoalState(ctx(t), &pb.WatchGoalStateRequest{Machine: machine, OsType: os}))
		}
	}
	lin, win := watch("lin", "Linux"), watch("win", "Windows")
	for _, os := range []string{"", "Linux", "linux"} {
		mustOK(t, lin(os))
	}
	for _, os := range []string{"", "Windows", "WINDOWS"} {
		mustOK(t, win(os))
	}
	err := lin("Windows")
	wantErr(t, err, codes.FailedPrecondition, "machine 'lin' was created with osType Linux, but its agent runs on Windows")
	if f := errs.FieldOf(err); f != "osType" {
		t.Fatalf("field %q", f)
	}
	wantErr(t, win("linux"), codes.FailedPrecondition, "machine 'win' was created with osType Windows, but its agent runs on Linux")
	wantErr(t, lin("Darwin"), codes.InvalidArgument, "osType 'Darwin' is invalid")
}
