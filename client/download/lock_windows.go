//go:build windows

package download

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// lockOffset is where lockFile locks a byte: past the end of any file.
// Windows' byte-range locks are mandatory (I/O through another handle to
// a locked range fails), and a lock beyond the end is allowed and keeps
// the file's bytes free for the hasher's and the resume's reads.
const lockOffset = 1<<63 - 2

// lockFile takes an exclusive lock on f without waiting (LockFileEx); it
// fails when another process (or Download) holds it. Closing f releases
// it.
func lockFile(f *os.File) (held bool, err error) {
	ol := &windows.Overlapped{Offset: uint32(lockOffset & 0xFFFFFFFF), OffsetHigh: uint32(lockOffset >> 32)}
	err = windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, windows.ERROR_LOCK_VIOLATION):
		return true, nil
	}
	return false, err
}

// isNoSpace: Windows' own errors for a full disk, which aren't ENOSPC.
func isNoSpace(err error) bool {
	return errors.Is(err, windows.ERROR_DISK_FULL) || errors.Is(err, windows.ERROR_HANDLE_DISK_FULL)
}
