package agent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// appKey names an application as its packageReferenceId does:
// gallery/application, TENANT:gallery/application for another tenant's.
func appKey(ga *pb.GoalApplication) string { return pb.AppRef(ga.Tenant, ga.Gallery, ga.Application) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// configKey identifies the configuration a goal asks for: a change of it
// (or of the version) is an update.
func configKey(ga *pb.GoalApplication) string {
	switch {
	case len(ga.Configuration) > 0:
		sum := sha256.Sum256(ga.Configuration)
		return "inline:" + hex.EncodeToString(sum[:])
	case ga.ConfigurationReference != "":
		return "url:" + ga.ConfigurationReference
	case ga.DefaultConfiguration != nil:
		return "default:" + ga.DefaultConfiguration.Sha256
	}
	return ""
}

// fileNames are the package's and the configuration's names in the
// version's directory.
func fileNames(ga *pb.GoalApplication) (pkg, cfg string) {
	pkg, cfg = ga.Application, ga.Application+"-config"
	if n := ga.GetSettings().GetPackageFileName(); n != "" {
		pkg = n
	}
	if n := ga.GetSettings().GetConfigFileName(); n != "" {
		cfg = n
	}
	return pkg, cfg
}

// plainName tells whether s can be one element of a path.
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}

type action int

const (
	actNone action = iota // at its goal
	actRun                // install or update now
	actWait               // failed; the retry isn't due
)

type planned struct {
	key string
	ga  *pb.GoalApplication
	act action
}

