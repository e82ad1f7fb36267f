package agent

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
)

// The plan is what a pass does, decided from the local state, the goal
// state, the root and the time alone: no I/O, no clock, no randomness. The
// rules of ordering, failure, update, removal and retry live here; the
// executor (reconcile.go) carries the plan out.

// action is what a step does.
type action int

const (
	// actNone: the application is at its goal (version and
	// configuration).
	actNone action = iota
	// actWait: it failed at this target before and its retry isn't due
	// (or waits for the goal's retry counter to go up).
	actWait
	// actInstall: nothing is installed: download, the install command.
	actInstall
	// actUpdate: another version or configuration is installed and the
	// goal's version has an update command: download, the update command.
	actUpdate
	// actReplace: the same without an update command: download, the
	// installed version's remove command, then the install command.
	actReplace
	// actRefuse: the goal can't be installed (reason): it fails without
	// anything run.
	actRefuse
	// actRemove: installed and out of the goal: the remove command.
	actRemove
	// actForget: out of the goal with nothing installed (its installs
	// failed): its record and what its attempts left go.
	actForget
)

var actionNames = [...]string{"none", "wait", "install", "update", "remove-then-install", "refuse", "remove", "forget"}

func (a action) String() string { return actionNames[a] }

// acts tells whether the executor acts on a step of a group (fails it, for
// a refusal); those are the steps a lower order's failure skips.
func (a action) acts() bool {
	return a == actInstall || a == actUpdate || a == actReplace || a == actRefuse
}

// step is one application's part of a pass.
type step struct {
	act action
	key string
	// goal is the application's goal; nil for a removal.
	goal *pb.GoalApplication
	// old is (a copy of) the version installed; nil when none is.
	old *installed
	// dir is the directory of the goal's version; "" when refused.
	dir string
	// attempt is this attempt's number at its target: 1 for a new version
	// or configuration, one more than the last failed attempt at the same.
	attempt int32
	// reason the goal can't be installed (actRefuse).
	reason string
	// refusal is why the goal's signatures are refused, when they are.
	refusal sign.Reason
}

// op is the operation a step is part of, as the instance view names it.
func (s step) op() string {
	switch {
	case s.goal == nil:
		return OpRemove
	case s.old == nil:
		return OpInstall
	}
	return OpUpdate
}

// version is the version the step installs, or removes.
func (s step) version() string {
	switch {
	case s.goal != nil:
		return s.goal.Version
	case s.old != nil:
		return s.old.Version
	}
	return ""
}

// String is the step as a line of the plan: "install g/a 1.0.0 #1",
// "update g/a 1.0.0→2.0.0 #2", "refuse g/a 1.0.0 #1: reason", "forget g/a".
func (s step) String() string {
	out := s.act.String() + " " + s.key
	switch {
	case s.goal != nil && s.old != nil && s.act != actNone:
		out += " " + s.old.Version + "→" + s.goal.Version
	case s.version() != "":
		out += " " + s.version()
	}
	if s.attempt > 0 {
		out += fmt.Sprintf(" #%d", s.attempt)
	}
	if s.reason != "" {
		out += ": " + s.reason
	}
	return out
}

// group is the applications of one order, which run concurrently.
type group struct {
	order *int32 // nil: the unordered applications
	steps []step // by key
}

// plan is a pass: the removals first (concurrently), then the groups in
// order.
type plan struct {
	// removals: the applications that left the goal state, by key.
	removals []step
	// groups: the ordered groups by ascending order, then the unordered
	// (last, even when empty).
	groups []group
}

// makePlan plans a pass at gs from the state st at time now; root is where
// applications are installed.
func makePlan(st *state, gs *pb.GoalState, root string, now time.Time) *plan {
	return planOn(hostOS, st, gs, root, now)
}

