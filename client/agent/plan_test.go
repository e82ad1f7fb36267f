package agent

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// The plan's tests: the local state, the goal state and the time in, the
// plan out; then the plan walked with given applications failing. No
// processes, no vmappd, no disk.

const (
	root = "/r"
	boot = "boot-1" // the boot the agent starts in
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// goal is g/name at version as vmappd sends it: a package, an install and
// a remove command; opts change it.
func goal(name, version string, opts ...func(*pb.GoalApplication)) *pb.GoalApplication {
	ga := &pb.GoalApplication{Gallery: "g", Application: name, Version: version, Package: &pb.Artifact{SizeBytes: 1},
		ManageActions: &pb.UserArtifactManage{Install: "install.sh", Remove: "remove.sh"}}
	for _, o := range opts {
		o(ga)
	}
	return ga
}

func ordered(n int32) func(*pb.GoalApplication) {
	return func(ga *pb.GoalApplication) { ga.Order = &n }
}

func updatable(ga *pb.GoalApplication) { ga.ManageActions.Update = "update.sh" }

func configured(c string) func(*pb.GoalApplication) {
	return func(ga *pb.GoalApplication) { ga.Configuration = []byte(c) }
}

func retried(n int64) func(*pb.GoalApplication) {
	return func(ga *pb.GoalApplication) { ga.Retry = n }
}

// local is the agent's record of g/name; opts say what is installed,
// what failed, what was in progress.
func local(name string, opts ...func(*appState)) *appState {
	as := &appState{Gallery: "g", Application: name}
	for _, o := range opts {
		o(as)
	}
	return as
}

// installedAt: version installed in its directory, with the configuration
// conf (inline; "" for none).
func installedAt(version, conf string) func(*appState) {
	return func(as *appState) {
		ck := configKey(&pb.GoalApplication{Configuration: []byte(conf)})
		as.Installed = &installed{Version: version, Dir: filepath.Join(root, "g", as.Application, version), ConfigKey: ck, Remove: "remove.sh"}
		as.Status = status{Version: version, State: StateInstalled, Operation: OpInstall, Attempts: 1}
	}
}

// inOldLayout: version installed where an agent before the gallery
// directories put it, <root>/<application>/<version>.
func inOldLayout(version string) func(*appState) {
	return func(as *appState) {
		as.Installed = &installed{Version: version, Dir: filepath.Join(root, as.Application, version), Remove: "remove.sh"}
	}
}

// failedAt: attempts at f's target failed, the last one as f says.
func failedAt(f failure, attempts int32) func(*appState) {
	return func(as *appState) {
		as.Failure, as.Attempts = &f, attempts
		as.Status = status{Version: f.Version, State: StateFailed, Reason: "the command exited with code 1", Operation: f.Op, Attempts: attempts}
	}
}

// cutShort: op was in progress (attempt number attempts) when the agent
// stopped; the agent starts again in boot.
func cutShort(op operation, attempts int32) func(*appState) {
	return func(as *appState) {
		as.Op, as.Attempts = &op, attempts
		as.Status = status{Version: op.Version, State: StateInstalling, Operation: op.Op, Attempts: attempts}
	}
}

type planCase struct {
	name  string
	local []*appState
	goal  []*pb.GoalApplication
	now   time.Time // t0 when zero
	// want is the plan, as its lines.
	want []string
	// fail names the applications whose operation fails when the plan is
	// walked; walk is what the walk does then: "run KEY...", a group's
	// applications run together, and "skip KEY: reason".
	fail []string
	walk []string
	// dirs: an application's directories, the old version's (when one is
	// installed) and the new one's: "OLD → NEW".
	dirs map[string]string
	// states: an application's state once the plan is recorded, as
	// "State@version" or "State@version: reason".
	states map[string]string
}

func TestPlan(t *testing.T) {
	const lower1a = "an application with a lower order (1) failed: g/a"
	seeds := []*pb.GoalApplication{ // the seeds' table: in no order
		goal("u2", "1.0.0"), goal("d", "1.0.0", ordered(3)), goal("b", "1.0.0", ordered(1)),
		goal("c", "1.0.0", ordered(2)), goal("u1", "1.0.0"), goal("a", "1.0.0", ordered(1)),
	}
	seedsPlan := []string{
		"order 1: install g/a 1.0.0 #1", "order 1: install g/b 1.0.0 #1", "order 2: install g/c 1.0.0 #1",
		"order 3: install g/d 1.0.0 #1", "unordered: install g/u1 1.0.0 #1", "unordered: install g/u2 1.0.0 #1",
	}
	soon := t0.Add(time.Minute)
	for _, c := range []planCase{
		{
			name: "orders ascending, the same order together, the unordered last",
			goal: seeds, want: seedsPlan,
			walk: []string{"run g/a g/b", "run g/c", "run g/d", "run g/u1 g/u2"},
		},
		{
			name: "a failure in an order skips every higher order, not its own nor the unordered",
			goal: seeds, want: seedsPlan, fail: []string{"g/a"},
			walk: []string{"run g/a g/b", "skip g/c: " + lower1a, "skip g/d: " + lower1a, "run g/u1 g/u2"},
		},
		{
			name: "failures in one order: the reason names the first",
			goal: seeds, want: seedsPlan, fail: []string{"g/b", "g/a"},
			walk: []string{"run g/a g/b", "skip g/c: " + lower1a, "skip g/d: " + lower1a, "run g/u1 g/u2"},
		},
		{
			name: "a failure in a middle order: the lower orders ran, the higher are skipped",
			goal: seeds, want: seedsPlan, fail: []string{"g/c"},
			walk: []string{"run g/a g/b", "run g/c", "skip g/d: an application with a lower order (2) failed: g/c", "run g/u1 g/u2"},
		},
		{
			name: "a failure of an unordered application affects nothing",
			goal: seeds, want: seedsPlan, fail: []string{"g/u1"},
			walk: []string{"run g/a g/b", "run g/c", "run g/d", "run g/u1 g/u2"},
		},
		{
			name:  "an application waiting for its retry failed: the higher orders are skipped, the unordered run",
			local: []*appState{local("a", failedAt(failure{Op: OpInstall, Version: "1.0.0", NextRetry: soon}, 1))},
			goal:  []*pb.GoalApplication{goal("a", "1.0.0", ordered(1)), goal("c", "1.0.0", ordered(2)), goal("u", "1.0.0")},
			want:  []string{"order 1: wait g/a 1.0.0", "order 2: install g/c 1.0.0 #1", "unordered: install g/u 1.0.0 #1"},
			walk:  []string{"skip g/c: " + lower1a, "run g/u"},
			states: map[string]string{"g/a": "Failed@1.0.0: the command exited with code 1", "g/c": "Pending@1.0.0",
				"g/u": "Pending@1.0.0"},
		},
		{
			name:   "an application at its goal: nothing runs, and it fails nothing",
			local:  []*appState{local("a", installedAt("1.0.0", ""))},
			goal:   []*pb.GoalApplication{goal("a", "1.0.0", ordered(1)), goal("c", "1.0.0", ordered(2))},
			want:   []string{"order 1: none g/a 1.0.0", "order 2: install g/c 1.0.0 #1"},
			walk:   []string{"run g/c"},
			states: map[string]string{"g/a": "Installed@1.0.0"},
		},
		{
			name: "back at the installed version after a failed update: Installed, the failure forgotten",
			local: []*appState{local("a", installedAt("1.0.0", ""),
				failedAt(failure{Op: OpUpdate, Version: "2.0.0", NextRetry: soon}, 2))},
			goal:   []*pb.GoalApplication{goal("a", "1.0.0")},
			want:   []string{"unordered: none g/a 1.0.0"},
			states: map[string]string{"g/a": "Installed@1.0.0"},
		},
		{
			name:   "update: the new version's update command, in its directory",
			local:  []*appState{local("a", installedAt("1.0.0", ""))},
			goal:   []*pb.GoalApplication{goal("a", "2.0.0", updatable)},
			want:   []string{"unordered: update g/a 1.0.0→2.0.0 #1"},
			dirs:   map[string]string{"g/a": "/r/g/a/1.0.0 → /r/g/a/2.0.0"},
			states: map[string]string{"g/a": "Pending@2.0.0"},
		},
		{
			name:  "update without an update command: the old version's remove, then the new install",
			local: []*appState{local("a", installedAt("1.0.0", ""))},
			goal:  []*pb.GoalApplication{goal("a", "2.0.0")},
			want:  []string{"unordered: remove-then-install g/a 1.0.0→2.0.0 #1"},
			dirs:  map[string]string{"g/a": "/r/g/a/1.0.0 → /r/g/a/2.0.0"},
		},
		{
			name:  "automatic upgrade: vmappd resolved latest to a newer version",
			local: []*appState{local("a", installedAt("1.0.0", ""))},
			goal:  []*pb.GoalApplication{goal("a", "1.1.0", ordered(1)), goal("b", "1.0.0", ordered(2))},
			want:  []string{"order 1: remove-then-install g/a 1.0.0→1.1.0 #1", "order 2: install g/b 1.0.0 #1"},
			fail:  []string{"g/a"},
			walk:  []string{"run g/a", "skip g/b: " + lower1a},
		},
		{
			name:  "a new configuration of the installed version: an update",
			local: []*appState{local("a", installedAt("1.0.0", "x")), local("b", installedAt("1.0.0", "x")), local("c", installedAt("1.0.0", "x"))},
			goal: []*pb.GoalApplication{goal("a", "1.0.0", configured("y"), updatable), goal("b", "1.0.0", configured("y")),
				goal("c", "1.0.0", configured("x"))},
			want: []string{"unordered: update g/a 1.0.0→1.0.0 #1", "unordered: remove-then-install g/b 1.0.0→1.0.0 #1",
				"unordered: none g/c 1.0.0"},
			dirs: map[string]string{"g/a": "/r/g/a/1.0.0 → /r/g/a/1.0.0"},
		},
		{
			name:  "an update from the old layout: out of <root>/<application>/<version>",
			local: []*appState{local("a", inOldLayout("1.0.0"))},
			goal:  []*pb.GoalApplication{goal("a", "2.0.0")},
			want:  []string{"unordered: remove-then-install g/a 1.0.0→2.0.0 #1"},
			dirs:  map[string]string{"g/a": "/r/a/1.0.0 → /r/g/a/2.0.0"},
		},
		{
			name: "another tenant's gallery: the directory names the tenant",
			goal: []*pb.GoalApplication{goal("a", "1.0.0", func(ga *pb.GoalApplication) { ga.Tenant = "t" })},
			want: []string{"unordered: install t:g/a 1.0.0 #1"},
			dirs: map[string]string{"t:g/a": "/r/t:g/a/1.0.0"},
		},
		{
			name: "removals first: the installed is removed, the record of failed installs forgotten",
			local: []*appState{local("old", installedAt("1.0.0", "")),
				local("gone", failedAt(failure{Op: OpInstall, Version: "1.0.0", NextRetry: soon}, 3)), local("a", installedAt("1.0.0", ""))},
			goal: []*pb.GoalApplication{goal("a", "1.0.0"), goal("b", "1.0.0")},
			want: []string{"removals: forget g/gone", "removals: remove g/old 1.0.0 #1", "unordered: none g/a 1.0.0", "unordered: install g/b 1.0.0 #1"},
			walk: []string{"run g/b"},
		},
		{
			name:  "a failed removal waits for its retry",
			local: []*appState{local("old", installedAt("1.0.0", ""), failedAt(failure{Op: OpRemove, Version: "1.0.0", NextRetry: soon}, 1))},
			want:  []string{"removals: wait g/old 1.0.0"},
		},
		{
			name:  "a failed removal is retried when due",
			local: []*appState{local("old", installedAt("1.0.0", ""), failedAt(failure{Op: OpRemove, Version: "1.0.0", NextRetry: soon}, 1))},
			now:   soon,
			want:  []string{"removals: remove g/old 1.0.0 #2"},
		},
		{
			name: "the removal of an application whose update failed: a first attempt",
			local: []*appState{local("old", installedAt("1.0.0", ""),
				failedAt(failure{Op: OpUpdate, Version: "2.0.0", NextRetry: soon}, 3))},
			want: []string{"removals: remove g/old 1.0.0 #1"},
		},
		{
			name:  "backoff: the retry isn't due",
			local: []*appState{local("a", failedAt(failure{Op: OpInstall, Version: "1.0.0", NextRetry: soon}, 2))},
			goal:  []*pb.GoalApplication{goal("a", "1.0.0")},
			now:   soon.Add(-time.Nanosecond),
			want:  []string{"unordered: wait g/a 1.0.0"},
		},
		{
			name:  "backoff: the retry is due",
			local: []*appState{local("a", failedAt(failure{Op: OpInstall, Version: "1.0.0", NextRetry: soon}, 2))},
			goal:  []*pb.GoalApplication{goal("a", "1.0.0")},
			now:   soon,
			want:  []string{"unordered: install g/a 1.0.0 #3"},
		},
		{
			name:  "the goal's retry counter went up: at once",
			local: []*appState{local("a", failedAt(failure{Op: OpInstall, Version: "1.0.0", Retry: 1, NextRetry: soon}, 2))},
			goal:  []*pb.GoalApplication{goal("a", "1.0.0", retried(2))},
			want:  []string{"unordered: install g/a 1.0.0 #3"},
		},
		{
			name:  "the goal's retry counter as at the failure: it waits",
			local: []*appState{local("a", failedAt(failure{Op: OpInstall, Version: "1.0.0", Retry: 2, NextRetry: soon}, 2))},
			goal:  []*pb.GoalApplication{goal("a", "1.0.0", retried(2))},
			want:  []string{"unordered: wait g/a 1.0.0"},
		},
		{
			name: "another target than the failed one: attempts start over",
			local: []*appState{local("a", failedAt(failure{Op: OpInstall, Version: "1.0.0", NextRetry: soon}, 3)),
				local("b", failedAt(failure{Op: OpInstall, Version: "1.0.0", ConfigKey: "url:x", NextRetry: soon}, 3))},
			goal: []*pb.GoalApplication{goal("a", "2.0.0"), goal("b", "1.0.0")},
			want: []string{"unordered: install g/a 2.0.0 #1", "unordered: install g/b 1.0.0 #1"},
		},
		{
			name: "a reboot during an install, Rerun: it runs again, the attempt cut short counted",
			local: []*appState{local("a", cutShort(operation{Op: OpInstall, Step: OpInstall, Version: "1.0.0", BootID: "boot-0",
				Behavior: "Rerun"}, 1))},
			goal:   []*pb.GoalApplication{goal("a", "1.0.0")},
			want:   []string{"unordered: install g/a 1.0.0 #2"},
			states: map[string]string{"g/a": "Pending@1.0.0"},
		},
		{
			name: "a reboot during an install, None: Failed until retried",
			local: []*appState{local("a", cutShort(operation{Op: OpInstall, Step: OpInstall, Version: "1.0.0", BootID: "boot-0",
				Behavior: "None"}, 1))},
			goal:   []*pb.GoalApplication{goal("a", "1.0.0", ordered(1)), goal("b", "1.0.0", ordered(2))},
			now:    t0.Add(24 * time.Hour),
			want:   []string{"order 1: wait g/a 1.0.0", "order 2: install g/b 1.0.0 #1"},
			walk:   []string{"skip g/b: " + lower1a},
			states: map[string]string{"g/a": "Failed@1.0.0: interrupted by a reboot"},
		},
		{
			name:  "a reboot during an install, None, then a retry asked for",
			local: []*appState{local("a", cutShort(operation{Op: OpInstall, Step: OpInstall, Version: "1.0.0", BootID: "boot-0"}, 1))},
			goal:  []*pb.GoalApplication{goal("a", "1.0.0", retried(1))},
			want:  []string{"unordered: install g/a 1.0.0 #2"},
		},
		{
			name: "the agent died during an install (the same boot), None: it runs again",
			local: []*appState{local("a", cutShort(operation{Op: OpInstall, Step: OpInstall, Version: "1.0.0", BootID: boot,
				Behavior: "None"}, 1))},
			goal: []*pb.GoalApplication{goal("a", "1.0.0")},
			want: []string{"unordered: install g/a 1.0.0 #2"},
		},
		{
			name: "the agent died during the old version's remove of an update: the update runs again",
			local: []*appState{local("a", installedAt("1.0.0", ""),
				cutShort(operation{Op: OpUpdate, Step: "remove-old", Version: "2.0.0", BootID: boot}, 1))},
			goal: []*pb.GoalApplication{goal("a", "2.0.0")},
			want: []string{"unordered: remove-then-install g/a 1.0.0→2.0.0 #2"},
		},
		{
			name:  "the agent died during a removal: it runs again",
			local: []*appState{local("old", installedAt("1.0.0", ""), cutShort(operation{Op: OpRemove, Step: OpRemove, Version: "1.0.0", BootID: boot}, 1))},
			want:  []string{"removals: remove g/old 1.0.0 #2"},
		},
		{
			name: "refused goals fail without running anything; in an order, they skip the higher orders",
			goal: []*pb.GoalApplication{
				goal("a", "../1", ordered(1)),
				goal("b", "1.0.0", ordered(2), func(ga *pb.GoalApplication) { ga.Gallery = StateDir }),
				goal("c", "1.0.0", func(ga *pb.GoalApplication) { ga.Package = nil }),
				goal("d", "1.0.0", func(ga *pb.GoalApplication) { ga.ManageActions = nil }),
				goal("e", "1.0.0", func(ga *pb.GoalApplication) { ga.Settings = &pb.UserArtifactSettings{ConfigFileName: "../x"} }),
			},
			want: []string{
				"order 1: refuse g/a ../1 #1: version '../1' can't name a directory: it holds a path separator or a NUL",
				"order 2: refuse .vmapp-agent/b 1.0.0 #1: gallery '.vmapp-agent' can't name a directory under the root: the agent keeps its own files in /r/.vmapp-agent",
				"unordered: refuse g/c 1.0.0 #1: version 1.0.0 has no package in the catalog (was it deleted?)",
				"unordered: refuse g/d 1.0.0 #1: version 1.0.0 has no install command",
				"unordered: refuse g/e 1.0.0 #1: configFileName '../x' can't name a file: it holds a path separator or a NUL",
			},
			fail: []string{"g/a", "g/c", "g/d", "g/e"},
			walk: []string{"run g/a", "skip .vmapp-agent/b: " + lower1a, "run g/c g/d g/e"},
		},
	} {
		t.Run(c.name, func(t *testing.T) { c.check(t) })
	}
}

func (c planCase) check(t *testing.T) {
	st := &state{Schema: stateSchema, Apps: map[string]*appState{}}
	for _, as := range c.local {
		key := pb.AppRef("", as.Gallery, as.Application)
		st.Apps[key] = as
		if as.Op != nil { // as the agent does when it starts
			as.interrupted(boot, t0)
		}
	}
	now := c.now
	if now.IsZero() {
		now = t0
	}
	p := makePlan(st, &pb.GoalState{Applications: c.goal}, root, now)
	if got := p.lines(); !slices.Equal(got, c.want) {
		t.Errorf("plan:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(c.want, "\n\t"))
	}
	if walked := walk(p, c.fail); c.walk != nil && !slices.Equal(walked, c.walk) {
		t.Errorf("walked:\n\t%s\nwant:\n\t%s", strings.Join(walked, "\n\t"), strings.Join(c.walk, "\n\t"))
	}
	for key, want := range c.dirs {
		s := p.step(key)
		got := s.dir
		if s.old != nil {
			got = s.old.Dir + " → " + got
		}
		if got != want {
			t.Errorf("%s: directories %s, want %s", key, got, want)
		}
	}
	p.record(st)
	for key, want := range c.states {
		s := st.Apps[key].Status
		got := s.State + "@" + s.Version
		if s.Reason != "" {
			got += ": " + s.Reason
		}
		if got != want {
			t.Errorf("%s: recorded %s, want %s", key, got, want)
		}
	}
}

// walk walks p with the applications of fail failing, and returns what it
// did.
func walk(p *plan, fail []string) []string {
	var did []string
	run := func(steps []step) []string {
		var keys, failed []string
		for _, s := range steps {
			keys = append(keys, s.key)
			if slices.Contains(fail, s.key) {
				failed = append(failed, s.key)
			}
		}
		if len(keys) > 0 {
			did = append(did, "run "+strings.Join(keys, " "))
		}
		return failed
	}
	skip := func(s step, reason string) { did = append(did, "skip "+s.key+": "+reason) }
	p.walk(func() bool { return true }, run, skip)
	return did
}

// step is the plan's step of key.
func (p *plan) step(key string) step {
	for _, g := range p.groups {
		for _, s := range g.steps {
			if s.key == key {
				return s
			}
		}
	}
	return step{}
}

// A newer goal state (or the agent stopping) ends the walk between groups:
// what comes after doesn't run, and isn't skipped either.
func TestPlanWalkStops(t *testing.T) {
	p := makePlan(&state{Apps: map[string]*appState{}}, &pb.GoalState{Applications: []*pb.GoalApplication{
		goal("a", "1.0.0", ordered(1)), goal("b", "1.0.0", ordered(2)), goal("u", "1.0.0"),
	}}, root, t0)
	for allowed := range 4 {
		asked, ran := 0, 0
		more := func() bool { asked++; return asked <= allowed }
		run := func([]step) []string { ran++; return nil }
		done := p.walk(more, run, func(step, string) { t.Errorf("a step was skipped") })
		if done != (allowed == 3) || ran != allowed {
			t.Errorf("%d groups allowed of 3: walk done %v, %d groups ran", allowed, done, ran)
		}
	}
}

// The earliest automatic retry to come; none for failures waiting for a
// retry asked for, or already due.
func TestNextRetry(t *testing.T) {
	st := &state{Apps: map[string]*appState{}}
	add := func(name string, f failure) { st.Apps["g/"+name] = local(name, failedAt(f, 1)) }
	if _, ok := st.nextRetry(t0); ok {
		t.Fatal("a retry with no failure")
	}
	add("manual", failure{Op: OpInstall, Version: "1.0.0", Manual: true})
	add("due", failure{Op: OpInstall, Version: "1.0.0", NextRetry: t0})
	if next, ok := st.nextRetry(t0); ok {
		t.Fatalf("a retry at %v: want none", next)
	}
	add("later", failure{Op: OpInstall, Version: "1.0.0", NextRetry: t0.Add(2 * time.Minute)})
	add("sooner", failure{Op: OpRemove, Version: "1.0.0", NextRetry: t0.Add(time.Minute)})
	if next, ok := st.nextRetry(t0); !ok || !next.Equal(t0.Add(time.Minute)) {
		t.Fatalf("next retry %v, %v: want %v", next, ok, t0.Add(time.Minute))
	}
}

// The step's line names what it does to which versions.
func TestStepString(t *testing.T) {
	in := &installed{Version: "1.0.0"}
	for s, want := range map[*step]string{
		{act: actForget, key: "g/a"}:                                                      "forget g/a",
		{act: actRemove, key: "g/a", old: in, attempt: 2}:                                 "remove g/a 1.0.0 #2",
		{act: actNone, key: "g/a", old: in, goal: goal("a", "1.0.0")}:                     "none g/a 1.0.0",
		{act: actUpdate, key: "g/a", old: in, goal: goal("a", "2.0.0"), attempt: 1}:       "update g/a 1.0.0→2.0.0 #1",
		{act: actRefuse, key: "g/a", goal: goal("a", "2.0.0"), attempt: 1, reason: "why"}: "refuse g/a 2.0.0 #1: why",
	} {
		if got := fmt.Sprint(*s); got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}
