package rollout

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// safety is how often the driver steps every active rollout though
// nothing woke it: a change it missed is never lost for longer.
const safety = time.Minute

// Run drives the active rollouts until ctx ends: the leader's work (a
// cluster passes a ctx carrying its term). It steps them at once (a
// restart or a new leader resumes them), whenever an agent reports or a
// rollout changes, and when a soak ends.
func (s *Service) Run(ctx context.Context) {
	for {
		wake, err := s.Pass(ctx)
		if err != nil && ctx.Err() == nil {
			s.o.Logger.Error("driving rollouts", "err", err)
		}
		wait := safety
		if !wake.IsZero() {
			wait = min(wait, max(wake.Sub(s.o.Clock.Now()), 0))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-s.o.Clock.After(wait):
		}
	}
}

// Pass steps every active rollout once and proposes those that changed;
// it returns the earliest time one wants another step (zero: none).
func (s *Service) Pass(ctx context.Context) (time.Time, error) {
	type read struct {
		r      *pb.Rollout
		status map[string]*pb.ApplicationStatus
	}
	var active []read
	err := s.o.DB.View(ctx, func(tx *state.Tx) error {
		return state.ActiveRollouts.Scan(tx, nil, nil, func(_ []byte, r *pb.Rollout) (bool, error) {
			st, err := inFlight(tx, r)
			active = append(active, read{r, st})
			return err == nil, err
		})
	})
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, a := range active {
		etag := a.r.Etag
		changed, wake := Step(a.r, func(m string) *pb.ApplicationStatus { return a.status[m] }, s.o.Clock.Now())
		if !wake.IsZero() && (next.IsZero() || wake.Before(next)) {
			next = wake
		}
		if !changed {
			continue
		}
		c := state.NewCommand(s.o.Clock.Now())
		c.Op = &statepb.Command_PutRollout{PutRollout: &statepb.PutRollout{Rollout: proto.CloneOf(a.r), ExpectEtag: etag}}
		if err := s.o.DB.Propose(ctx, c); err != nil && !errs.Is(err, errs.Aborted) {
			return next, err
		} // Aborted: changed meanwhile (paused, aborted): the change wakes the next pass
		s.o.Logger.Info("rollout stepped", "tenant", a.r.Tenant, "rollout", a.r.Name, "state", a.r.State, "wave", a.r.CurrentWave, "failures", a.r.Failures)
	}
	return next, nil
}

// inFlight reads what the agents of r's watched machines (moving, or
// soaking) reported of its application.
func inFlight(tx *state.Tx, r *pb.Rollout) (map[string]*pb.ApplicationStatus, error) {
	out := map[string]*pb.ApplicationStatus{}
	for _, m := range r.Machines {
		if !Watched(r, m) {
			continue
		}
		if !state.Machines.Has(tx, state.MachineKey(r.Tenant, m.Name)) {
			if m.State != pb.RolloutMachineSucceeded { // one that succeeded stays so
				out[m.Name] = deleted(r, m)
			}
			continue
		}
		iv, _, err := state.InstanceViews.Get(tx, state.MachineKey(r.Tenant, m.Name))
		if err != nil {
			return nil, err
		}
		for _, a := range iv.GetApplications() {
			if a.Application == r.Application {
				out[m.Name] = a
			}
		}
	}
	return out, nil
}

// deleted is the status a machine deleted while it moved counts with: a
// failure (the rollout can't know how it would have ended).
func deleted(r *pb.Rollout, m *pb.RolloutMachine) *pb.ApplicationStatus {
	to := r.Version
	if m.State == pb.RolloutMachineRollingBack {
		to = m.PreviousVersion
	}
	return &pb.ApplicationStatus{Application: r.Application, Version: to, State: pb.AppFailed, Operation: "machine", Reason: "it was deleted"}
}