// planOn is makePlan for an agent on goos: its names and commands.
func planOn(goos string, st *state, gs *pb.GoalState, root string, now time.Time) *plan {
	p := &plan{}
	wanted := map[string]bool{}
	for _, ga := range gs.Applications {
		wanted[appKey(ga)] = true
	}
	for _, key := range sortedKeys(st.Apps) {
		if !wanted[key] {
			p.removals = append(p.removals, removalStep(key, st.Apps[key], now))
		}
	}
	ordered := map[int32][]step{}
	var unordered []step
	for _, ga := range gs.Applications {
		s := goalStep(goos, st.Apps[appKey(ga)], ga, root, now)
		if ga.Order == nil {
			unordered = append(unordered, s)
		} else {
			ordered[ga.GetOrder()] = append(ordered[ga.GetOrder()], s)
		}
	}
	for _, o := range sortedKeys(ordered) {
		p.groups = append(p.groups, group{order: &o, steps: byKey(ordered[o])})
	}
	p.groups = append(p.groups, group{steps: byKey(unordered)})
	p.refuseShared(goos, root)
	return p
}

func byKey(steps []step) []step {
	slices.SortFunc(steps, func(a, b step) int { return strings.Compare(a.key, b.key) })
	return steps
}

// removalStep plans an application that left the goal state: its removal,
// unless its last removal failed and the retry isn't due.
func removalStep(key string, as *appState, now time.Time) step {
	if as.Installed == nil {
		return step{act: actForget, key: key}
	}
	in := *as.Installed
	s := step{act: actRemove, key: key, old: &in, attempt: 1}
	if f := as.Failure; f != nil && f.Op == OpRemove && f.Version == in.Version {
		if !f.due(now) {
			return step{act: actWait, key: key, old: &in}
		}
		s.attempt = as.Attempts + 1
	}
	return s
}

// goalStep plans an application of the goal state (as is nil when the
// agent has no record of it yet).
func goalStep(goos string, as *appState, ga *pb.GoalApplication, root string, now time.Time) step {
	s := step{key: appKey(ga), goal: ga}
	if as != nil && as.Installed != nil {
		in := *as.Installed
		s.old = &in
	}
	f := failureAt(as, ga)
	switch {
	case s.old != nil && s.old.Version == ga.Version && s.old.ConfigKey == configKey(ga):
		s.act = actNone
		return s
	case f != nil && ga.Retry <= f.Retry && !f.due(now):
		s.act = actWait
		return s
	}
	s.attempt = 1
	if f != nil {
		s.attempt = as.Attempts + 1
	}
	s.dir, s.reason = versionDir(goos, root, s.key, ga)
	switch {
	case s.reason != "":
		s.act = actRefuse
	case s.old == nil:
		s.act = actInstall
	case ga.GetManageActions().GetUpdate() != "":
		s.act = actUpdate
	default:
		s.act = actReplace
	}
	return s
}

// failureAt is the application's last failure when it was an install or
// update of ga's target (version, configuration and signatures): nil when
// there is none, or it was of another.
func failureAt(as *appState, ga *pb.GoalApplication) *failure {
	if as == nil || as.Failure == nil {
		return nil
	}
	if f := as.Failure; f.Op != OpRemove && f.Version == ga.Version && f.ConfigKey == configKey(ga) && f.Signing == signingKey(ga) {
		return f
	}
	return nil
}

// due tells whether the automatic retry of f is due at now (never, for a
// failure that waits for a retry asked for).
func (f *failure) due(now time.Time) bool { return !f.Manual && !now.Before(f.NextRetry) }

// versionDir is the directory ga's version installs in on goos, or the
// reason it can't be installed there.
func versionDir(goos, root, key string, ga *pb.GoalApplication) (dir, refusal string) {
	appDir, err := appDir(goos, root, key)
	if err != nil {
		return "", err.Error()
	}
	if err := checkName(goos, ga.Version); err != nil {
		return "", fmt.Sprintf("version '%s' can't name a directory: %v", ga.Version, err)
	}
	pkg, cfg := fileNames(ga)
	for _, f := range []struct{ field, name string }{{"packageFileName", pkg}, {"configFileName", cfg}} {
		if err := checkName(goos, f.name); err != nil {
			return "", fmt.Sprintf("%s '%s' can't name a file: %v", f.field, f.name, err)
		}
	}
	if sameFile(goos, pkg, cfg) {
		return "", fmt.Sprintf("packageFileName '%s' and configFileName '%s' name the same file", pkg, cfg)
	}
	switch {
	case ga.Package == nil:
		return "", fmt.Sprintf("version %s has no package in the catalog (was it deleted?)", ga.Version)
	case ga.GetManageActions().GetInstall() == "":
		return "", fmt.Sprintf("version %s has no install command", ga.Version)
	}
	dir = filepath.Join(appDir, ga.Version)
	if err := checkCommandDir(goos, dir); err != nil {
		return "", err.Error()
	}
	m := ga.GetManageActions()
	for _, c := range []struct{ name, line string }{{"install", m.GetInstall()}, {"update", m.GetUpdate()}, {"remove", m.GetRemove()}} {
		if err := checkCommand(goos, c.line); err != nil {
			return "", fmt.Sprintf("the %s command can't run: %v", c.name, err)
		}
	}
	return dir, ""
}

