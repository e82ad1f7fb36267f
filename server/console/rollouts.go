package console

import (
	"net/http"
	"net/url"
	"time"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
)

// rolloutView is a rollout as its page shows it.
type rolloutView struct {
	R     *pb.Rollout
	Waves []waveView
	// SoakEnd is when the current wave's soak ends, while it soaks.
	SoakEnd time.Time
	// CanAct: the token may pause, resume and abort it (Deploy on the
	// tenant, as the API's rule).
	CanAct bool
}

// waveView is one wave with its machines counted by state.
type waveView struct {
	*pb.RolloutWave
	Index                                            int
	Current                                          bool
	Succeeded, Failed, Updating, Pending, RolledBack int
}

func viewOf(r *pb.Rollout, canAct bool) rolloutView {
	v := rolloutView{R: r, CanAct: canAct}
	for i, w := range r.WavePlan {
		v.Waves = append(v.Waves, waveView{RolloutWave: w, Index: i, Current: int32(i) == r.CurrentWave && pb.RolloutActive(r.State)})
	}
	for _, m := range r.Machines {
		if int(m.Wave) >= len(v.Waves) {
			continue
		}
		w := &v.Waves[m.Wave]
		switch m.State {
		case pb.RolloutMachineSucceeded:
			w.Succeeded++
		case pb.RolloutMachineFailed, pb.RolloutMachineRollbackFailed:
			w.Failed++
		case pb.RolloutMachineUpdating:
			w.Updating++
		case pb.RolloutMachinePending:
			w.Pending++
		default:
			w.RolledBack++
		}
	}
	if r.SoakStart != nil && r.Soak.AsDuration() > 0 && pb.RolloutActive(r.State) {
		v.SoakEnd = r.SoakStart.AsTime().Add(r.Soak.AsDuration()).UTC()
	}
	return v
}

// Can tells whether the rollout's state allows verb (pause, resume,
// abort).
func (v rolloutView) Can(verb string) bool {
	switch verb {
	case "pause":
		return v.R.State == pb.RolloutRunning
	case "resume":
		return v.R.State == pb.RolloutPaused
	}
	return pb.RolloutActive(v.R.State)
}

// SoakLeft is the soak's time left, to the second, as of now.
func (v rolloutView) SoakLeft() string {
	return max(time.Until(v.SoakEnd), 0).Round(time.Second).String()
}

func (c *Console) rollouts(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	res, err := c.rollout.ListRollouts(s.ctx(r.Context()), &pb.ListRolloutsRequest{PageSize: pageSize, PageToken: q.Get("page")})
	if err != nil {
		return err
	}
	var rows []rolloutView
	for _, ro := range res.Rollouts {
		rows = append(rows, viewOf(ro, false))
	}
	c.render(w, http.StatusOK, "rollouts", page{Title: "Rollouts", Nav: "rollouts", Session: s,
		Data: listing{Rows: rows, Next: nextPage(q, res.NextPageToken)}})
	return nil
}

func (c *Console) rolloutPage(w http.ResponseWriter, r *http.Request, s *session) error {
	res, err := c.rollout.GetRollout(s.ctx(r.Context()), &pb.GetRolloutRequest{Name: r.PathValue("rollout")})
	if err != nil {
		return err
	}
	v := viewOf(res.Rollout, s.can(auth.Deploy, ""))
	flash := ""
	if did := r.URL.Query().Get("did"); did != "" {
		flash = "Asked vmappd to " + did + " the rollout."
	}
	c.render(w, http.StatusOK, "rollout", page{Title: "Rollout " + res.Rollout.Name, Nav: "rollouts", Session: s, Flash: flash, Data: v})
	return nil
}

// rolloutAction pauses, resumes or aborts a rollout, and goes back to its
// page.
func (c *Console) rolloutAction(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx, name, verb := s.ctx(r.Context()), r.PathValue("rollout"), r.PathValue("verb")
	var err error
	switch verb {
	case "pause":
		_, err = c.rollout.PauseRollout(ctx, &pb.PauseRolloutRequest{Name: name})
	case "resume":
		_, err = c.rollout.ResumeRollout(ctx, &pb.ResumeRolloutRequest{Name: name})
	case "abort":
		_, err = c.rollout.AbortRollout(ctx, &pb.AbortRolloutRequest{Name: name})
	default:
		err = errs.New(errs.NotFound, "verb", "a rollout can be paused, resumed or aborted, not '%s'", verb)
	}
	if err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/rollouts/"+url.PathEscape(name)+"?did="+verb, http.StatusSeeOther)
	return nil
}

// rolloutEvent is one update of a rollout's page.
type rolloutEvent struct {
	State string `json:"state"`
	HTML  string `json:"html"`
}

// watchRollout streams the rollout's part of its page as WatchRollout
// reports changes, then "done" once it can move no machine any more.
func (c *Console) watchRollout(_ http.ResponseWriter, r *http.Request, s *session, send func(string, any) error) error {
	stream, err := c.rollout.WatchRollout(s.ctx(r.Context()), &pb.WatchRolloutRequest{Name: r.PathValue("rollout")})
	if err != nil {
		return err
	}
	return relay(stream, send, func(res *pb.WatchRolloutResponse) (string, any, error) {
		html, err := c.fragment("rollout", "rollout", viewOf(res.Rollout, s.can(auth.Deploy, "")))
		return "rollout", rolloutEvent{State: res.Rollout.State, HTML: html}, err
	})
}
