//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/proctest"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestBinary runs the vmapp-agent binary, built here, against a test
// cluster.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds vmapp-agent and runs MinIO")
	}
	bin := filepath.Join(t.TempDir(), "vmapp-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build vmapp-agent: %v\n%s", err, out)
	}
	c := testcluster.Start(t, testcluster.Options{})
	if _, err := c.Client.Catalog.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "eastus"}}); err != nil {
		t.Fatal(err)
	}
	e := &env{c: c, bin: bin, fl: pb.NewFleetServiceClient(c.Client.Conn())}
	t.Run("Kill9", e.testKill9)
	t.Run("MachineDeleted", e.testMachineDeleted)
	t.Run("Metrics", e.testMetrics)
}

type env struct {
	c   *testcluster.Cluster
	bin string
	fl  pb.FleetServiceClient
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// publish publishes g/app/1.0.0 with the install command, and waits for
// its replication.
func (e *env) publish(t *testing.T, app, install string) {
	t.Helper()
	cat := e.c.Client.Catalog
	if _, err := cat.CreateApplication(ctx(t), &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: app, Location: "eastus", SupportedOsType: "Linux"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cat.CreateVersion(ctx(t), &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: "g", Application: app, Name: "1.0.0", Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: install, Remove: "true"},
			TargetRegions: []*pb.TargetRegion{testcluster.Target("eastus", 1)}},
	}}); err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(t.TempDir(), "pkg")
	if err := os.WriteFile(pkg, []byte("package of "+app), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Client.Upload(ctx(t), "g", app, "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, pkg, client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	e.poll(t, "g/"+app+"/1.0.0 replicated", func() bool {
		r, err := cat.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: app, Version: "1.0.0"})
		return err == nil && r.Version.ReplicationStatus.GetAggregatedState() == "Completed"
	})
}

// machine creates a machine and returns the flags its agent runs with.
func (e *env) machine(t *testing.T, name string) []string {
	t.Helper()
	r, err := e.fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: name, Region: "eastus", OsType: "Linux"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	token := filepath.Join(dir, "agent.token")
	if err := os.WriteFile(token, []byte(r.AgentToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--server", e.c.Addr, "--vm", name, "--token-file", token, "--root", filepath.Join(dir, "root")}
}

// poll waits until ok; its deadline only guards against a hang.
func (e *env) poll(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("never %s", what)
		}
		time.Sleep(20 * time.Millisecond)
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

// agentProc is a running vmapp-agent.
type agentProc struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (e *env) start(t *testing.T, args ...string) *agentProc {
	t.Helper()
	return e.startCmd(t, exec.Command(e.bin, args...), args)
}

// startCmd starts cmd, a vmapp-agent with args, until the test ends.
func (e *env) startCmd(t *testing.T, cmd *exec.Cmd, args []string) *agentProc {
	t.Helper()
	p := &agentProc{cmd: cmd, log: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("vmapp-agent %v:\n%s", args, p.log)
		}
	})
	return p
}

// exit waits for the agent to exit and returns its exit code (-1: killed
// by a signal).
func (p *agentProc) exit(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(60 * time.Second):
		t.Fatalf("vmapp-agent never exited:\n%s", p.log)
		return 0
	}
}

// kill9Install is an install command that records its shell ("leader
// PID"), then runs a subshell ("start PID", "end PID") that sleeps through
// the first run. Before anything, it records every earlier run's subshell
// that still runs ("overlap PID").
const kill9Install = `M=%s
for p in $(sed -n 's/^start //p' $M 2>/dev/null); do
  s=$(sed 's/.*) //' /proc/$p/stat 2>/dev/null | cut -d' ' -f1)
  if [ -n "$s" ] && [ "$s" != Z ]; then echo "overlap $p" >> $M; fi
done
echo "leader $$" >> $M
(echo "start $BASHPID" >> $M; if [ "$(grep -c '^start' $M)" = 1 ]; then sleep 60; fi; echo "end $BASHPID" >> $M)
true`

type mark struct {
	label string
	pid   int
}

// marksOf reads the complete lines of the marks file.
func marksOf(t *testing.T, path string) []mark {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var ms []mark
	for _, l := range lines[:len(lines)-1] {
		label, pid, _ := strings.Cut(l, " ")
		n, err := strconv.Atoi(pid)
		if err != nil {
			t.Fatalf("bad mark %q", l)
		}
		ms = append(ms, mark{label, n})
	}
	return ms
}