// refuseShared refuses, in place, the installs that would share the
// directory of another application of the goal (sharedDirs: on Windows,
// names that differ only in case). One installed keeps its directory; two
// new ones are both refused. (The directories of versions an earlier
// agent installed elsewhere are checked as each step begins: the pass's
// removals may free them.)
func (p *plan) refuseShared(goos, root string) {
	dirs := map[string]string{}
	for _, g := range p.groups {
		for _, s := range g.steps {
			if d, err := appDir(goos, root, s.key); err == nil {
				dirs[s.key] = d
			}
		}
	}
	shared := sharedDirs(goos, dirs)
	for _, g := range p.groups {
		for i := range g.steps {
			s := &g.steps[i]
			if other, ok := shared[s.key]; ok && s.act == actInstall {
				s.act, s.dir = actRefuse, ""
				s.reason = fmt.Sprintf("its directory %s would be the one of %s: file names ignore case on Windows", dirs[s.key], other)
			}
		}
	}
}

// verify refuses, in place, the steps that would install or update a
// version that t doesn't accept under policy at now, given the sequences
// the machine installed (by application): they fail with the refusal,
// before anything is downloaded or run. Removals aren't verified: they
// run the remove command recorded when the version was installed, which
// was verified then, never one vmappd sends now.
func (p *plan) verify(t *Trust, policy sign.Policy, sequences map[string]uint64, now time.Time) {
	for _, g := range p.groups {
		for i := range g.steps {
			s := &g.steps[i]
			if s.act != actInstall && s.act != actUpdate && s.act != actReplace {
				continue
			}
			if err := t.check(policy, s.goal, sequences[s.key], now); err != nil {
				s.act, s.reason, s.refusal = actRefuse, refusalText(err), sign.ReasonOf(err)
			}
		}
	}
}

// record writes into the state, in memory, what the groups start from: a
// record for every application of the goal; one at its goal is Installed
// (its failure forgotten), one the executor acts on is Pending.
func (p *plan) record(st *state) {
	for _, g := range p.groups {
		for _, s := range g.steps {
			as := st.Apps[s.key]
			if as == nil {
				as = &appState{Gallery: s.goal.Gallery, Application: s.goal.Application}
				st.Apps[s.key] = as
			}
			switch {
			case s.act == actNone:
				as.Failure = nil
				as.Installed.Treat = s.goal.TreatFailureAsDeploymentFailure
				if as.Status.State != StateInstalled || as.Status.Version != s.goal.Version {
					as.Status = status{Version: s.goal.Version, State: StateInstalled, Operation: as.Status.Operation,
						Start: as.Status.Start, End: as.Status.End, Attempts: as.Status.Attempts}
				}
			case s.act.acts():
				as.Status = status{Version: s.goal.Version, State: StatePending, Operation: s.op(), Attempts: as.Attempts}
			}
			as.Status.Treat = s.goal.TreatFailureAsDeploymentFailure
		}
	}
}

