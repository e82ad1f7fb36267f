package agent

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestContinueBoot: boot times computed in one boot are one boot though
// the clock moved them (by up to bootSlack, and 1000 ppm of the time
// between them); a reboot's boot time is another. Kernel boot ids compare
// as they are.
func TestContinueBoot(t *testing.T) {
	boot := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	at := boot.Add(40 * time.Second) // the agent started 40 s after the boot
	rec := bootTimeID(boot, at)
	for _, c := range []struct {
		name      string
		current   string
		sameBoots bool
	}{
		{"read again at once", bootTimeID(boot, at), true},
		{"an hour later, 2 s off", bootTimeID(boot.Add(2*time.Second), at.Add(time.Hour)), true},
		{"an hour later, the clock set back 9 s", bootTimeID(boot.Add(-9*time.Second), at.Add(time.Hour)), true},
		{"an hour later, 13 s off", bootTimeID(boot.Add(13*time.Second), at.Add(time.Hour)), true},
		{"an hour later, 14 s off", bootTimeID(boot.Add(14*time.Second), at.Add(time.Hour)), false},
		{"30 days later, 40 minutes of drift", bootTimeID(boot.Add(40*time.Minute), at.Add(30*24*time.Hour)), true},
		{"30 days later, 60 minutes off", bootTimeID(boot.Add(time.Hour), at.Add(30*24*time.Hour)), false},
		// The quickest reboot: right after the agent recorded its boot,
		// the machine went down and came back within 30 s.
		{"rebooted at once", bootTimeID(at.Add(30*time.Second), at.Add(2*time.Minute)), false},
		{"rebooted a day later", bootTimeID(at.Add(24*time.Hour), at.Add(24*time.Hour+time.Minute)), false},
		{"a Linux boot id", "0f4b7c3e-1c9a-4b7e-9d0e-2f1a3b4c5d6e", false},
		{"a malformed one", "boot-time:x@1", false},
	} {
		got := continueBoot(rec, c.current)
		if want := map[bool]string{true: rec, false: c.current}[c.sameBoots]; got != want {
			t.Errorf("%s: %s, want %s", c.name, got, want)
		}
	}
	if got := continueBoot("", bootTimeID(boot, at)); got != bootTimeID(boot, at) {
		t.Errorf("nothing recorded: %s", got)
	}
	if got := continueBoot("b1", "b1"); got != "b1" {
		t.Errorf("Linux: %s", got)
	}
	if b, a, ok := parseBootTimeID(rec); !ok || !b.Equal(boot) || !a.Equal(at) {
		t.Errorf("parse %s: %v %v %v", rec, b, a, ok)
	}
}

// TestRecoverBootTime: an agent that tells boots by their time (Windows)
// reruns an operation its predecessor left in the same boot — though the
// boot time it reads moved — and keeps the recorded id; after a reboot,
// it fails the operation (scriptBehaviorAfterReboot None) and records the
// new boot.
func TestRecoverBootTime(t *testing.T) {
	boot := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	rec := bootTimeID(boot, boot.Add(time.Minute))
	for _, c := range []struct {
		name, current, wantBoot string
		manual                  bool
	}{
		{"same boot", bootTimeID(boot.Add(3*time.Second), boot.Add(2*time.Hour)), rec, false},
		{"rebooted", bootTimeID(boot.Add(2*time.Hour), boot.Add(2*time.Hour+time.Minute)), "", true},
	} {
		root := t.TempDir()
		if err := os.MkdirAll(root+"/"+StateDir, 0o755); err != nil {
			t.Fatal(err)
		}
		st, _ := loadState(root)
		st.BootID = rec
		st.Apps["g/a"] = local("a", cutShort(operation{Op: OpInstall, Step: OpInstall, Version: "1.0.0", BootID: rec, Behavior: "None"}, 1))
		a := &agent{cfg: Config{Root: root}, clock: clockwork.NewFakeClockAt(t0), log: slog.New(slog.DiscardHandler), bootID: c.current, st: st}
		if err := a.recover(); err != nil {
			t.Fatal(err)
		}
		saved, err := loadState(root)
		if err != nil {
			t.Fatal(err)
		}
		want := c.wantBoot
		if want == "" {
			want = c.current
		}
		f := saved.Apps["g/a"].Failure
		if a.bootID != want || saved.BootID != want || f == nil || f.Manual != c.manual {
			t.Errorf("%s: boot %s, saved %s, want %s; failure %+v", c.name, a.bootID, saved.BootID, want, f)
		}
	}
}
