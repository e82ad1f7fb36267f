package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// MaxActionLog is how much of a LogOutputBlob file the agent sends back:
// its last 64 KiB (the run says it was truncated, and its size).
const MaxActionLog = 64 << 10

// Custom actions. vmappd puts the runs asked for (vmapp vm app action
// run) in the machine's goal state until the agent reports them. After a
// pass that applied the whole goal state, the agent runs each run it
// hasn't started, one at a time, in the directory of the installed
// version the run names (a run of a version the machine doesn't have
// installed fails without running): the action's script with
// /bin/bash -c, its parameters as environment variables — a String's
// value, a ConfigurationDataBlob's path (the file, given inline or
// downloaded from its URL, in <root>/.vmapp-agent/actions/<id>/), a
// LogOutputBlob's path where the script writes the file the agent sends
// back (its last MaxActionLog bytes) — and reports the exit code, the
// output's tail, the duration and the logs. A run is started at most
// once: one the agent's stop cut short is reported Failed, not run again
// (an action need not be safe to repeat).
//
// An agent that verifies signatures (Config.Trust) runs an action only as
// a statement of the installed version that it accepts now covers it
// (signedAction): the goal state's entry of that version verified as an
// install is, and the run's script and parameters exactly the action's as
// signed. Otherwise the run fails without running anything, its reason
// saying why (Unsigned: not covered; SignatureInvalid: not as signed; or
// the statement's refusal).

// actionRecord is a run the agent started.
type actionRecord struct {
	Started time.Time `json:"started"`
	// Result is the run's outcome (vmapp.v1.ActionRun), once it ended.
	Result []byte `json:"result,omitempty"`
	// Reported: vmappd has the result.
	Reported bool `json:"reported,omitempty"`
}

// runActions runs the goal state's runs the agent hasn't started, and
// reports those not reported; it forgets the runs the goal state no
// longer lists.
func (a *agent) runActions(ctx context.Context, gs *pb.GoalState) {
	listed := map[string]bool{}
	for _, r := range gs.Actions {
		listed[r.Id] = true
		res := a.actionResult(ctx, r, goalApp(gs, r.Application))
		if ctx.Err() != nil {
			return
		}
		a.reportAction(ctx, r.Id, res)
	}
	a.change(func() {
		for id, rec := range a.st.Actions {
			if !listed[id] && (rec.Reported || rec.Result == nil) {
				delete(a.st.Actions, id)
			}
		}
	})
}

// goalApp is gs's entry of application key, or nil.
func goalApp(gs *pb.GoalState, key string) *pb.GoalApplication {
	for _, ga := range gs.Applications {
		if appKey(ga) == key {
			return ga
		}
	}
	return nil
}

// actionResult is run r's result: recorded, or of a run its stop cut
// short, or of running it now (ga is the goal of r's application).
func (a *agent) actionResult(ctx context.Context, r *pb.ActionRun, ga *pb.GoalApplication) *pb.ActionRun {
	a.mu.Lock()
	rec := a.st.Actions[r.Id]
	a.mu.Unlock()
	switch {
	case rec != nil && rec.Result != nil:
		res := &pb.ActionRun{}
		if proto.Unmarshal(rec.Result, res) == nil {
			return res
		}
		return a.recordAction(r.Id, failedRun(r, "the agent's record of the run is unreadable"))
	case rec != nil:
		return a.recordAction(r.Id, failedRun(r, "the agent stopped while the action ran: it isn't run again"))
	}
	a.change(func() { a.st.Actions[r.Id] = &actionRecord{Started: a.clock.Now()} })
	res := a.runAction(ctx, r, ga)
	if ctx.Err() != nil {
		return nil
	}
	return a.recordAction(r.Id, res)
}

func (a *agent) recordAction(id string, res *pb.ActionRun) *pb.ActionRun {
	b, _ := proto.Marshal(res)
	a.change(func() {
		rec := a.st.Actions[id]
		if rec == nil {
			rec = &actionRecord{Started: a.clock.Now()}
			a.st.Actions[id] = rec
		}
		rec.Result = b
	})
	return res
}

// reportAction sends a run's result to vmappd; a failure is retried at
// the next pass (the run stays in the goal state until it is reported).
func (a *agent) reportAction(ctx context.Context, id string, res *pb.ActionRun) {
	a.mu.Lock()
	reported := a.st.Actions[id] != nil && a.st.Actions[id].Reported
	a.mu.Unlock()
	if reported || res == nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := a.fleet.ReportActionResult(rctx, &pb.ReportActionResultRequest{Machine: a.cfg.Machine, Run: res}); err != nil {
		a.log.Warn("reporting a custom action's result failed: trying again at the next pass", "run", id, "err", err)
		return
	}
	a.change(func() {
		if rec := a.st.Actions[id]; rec != nil {
			rec.Reported = true
		}
	})
}

