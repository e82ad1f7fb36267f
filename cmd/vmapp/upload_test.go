package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
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

// TestUploadAbortAfterKill: the vmapp binary is killed (SIGKILL) in the
// middle of an upload; uploading another file is refused with the command
// that aborts the interrupted upload; that command (run as printed) aborts
// it, and the other file then uploads.
func TestUploadAbortAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the vmapp binary and starts MinIO processes")
	}
	bin := filepath.Join(t.TempDir(), "vmapp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := testcluster.Start(t, testcluster.Options{})
	e := clusterEnv(t, c)
	e.ok("gallery", "create", "g", "--location", "eastus")
	e.ok("app", "create", "--gallery", "g", "a", "--os", "linux")
	e.ok("version", "create", "--gallery", "g", "--app", "a", "1.0.0", "--install", "i", "--remove", "r")
	dir := t.TempDir()
	first, firstSum := randomFile(t, dir, "first", 3*testcluster.PartSize)
	second, _ := randomFile(t, dir, "second", 1000)

	// The binary uploads through a gate that stops passing its bytes after
	// the first part and a bit, so it is killed mid-upload whatever the
	// machine's speed.
	g := newGate(t, c.Addr, testcluster.PartSize+1<<20)
	cmd := exec.Command(bin, "--server", g.addr(), "--token-file", e.tokenFile, "version", "upload", "--gallery", "g", "--app", "a", "1.0.0", "--package", first)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, c, firstSum, 3*testcluster.PartSize, testcluster.PartSize)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatalf("the killed upload succeeded: %s", stderr.String())
	}
	g.close() // the killed client's connection ends

	r := e.fails(1, "error: FailedPrecondition: upload package "+second+": Another upload of the package of 'g/a/1.0.0' is in progress", "version", "upload", "--gallery", "g", "--app", "a", "1.0.0", "--package", second)
	abort := regexp.MustCompile(`abort it first: (vmapp version upload .* --abort)`).FindStringSubmatch(r.stderr)
	if abort == nil {
		t.Fatalf("the error names no abort command: %s", r.stderr)
	}
	out := e.ok(strings.Fields(abort[1])[1:]...)
	if !regexp.MustCompile(`^Aborted the upload of the package of 'g/a/1\.0\.0' \(session [0-9a-f]+, 5\.0 MiB of 15\.0 MiB stored\)\.\n$`).MatchString(out) {
		t.Fatalf("abort said %q", out)
	}
	if out := e.ok(strings.Fields(abort[1])[1:]...); out != "No upload of 'g/a/1.0.0' is in progress: nothing to abort.\n" {
		t.Fatalf("second abort said %q", out)
	}
	if js := e.okJSON(strings.Fields(abort[1])[1:]...); len(js["value"].([]any)) != 0 {
		t.Fatalf("abort -o json with nothing to abort: %v", js)
	}
	out = e.ok("version", "upload", "--gallery", "g", "--app", "a", "1.0.0", "--package", second)
	if fieldOf(t, out, "Provisioning state") != "Succeeded" || fieldOf(t, out, "Package size") != "1000 B (1000 bytes)" {
		t.Fatalf("upload after the abort:\n%s", out)
	}
	// -o json lists what was aborted: here an upload of the configuration
	// that was begun and never sent.
	b, err := c.Client.Transfer.BeginUpload(context.Background(), &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION, SizeBytes: 100, Sha256: firstSum})
	if err != nil {
		t.Fatal(err)
	}
	js := e.okJSON(strings.Fields(abort[1])[1:]...)
	if v := js["value"].([]any); len(v) != 1 || at(v, 0, "sessionId") != b.SessionId || at(v, 0, "kind") != "ARTIFACT_KIND_CONFIGURATION" || at(v, 0, "sizeBytes") != 100.0 {
		t.Fatalf("abort -o json: %v", js)
	}
	e.fails(2, "if any flags in the group [abort package] are set none of the others can be", "version", "upload", "--gallery", "g", "--app", "a", "1.0.0", "--abort", "--package", second)
}

func randomFile(t *testing.T, dir, name string, size int) (path, sum string) {
	t.Helper()
	b := make([]byte, size)
	rand.Read(b)
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return path, hex.EncodeToString(s[:])
}

// waitCommitted waits until vmappd holds at least atLeast bytes of the
// package upload of g/a/1.0.0 of the file (size, sum), asking as a client
// resuming it would.
func waitCommitted(t *testing.T, c *testcluster.Cluster, sum string, size, atLeast int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a guard: the bytes are on their way
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		b, err := c.Client.Transfer.BeginUpload(ctx, &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, SizeBytes: size, Sha256: sum})
		cancel()
		if err == nil && b.CommittedOffset >= atLeast {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes never committed (last: %v, %v)", atLeast, b, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gate is a TCP proxy to vmappd that passes the first budget bytes a
// client sends, then holds the rest back (the client blocks once its
// windows are full); replies pass freely.
type gate struct {
	lis    net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	budget int64
}

func newGate(t *testing.T, target string, budget int64) *gate {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{lis: lis, budget: budget}
	t.Cleanup(g.close)
	go func() {
		for {
			client, err := lis.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			g.mu.Lock()
			g.conns = append(g.conns, client, server)
			g.mu.Unlock()
			go io.Copy(client, server)
			go g.pass(server, client)
		}
	}()
	return g
}

func (g *gate) addr() string { return g.lis.Addr().String() }

// pass copies from client to server within the budget, then stops reading.
func (g *gate) pass(server, client net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		g.mu.Lock()
		left := g.budget
		g.mu.Unlock()
		if left <= 0 {
			return
		}
		n, err := client.Read(buf[:min(int64(len(buf)), left)])
		g.mu.Lock()
		g.budget -= int64(n)
		g.mu.Unlock()
		if _, werr := server.Write(buf[:n]); werr != nil || err != nil {
			return
		}
	}
}

func (g *gate) close() {
	g.lis.Close()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}
