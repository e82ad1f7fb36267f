//go:build !unix && !windows

package agent

import (
	"errors"
	"os/exec"
)

// The agent runs on Linux (and other Unix systems) and Windows; elsewhere
// it only builds.

func readBootID() (string, error) { return "", errors.New("no boot id on this system") }

type procTree struct{ cmd *exec.Cmd }

func newProcTree(cmd *exec.Cmd, _ string) (*procTree, error) { return &procTree{cmd}, nil }

func (t *procTree) started() error { return nil }

func (t *procTree) run() {}

func (t *procTree) kill(bool) {
	if t.cmd.Process != nil {
		_ = t.cmd.Process.Kill()
	}
}

func (t *procTree) close() {}

func lockRoot(string) (func(), error) { return func() {}, nil }

func secureRoot(string) error { return nil }

func shellPath(name string) (string, error) { return name, nil }

func diskSize(string) (int64, error) {
	return 0, errors.New("the disk's size is not known on this system: give --cache-max in bytes")
}