func failedRun(r *pb.ActionRun, reason string) *pb.ActionRun {
	return &pb.ActionRun{Id: r.Id, State: pb.ActionFailed, Reason: reason, ExitCode: -1}
}

// runAction runs r's script in its version's directory (ga: the goal of
// its application).
func (a *agent) runAction(ctx context.Context, r *pb.ActionRun, ga *pb.GoalApplication) *pb.ActionRun {
	log := a.log.With("run", r.Id, "app", r.Application, "action", r.Action)
	a.mu.Lock()
	var dir, have string
	if as := a.st.Apps[r.Application]; as != nil && as.Installed != nil {
		dir, have = as.Installed.Dir, as.Installed.Version
	}
	a.mu.Unlock()
	if have != r.Version {
		return failedRun(r, fmt.Sprintf("%s version %s isn't installed on the machine (installed: %s)", r.Application, r.Version, cmp.Or(have, "none")))
	}
	if a.cfg.Trust != nil {
		if err := a.checkRun(r, ga); err != nil {
			log.Warn("custom action refused", "err", err)
			return failedRun(r, refusalText(err))
		}
	}
	runDir := filepath.Join(a.cfg.Root, StateDir, "actions", r.Id)
	defer os.RemoveAll(runDir)
	env, logs, err := a.actionEnv(ctx, r, runDir)
	if err != nil {
		return failedRun(r, err.Error())
	}
	log.Info("running a custom action", "dir", dir)
	res := runCommand(ctx, command{line: r.Script, dir: dir, env: env, timeout: a.cfg.CommandTimeout, clock: a.clock})
	out := &pb.ActionRun{Id: r.Id, State: pb.ActionSucceeded, ExitCode: res.ExitCode, OutputTail: res.Tail,
		Duration: durationpb.New(res.Duration), EndTime: timestamppb.New(a.clock.Now())}
	if res.Err != nil || res.ExitCode != 0 {
		out.State, out.Reason = pb.ActionFailed, reasonOf("the action's script", res)
	}
	for name, path := range logs {
		out.Logs = append(out.Logs, collectLog(name, path))
	}
	log.Info("custom action ended", "state", out.State, "exit", out.ExitCode)
	return out
}

// actionEnv is the environment of r's script: the agent's variables and
// the parameters; logs are the LogOutputBlob files' paths by name.
func (a *agent) actionEnv(ctx context.Context, r *pb.ActionRun, runDir string) (env []string, logs map[string]string, err error) {
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		return nil, nil, err
	}
	g, app, _ := cutApp(r.Application)
	env = []string{"VMAPP_GALLERY=" + g, "VMAPP_APPLICATION=" + app, "VMAPP_VERSION=" + r.Version,
		"VMAPP_OPERATION=action", "VMAPP_ACTION=" + r.Action, "VMAPP_ACTION_RUN=" + r.Id}
	logs = map[string]string{}
	for _, p := range r.Parameters {
		path := filepath.Join(runDir, p.Name)
		switch p.Type {
		case pb.ParamString:
			env = append(env, p.Name+"="+p.Value)
			continue
		case pb.ParamLogOutputBlob:
			logs[p.Name] = path
		case pb.ParamConfigurationDataBlob:
			if err := a.paramFile(ctx, p, path); err != nil {
				return nil, nil, fmt.Errorf("parameter %s: %w", p.Name, err)
			}
		}
		env = append(env, p.Name+"="+path)
	}
	return env, logs, nil
}

// paramFile puts a ConfigurationDataBlob's file at path.
func (a *agent) paramFile(ctx context.Context, p *pb.ActionParameterValue, path string) error {
	if p.Value == "" {
		return writeFileAtomic(path, p.Data)
	}
	_, err := a.fetchURL(ctx, p.Value, path)
	return err
}

// collectLog reads a LogOutputBlob file: its last MaxActionLog bytes.
func collectLog(name, path string) *pb.ActionLog {
	l := &pb.ActionLog{Name: name, SizeBytes: -1}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) || err != nil {
		return l
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return l
	}
	l.SizeBytes = fi.Size()
	if l.SizeBytes > MaxActionLog {
		l.Truncated = true
		if _, err := f.Seek(l.SizeBytes-MaxActionLog, io.SeekStart); err != nil {
			return l
		}
	}
	l.Content, _ = io.ReadAll(io.LimitReader(f, MaxActionLog))
	return l
}

// cutApp splits an application's key ([tenant:]gallery/application).
func cutApp(key string) (gallery, app string, ok bool) {
	if _, rest, shared := strings.Cut(key, ":"); shared {
		key = rest
	}
	return strings.Cut(key, "/")
}
