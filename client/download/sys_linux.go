//go:build linux

package download

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directAlign is the alignment direct I/O asks of buffers, offsets and
// lengths: the page size covers every logical block size.
const directAlign = 4096

// openDirect opens path for direct I/O (O_DIRECT) writes, or returns nil
// when the file system refuses it (tmpfs before Linux 6.6, some FUSE and
// network file systems).
func openDirect(path string) *os.File {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	return f
}

// alignedBuf returns n bytes starting at a directAlign boundary.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))%directAlign)) % directAlign
	return b[skip : skip+n : skip+n]
}

// isAligned reports whether direct I/O can write p at off.
func isAligned(p []byte, off int64) bool {
	return len(p) > 0 && off%directAlign == 0 && len(p)%directAlign == 0 &&
		uintptr(unsafe.Pointer(&p[0]))%directAlign == 0
}

// allocate reserves size bytes for f (fallocate), so that a full disk fails
// here rather than in the middle of the download. File systems without
// fallocate get a sparse file of the size instead.
func allocate(f *os.File, size int64) error {
	if size == 0 {
		return f.Truncate(0)
	}
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS):
			return f.Truncate(size)
		}
		return err
	}
}

// lockFile takes an exclusive lock on f without waiting; it fails when
// another process (or Download) holds it.
func lockFile(f *os.File) (held bool, err error) {
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return false, nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return true, nil
		}
		return false, err
	}
}

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// startWriteback starts writing the byte range of f to disk without waiting
// (sync_file_range), so that the fsync before the rename finds little left
// to write. It is a hint: errors show in that fsync.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// IOProcs is how many Ps RaiseProcsForDirectIO adds to GOMAXPROCS.
const IOProcs = 2

// RaiseProcsForDirectIO sets GOMAXPROCS to its default (the CPUs this
// process may use) plus IOProcs, unless the GOMAXPROCS environment
// variable sets it; it returns the value in force. Programs that download
// (the CLI, the agent) call it first thing; later calls change nothing.
//
// Why: a download's direct-I/O writes block their thread on the disk, and
// Go lets a thread in a system call keep its P until sysmon takes it back.
// With one P per CPU, a CPU then idles (iowait) while another worker's
// bytes wait to be hashed. make bench's download scenario runs the CLI,
// and so measures the downloads with it.
func RaiseProcsForDirectIO() int { return raiseProcs() }

var raiseProcs = sync.OnceValue(func() int {
	n := procsFor(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0))
	runtime.GOMAXPROCS(n)
	return n
})

// procsFor is the GOMAXPROCS for a process whose default is def, given the
// GOMAXPROCS environment variable: def when the variable sets it (a
// positive number, as the runtime reads it), else def + IOProcs.
func procsFor(env string, def int) int {
	if n, err := strconv.Atoi(env); err == nil && n > 0 {
		return def
	}
	return def + IOProcs
}
