//go:build unix

package agent

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// readBootID reads the kernel's boot id (Linux).
func readBootID() (string, error) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", fmt.Errorf("read the boot id: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// procTree is a command's processes: a process group of its own, which
// dies with the agent where the system can tell it to (Linux), and a pipe
// on fd 3 that holds the command at the gate until run.
type procTree struct {
	cmd           *exec.Cmd
	hold, release *os.File
}

// newProcTree readies cmd to start held at the gate (cmdLine is Windows'
// and unused here).
func newProcTree(cmd *exec.Cmd, _ string) (*procTree, error) {
	hold, release, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{hold}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithAgent(cmd.SysProcAttr)
	return &procTree{cmd: cmd, hold: hold, release: release}, nil
}

// started is called once cmd started: only the shell keeps the gate's
// read end.
func (t *procTree) started() error { return t.hold.Close() }

// run lets the command past the gate. The write fails only when the shell
// is gone already.
func (t *procTree) run() {
	t.release.Write([]byte("\n"))
	t.release.Close()
}

// kill signals the command's process group: SIGKILL when hard, else
// SIGTERM.
func (t *procTree) kill(hard bool) {
	if t.cmd.Process == nil {
		return
	}
	sig := syscall.SIGTERM
	if hard {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-t.cmd.Process.Pid, sig)
}

// close lets go of the gate's pipe once the command ended; what the
// command left running (a service it started) keeps running.
func (t *procTree) close() {
	t.hold.Close()
	t.release.Close()
}

// lockRoot takes an exclusive lock on path, so that two agents never work
// on one root; the returned func releases it.
func lockRoot(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another agent runs on this root (%s is locked): %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// secureRoot does nothing here: the root and the agent's files are made
// with modes that keep other accounts out (0755 directories, 0600 files).
func secureRoot(string) error { return nil }

// shellPath is the shell's path: /bin/bash as it is.
func shellPath(name string) (string, error) { return name, nil }

// diskSize is the size of the file system holding path.
func diskSize(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks) * int64(st.Bsize), nil
}
