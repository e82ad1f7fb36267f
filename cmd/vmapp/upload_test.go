package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
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

// TestFailedVersionCLI: a version whose import failed shows as Failed with
// the reason (table and JSON), is deleted with its name free again, and a
// Failed version takes a new upload.
func TestFailedVersionCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO processes")
	}
	c := testcluster.Start(t, testcluster.Options{})
	e := clusterEnv(t, c)
	e.ok("gallery", "create", "g", "--location", "eastus")
	e.ok("app", "create", "--gallery", "g", "a", "--os", "linux")
	create := []string{"version", "create", "--gallery", "g", "--app", "a", "1.0.0", "--install", "i", "--remove", "r"}
	r := e.vmapp(append(create, "--package-url", "http://127.0.0.1:1/app.tgz")...)
	if r.code != 1 || !strings.Contains(r.stderr, "error: Unavailable: import package from http://127.0.0.1:1/app.tgz") ||
		!strings.Contains(r.stderr, "vmapp version upload --gallery g --app a 1.0.0") {
		t.Fatalf("create with an unreachable URL: %v", r)
	}
	out := e.ok("version", "show", "--gallery", "g", "--app", "a", "1.0.0")
	if fieldOf(t, out, "Provisioning state") != "Failed" || !strings.HasPrefix(fieldOf(t, out, "Provisioning error"), "Unavailable: The gallery application version url http://127.0.0.1:1/app.tgz can't be accessed") {
		t.Fatalf("show:\n%s", out)
	}
	js := e.okJSON("version", "show", "--gallery", "g", "--app", "a", "1.0.0")
	if at(js, "provisioningState") != "Failed" || at(js, "provisioningError", "code") != "Unavailable" || at(js, "provisioningError", "time") == nil {
		t.Fatalf("json: %v", js)
	}

	// Deleted, its name is free again.
	e.ok("version", "delete", "--gallery", "g", "--app", "a", "1.0.0")
	e.reap()
	e.fails(1, "error: NotFound: ", "version", "show", "--gallery", "g", "--app", "a", "1.0.0")
	pkg := filepath.Join(t.TempDir(), "app.tgz")
	if err := os.WriteFile(pkg, []byte("the package"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok(append(create, "--package", pkg)...)

	// A Failed version takes a new upload: Succeeded.
	missing := httptest.NewServer(http.NotFoundHandler())
	defer missing.Close()
	e.fails(1, "error: NotFound: ", append(slicesReplace(create, "1.0.0", "1.1.0"), "--package-url", missing.URL+"/app.tgz")...)
	if js := e.okJSON("version", "show", "--gallery", "g", "--app", "a", "1.1.0"); at(js, "provisioningError", "code") != "NotFound" {
		t.Fatalf("1.1.0: %v", js)
	}
	e.ok("version", "upload", "--gallery", "g", "--app", "a", "1.1.0", "--package", pkg)
	out = e.ok("version", "show", "--gallery", "g", "--app", "a", "1.1.0")
	if fieldOf(t, out, "Provisioning state") != "Succeeded" || strings.Contains(out, "Provisioning error") {
		t.Fatalf("after a new upload:\n%s", out)
	}
}

func slicesReplace(s []string, old, new string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		if v == old {
			v = new
		}
		out[i] = v
	}
	return out
}
