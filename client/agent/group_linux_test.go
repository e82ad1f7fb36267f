package agent

import (
	"bufio"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/vmapp/vmapp/internal/testkit/proctest"
)

// orphanGroup starts a shell in a process group of its own that starts a
// sleep, then kills the shell (as Pdeathsig does when the agent dies): it
// returns the group as the agent records it, and the sleep, still in it.
func orphanGroup(t *testing.T) (*procGroup, int) {
	t.Helper()
	cmd := exec.Command("/bin/bash", "-c", `sleep 60 & echo $!; wait`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g, err := groupOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	sleep, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(sleep, syscall.SIGKILL) })
	cmd.Process.Kill()
	cmd.Wait()
	if g.ID != cmd.Process.Pid || !proctest.Running(sleep) {
		t.Fatalf("group %+v of leader %d; sleep %d running: %v", g, cmd.Process.Pid, sleep, proctest.Running(sleep))
	}
	return g, sleep
}

// leader starts a sleep leading a group of its own.
func leader(t *testing.T) (*procGroup, int) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	g, err := groupOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return g, cmd.Process.Pid
}

func TestProcGroupEnd(t *testing.T) {
	// The leader is dead, a process it started runs on: end kills it.
	g, sleep := orphanGroup(t)
	if n, err := g.end(20 * time.Second); err != nil || n != 1 || proctest.Running(sleep) {
		t.Fatalf("killed %d, %v; the orphan runs: %v", n, err, proctest.Running(sleep))
	}
	// A group that is gone: nothing to do.
	if n, err := g.end(20 * time.Second); err != nil || n != 0 {
		t.Fatalf("killed %d, %v", n, err)
	}

	// A group of that id led by another process (the id was reused), or in
	// another session, isn't the recorded one: nothing of it is killed.
	other, pid := leader(t)
	for name, g := range map[string]procGroup{
		"a leader of another start time": {ID: other.ID, Session: other.Session, LeaderStart: other.LeaderStart - 1},
		"another session":                {ID: other.ID, Session: other.Session + 1, LeaderStart: other.LeaderStart},
	} {
		if n, err := g.end(20 * time.Second); err != nil || n != 0 || !proctest.Running(pid) {
			t.Fatalf("%s: killed %d, %v; the process runs: %v", name, n, err, proctest.Running(pid))
		}
	}
}

// TestRecoverEndsInterruptedCommands: recover kills what an operation of
// this boot left running, then has it run again (the attempt counted);
// the group recorded in another boot is never touched (its id may lead an
// unrelated group now), and its operation follows scriptBehaviorAfterReboot.
func TestRecoverEndsInterruptedCommands(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, StateDir), 0o755); err != nil {
		t.Fatal(err)
	}
	crashed, orphan := orphanGroup(t)
	unrelated, pid := leader(t)
	st := &state{Schema: stateSchema, BootID: "boot-0", Apps: map[string]*appState{
		"g/crashed": {Gallery: "g", Application: "crashed", Attempts: 1,
			Op: &operation{Op: OpInstall, Step: OpInstall, Version: "1.0.0", BootID: "boot-1", Group: crashed}},
		"g/rebooted": {Gallery: "g", Application: "rebooted", Attempts: 1,
			Op: &operation{Op: OpInstall, Step: OpInstall, Version: "1.0.0", BootID: "boot-0", Behavior: "None", Group: unrelated}},
	}}
	a := &agent{cfg: Config{Root: root}, clock: clockwork.NewRealClock(), log: slog.New(slog.NewTextHandler(t.Output(), nil)), bootID: "boot-1", st: st}
	if err := a.recover(); err != nil {
		t.Fatal(err)
	}
	if proctest.Running(orphan) {
		t.Fatal("the process the crashed agent's command left still runs")
	}
	if !proctest.Running(pid) {
		t.Fatal("recover killed a process of a group recorded in another boot")
	}
	c, r := st.Apps["g/crashed"], st.Apps["g/rebooted"]
	if c.Op != nil || c.Failure == nil || c.Failure.Manual || !c.Failure.NextRetry.IsZero() || c.Failure.Version != "1.0.0" || c.Attempts != 1 {
		t.Fatalf("crashed: op %+v, failure %+v, attempts %d: want it due again now, the attempt counted", c.Op, c.Failure, c.Attempts)
	}
	if r.Op != nil || r.Failure == nil || !r.Failure.Manual || r.Status.State != StateFailed || r.Status.Reason != "interrupted by a reboot" {
		t.Fatalf("rebooted: op %+v, failure %+v, status %+v", r.Op, r.Failure, r.Status)
	}
	saved, err := loadState(root)
	if err != nil || saved.BootID != "boot-1" || saved.Apps["g/crashed"].Op != nil {
		t.Fatalf("saved state %+v, %v", saved, err)
	}
}
