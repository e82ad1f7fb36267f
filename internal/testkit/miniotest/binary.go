package miniotest

import (
	"bytes"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vmapp/vmapp/internal/atomicfile"
)

// Version is the pinned MinIO server: a pseudo-version of
// github.com/minio/minio, installed with `go install`.
const Version = "v0.0.0-20260212201848-7aac2a2c5b7c"

// Module is the Go module the MinIO server is built from.
const Module = "github.com/minio/minio"

const (
	binaryName = "minio"
	stampName  = "minio.version" // holds the Version the binary was built from
	lockName   = ".minio.lock"
)

// ToolsDir is the cache directory holding vmapp's pinned tools:
// $VMAPP_TOOLS_DIR if set, else ${XDG_CACHE_HOME:-$HOME/.cache}/vmapp/bin.
// It is the same directory the Makefile uses.
func ToolsDir() (string, error) {
	if d := os.Getenv("VMAPP_TOOLS_DIR"); d != "" {
		return filepath.Abs(d)
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("miniotest: no tools directory: set VMAPP_TOOLS_DIR or HOME: %w", err)
		}
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Abs(filepath.Join(cache, "vmapp", "bin"))
}

// Binary returns the path of the pinned MinIO server binary in ToolsDir,
// installing it there first when it is absent or was built from another
// version (the build takes about five minutes). A file lock in the tools
// directory keeps parallel test processes from building it twice.
func Binary() (string, error) {
	dir, err := ToolsDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, binaryName)
	if stampMatches(dir) && isFile(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("miniotest: create tools directory: %w", err)
	}
	unlock, err := lock(filepath.Join(dir, lockName))
	if err != nil {
		return "", err
	}
	defer unlock()

	// Another process may have installed it while this one waited.
	if stampMatches(dir) && isFile(bin) {
		return bin, nil
	}
	// A binary of the right version installed by hand (or before stamps
	// existed) is adopted rather than rebuilt.
	if builtFrom(bin) == Version {
		return bin, writeStamp(dir)
	}
	if err := install(dir); err != nil {
		return "", err
	}
	return bin, nil
}

// Installed returns the path of the pinned MinIO binary if it is already in
// ToolsDir, without installing it.
func Installed() (string, bool) {
	dir, err := ToolsDir()
	if err != nil {
		return "", false
	}
	bin := filepath.Join(dir, binaryName)
	return bin, stampMatches(dir) && isFile(bin)
}

func stampMatches(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, stampName))
	return err == nil && string(bytes.TrimSpace(b)) == Version
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// builtFrom returns the version of the MinIO module the binary at path was
// built from, or "" when it is missing or not a MinIO build.
func builtFrom(path string) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil || bi.Main.Path != Module {
		return ""
	}
	return bi.Main.Version
}

func writeStamp(dir string) error {
	if err := atomicfile.Write(filepath.Join(dir, stampName), []byte(Version+"\n"), 0o644); err != nil {
		return fmt.Errorf("miniotest: write version stamp: %w", err)
	}
	return nil
}

// install builds the pinned MinIO into a scratch GOBIN inside dir and renames
// it into place, so no reader ever sees a half-written binary, then stamps it.
func install(dir string) error {
	goTool, err := goCommand()
	if err != nil {
		return err
	}
	scratch, err := os.MkdirTemp(dir, ".minio-install-")
	if err != nil {
		return fmt.Errorf("miniotest: %w", err)
	}
	defer os.RemoveAll(scratch)

	// Remove the stamp first: if the rename below happens and the stamp write
	// fails, the next call rebuilds instead of trusting a stale stamp.
	if err := os.Remove(filepath.Join(dir, stampName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("miniotest: %w", err)
	}
	fmt.Fprintf(os.Stderr, "miniotest: installing %s@%s into %s (takes about 5 minutes the first time)\n", Module, Version, dir)
	cmd := exec.Command(goTool, "install", Module+"@"+Version)
	cmd.Env = append(withoutEnv(os.Environ(), "GOBIN", "GOFLAGS", "GOOS", "GOARCH"), "GOBIN="+scratch, "GOFLAGS=")
	cmd.Dir = scratch // outside any module, so the caller's go.mod plays no part
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("miniotest: go install %s@%s: %w\n%s", Module, Version, err, out.Bytes())
	}
	built := filepath.Join(scratch, binaryName)
	if v := builtFrom(built); v != Version {
		return fmt.Errorf("miniotest: go install %s@%s produced a binary built from %q", Module, Version, v)
	}
	if err := os.Rename(built, filepath.Join(dir, binaryName)); err != nil {
		return fmt.Errorf("miniotest: %w", err)
	}
	return writeStamp(dir)
}

// goCommand finds the go tool: on PATH, else in $GOROOT/bin.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); isFile(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("miniotest: the go tool is needed to install MinIO %s and is not on PATH", Version)
}

// lock takes an exclusive flock on path, waiting for any other holder.
func lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("miniotest: open lock file: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("miniotest: lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// withoutEnv returns env without the named variables.
func withoutEnv(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			if name == n {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}
