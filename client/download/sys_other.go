//go:build !linux

package download

import (
	"os"
	"runtime"
)

// allocate sizes f; without fallocate a full disk shows only when a write
// fails.
func allocate(f *os.File, size int64) error { return f.Truncate(size) }

// startWriteback does nothing here: the fsync before the rename writes all.
func startWriteback(*os.File, int64, int64) {}

// openDirect returns nil: direct I/O is used on Linux only.
func openDirect(string) *os.File { return nil }

func alignedBuf(n int) []byte { return make([]byte, n) }

func isAligned([]byte, int64) bool { return false }

func procsFor(_ string, def int) int { return def }

// IOProcs is 0 here: only Linux downloads write with direct I/O.
const IOProcs = 0

// RaiseProcsForDirectIO leaves GOMAXPROCS alone here (no direct I/O) and
// returns it.
func RaiseProcsForDirectIO() int { return runtime.GOMAXPROCS(0) }
