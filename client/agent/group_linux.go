package agent

import (
	"fmt"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
)

// dieWithAgent has the kernel kill a command's shell when the agent dies.
// Pdeathsig fires when the thread that started the child ends, not the
// process (go.dev/issue/27505): runCommand starts and waits for commands
// from a goroutine locked to its thread.
func dieWithAgent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

// groupOf describes the process group led by pid (a command's shell, just
// started in a group of its own).
func groupOf(pid int) (*procGroup, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return nil, err
	}
	st, err := p.Stat()
	if err != nil {
		return nil, err
	}
	return &procGroup{ID: st.PGRP, Session: st.Session, LeaderStart: st.Starttime}, nil
}

// live lists the processes of g that still run. A process is g's when it
// is in the group and session, and started no earlier than g's leader; and
// none is when a process of another start time leads a group of that id
// (the id was reused: g ended). Zombies don't run: they aren't listed.
func (g *procGroup) live() ([]int, error) {
	procs, err := procfs.AllProcs()
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil || st.PGRP != g.ID || st.Session != g.Session {
			continue // ended meanwhile, or another group's
		}
		if st.PID == g.ID && st.Starttime != g.LeaderStart {
			return nil, nil
		}
		if st.Starttime >= g.LeaderStart && st.State != "Z" && st.State != "X" {
			pids = append(pids, st.PID)
		}
	}
	return pids, nil
}

// end kills (SIGKILL) what still runs of g, until nothing does; it gives
// up after wait, naming the processes left. It returns how many processes
// it killed.
func (g *procGroup) end(wait time.Duration) (int, error) {
	killed := map[int]bool{}
	deadline := time.Now().Add(wait)
	for {
		pids, err := g.live()
		if err != nil {
			return len(killed), fmt.Errorf("listing the processes of group %d: %w", g.ID, err)
		}
		if len(pids) == 0 {
			return len(killed), nil
		}
		if time.Now().After(deadline) {
			return len(killed), fmt.Errorf("processes %v of group %d still run %v after SIGKILL", pids, g.ID, wait)
		}
		for _, pid := range pids {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed[pid] = true
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}
