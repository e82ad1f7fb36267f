package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestFilesCheckedBeforeAnyCall: a --package or --config that can't be
// uploaded (missing, a directory, a FIFO, empty, over the limit) is a usage
// error naming the flag and the file, before anything is sent: version
// create creates no version.
func TestFilesCheckedBeforeAnyCall(t *testing.T) {
	e := newEnv(t)
	e.ok("gallery", "create", "g", "--location", "eastus")
	e.ok("app", "create", "--gallery", "g", "app", "--os", "linux")
	e.ok("version", "create", "--gallery", "g", "--app", "app", "1.0.0", "--install", "i", "--remove", "r")
	dir := t.TempDir()
	sized := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, size); err != nil { // sparse: no bytes written
			t.Fatal(err)
		}
		return p
	}
	ok := sized("ok", 10)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flag, path, want string
	}{
		{"--package", filepath.Join(dir, "missing"), "can't be read: no such file or directory"},
		{"--package", dir, "is a directory, not a file"},
		{"--package", fifo, "is not a regular file"},
		{"--package", sized("empty", 0), "is empty: a package has at least 1 byte"},
		{"--package", sized("big", 2<<30+1), "has 2147483649 bytes: a package has at most 2147483648 bytes (2 GiB)"},
		{"--config", sized("big.json", 1<<30+1), "has 1073741825 bytes: a default configuration has at most 1073741824 bytes (1 GiB)"},
	} {
		want := "error: " + tc.flag + ": " + tc.path + " " + tc.want
		args := []string{tc.flag, tc.path}
		if tc.flag == "--config" {
			args = append(args, "--package", ok) // the good one is not sent either
		}
		e.fails(2, want, append([]string{"version", "create", "--gallery", "g", "--app", "app", "2.0.0", "--install", "i", "--remove", "r"}, args...)...)
		e.fails(2, want, append([]string{"version", "upload", "--gallery", "g", "--app", "app", "1.0.0"}, args...)...)
	}
	// No version was created, and 1.0.0 still waits for its package.
	js := e.okJSON("version", "list", "--gallery", "g", "--app", "app")
	if v := js["value"].([]any); len(v) != 1 || at(v, 0, "provisioningState") != "Creating" {
		t.Fatalf("versions after refused files: %v", js)
	}
}
