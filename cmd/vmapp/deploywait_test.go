package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/client/agent"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// runAgent runs a real agent for machine until the test ends.
func runAgent(t *testing.T, addr, machine, tokenFile string) {
	tok, err := client.ReadTokenFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.Config{
			Server: addr, Token: tok, Machine: machine, Root: t.TempDir(),
			CommandTimeout: time.Minute,
			BootID:         func() (string, error) { return "boot-1", nil },
			RetryBase:      time.Hour, RetryMax: time.Hour, // no automatic retry of the failure below
			ReconnectBase: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent %s: %v", machine, err)
		}
	})
}

// TestAppSetWait: vm app set --wait and vmss app set --wait return once
// real agents report the application Installed (then vmappd shows it so),
// and exit 1 naming the machine when its install fails.
func TestAppSetWait(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO processes")
	}
	c := testcluster.Start(t, testcluster.Options{})
	// 1.0.0's install command ("install.sh") doesn't exist: it fails.
	c.Publish(t, "1.0.0", []byte("package one"), testcluster.Target("eastus", 1))
	e := clusterEnv(t, c)
	dir := t.TempDir()
	pkg := filepath.Join(dir, "pkg")
	if err := os.WriteFile(pkg, []byte("package two"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.vmapp("version", "create", "-g", "g", "-a", "a", "2.0.0", "--install", "test -f a", "--remove", "true",
		"--target-region", "eastus=1", "--package", pkg, "--wait")
	if r.code != 0 {
		t.Fatal(r)
	}
	e.ok("vmss", "create", "--name", "web", "--region", "eastus", "--os", "linux")
	for _, vm := range []string{"vm1", "web-0", "web-1"} {
		args := []string{"vm", "create", "--name", vm, "--agent-token-file", filepath.Join(dir, vm)}
		if strings.HasPrefix(vm, "web") {
			args = append(args, "--vmss", "web")
		} else {
			args = append(args, "--region", "eastus", "--os", "linux")
		}
		e.ok(args...)
		runAgent(t, c.Addr, vm, filepath.Join(dir, vm))
	}

	r = e.vmapp("vm", "app", "set", "--vm", "vm1", "--app", "g/a/2.0.0", "--wait")
	if r.code != 0 || !strings.Contains(r.stderr, "vm1: g/a 2.0.0 Installed\n") || !strings.Contains(r.stdout, "g/a/2.0.0") {
		t.Fatalf("vm app set --wait: %v", r)
	}
	vm1 := e.okJSON("vm", "show", "vm1")
	if at(vm1, "instanceView", "applications", 0, "state") != "Installed" || at(vm1, "instanceView", "applications", 0, "version") != "2.0.0" {
		t.Fatalf("after --wait, vm1 reports %v", at(vm1, "instanceView"))
	}

	// A scale set: every instance; "latest" is 2.0.0.
	r = e.vmapp("vmss", "app", "set", "--vmss", "web", "--app", "g/a/latest", "--wait")
	if r.code != 0 || !strings.Contains(r.stderr, "web-0: g/a 2.0.0 Installed\n") || !strings.Contains(r.stderr, "web-1: g/a 2.0.0 Installed\n") {
		t.Fatalf("vmss app set --wait: %v", r)
	}
	for _, vm := range []string{"web-0", "web-1"} {
		if m := e.okJSON("vm", "show", vm); at(m, "instanceView", "applications", 0, "state") != "Installed" {
			t.Fatalf("after --wait, %s reports %v", vm, at(m, "instanceView"))
		}
	}

	// A failure: exit 1, naming the machine, its operation and exit code.
	r = e.vmapp("vm", "app", "set", "--vm", "vm1", "--app", "g/a/1.0.0", "--wait")
	if r.code != 1 || !strings.Contains(r.stderr, "error: FailedPrecondition: g/a 1.0.0 failed on 1 of 1 machines: vm1: g/a 1.0.0 Failed (") || r.stdout != "" {
		t.Fatalf("vm app set --wait of a failing version: %v", r)
	}
}

// withHealth sets the health of m's application.
func withHealth(m *pb.Machine, h string) *pb.Machine {
	s := m.InstanceView.Applications[0]
	s.Health, s.HealthReason = h, "exit 7"
	return m
}

// TestOutcomeOf: what counts as a machine's result for --wait.
func TestOutcomeOf(t *testing.T) {
	since := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	d := deployment{target: vmTarget, name: "vm1", app: "g/a", version: "2.0.0", since: since}
	st := func(version, state string, end time.Time) *pb.Machine {
		s := &pb.ApplicationStatus{Application: "g/a", Version: version, State: state, Operation: "install", ExitCode: 3, Reason: "exit status 3"}
		if !end.IsZero() {
			s.EndTime = timestamppb.New(end)
		}
		return &pb.Machine{Name: "vm1", InstanceView: &pb.InstanceView{Connected: true, Applications: []*pb.ApplicationStatus{s}}}
	}
	for _, tc := range []struct {
		m            *pb.Machine
		done, failed bool
		line         string
	}{
		{st("2.0.0", pb.AppInstalled, since.Add(-time.Hour)), true, false, "vm1: g/a 2.0.0 Installed"},
		{st("2.0.0", pb.AppFailed, since.Add(time.Second)), true, true, "vm1: g/a 2.0.0 Failed (install, exit 3): exit status 3"},
		{st("2.0.0", pb.AppFailed, since.Add(-time.Second)), false, false, "vm1: g/a 2.0.0 Failed"}, // an earlier failure
		{st("2.0.0", pb.AppInstalling, time.Time{}), false, false, "vm1: g/a 2.0.0 Installing"},
		{st("1.0.0", pb.AppInstalled, since), false, false, "vm1: g/a 1.0.0 Installed, 2.0.0 not started"},
		{withHealth(st("2.0.0", pb.AppInstalled, since), pb.HealthChecking), false, false, "vm1: g/a 2.0.0 Installed, checking its health"},
		{withHealth(st("2.0.0", pb.AppInstalled, since), pb.HealthHealthy), true, false, "vm1: g/a 2.0.0 Installed"},
		{withHealth(st("2.0.0", pb.AppInstalled, since), pb.HealthUnhealthy), true, true, "vm1: g/a 2.0.0 Installed but Unhealthy: exit 7"},
		{&pb.Machine{Name: "vm1"}, false, false, "vm1: its agent is not connected"},
		{&pb.Machine{Name: "vm1", InstanceView: &pb.InstanceView{Connected: true}}, false, false, "vm1: g/a 2.0.0 not started"},
	} {
		o := d.outcomeOf(tc.m)
		if o.done != tc.done || o.failed != tc.failed || o.line != tc.line {
			t.Errorf("%v: got %+v, want done %v failed %v %q", tc.m, o, tc.done, tc.failed, tc.line)
		}
	}
}
