package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
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

// killGrace is how long a command's processes get between SIGTERM and
// SIGKILL when the agent stops.
const killGrace = 2 * time.Second

// command is a command to run.
type command struct {
	line string // run with /bin/bash -c
	dir  string
	env  []string // added to the agent's environment
	// timeout, on clock (nil: the real one).
	timeout time.Duration
	clock   clockwork.Clock
}

// runCommand runs c in a process group of its own, and kills the whole
// group when the timeout passes (SIGKILL) or ctx ends (SIGTERM, then
// SIGKILL).
func runCommand(ctx context.Context, c command) result {
	start := time.Now()
	out := &tail{}
	cmd := exec.Command("/bin/bash", "-c", c.line)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Don't wait forever for descendants that escaped the group and hold
	// the output pipe.
	cmd.WaitDelay = killGrace
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return result{ExitCode: -1, Err: fmt.Errorf("start /bin/bash: %w", err), Duration: time.Since(start)}
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	clock := cmp.Or[clockwork.Clock](c.clock, clockwork.NewRealClock())
	timer := clock.NewTimer(c.timeout)
	defer timer.Stop()
	var r result
	var err error
	select {
	case err = <-done:
	case <-timer.Chan():
		killGroup(cmd, true)
		err = <-done
		r.TimedOut = true
		r.Err = fmt.Errorf("timed out after %v", c.timeout)
	case <-ctx.Done():
		killGroup(cmd, false)
		select {
		case err = <-done:
		case <-time.After(killGrace):
			killGroup(cmd, true)
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
