package agent

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
)

// Defaults of the health check (Config.HealthTimeout, HealthAttempts,
// HealthInterval).
const (
	DefaultHealthTimeout  = 2 * time.Minute
	DefaultHealthAttempts = 3
	DefaultHealthInterval = 10 * time.Second
)

// Health checks. A version with enableHealthCheck defines a custom action
// "health" (vmappd refuses the version otherwise). After every install
// or update of it that succeeded, the agent runs that action's script in
// the version's directory, as it runs the install command, each attempt
// bounded by HealthTimeout: exit 0 is Healthy. An application often needs
// a moment to come up, so a failed attempt is tried again after
// HealthInterval, HealthAttempts times in all; the last failure makes it
// Unhealthy. While it runs the instance view says Checking; the verdict
// comes with the script's output tail. An agent that verifies signatures
// runs the action only when it is exactly the one a statement of the
// version it accepts covers (signedAction); otherwise the verdict is
// Unhealthy, the refusal its reason, and nothing runs. The state stays
// Installed: the operation succeeded, and the seeds' ordering rules count
// operations. A check the agent's stop cut short is run again when it
// starts.

// checkHealth runs the health check of s's goal, installed in s.dir.
func (a *agent) checkHealth(ctx context.Context, key, dir string, ga *pb.GoalApplication) {
	a.update(key, func(as *appState) {
		as.Status.Health, as.Status.HealthReason, as.Status.HealthTail, as.Status.HealthTime = pb.HealthChecking, "", "", a.clock.Now()
	})
	def := pb.FindAction(ga.CustomActions, nil, pb.HealthAction)
	if err := a.checkHealthAction(ga, def); err != nil {
		a.healthVerdict(key, false, refusalText(err), "")
		return
	}
	if def == nil {
		a.healthVerdict(key, false, fmt.Sprintf("version %s has enableHealthCheck but no custom action '%s'", ga.Version, pb.HealthAction), "")
		return
	}
	env := append(cmdEnv(ga, pb.HealthAction, ""), defaultParams(def)...)
	var r result
	for n := 1; n <= a.cfg.HealthAttempts; n++ {
		r = runCommand(ctx, command{line: def.Script, dir: dir, env: append(env, fmt.Sprintf("VMAPP_HEALTH_ATTEMPT=%d", n)),
			timeout: a.cfg.HealthTimeout, clock: a.clock})
		if ctx.Err() != nil {
			return // still Checking: run again at the next start
		}
		if r.Err == nil && r.ExitCode == 0 {
			a.healthVerdict(key, true, "", r.Tail)
			return
		}
		a.log.Info("health check failed", "app", key, "attempt", n, "of", a.cfg.HealthAttempts, "exit", r.ExitCode)
		if n < a.cfg.HealthAttempts {
			select {
			case <-ctx.Done():
				return
			case <-a.clock.After(a.cfg.HealthInterval):
			}
		}
	}
	a.healthVerdict(key, false, fmt.Sprintf("%s (%d attempts)", reasonOf("the health action", r), a.cfg.HealthAttempts), r.Tail)
}

// checkHealthAction refuses, when the agent verifies signatures, a health
// action def that is not exactly the one a statement of ga the agent
// accepts covers.
func (a *agent) checkHealthAction(ga *pb.GoalApplication, def *pb.GalleryApplicationCustomAction) error {
	if a.cfg.Trust == nil || def == nil {
		return nil
	}
	signed, err := a.signedAction(ga, pb.HealthAction)
	if err == nil && !proto.Equal(signed, def) {
		err = &sign.Refusal{Reason: sign.SignatureInvalid, Detail: fmt.Sprintf("custom action '%s' of version %s is not the one signed", def.Name, ga.Version)}
	}
	return err
}

func (a *agent) healthVerdict(key string, healthy bool, reason, tail string) {
	h := pb.HealthHealthy
	if !healthy {
		h = pb.HealthUnhealthy
		a.log.Warn("unhealthy", "app", key, "reason", reason)
	}
	a.update(key, func(as *appState) {
		as.Status.Health, as.Status.HealthReason, as.Status.HealthTail, as.Status.HealthTime = h, reason, tail, a.clock.Now()
	})
}

// defaultParams are the String parameters' defaults of an action, as
// environment variables.
func defaultParams(def *pb.GalleryApplicationCustomAction) []string {
	var env []string
	for _, p := range def.Parameters {
		if p.Type == pb.ParamString && p.DefaultValue != "" {
			env = append(env, p.Name+"="+p.DefaultValue)
		}
	}
	return env
}

// healthDue are the applications of gs whose health check a stop cut
// short: installed at their goal, with the check, still Checking.
func (a *agent) healthDue(gs *pb.GoalState) []*pb.GoalApplication {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []*pb.GoalApplication
	for _, ga := range gs.Applications {
		as := a.st.Apps[appKey(ga)]
		if ga.EnableHealthCheck && as != nil && as.Installed != nil && as.Installed.Version == ga.Version && as.Status.Health == pb.HealthChecking {
			out = append(out, ga)
		}
	}
	return out
}
