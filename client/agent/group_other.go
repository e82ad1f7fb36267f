//go:build !linux

package agent

import (
	"syscall"
	"time"
)

// Without /proc and Pdeathsig, the agent can't tell what a killed agent's
// commands left running.

func dieWithAgent(*syscall.SysProcAttr) {}

func groupOf(int) (*procGroup, error) { return nil, nil }

func (g *procGroup) end(time.Duration) (int, error) { return 0, nil }
