package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"
)

// TailSize is how much of a command's output (stdout and stderr together)
// is kept and reported.
const TailSize = 4 << 10

// result is the outcome of a command.
type result struct {
	ExitCode int32
	Tail     string
	Duration time.Duration
	// TimedOut: the command ran past the timeout and was killed.
	TimedOut bool
	// Err is set when the command didn't run to an exit code: it couldn't
	// start, timed out, or ctx ended (then it is ctx's error).
	Err error
}

// tail keeps the last TailSize bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*TailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-TailSize:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > TailSize {
		b = b[len(b)-TailSize:]
		// Start at a character boundary.
		for i := 0; i < utf8.UTFMax && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
			b = b[1:]
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// killGrace is how long a command's processes get between the soft stop
// (SIGTERM; CTRL_BREAK on Windows) and the kill when the agent stops.
const killGrace = 2 * time.Second

// gate holds a command until the agent has recorded its process group:
// the shell first reads a line from fd 3 (at EOF, the agent died: nothing
// runs), then becomes /bin/bash -c cmdline, keeping its pid and group.
// (Windows holds it another way: sys_windows.go.)
const gate = `IFS= read -r _ <&3 || exit 125; exec 3<&-; exec /bin/bash -c "$1"`

// command is a command to run.
type command struct {
	line string // run with /bin/bash -c (cmd.exe /c on Windows)
	dir  string
	env  []string // added to the agent's environment
	// timeout, on clock (nil: the real one).
	timeout time.Duration
	clock   clockwork.Clock
	// started, when not nil, gets the leader of the command's process
	// group (its pid) before the command runs.
	started func(pid int)
}

// runCommand runs c in a process group of its own (a job object on
// Windows), and kills the whole tree when the timeout passes (SIGKILL) or
// ctx ends (SIGTERM, then SIGKILL).
func runCommand(ctx context.Context, c command) result {
	start := time.Now()
	out := &tail{}
	sh, err := shellCommand(hostOS, c.line, c.dir)
	if err != nil {
		return result{ExitCode: -1, Err: err}
	}
	path, err := shellPath(sh.Args[0])
	if err != nil {
		return result{ExitCode: -1, Err: err}
	}
	cmd := exec.Command(path, sh.Args[1:]...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Don't wait forever for descendants that escaped the group and hold
	// the output pipe.
	cmd.WaitDelay = killGrace
	tree, err := newProcTree(cmd, sh.CmdLine)
	if err != nil {
		return result{ExitCode: -1, Err: err}
	}
	defer tree.close()
	done := make(chan error, 1)
	err = startLocked(cmd, done)
	if err == nil {
		if err = tree.started(); err != nil {
			<-done // started killed it
		}
	}
	if err != nil {
		return result{ExitCode: -1, Err: fmt.Errorf("start %s: %w", sh.Args[0], err), Duration: time.Since(start)}
	}
	if c.started != nil {
		c.started(cmd.Process.Pid)
	}
	tree.run()
	clock := cmp.Or[clockwork.Clock](c.clock, clockwork.NewRealClock())
	timer := clock.NewTimer(c.timeout)
	defer timer.Stop()
	var r result
	select {
	case err = <-done:
	case <-timer.Chan():
		tree.kill(true)
		err = <-done
		r.TimedOut = true
		r.Err = fmt.Errorf("timed out after %v", c.timeout)
	case <-ctx.Done():
		tree.kill(false)
		select {
		case err = <-done:
		case <-time.After(killGrace):
			tree.kill(true)
			err = <-done
		}
		r.Err = ctx.Err()
	}
	r.Duration, r.Tail = time.Since(start), out.String()
	var ee *exec.ExitError
	switch {
	case err == nil:
		r.ExitCode = 0
	case errors.Is(err, exec.ErrWaitDelay):
		// It exited, leaving processes behind that hold its output (a
		// service it started): its exit code stands.
		r.ExitCode = int32(cmd.ProcessState.ExitCode())
	case errors.As(err, &ee):
		r.ExitCode = int32(ee.ExitCode())
	default:
		r.ExitCode = -1
		if r.Err == nil {
			r.Err = err
		}
	}
	return r
}

// startLocked starts cmd and waits for it (Wait's error goes to done) on a
// goroutine locked to its OS thread all along: the thread that starts a
// child must outlive it, or Pdeathsig kills it. It returns Start's error.
func startLocked(cmd *exec.Cmd, done chan<- error) error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			done <- cmd.Wait()
		}
	}()
	return <-started
}
