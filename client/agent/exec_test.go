//go:build unix

package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/vmapp/vmapp/internal/testkit/proctest"
)

func TestRunCommand(t *testing.T) {
	dir := t.TempDir()
	run := func(ctx context.Context, line string, env ...string) result {
		return runCommand(ctx, command{line: line, dir: dir, env: env, timeout: time.Minute})
	}
	r := run(context.Background(), `pwd; echo $FOO; echo err >&2; exit 4`, "FOO=bar")
	if r.ExitCode != 4 || r.Err != nil || r.TimedOut || r.Tail != dir+"\nbar\nerr\n" {
		t.Fatalf("%+v", r)
	}
	// The tail keeps the last TailSize bytes, valid UTF-8.
	r = run(context.Background(), `for i in $(seq 3000); do printf 'é%04d\n' $i; done`)
	if r.ExitCode != 0 || len(r.Tail) > TailSize || len(r.Tail) < TailSize-8 || !strings.HasSuffix(r.Tail, "é3000\n") || strings.ContainsRune(r.Tail, '\uFFFD') {
		t.Fatalf("tail of %d bytes: %q", len(r.Tail), r.Tail[:min(40, len(r.Tail))])
	}
	// A service left running doesn't fail the command, nor is it waited
	// for: it still runs when the command's result is in.
	r = run(context.Background(), `sleep 60 >/dev/null 2>&1 & echo $!`)
	pid := pidIn(t, r.Tail)
	if r.ExitCode != 0 || r.Err != nil || !proctest.Running(pid) {
		t.Fatalf("%+v; service running: %v", r, proctest.Running(pid))
	}
	syscall.Kill(pid, syscall.SIGKILL)
	// Even when it holds the output: the agent waits killGrace for it.
	r = run(context.Background(), `sleep 3 & echo ok; exit 0`)
	if r.ExitCode != 0 || r.Err != nil || r.Tail != "ok\n" {
		t.Fatalf("%+v", r)
	}
	// A missing directory can't run.
	if r = runCommand(context.Background(), command{line: `true`, dir: dir + "/nope", timeout: time.Second}); r.Err == nil {
		t.Fatalf("%+v", r)
	}
}

// TestRunCommandKills: the timeout (on the command's clock) and the end of
// ctx kill the command's whole group: the shell and what it started.
func TestRunCommandKills(t *testing.T) {
	dir := t.TempDir()
	// The command starts a process, says so, and sleeps.
	const line = `sleep 60 & echo $! > bg; sleep 60`
	bg := filepath.Join(dir, "bg")
	start := func(ctx context.Context, clk clockwork.Clock) <-chan result {
		os.Remove(bg)
		out := make(chan result, 1)
		go func() { out <- runCommand(ctx, command{line: line, dir: dir, timeout: time.Minute, clock: clk}) }()
		deadline := time.Now().Add(20 * time.Second)
		for !exists(bg) || len(readFile(t, bg)) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the command never started its process")
			}
			time.Sleep(10 * time.Millisecond)
		}
		return out
	}
	clk := clockwork.NewFakeClock()
	out := start(context.Background(), clk)
	if err := clk.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if r := <-out; !r.TimedOut || r.ExitCode != -1 || r.Err == nil || r.Err.Error() != "timed out after 1m0s" {
		t.Fatalf("%+v", r)
	}
	proctest.WaitGone(t, pidIn(t, readFile(t, bg)))

	ctx, cancel := context.WithCancel(context.Background())
	out = start(ctx, nil)
	cancel()
	if r := <-out; !errors.Is(r.Err, context.Canceled) || r.TimedOut {
		t.Fatalf("%+v", r)
	}
	proctest.WaitGone(t, pidIn(t, readFile(t, bg)))
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRunCommandGate: started gets the leader of the command's process
// group before the command runs; the command is /bin/bash -c as it was
// given, without the gate's file descriptor.
func TestRunCommandGate(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	var leader int
	var ranBefore bool
	r := runCommand(context.Background(), command{line: `touch ran; echo "$0 $$ $(ps -o pgid= $$)"; ls /proc/$$/fd; true`, dir: dir, timeout: time.Minute,
		started: func(pid int) {
			leader = pid
			ranBefore = exists(marker)
		}})
	if r.ExitCode != 0 || r.Err != nil || ranBefore || leader == 0 {
		t.Fatalf("%+v; leader %d, the command ran before started returned: %v", r, leader, ranBefore)
	}
	f := strings.Fields(r.Tail)
	if len(f) < 3 || f[0] != "/bin/bash" || f[1] != strconv.Itoa(leader) || f[2] != strconv.Itoa(leader) || slices.Contains(f[3:], "3") {
		t.Fatalf("want $0 /bin/bash, $$ and its group %d, fds 0-2 (and ls's): %q", leader, r.Tail)
	}
}

// pidIn reads the pid a command echoed first.
func pidIn(t *testing.T, out string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.Fields(out + " x")[0])
	if err != nil {
		t.Fatalf("no pid in %q", out)
	}
	return pid
}

func TestGenerationNumber(t *testing.T) {
	if n := GenerationNumber("0123456789abcdef0123"); n != 0x0123456789abcde {
		t.Fatalf("%x", n)
	}
	if n := GenerationNumber("fffffffffffffffffff"); n <= 0 {
		t.Fatalf("%d", n)
	}
	if GenerationNumber("zz") != 0 || GenerationNumber("") != 0 {
		t.Fatal("non-hex")
	}
}
