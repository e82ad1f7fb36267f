package download_test

import (
	"os"
	"runtime"
	"strconv"
	"testing"

	"github.com/vmapp/vmapp/client/download"
)

// RaiseProcsForDirectIO adds IOProcs to GOMAXPROCS once, and leaves a
// GOMAXPROCS from the environment alone.
func TestRaiseProcsForDirectIO(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
	want := before + download.IOProcs
	if n, err := strconv.Atoi(os.Getenv("GOMAXPROCS")); err == nil && n > 0 {
		want = before
	}
	if got := download.RaiseProcsForDirectIO(); got != want || runtime.GOMAXPROCS(0) != want {
		t.Fatalf("RaiseProcsForDirectIO() = %d, GOMAXPROCS %d; want both %d (was %d, env %q)", got, runtime.GOMAXPROCS(0), want, before, os.Getenv("GOMAXPROCS"))
	}
	if got := download.RaiseProcsForDirectIO(); got != want || runtime.GOMAXPROCS(0) != want {
		t.Fatalf("a second call: %d, GOMAXPROCS %d; want both %d again", got, runtime.GOMAXPROCS(0), want)
	}
}