// walk goes through the groups in order, the seeds' ordering and failure
// rules. run acts on the steps of a group that act and returns the
// applications that failed; a step waiting for its retry counts as failed
// (it failed before). After an ordered group with a failure, the steps of
// every later ordered group that would act are skipped instead (skip, with
// the reason, naming that order and its first application that failed);
// the unordered group runs whatever failed. more is asked before each
// group: false ends the walk (a newer goal state, the agent stopping).
// walk tells whether it went through every group.
//
// The rule is applied as the outcomes come, not planned for every
// combination of them up front: a group's outcome is known only once it
// ran, and a newer goal state may end the pass between groups.
func (p *plan) walk(more func() bool, run func([]step) (failed []string), skip func(s step, reason string)) bool {
	reason := ""
	for _, g := range p.groups {
		if !more() {
			return false
		}
		var acting []step
		var failed []string
		for _, s := range g.steps {
			switch {
			case s.act == actWait:
				failed = append(failed, s.key)
			case s.act.acts():
				acting = append(acting, s)
			}
		}
		if g.order != nil && reason != "" {
			for _, s := range acting {
				skip(s, reason)
			}
			continue
		}
		failed = append(failed, run(acting)...)
		if g.order != nil && len(failed) > 0 {
			reason = fmt.Sprintf("an application with a lower order (%d) failed: %s", *g.order, slices.Min(failed))
		}
	}
	return true
}

// lines are the plan's steps, one a line, prefixed by their part:
// "removals: ", "order N: ", "unordered: ".
func (p *plan) lines() []string {
	var out []string
	for _, s := range p.removals {
		out = append(out, "removals: "+s.String())
	}
	for _, g := range p.groups {
		part := "unordered: "
		if g.order != nil {
			part = fmt.Sprintf("order %d: ", *g.order)
		}
		for _, s := range g.steps {
			out = append(out, part+s.String())
		}
	}
	return out
}

// interrupted puts, in place of the operation a previous run left in
// progress, how it ended: cut short in this boot (the agent stopped or
// died) or by a reboot when its scriptBehaviorAfterReboot is Rerun, it
// failed and is due again at once; else it failed, "interrupted by a
// reboot", until retried. The attempt cut short counts (Attempts stays).
// It returns what became of the operation, for the log.
func (as *appState) interrupted(bootID string, now time.Time) string {
	op := as.Op
	as.Op = nil
	as.Failure = &failure{Op: op.Op, Version: op.Version, ConfigKey: op.ConfigKey, Signing: op.Signing, Retry: op.Retry}
	switch {
	case op.BootID == bootID:
		return "an operation was cut short (the agent stopped): running it again"
	case op.Behavior == "Rerun":
		return "an operation was interrupted by a reboot: running it again (scriptBehaviorAfterReboot Rerun)"
	}
	as.Failure.Manual = true
	as.Status.State, as.Status.Reason, as.Status.Operation = StateFailed, "interrupted by a reboot", op.Op
	as.Status.Version, as.Status.End, as.Status.ExitCode = op.Version, now, -1
	return "an operation was interrupted by a reboot"
}

// nextRetry is when the earliest automatic retry after now comes due.
func (st *state) nextRetry(now time.Time) (time.Time, bool) {
	var next time.Time
	for _, as := range st.Apps {
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

// appKey names an application as its packageReferenceId does:
// gallery/application, TENANT:gallery/application for another tenant's.
func appKey(ga *pb.GoalApplication) string { return pb.AppRef(ga.Tenant, ga.Gallery, ga.Application) }

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K { return slices.Sorted(maps.Keys(m)) }

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

// appDir is the directory of an application's versions on goos, named as
// its key (packageReferenceId) names the application:
// <root>/<gallery>/<application>, or <root>/<tenant>:<gallery>/<application>
// for another tenant's gallery (<tenant>@<gallery> on Windows: tenantDir).
func appDir(goos, root, key string) (string, error) {
	top, app, _ := strings.Cut(key, "/")
	dir, err := tenantDir(goos, top)
	if err == nil {
		err = checkName(goos, app)
	}
	switch {
	case err != nil:
		return "", fmt.Errorf("'%s' can't name a directory: %w", key, err)
	case sameFile(goos, top, StateDir):
		return "", fmt.Errorf("gallery '%s' can't name a directory under the root: the agent keeps its own files in %s", top, filepath.Join(root, StateDir))
	}
	return filepath.Join(root, dir, app), nil
}
