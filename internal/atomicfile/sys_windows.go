//go:build windows

package atomicfile

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows"
)

// rename replaces to with from, and returns once the change is on disk
// (MOVEFILE_WRITE_THROUGH): os.Rename doesn't ask for that.
func rename(from, to string) error {
	f, err := windows.UTF16PtrFromString(longPath(from))
	if err != nil {
		return err
	}
	t, err := windows.UTF16PtrFromString(longPath(to))
	if err != nil {
		return err
	}
	if err := windows.MoveFileEx(f, t, windows.MOVEFILE_REPLACE_EXISTING|windows.MOVEFILE_WRITE_THROUGH); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// longPath lets a path be longer than MAX_PATH, as the os package does
// for its own calls: the \\?\ prefix on the absolute path (cleaned, since
// the prefix turns Windows' cleaning off). UNC paths stay as they are.
func longPath(p string) string {
	if len(p) < 248 || strings.HasPrefix(p, `\\`) {
		return p
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return `\\?\` + abs
}

// syncDir does nothing: Windows can't flush a directory (FlushFileBuffers
// on a directory handle fails, "Access is denied"); NTFS journals its
// entries, and rename writes through.
func syncDir(string) error { return nil }
