package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/redact"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
)

// reconcile makes one pass at the goal state gs (the seq-th): it plans the
// pass, then carries the plan out: the removals (concurrently), then the
// groups in order. Once the whole goal state was applied, its generation
// is recorded.
func (a *agent) reconcile(ctx context.Context, gs *pb.GoalState, seq uint64) {
	var p *plan
	a.change(func() {
		now := a.clock.Now()
		p = makePlan(a.st, gs, a.cfg.Root, now)
		if t := a.cfg.Trust; t != nil {
			a.applyKeyChangesLocked(gs.KeyChanges)
			p.verify(t, a.policy, a.st.Sequences, now)
		}
		for _, s := range p.removals {
			if s.act == actForget {
				delete(a.st.Apps, s.key)
				a.removeAppDirLocked(s.key) // what its failed attempts left
			}
		}
	})
	a.log.Debug("plan", "generation", gs.Generation, "steps", strings.Join(p.lines(), "; "))
	var wg sync.WaitGroup
	for _, s := range p.removals {
		if s.act == actRemove {
			wg.Go(func() { a.remove(ctx, s) })
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	a.change(func() { p.record(a.st) })
	more := func() bool { return ctx.Err() == nil && !a.stale(seq) }
	run := func(steps []step) []string { return a.runGroup(ctx, gs.Region, steps) }
	if !p.walk(more, run, a.skip) || ctx.Err() != nil {
		return
	}
	for _, ga := range a.healthDue(gs) {
		a.checkHealth(ctx, appKey(ga), installedDir(a, appKey(ga)), ga)
	}
	a.runActions(ctx, gs)
	if ctx.Err() != nil {
		return
	}
	a.change(func() { a.st.Generation = gs.Generation })
}

// installedDir is the directory of an application's installed version.
func installedDir(a *agent, key string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if as := a.st.Apps[key]; as != nil && as.Installed != nil {
		return as.Installed.Dir
	}
	return ""
}

// runGroup carries out a group's steps concurrently and returns the
// applications that failed.
func (a *agent) runGroup(ctx context.Context, region string, steps []step) []string {
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	for _, s := range steps {
		wg.Go(func() {
			if !a.apply(ctx, region, s) && ctx.Err() == nil {
				mu.Lock()
				failed = append(failed, s.key)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed
}

func (a *agent) skip(s step, reason string) {
	a.update(s.key, func(as *appState) {
		as.Status.State, as.Status.Reason, as.Status.End = StateSkipped, reason, a.clock.Now()
	})
}

// nextRetry is when the earliest automatic retry comes due.
func (a *agent) nextRetry() (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.nextRetry(a.clock.Now())
}

// cmdEnv describes the operation to its commands.
func cmdEnv(ga *pb.GoalApplication, op, previous string) []string {
	pkg, cfg := fileNames(ga)
	env := []string{
		"VMAPP_GALLERY=" + ga.Gallery, "VMAPP_APPLICATION=" + ga.Application, "VMAPP_VERSION=" + ga.Version,
		"VMAPP_OPERATION=" + op, "VMAPP_PACKAGE_FILE=" + pkg,
	}
	if configKey(ga) != "" {
		env = append(env, "VMAPP_CONFIG_FILE="+cfg)
	}
	if previous != "" {
		env = append(env, "VMAPP_PREVIOUS_VERSION="+previous)
	}
	return env
}

// apply carries out an install, update or remove-then-install step, or
// fails a refused one: false when it failed (or ctx ended).
func (a *agent) apply(ctx context.Context, region string, s step) bool {
	if reason := a.begin(s); reason != "" {
		return a.fail(s, reason, nil)
	}
	if err := a.prepare(ctx, region, s); err != nil {
		if ctx.Err() == nil {
			s.refusal = sign.ReasonOf(err)
			a.fail(s, refusalText(err), nil)
		}
		return false
	}
	r, what, ok := a.commands(ctx, s)
	switch {
	case ctx.Err() != nil:
		return false
	case !ok:
		return a.fail(s, reasonOf(what, r), &r)
	}
	a.succeed(s, r)
	if s.goal.EnableHealthCheck {
		a.checkHealth(ctx, s.key, s.dir, s.goal)
	}
	return true
}

// begin records the attempt (Downloading) and returns why it can't go on:
// the plan's refusal, or a directory that holds or sits in another
// application's, installed there by an earlier agent (checked now: the
// pass's removals and lower orders may have freed or taken it).
func (a *agent) begin(s step) (refusal string) {
	a.update(s.key, func(as *appState) {
		refusal = s.reason
		if refusal == "" {
			dir := filepath.Dir(s.dir)
			if sharer := a.sharerLocked(s.key, dir); sharer != "" {
				refusal = fmt.Sprintf("%s would share the directory of %s, installed there by an earlier agent", dir, sharer)
			}
		}
		as.Attempts = s.attempt
		as.Status = status{Version: s.goal.Version, State: StateDownloading, Operation: s.op(), Start: a.clock.Now(),
			Attempts: as.Attempts, Treat: s.goal.TreatFailureAsDeploymentFailure}
	})
	return refusal
}

// prepare makes the version's directory, deleting what attempts at other
// versions left beside it, and downloads the package and the configuration
// into it.
func (a *agent) prepare(ctx context.Context, region string, s step) error {
	keep := []string{s.dir}
	if s.old != nil {
		keep = append(keep, s.old.Dir)
	}
	cleanLeftovers(filepath.Dir(s.dir), keep)
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	pkgName, cfgName := fileNames(s.goal)
	return a.fetch(ctx, region, s.goal, s.key, s.dir, pkgName, cfgName)
}

// commands runs the step's commands in the version's directory: the
// install command, or the update command, or the installed version's
// remove command (in its own directory, which goes once it succeeded) and
// then the install command. It returns the last command's result, what
// that command was, and whether every command succeeded.
func (a *agent) commands(ctx context.Context, s step) (result, string, bool) {
	ga := s.goal
	env := cmdEnv(ga, s.op(), prevVersion(s.old))
	run := func(name, line, dir string) (result, bool) {
		return a.runStep(ctx, s.key, a.inProgress(s, name, dir), line, dir, env)
	}
	switch s.act {
	case actInstall:
		a.setState(s.key, StateInstalling)
		r, ok := run(OpInstall, ga.ManageActions.Install, s.dir)
		return r, "the install command", ok
	case actUpdate:
		a.setState(s.key, StateUpdating)
		r, ok := run(OpUpdate, ga.ManageActions.Update, s.dir)
		return r, "the update command", ok
	}
	a.setState(s.key, StateUpdating)
	if r, ok := run("remove-old", s.old.Remove, s.old.Dir); !ok {
		return r, "the remove command of version " + s.old.Version, false
	}
	if s.old.Dir != s.dir {
		a.removeDir(s.old.Dir)
	}
	a.update(s.key, func(as *appState) { as.Installed, as.Op = nil, nil })
	r, ok := run(OpInstall, ga.ManageActions.Install, s.dir)
	return r, "the install command", ok
}

// inProgress is the record of a step's command (name) in progress, in dir.
func (a *agent) inProgress(s step, name, dir string) *operation {
	return &operation{Op: s.op(), Step: name, Version: s.goal.Version, ConfigKey: configKey(s.goal), Signing: signingKey(s.goal), Retry: s.goal.Retry, Dir: dir,
		BootID: a.bootID, Behavior: s.goal.GetSettings().GetScriptBehaviorAfterReboot(), Start: a.clock.Now()}
}

// succeed records the goal's version installed, and deletes the old
// version's directory.
func (a *agent) succeed(s step, r result) {
	if s.old != nil && s.old.Dir != s.dir {
		a.removeDir(s.old.Dir)
	}
	ga := s.goal
	a.stepLog(s).Info("operation succeeded", "duration", r.Duration.Round(time.Millisecond))
	a.update(s.key, func(as *appState) {
		if seq := ga.GetSigning().GetSequence(); a.cfg.Trust != nil && seq > a.st.Sequences[s.key] {
			a.st.Sequences[s.key] = seq // verified: the plan checked it
		}
		as.Op, as.Failure = nil, nil
		as.Installed = &installed{Version: ga.Version, Dir: s.dir, ConfigKey: configKey(ga), Remove: ga.ManageActions.Remove,
			Behavior: ga.GetSettings().GetScriptBehaviorAfterReboot(), Time: a.clock.Now(), Treat: ga.TreatFailureAsDeploymentFailure}
		as.Status.State, as.Status.Reason, as.Status.End = StateInstalled, "", a.clock.Now()
		as.Status.ExitCode, as.Status.OutputTail = r.ExitCode, r.Tail
		if ga.EnableHealthCheck { // never Installed without a verdict or Checking
			as.Status.Health, as.Status.HealthReason, as.Status.HealthTail = pb.HealthChecking, "", ""
		}
	})
}

// fail records an install or update step failed (r is its last command's
// result, nil when none ran); it returns false.
func (a *agent) fail(s step, reason string, r *result) bool {
	f := &failure{Op: s.op(), Version: s.goal.Version, ConfigKey: configKey(s.goal), Signing: signingKey(s.goal), Retry: s.goal.Retry}
	a.failed(s, f, reason, r)
	return false
}

// failed records a failure f of step s: it is retried after a backoff that
// grows with the attempts.
func (a *agent) failed(s step, f *failure, reason string, r *result) {
	a.stepLog(s).Warn("operation failed", "reason", reason)
	a.update(s.key, func(as *appState) {
		as.Op = nil
		f.NextRetry = a.clock.Now().Add(backoff(a.cfg.RetryBase, a.cfg.RetryMax, int(as.Attempts)))
		as.Failure = f
		as.Status.State, as.Status.Reason, as.Status.End = StateFailed, reason, a.clock.Now()
		as.Status.ExitCode, as.Status.OutputTail = -1, ""
		if s.refusal != 0 {
			as.Status.Refusal = s.refusal.String()
		}
		if r != nil {
			as.Status.ExitCode, as.Status.OutputTail = r.ExitCode, r.Tail
		}
	})
}

func (a *agent) stepLog(s step) *slog.Logger {
	return a.log.With("app", s.key, "version", s.version(), "op", s.op())
}

func prevVersion(inst *installed) string {
	if inst == nil {
		return ""
	}
	return inst.Version
}

func reasonOf(what string, r result) string {
	switch {
	case r.TimedOut:
		return fmt.Sprintf("%s %s", what, r.Err)
	case r.Err != nil:
		return fmt.Sprintf("%s couldn't run: %v", what, r.Err)
	}
	return fmt.Sprintf("%s exited with code %d", what, r.ExitCode)
}

func (a *agent) setState(key, state string) {
	a.update(key, func(as *appState) { as.Status.State = state })
}

// runStep records the operation in progress, then runs its command (once
// its process group is recorded too): ok when it exited 0. An empty command
// does nothing. The operation stays recorded: the caller records the
// outcome.
func (a *agent) runStep(ctx context.Context, key string, o *operation, line, dir string, env []string) (result, bool) {
	if line == "" {
		return result{}, true
	}
	if _, err := os.Stat(dir); err != nil {
		return result{ExitCode: -1, Err: err}, false
	}
	a.update(key, func(as *appState) { as.Op = o })
	log := a.log.With("app", key, "step", o.Step, "version", o.Version)
	log.Info("running a command", "dir", dir)
	r := runCommand(ctx, command{line: line, dir: dir, env: env, timeout: a.cfg.CommandTimeout, clock: a.clock, started: func(pid int) {
		g, err := groupOf(pid)
		if err != nil {
			log.Warn("can't read the command's process group: a restart after a crash won't kill what it leaves", "pid", pid, "err", err)
			return
		}
		a.update(key, func(*appState) { o.Group = g })
	}})
	ok := r.Err == nil && r.ExitCode == 0
	if ctx.Err() == nil { // a command the agent stopped runs again: not counted
		a.m.command(o.Step, r, ok)
	}
	return r, ok
}

// countDownload counts a download that started at start, unless the agent
// stopped it.
func (a *agent) countDownload(ctx context.Context, kind string, size int64, start time.Time, err error) {
	if ctx.Err() == nil {
		a.m.download(kind, size, a.clock.Since(start), err)
	}
}

// remove carries out a removal step: the installed version's remove
// command, then its directory goes, and the application's record.
func (a *agent) remove(ctx context.Context, s step) {
	inst := *s.old
	var app string
	a.update(s.key, func(as *appState) {
		app, as.Attempts = as.Application, s.attempt
		as.Status = status{Version: inst.Version, State: StateRemoving, Operation: OpRemove, Start: a.clock.Now(),
			Attempts: as.Attempts, Treat: inst.Treat}
	})
	log := a.stepLog(s)
	o := &operation{Op: OpRemove, Step: OpRemove, Version: inst.Version, Dir: inst.Dir, BootID: a.bootID, Behavior: inst.Behavior, Start: a.clock.Now()}
	env := []string{"VMAPP_APPLICATION=" + app, "VMAPP_VERSION=" + inst.Version, "VMAPP_OPERATION=" + OpRemove}
	var r result
	ok := true
	if _, err := os.Stat(inst.Dir); errors.Is(err, fs.ErrNotExist) {
		log.Warn("the installed directory is gone: nothing to run the remove command in", "dir", inst.Dir)
	} else {
		r, ok = a.runStep(ctx, s.key, o, inst.Remove, inst.Dir, env)
	}
	if ctx.Err() != nil {
		return
	}
	if !ok {
		a.failed(s, &failure{Op: OpRemove, Version: inst.Version}, reasonOf("the remove command", r), &r)
		return
	}
	a.removeDir(inst.Dir)
	a.change(func() {
		delete(a.st.Apps, s.key)
		a.removeAppDirLocked(s.key)
	})
	log.Info("removed", "duration", r.Duration.Round(time.Millisecond))
}

// sharerLocked names another application whose installed directory is
// dir, holds it or is in it: one that an earlier agent installed in
// <root>/<application>/<version>. a.mu is held.
func (a *agent) sharerLocked(key, dir string) string {
	for _, k := range sortedKeys(a.st.Apps) {
		if in := a.st.Apps[k].Installed; k != key && in != nil && (within(in.Dir, dir) || within(dir, in.Dir)) {
			return k
		}
	}
	return ""
}

// within tells whether path is dir or in it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// removeAppDirLocked deletes an application's directory (and its gallery's,
// when that is left empty), unless another application's installed
// directory is in it. a.mu is held.
func (a *agent) removeAppDirLocked(key string) {
	if dir, err := appDir(hostOS, a.cfg.Root, key); err == nil && a.sharerLocked(key, dir) == "" {
		a.removeDir(dir)
	}
}

// removeDir deletes dir, then the parents under the root it leaves empty.
func (a *agent) removeDir(dir string) {
	os.RemoveAll(dir)
	for p := filepath.Dir(dir); p != a.cfg.Root && within(p, a.cfg.Root); p = filepath.Dir(p) {
		if os.Remove(p) != nil {
			return
		}
	}
}

// cleanLeftovers deletes the directories in appDir other than keep (left by
// failed attempts at other versions): a machine holds one version.
func cleanLeftovers(appDir string, keep []string) {
	entries, err := os.ReadDir(appDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if p := filepath.Join(appDir, e.Name()); !slices.Contains(keep, p) {
			os.RemoveAll(p)
		}
	}
}

// fetch downloads the package and puts the configuration beside it.
func (a *agent) fetch(ctx context.Context, region string, ga *pb.GoalApplication, key, dir, pkgName, cfgName string) error {
	total := ga.Package.GetSizeBytes()
	switch {
	case len(ga.Configuration) > 0:
		total += int64(len(ga.Configuration))
	case ga.ConfigurationReference != "":
	case ga.DefaultConfiguration != nil:
		total += ga.DefaultConfiguration.SizeBytes
	}
	a.progress(key, 0, total)
	progress := func(base int64) func(done, _ int64) {
		return func(done, _ int64) { a.progress(key, base+done, total) }
	}
	o := client.DownloadOptions{Region: region, MachineID: a.cfg.Machine, Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE,
		Progress: progress(0), HTTPClient: a.cfg.HTTPClient, Logger: a.log.With("app", key),
		NoPeers: a.cfg.NoPeers, Cap: a.cfg.DownloadCap, OnBadPeer: a.m.badPeer}
	unshare := a.shareOptions(&o, cacheEntry{Tenant: ga.Tenant, Gallery: ga.Gallery, Application: ga.Application, Version: ga.Version, Kind: "PACKAGE"})
	dctx := ctx // downloads name the gallery's tenant when another's
	if ga.Tenant != "" {
		dctx = client.InTenant(ctx, ga.Tenant)
	}
	a.fromCache(ga.Package.GetSha256(), ga.Package.GetSizeBytes(), filepath.Join(dir, pkgName))
	start := a.clock.Now()
	plan, err := a.cl.Download(dctx, ga.Gallery, ga.Application, ga.Version, filepath.Join(dir, pkgName), o)
	unshare()
	a.countDownload(ctx, "package", ga.Package.GetSizeBytes(), start, err)
	if err != nil {
		return fmt.Errorf("download of the package failed: %w", err)
	}
	if err := a.served(plan, ga.Package, filepath.Join(dir, pkgName)); err != nil {
		return err
	}
	a.cache(plan, ga.Tenant, filepath.Join(dir, pkgName))
	done := ga.Package.GetSizeBytes()
	cfgPath := filepath.Join(dir, cfgName)
	switch {
	case len(ga.Configuration) > 0:
		if err := writeFileAtomic(cfgPath, ga.Configuration); err != nil {
			return fmt.Errorf("writing the configuration failed: %w", err)
		}
		done += int64(len(ga.Configuration))
	case ga.ConfigurationReference != "":
		n, err := a.fetchURL(ctx, ga.ConfigurationReference, cfgPath)
		if err != nil {
			return fmt.Errorf("download of the configuration (configurationReference) failed: %w", err)
		}
		done += n
		total += n
	case ga.DefaultConfiguration != nil:
		o.Kind, o.Progress, o.OnShare, o.OnPiece = pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION, progress(done), nil, nil
		start := a.clock.Now()
		plan, err := a.cl.Download(dctx, ga.Gallery, ga.Application, ga.Version, cfgPath, o)
		a.countDownload(ctx, "configuration", ga.DefaultConfiguration.SizeBytes, start, err)
		if err != nil {
			return fmt.Errorf("download of the default configuration failed: %w", err)
		}
		if err := a.served(plan, ga.DefaultConfiguration, cfgPath); err != nil {
			return err
		}
		done += ga.DefaultConfiguration.SizeBytes
	default:
		if err := os.Remove(cfgPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	a.progress(key, done, total)
	return nil
}

// served checks, when the agent verifies signatures, that a download got
// the artifact the verified statement names (want): the download checked
// the file against vmappd's plan, which a compromised vmappd may have
// changed since the goal state. A file that isn't is deleted.
func (a *agent) served(plan *pb.DownloadPlan, want *pb.Artifact, path string) error {
	if a.cfg.Trust == nil || plan.GetSha256() == want.GetSha256() && plan.GetSizeBytes() == want.GetSizeBytes() {
		return nil
	}
	os.Remove(path)
	return &sign.Refusal{Reason: sign.SignatureInvalid, Detail: fmt.Sprintf(
		"vmappd served %s/%s/%s %s with sha256 %s (%d bytes), not the signed %s (%d bytes); it was deleted",
		plan.GetGallery(), plan.GetApplication(), plan.GetVersion(), plan.GetKind().Label(), plan.GetSha256(), plan.GetSizeBytes(), want.GetSha256(), want.GetSizeBytes())}
}

// progress records download progress and reports it (throttled).
func (a *agent) progress(key string, done, total int64) {
	a.mu.Lock()
	if as := a.st.Apps[key]; as != nil {
		as.Status.BytesDone, as.Status.BytesTotal = done, total
	}
	a.mu.Unlock()
	a.kickProgress()
}

// fetchURL downloads url into path (through a temporary file).
func (a *agent) fetchURL(ctx context.Context, url, path string) (int64, error) {
	hc := cmp.Or(a.cfg.HTTPClient, http.DefaultClient)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", redact.URL(url), resp.Status)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, resp.Body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return 0, err
	}
	return n, nil
}
