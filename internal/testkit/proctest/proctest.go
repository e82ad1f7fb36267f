// Package proctest tells, in tests, whether a process still runs.
package proctest

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// Running tells whether process pid runs: it exists and isn't a zombie
// (dead, not reaped yet; PID 1 of a container may never reap the orphans
// it inherits).
func Running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// WaitGone waits until process pid no longer runs (a signal takes effect
// asynchronously); its deadline only guards against a hang.
func WaitGone(t testing.TB, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for Running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