// pass makes one attempt at the goal state: removals, then the ordered
// groups, then the unordered applications.
func (a *agent) pass(ctx context.Context, gs *pb.GoalState, seq uint64) {
	wanted := map[string]*pb.GoalApplication{}
	for _, ga := range gs.Applications {
		wanted[appKey(ga)] = ga
	}
	now := a.clock.Now()

	// Removals first.
	a.mu.Lock()
	var removals []string
	for _, key := range sortedKeys(a.st.Apps) {
		as := a.st.Apps[key]
		if wanted[key] != nil || as.Op != nil {
			continue
		}
		if as.Installed == nil {
			delete(a.st.Apps, key)
			a.removeAppDirLocked(key) // what its failed attempts left
			continue
		}
		if f := as.Failure; f != nil && f.Op == OpRemove && f.Version == as.Installed.Version && (f.Manual || now.Before(f.NextRetry)) {
			continue
		}
		removals = append(removals, key)
	}
	a.saveLocked()
	a.mu.Unlock()
	a.kick()
	var wg sync.WaitGroup
	for _, key := range removals {
		wg.Go(func() { a.remove(ctx, key) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}

	// Plan: what is at its goal, what waits for a retry, what runs.
	a.mu.Lock()
	var plan []*planned
	for _, ga := range gs.Applications {
		key := appKey(ga)
		as := a.st.Apps[key]
		if as == nil {
			as = &appState{Gallery: ga.Gallery, Application: ga.Application}
			a.st.Apps[key] = as
		}
		p := &planned{key: key, ga: ga, act: actRun}
		plan = append(plan, p)
		ck := configKey(ga)
		if in := as.Installed; in != nil && in.Version == ga.Version && in.ConfigKey == ck {
			p.act = actNone
			as.Failure = nil
			in.Treat = ga.TreatFailureAsDeploymentFailure
			if as.Status.State != StateInstalled || as.Status.Version != ga.Version {
				as.Status = status{Version: ga.Version, State: StateInstalled, Operation: as.Status.Operation, Start: as.Status.Start, End: as.Status.End, Attempts: as.Status.Attempts}
			}
			as.Status.Treat = ga.TreatFailureAsDeploymentFailure
			continue
		}
		if f := as.Failure; f != nil && f.Op != OpRemove && f.Version == ga.Version && f.ConfigKey == ck &&
			ga.Retry <= f.Retry && (f.Manual || now.Before(f.NextRetry)) {
			p.act = actWait
			as.Status.Treat = ga.TreatFailureAsDeploymentFailure
			continue
		}
		op := OpInstall
		if as.Installed != nil {
			op = OpUpdate
		}
		as.Status = status{Version: ga.Version, State: StatePending, Operation: op, Attempts: as.Attempts, Treat: ga.TreatFailureAsDeploymentFailure}
	}
	a.saveLocked()
	a.mu.Unlock()
	a.kick()

	// Groups: ascending orders, then the unordered applications.
	groups := map[int32][]*planned{}
	var unordered []*planned
	for _, p := range plan {
		if p.ga.Order == nil {
			unordered = append(unordered, p)
		} else {
			groups[p.ga.GetOrder()] = append(groups[p.ga.GetOrder()], p)
		}
	}
	orders := make([]int32, 0, len(groups))
	for o := range groups {
		orders = append(orders, o)
	}
	slices.Sort(orders)
	skipReason := ""
	for _, o := range orders {
		if a.stale(seq) {
			return
		}
		group := groups[o]
		if skipReason != "" {
			for _, p := range group {
				if p.act == actRun {
					a.skip(p, skipReason)
				}
			}
			continue
		}
		failed := a.runGroup(ctx, gs, group)
		if ctx.Err() != nil {
			return
		}
		if len(failed) > 0 {
			slices.Sort(failed)
			skipReason = fmt.Sprintf("an application with a lower order (%d) failed: %s", o, failed[0])
		}
	}
	if a.stale(seq) {
		return
	}
	a.runGroup(ctx, gs, unordered)
	if ctx.Err() != nil {
		return
	}
	a.mu.Lock()
	a.st.Generation = gs.Generation
	a.saveLocked()
	a.mu.Unlock()
	a.kick()
}

// runGroup runs a group's applications concurrently and returns those that
// failed (now or before, waiting for a retry).
func (a *agent) runGroup(ctx context.Context, gs *pb.GoalState, group []*planned) []string {
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	for _, p := range group {
		switch p.act {
		case actWait:
			failed = append(failed, p.key)
		case actRun:
			wg.Go(func() {
				if !a.apply(ctx, gs, p.ga) && ctx.Err() == nil {
					mu.Lock()
					failed = append(failed, p.key)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return failed
}

func (a *agent) skip(p *planned, reason string) {
	a.update(p.key, func(as *appState) {
		as.Status.State, as.Status.Reason, as.Status.End = StateSkipped, reason, a.clock.Now()
	})
}

// nextRetry is when the earliest automatic retry comes due.
func (a *agent) nextRetry(*pb.GoalState) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.clock.Now()
	var next time.Time
	for _, as := range a.st.Apps {
		f := as.Failure
		if f == nil || f.Manual || !f.NextRetry.After(now) {
			continue
		}
		if next.IsZero() || f.NextRetry.Before(next) {
			next = f.NextRetry
		}
	}
	return next, !next.IsZero()
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

// apply installs or updates an application to its goal; false when it
// failed (or ctx ended).
func (a *agent) apply(ctx context.Context, gs *pb.GoalState, ga *pb.GoalApplication) bool {
	key, ck := appKey(ga), configKey(ga)
	appDir, dirErr := a.appDir(key)
	dir := filepath.Join(appDir, ga.Version)
	pkgName, cfgName := fileNames(ga)
	behavior := ga.GetSettings().GetScriptBehaviorAfterReboot()

	var inst *installed
	var op, sharer string
	a.update(key, func(as *appState) {
		sharer = a.sharerLocked(key, appDir)
		if as.Installed != nil {
			c := *as.Installed
			inst = &c
		}
		if f := as.Failure; f == nil || f.Op == OpRemove || f.Version != ga.Version || f.ConfigKey != ck {
			as.Attempts = 0
		}
		as.Attempts++
		op = OpInstall
		if inst != nil {
			op = OpUpdate
		}
		as.Status = status{Version: ga.Version, State: StateDownloading, Operation: op, Start: a.clock.Now(),
			Attempts: as.Attempts, Treat: ga.TreatFailureAsDeploymentFailure}
	})
	log := a.log.With("app", key, "version", ga.Version, "op", op)
	fail := func(reason string, r *result) bool {
		log.Warn("operation failed", "reason", reason)
		a.update(key, func(as *appState) {
			as.Op = nil
			as.Failure = &failure{Op: op, Version: ga.Version, ConfigKey: ck, Retry: ga.Retry,
				NextRetry: a.clock.Now().Add(backoff(a.cfg.RetryBase, a.cfg.RetryMax, int(as.Attempts)))}
			as.Status.State, as.Status.Reason, as.Status.End = StateFailed, reason, a.clock.Now()
			as.Status.ExitCode, as.Status.OutputTail = -1, ""
			if r != nil {
				as.Status.ExitCode, as.Status.OutputTail = r.ExitCode, r.Tail
			}
		})
		return false
	}

	switch {
	case dirErr != nil:
		return fail(dirErr.Error(), nil)
	case !plainName(ga.Version):
		return fail(fmt.Sprintf("version '%s' can't name a directory", ga.Version), nil)
	case sharer != "":
		return fail(fmt.Sprintf("%s would share the directory of %s, installed there by an earlier agent", appDir, sharer), nil)
	case !plainName(pkgName) || !plainName(cfgName):
		return fail(fmt.Sprintf("packageFileName '%s' or configFileName '%s' isn't a plain file name", pkgName, cfgName), nil)
	case ga.Package == nil:
		return fail(fmt.Sprintf("version %s has no package in the catalog (was it deleted?)", ga.Version), nil)
	case ga.GetManageActions().GetInstall() == "":
		return fail(fmt.Sprintf("version %s has no install command", ga.Version), nil)
	}
	keep := []string{dir}
	if inst != nil {
		keep = append(keep, inst.Dir)
	}
	cleanLeftovers(appDir, keep)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err.Error(), nil)
	}
	if err := a.fetch(ctx, gs.Region, ga, key, dir, pkgName, cfgName); err != nil {
		if ctx.Err() != nil {
			return false
		}
		return fail(err.Error(), nil)
	}

	step := func(name, command, in string, version string) (result, string, bool) {
		o := &operation{Op: op, Step: name, Version: ga.Version, ConfigKey: ck, Retry: ga.Retry, Dir: in,
			BootID: a.bootID, Behavior: behavior, Start: a.clock.Now()}
		what := "the " + name + " command"
		if name == "remove-old" {
			what = "the remove command of version " + version
		}
		r, ok := a.runStep(ctx, key, o, command, in, cmdEnv(ga, op, prevVersion(inst)))
		return r, what, ok
	}
	var r result
	var what string
	var ok bool
	switch {
	case inst == nil:
		a.setState(key, StateInstalling)
		r, what, ok = step(OpInstall, ga.ManageActions.Install, dir, "")
	case ga.ManageActions.GetUpdate() != "":
		a.setState(key, StateUpdating)
		r, what, ok = step(OpUpdate, ga.ManageActions.Update, dir, "")
	default:
		a.setState(key, StateUpdating)
		r, what, ok = step("remove-old", inst.Remove, inst.Dir, inst.Version)
		if ok {
			if inst.Dir != dir {
				a.removeDir(inst.Dir)
			}
			a.update(key, func(as *appState) { as.Installed, as.Op = nil, nil })
			r, what, ok = step(OpInstall, ga.ManageActions.Install, dir, "")
		}
	}
	if ctx.Err() != nil {
		return false
	}
	if !ok {
		return fail(reasonOf(what, r), &r)
	}
	if inst != nil && inst.Dir != dir {
		a.removeDir(inst.Dir)
	}
	log.Info("operation succeeded", "duration", r.Duration.Round(time.Millisecond))
	a.update(key, func(as *appState) {
		as.Op, as.Failure = nil, nil
		as.Installed = &installed{Version: ga.Version, Dir: dir, ConfigKey: ck, Remove: ga.ManageActions.Remove,
			Behavior: behavior, Time: a.clock.Now(), Treat: ga.TreatFailureAsDeploymentFailure}
		as.Status.State, as.Status.Reason, as.Status.End = StateInstalled, "", a.clock.Now()
		as.Status.ExitCode, as.Status.OutputTail = r.ExitCode, r.Tail
	})
	return true
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
	return r, r.Err == nil && r.ExitCode == 0
}

// remove runs an installed application's remove command and deletes its
// directory.
func (a *agent) remove(ctx context.Context, key string) {
	var inst installed
	var app string
	a.update(key, func(as *appState) {
		inst, app = *as.Installed, as.Application
		if f := as.Failure; f == nil || f.Op != OpRemove || f.Version != inst.Version {
			as.Attempts = 0
		}
		as.Attempts++
		as.Status = status{Version: inst.Version, State: StateRemoving, Operation: OpRemove, Start: a.clock.Now(),
			Attempts: as.Attempts, Treat: inst.Treat}
	})
	log := a.log.With("app", key, "version", inst.Version, "op", OpRemove)
	o := &operation{Op: OpRemove, Step: OpRemove, Version: inst.Version, Dir: inst.Dir, BootID: a.bootID, Behavior: inst.Behavior, Start: a.clock.Now()}
	env := []string{"VMAPP_APPLICATION=" + app, "VMAPP_VERSION=" + inst.Version, "VMAPP_OPERATION=" + OpRemove}
	var r result
	ok := true
	if _, err := os.Stat(inst.Dir); errors.Is(err, fs.ErrNotExist) {
		log.Warn("the installed directory is gone: nothing to run the remove command in", "dir", inst.Dir)
	} else {
		r, ok = a.runStep(ctx, key, o, inst.Remove, inst.Dir, env)
	}
	if ctx.Err() != nil {
		return
	}
	if !ok {
		reason := reasonOf("the remove command", r)
		log.Warn("operation failed", "reason", reason)
		a.update(key, func(as *appState) {
			as.Op = nil
			as.Failure = &failure{Op: OpRemove, Version: inst.Version,
				NextRetry: a.clock.Now().Add(backoff(a.cfg.RetryBase, a.cfg.RetryMax, int(as.Attempts)))}
			as.Status.State, as.Status.Reason, as.Status.End = StateFailed, reason, a.clock.Now()
			as.Status.ExitCode, as.Status.OutputTail = r.ExitCode, r.Tail
		})
		return
	}
	a.removeDir(inst.Dir)
	a.mu.Lock()
	delete(a.st.Apps, key)
	a.removeAppDirLocked(key)
	a.saveLocked()
	a.mu.Unlock()
	a.kick()
	log.Info("removed", "duration", r.Duration.Round(time.Millisecond))
}

// appDir is the directory of an application's versions, named as its key
// (packageReferenceId) names the application: <root>/<gallery>/<application>,
// or <root>/<tenant>:<gallery>/<application> for another tenant's gallery.
func (a *agent) appDir(key string) (string, error) {
	top, app, _ := strings.Cut(key, "/")
	switch {
	case !plainName(top) || !plainName(app):
		return "", fmt.Errorf("'%s' can't name a directory", key)
	case top == StateDir:
		return "", fmt.Errorf("gallery '%s' can't name a directory under the root: the agent keeps its own files in %s", top, filepath.Join(a.cfg.Root, StateDir))
	}
	return filepath.Join(a.cfg.Root, top, app), nil
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
	if dir, err := a.appDir(key); err == nil && a.sharerLocked(key, dir) == "" {
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
		Progress: progress(0), HTTPClient: a.cfg.HTTPClient, Logger: a.log.With("app", key)}
	dctx := ctx // downloads name the gallery's tenant when another's
	if ga.Tenant != "" {
		dctx = client.InTenant(ctx, ga.Tenant)
	}
	if _, err := a.cl.Download(dctx, ga.Gallery, ga.Application, ga.Version, filepath.Join(dir, pkgName), o); err != nil {
		return fmt.Errorf("download of the package failed: %w", err)
	}
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
		o.Kind, o.Progress = pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION, progress(done)
		if _, err := a.cl.Download(dctx, ga.Gallery, ga.Application, ga.Version, cfgPath, o); err != nil {
			return fmt.Errorf("download of the default configuration failed: %w", err)
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
		return 0, fmt.Errorf("GET %s: %s", redact(url), resp.Status)
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

// redact drops a URL's query (a SAS or presigned signature).
func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}
