package rollout

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Status returns what a machine's agent last reported of the rollout's
// application (nil: nothing).
type Status func(machine string) *pb.ApplicationStatus

// Step advances r at now, given its machines' statuses: it records the
// machines that finished, halts (or rolls back) once failures exceed the
// error budget, starts the machines of the current wave that
// concurrency allows, and moves to the next wave once the current one is
// done and soaked. It is pure: r changes in place, and it reports whether
// r changed and when r wants another step though nothing else changes
// (the soak's end; zero: none).
func Step(r *pb.Rollout, status Status, now time.Time) (changed bool, wake time.Time) {
	before := proto.Clone(r)
	observe(r, status, now)
	if (r.State == pb.RolloutRunning || r.State == pb.RolloutPaused) && r.Failures > r.ErrorBudget {
		halt(r, now)
	}
	if r.State == pb.RolloutRunning {
		wake = advance(r, now)
	}
	if r.State == pb.RolloutRollingBack && count(r, pb.RolloutMachineRollingBack) == 0 {
		r.State = pb.RolloutRolledBack
	}
	return !proto.Equal(before, r), wake
}

// Failed tells whether s, the status of a machine moving to version,
// counts as a failure of the rollout, and why: the version Failed, or
// Installed but Unhealthy (its health check failed).
func Failed(s *pb.ApplicationStatus, version string) (bool, string) {
	switch {
	case s.GetVersion() != version:
		return false, ""
	case s.GetState() == pb.AppFailed:
		return true, s.Operation + " failed: " + s.Reason
	case s.GetHealth() == pb.HealthUnhealthy:
		return true, strings.TrimSuffix("Unhealthy after "+s.Operation+": "+s.HealthReason, ": ")
	}
	return false, ""
}

// reached tells whether s says the machine holds version, installed, and
// healthy when the version checks its health.
func reached(s *pb.ApplicationStatus, version string) bool {
	h := s.GetHealth()
	return s.GetVersion() == version && s.GetState() == pb.AppInstalled && h != pb.HealthChecking && h != pb.HealthUnhealthy
}

// Watched tells whether the step reads what m's agent reports: m moves,
// or it succeeded in the wave that still soaks (Running or Paused), whose
// verdict is not final before the soak ends: a machine that turns
// Unhealthy or Failed meanwhile is a failure.
func Watched(r *pb.Rollout, m *pb.RolloutMachine) bool {
	switch m.State {
	case pb.RolloutMachineUpdating, pb.RolloutMachineRollingBack:
		return true
	case pb.RolloutMachineSucceeded:
		return m.Wave == r.CurrentWave && (r.State == pb.RolloutRunning || r.State == pb.RolloutPaused)
	}
	return false
}

// observe records the machines whose move finished, and the failures of
// the soaking wave's machines.
func observe(r *pb.Rollout, status Status, now time.Time) {
	ts := timestamppb.New(now)
	for _, m := range r.Machines {
		if !Watched(r, m) {
			continue
		}
		to, ok, bad := r.Version, pb.RolloutMachineSucceeded, pb.RolloutMachineFailed
		if m.State == pb.RolloutMachineRollingBack {
			to, ok, bad = m.PreviousVersion, pb.RolloutMachineRolledBack, pb.RolloutMachineRollbackFailed
		}
		s := status(m.Name)
		if failed, why := Failed(s, to); failed {
			m.State, m.Reason, m.EndTime = bad, why, ts
			if bad == pb.RolloutMachineFailed {
				r.Failures++
			}
		} else if reached(s, to) && m.State != ok {
			m.State, m.EndTime = ok, ts
		}
	}
}

// halt stops r: failures exceed its budget.
func halt(r *pb.Rollout, now time.Time) {
	r.Reason = fmt.Sprintf("%d machines failed; %s", r.Failures, describeBudget(r))
	if !r.RollbackOnHalt {
		r.State = pb.RolloutHalted
		return
	}
	r.State = pb.RolloutRollingBack
	for _, m := range r.Machines {
		switch m.State {
		case pb.RolloutMachineUpdating, pb.RolloutMachineSucceeded, pb.RolloutMachineFailed:
			m.State, m.StartTime, m.EndTime = pb.RolloutMachineRollingBack, timestamppb.New(now), nil
		}
	}
}

// advance starts what the current wave allows, and goes on to the next
// waves while they are done and soaked.
func advance(r *pb.Rollout, now time.Time) time.Time {
	for {
		inflight := count(r, pb.RolloutMachineUpdating)
		done := true
		for _, m := range r.Machines {
			if m.Wave > r.CurrentWave {
				break
			}
			if m.State == pb.RolloutMachinePending && (r.Concurrency == 0 || inflight < int(r.Concurrency)) {
				start(r, m, now)
				if m.State == pb.RolloutMachineUpdating {
					inflight++
				}
			}
			done = done && (m.State == pb.RolloutMachineSucceeded || m.State == pb.RolloutMachineFailed)
		}
		if !done {
			return time.Time{}
		}
		if r.SoakStart == nil {
			r.SoakStart = timestamppb.New(now)
		}
		if end := r.SoakStart.AsTime().Add(r.Soak.AsDuration()); now.Before(end) {
			return end
		}
		if int(r.CurrentWave) == len(r.WavePlan)-1 {
			r.State = pb.RolloutSucceeded
			return time.Time{}
		}
		r.CurrentWave++
		r.SoakStart = nil
	}
}

// start moves m: Updating, or Succeeded at once when it had the version.
func start(r *pb.Rollout, m *pb.RolloutMachine, now time.Time) {
	m.State, m.StartTime = pb.RolloutMachineUpdating, timestamppb.New(now)
	if m.PreviousVersion == r.Version {
		m.State, m.EndTime, m.Reason = pb.RolloutMachineSucceeded, m.StartTime, "it had the version already"
	}
}

func count(r *pb.Rollout, state string) int {
	n := 0
	for _, m := range r.Machines {
		if m.State == state {
			n++
		}
	}
	return n
}