// testKill9: vmapp-agent is killed with SIGKILL during an install. The
// install's shell dies with it (Pdeathsig); what the shell started runs on
// until the restarted agent kills it, before it runs the install again.
// The install runs to its end once, never two at a time, and the instance
// view counts both attempts.
func (e *env) testKill9(t *testing.T) {
	marks := filepath.Join(t.TempDir(), "marks")
	e.publish(t, "k9", fmt.Sprintf(kill9Install, marks))
	args := e.machine(t, "k9-vm")
	if _, err := e.fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "k9-vm"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/k9/1.0.0"}}); err != nil {
		t.Fatal(err)
	}
	first := e.start(t, args...)
	e.poll(t, "started the install", func() bool { return len(marksOf(t, marks)) == 2 })
	ms := marksOf(t, marks)
	shell, orphan := ms[0].pid, ms[1].pid
	t.Cleanup(func() { syscall.Kill(orphan, syscall.SIGKILL) }) // should the agent leave it
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := first.exit(t); code != -1 {
		t.Fatalf("vmapp-agent exited with %d, not killed", code)
	}
	proctest.WaitGone(t, shell)
	if !proctest.Running(orphan) {
		t.Fatalf("the install's subshell %d died with the agent: nothing left for the restarted agent to end", orphan)
	}

	second := e.start(t, args...)
	e.poll(t, "installed", func() bool {
		s := e.get(t, "k9-vm").GetInstanceView().GetApplications()
		return len(s) == 1 && s[0].State == "Installed"
	})
	ms = marksOf(t, marks)
	got := make([]string, len(ms))
	for i, m := range ms {
		got[i] = m.label
	}
	if want := []string{"leader", "start", "leader", "start", "end"}; !slices.Equal(got, want) || ms[4].pid != ms[3].pid {
		t.Fatalf("marks %v, want %v with the second run's end (an overlap names an earlier run still running at a rerun)", ms, want)
	}
	if proctest.Running(orphan) {
		t.Fatalf("the first run's subshell %d still runs", orphan)
	}
	s := e.get(t, "k9-vm").InstanceView.Applications[0]
	if s.Attempts != 2 || s.Operation != "install" || s.ExitCode != 0 {
		t.Fatalf("instance view %v: want install, 2 attempts, exit code 0", s)
	}
	// The subshell and its sleep.
	if log := second.log.String(); !strings.Contains(log, `msg="killed the processes the interrupted command left running" machine=k9-vm app=g/k9 op=install step=install version=1.0.0 group=`+strconv.Itoa(shell)+" killed=2") {
		t.Fatalf("the restarted agent's log doesn't say what it killed:\n%s", log)
	}
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := second.exit(t); code != 0 {
		t.Fatalf("vmapp-agent exited with %d after SIGTERM", code)
	}
}

// testMachineDeleted: the machine is deleted under its agent. With
// --exit-on-revoked, the agent exits 3 saying why; without, it says why
// and waits --revoked-retry before it asks again.
func (e *env) testMachineDeleted(t *testing.T) {
	args := e.machine(t, "del-vm")
	a := e.start(t, append(args, "--exit-on-revoked")...)
	e.poll(t, "connected", func() bool { return e.get(t, "del-vm").GetInstanceView().GetConnected() })
	if _, err := e.fl.DeleteMachine(ctx(t), &pb.DeleteMachineRequest{Name: "del-vm"}); err != nil {
		t.Fatal(err)
	}
	if code := a.exit(t); code != 3 || !strings.Contains(a.log.String(), `level=ERROR msg="vmapp-agent stopped (--exit-on-revoked)" err="vmappd refuses this machine: the machine is not in the fleet: it was deleted`) {
		t.Fatalf("exit code %d, want 3 and the cause logged:\n%s", code, a.log)
	}

	b := e.start(t, append(args, "--revoked-retry", "10m")...)
	e.poll(t, "said why", func() bool {
		return strings.Contains(b.log.String(), `level=ERROR msg="vmappd refused the machine's credential: it was revoked (the machine was deleted, or given a new credential) or it expired: asking again later"`)
	})
	if !strings.Contains(b.log.String(), "retry_in=") {
		t.Fatalf("no retry_in:\n%s", b.log)
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := b.exit(t); code != 0 {
		t.Fatalf("vmapp-agent exited with %d after SIGTERM:\n%s", code, b.log)
	}
}
