//go:build !linux && !windows

package download

import (
	"errors"
	"os"
	"syscall"
)

// lockFile does nothing here: Linux and Windows downloads are locked.
func lockFile(*os.File) (held bool, err error) { return false, nil }

func isNoSpace(err error) bool { return errors.Is(err, syscall.ENOSPC) }
