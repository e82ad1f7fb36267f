package agent

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Where the kernel has no boot id (Windows), the agent tells a boot by when
// it started: the wall clock less the time since boot (GetTickCount64,
// which counts sleep and hibernation too). The id records that boot time
// and when it was computed: "boot-time:<boot ms>@<computed ms>" (Unix
// milliseconds).
//
// Computed twice in one boot, the boot times differ by what the wall clock
// was set or drifted in between: time sync slews it, the tick counter
// isn't, and crystals drift up to about a hundred parts per million. A
// reboot moves the boot time by at least the old boot's uptime when the id
// was recorded — the agent had started by then, which takes far longer
// than the tolerance. So two ids are of one boot when their boot times are
// within bootSlack plus bootDrift of the time between them; a clock set
// back or forth by more than that in one boot reads as a reboot (an
// interrupted operation is then handled as a reboot's: see recover).
const (
	bootTimePrefix = "boot-time:"
	bootSlack      = 10 * time.Second
	// bootDrift is the drift allowed per unit of time elapsed: 1000 ppm.
	bootDrift = 1000
)

// bootTimeID is the id of the boot that started at boot, computed at at.
func bootTimeID(boot, at time.Time) string {
	return fmt.Sprintf("%s%d@%d", bootTimePrefix, boot.UnixMilli(), at.UnixMilli())
}

// parseBootTimeID reads an id bootTimeID made.
func parseBootTimeID(id string) (boot, at time.Time, ok bool) {
	rest, ok := strings.CutPrefix(id, bootTimePrefix)
	if !ok {
		return boot, at, false
	}
	b, a, ok := strings.Cut(rest, "@")
	bms, err1 := strconv.ParseInt(b, 10, 64)
	ams, err2 := strconv.ParseInt(a, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return boot, at, false
	}
	return time.UnixMilli(bms), time.UnixMilli(ams), true
}

// continueBoot is the id the agent goes by, given the boot id it read now
// (current) and the one a previous run recorded: the recorded one when
// both are boot times of the same boot (so that the ids the state holds
// compare equal to it), else current. Kernel boot ids (Linux) are
// compared as they are.
func continueBoot(recorded, current string) string {
	rb, rat, ok1 := parseBootTimeID(recorded)
	cb, cat, ok2 := parseBootTimeID(current)
	if !ok1 || !ok2 {
		return current
	}
	if abs(cb.Sub(rb)) <= bootSlack+abs(cat.Sub(rat))/bootDrift {
		return recorded
	}
	return current
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
