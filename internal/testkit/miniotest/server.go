// Package miniotest gives tests real MinIO server processes: the pinned
// MinIO binary (see Binary) started on free loopback ports with a fresh data
// directory and random root credentials, stopped when the test ends. It is
// never a fake S3: tests that need a region's store start one Server per
// region or storage endpoint.
//
//	srv := miniotest.Start(t)
//	srv.MakeBucket(t, "vmapp-eastus")
//	c := srv.Client(t) // a *minio.Client with the root credentials
//	srv.Kill(t)        // the store goes away: connection refused
//	srv.Restart(t)     // and comes back on the same port with the same data
//
// The server's output goes to a log file in the test's temporary directory;
// its tail is printed with t.Log when the test fails.
package miniotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	// readyTimeout bounds how long one start may take to answer its health
	// checks.
	readyTimeout = 60 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 30 * time.Second
	// startAttempts is how many fresh port pairs Start tries when MinIO exits
	// before it is ready (another process took a port between the probe and
	// the bind).
	startAttempts = 5
	// restartFor is how long Restart keeps retrying the same port.
	restartFor   = 15 * time.Second
	logTailBytes = 8 << 10
)

// Option configures Start.
type Option func(*config)

type config struct {
	accessKey, secretKey string
	dataDir              string
	env                  []string
	diskSize             int64
}

// WithCredentials sets the root access key and secret key instead of random
// ones. MinIO wants an access key of at least 3 and a secret key of at least
// 8 characters.
func WithCredentials(accessKey, secretKey string) Option {
	return func(c *config) { c.accessKey, c.secretKey = accessKey, secretKey }
}

// WithDataDir serves dir instead of a fresh directory in t.TempDir(), e.g. to
// start a second server generation on data a previous one left.
func WithDataDir(dir string) Option {
	return func(c *config) { c.dataDir = dir }
}

// WithEnv adds KEY=value settings to the server's environment (MinIO reads
// most of its configuration from MINIO_* variables).
func WithEnv(kv ...string) Option {
	return func(c *config) { c.env = append(c.env, kv...) }
}

// WithDiskSize gives the server a data directory of only size bytes, so a
// test can fill its disk: a tmpfs mounted on DataDir in a user and mount
// namespace private to the server process (made with util-linux unshare).
// The data lives only as long as the process: after Stop, Kill or Restart
// the store is empty. Where the system does not allow unprivileged
// namespaces, the test is skipped.
func WithDiskSize(size int64) Option {
	return func(c *config) { c.diskSize = size }
}

// Server is one running (or stopped) MinIO server process.
type Server struct {
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// DataDir is the directory the server stores objects in.
	DataDir string

	bin         string
	addr        string // 127.0.0.1:port, fixed after the first start
	consoleAddr string
	certsDir    string
	logPath     string
	env         []string
	diskSize    int64

	mu   sync.Mutex
	proc *process // nil when not running
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, set before done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// errExited marks a start that failed because the process exited before it
// was ready: usually a port another process took first.
var errExited = errors.New("minio exited before it was ready")

// Start starts a MinIO server on free loopback ports and waits until it is
// ready. It stops the server (SIGKILL) when the test ends and prints the
// tail of its log if the test failed.
//
// The first use on a machine installs MinIO (about five minutes); with
// -short the test is skipped instead (run `make minio` to install it).
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	if _, ok := Installed(); !ok && testing.Short() {
		t.Skipf("miniotest: MinIO %s is not installed and -short is set; run `make minio`", Version)
	}
	bin, err := Binary()
	if err != nil {
		t.Fatalf("miniotest: %v", err)
	}
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.diskSize > 0 {
		if err := canUnshare(); err != nil {
			t.Skipf("miniotest: WithDiskSize needs unprivileged user and mount namespaces: %v", err)
		}
	}
	work := t.TempDir()
	s := &Server{
		AccessKey: cfg.accessKey,
		SecretKey: cfg.secretKey,
		DataDir:   cfg.dataDir,
		bin:       bin,
		certsDir:  filepath.Join(work, "certs"),
		logPath:   filepath.Join(work, "minio.log"),
		env:       cfg.env,
		diskSize:  cfg.diskSize,
	}
	if s.AccessKey == "" {
		s.AccessKey = "vmapp" + randomString(15)
	}
	if s.SecretKey == "" {
		s.SecretKey = randomString(40)
	}
	if s.DataDir == "" {
		s.DataDir = filepath.Join(work, "data")
	}
	for _, d := range []string{s.DataDir, s.certsDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatalf("miniotest: %v", err)
		}
	}
	t.Cleanup(func() {
		s.mu.Lock()
		p := s.proc
		s.mu.Unlock()
		if p != nil && p.exited() {
			t.Logf("miniotest: MinIO on %s exited on its own during the test: %v", s.addr, p.err)
		}
		s.kill()
		if t.Failed() {
			t.Logf("miniotest: tail of %s:\n%s", s.logPath, s.LogTail())
		}
	})

	for attempt := 1; ; attempt++ {
		s.addr, s.consoleAddr, err = freePorts()
		if err != nil {
			t.Fatalf("miniotest: %v", err)
		}
		err = s.launch()
		if err == nil {
			return s
		}
		if !errors.Is(err, errExited) || attempt == startAttempts {
			t.Fatalf("miniotest: start MinIO on %s (attempt %d): %v", s.addr, attempt, err) // the cleanup prints the log
		}
	}
}

// Endpoint is the server's URL, http://127.0.0.1:port.
func (s *Server) Endpoint() string { return "http://" + s.addr }

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// LogPath is the file the server's output goes to.
func (s *Server) LogPath() string { return s.logPath }

// Pid is the server process's id (0 when it isn't running): what the
// bench reads the store's CPU time by.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Client returns a minio-go client for the server with the root credentials.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.addr, &minio.Options{
		Creds:      credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:     "us-east-1",
		MaxRetries: 3, // attempts: a killed server fails fast
	})
	if err != nil {
		t.Fatalf("miniotest: client for %s: %v", s.addr, err)
	}
	return c
}

// MakeBucket creates a bucket on the server.
func (s *Server) MakeBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("miniotest: make bucket %s on %s: %v", name, s.addr, err)
	}
}

// Rot flips 8 bytes of the object key's files on disk whose names start
// with file — "part." for its data, "xl.meta" for its metadata (which holds
// the data too, for small objects) — as bit rot would: at offset off, or off
// from the end when negative. MinIO keeps an object under
// DataDir/bucket/key/: xl.meta, and part.N in a data directory. It returns
// how many files it changed.
func (s *Server) Rot(t testing.TB, bucket, key, file string, off int64) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(s.DataDir, bucket, filepath.FromSlash(key)), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), file) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		at := off
		if at < 0 {
			at += int64(len(b))
		}
		if at < 0 || at+8 > int64(len(b)) {
			return fmt.Errorf("%s has %d bytes: no 8 at %d", p, len(b), at)
		}
		for i := range int64(8) {
			b[at+i] ^= 0xa5
		}
		n++
		return os.WriteFile(p, b, 0o644)
	})
	if err != nil {
		t.Fatalf("miniotest: rot %s/%s on %s: %v", bucket, key, s.addr, err)
	}
	return n
}

// Stop stops the server gracefully (SIGTERM, then SIGKILL after 30s) and
// waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	if p == nil {
		return
	}
	s.proc = nil
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.exited() {
		t.Logf("miniotest: SIGTERM MinIO on %s: %v", s.addr, err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		t.Logf("miniotest: MinIO on %s did not stop within %v of SIGTERM; killing it", s.addr, stopTimeout)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Kill kills the server (SIGKILL), as a crash or power loss would, and waits
// for it to exit. Killing a stopped server does nothing.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.kill()
}

func (s *Server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.proc; p != nil {
		s.proc = nil
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Restart stops the server if it is running and starts it again on the same
// port and data directory, waiting until it is ready.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	deadline := time.Now().Add(restartFor)
	for {
		err := s.launch()
		if err == nil {
			return
		}
		// The port may be held for a moment by a socket of the old process,
		// or by another process that took it while this one was down.
		if !errors.Is(err, errExited) || time.Now().After(deadline) {
			t.Fatalf("miniotest: restart MinIO on %s: %v", s.addr, err) // the cleanup prints the log
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// launch starts the process on s.addr and waits until it is ready. On
// failure the process is gone and s.proc is nil.
func (s *Server) launch() error {
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== miniotest %s: minio server %s --address %s\n", time.Now().Format(time.RFC3339Nano), s.DataDir, s.addr)
	args := []string{s.bin, "server", s.DataDir,
		"--address", s.addr,
		"--console-address", s.consoleAddr,
		"--certs-dir", s.certsDir,
		"--quiet"}
	if s.diskSize > 0 {
		// unshare and sh exec in turn, so the server keeps the process ID
		// (and the parent-death signal) of the command started here.
		args = append([]string{unshareBin, "--user", "--map-root-user", "--mount",
			"sh", "-c", `mount -t tmpfs -o size="$1" miniotest "$2" && shift 2 && exec "$@"`,
			"miniotest", strconv.FormatInt(s.diskSize, 10), s.DataDir}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(withoutMinioEnv(os.Environ()),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Env = append(cmd.Env, s.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logf.Close() // the child has its own descriptor
	if err != nil {
		return fmt.Errorf("exec %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()

	if err := s.waitReady(p); err != nil {
		s.kill()
		return err
	}
	return nil
}

// waitReady polls the liveness and readiness endpoints until both answer
// 200 and an authenticated request with the root credentials succeeds (MinIO
// reports ready before its IAM subsystem is up). The authenticated request
// also shows that the server answering is this process, not another one that
// holds the port.
func (s *Server) waitReady(p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	go func() { // a probe in flight ends when the process does
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	probe := func(path string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint()+path, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return nil
	}
	c, err := minio.New(s.addr, &minio.Options{
		Creds:      credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:     "us-east-1",
		Transport:  tr,
		MaxRetries: 1,
	})
	if err != nil {
		return err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("%w: %v", errExited, p.err)
		}
		last = probe("/minio/health/live")
		if last == nil {
			last = probe("/minio/health/ready")
		}
		if last == nil {
			_, last = c.ListBuckets(ctx)
			switch minio.ToErrorResponse(last).Code {
			case "":
				if last == nil {
					return nil
				}
			case "InvalidAccessKeyId", "SignatureDoesNotMatch":
				if p.exited() {
					return fmt.Errorf("%w: %v", errExited, p.err)
				}
				return fmt.Errorf("%w: another server answers on %s", errExited, s.addr)
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%w: %v", errExited, p.err)
		case <-ctx.Done():
			if p.exited() {
				return fmt.Errorf("%w: %v", errExited, p.err)
			}
			return fmt.Errorf("not ready after %v: %v", readyTimeout, last)
		case <-tick.C:
		}
	}
}

const unshareBin = "unshare"

var unshareCheck = sync.OnceValue(func() error {
	out, err := exec.Command(unshareBin, "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs -o size=1m miniotest /tmp").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
	}
	return nil
})

// canUnshare reports whether a tmpfs can be mounted in a private user and
// mount namespace here.
func canUnshare() error { return unshareCheck() }

// LogTail returns the last few kilobytes of the server's log.
func (s *Server) LogTail() string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := max(fi.Size()-logTailBytes, 0)
	b := make([]byte, fi.Size()-off)
	n, _ := f.ReadAt(b, off)
	return string(b[:n])
}

// freePorts returns two distinct free loopback addresses. Both listeners are
// held open together so the kernel hands out two different ports; they are
// closed before MinIO binds them, and Start retries with a new pair if
// another process takes one in between.
func freePorts() (addr, console string, err error) {
	a, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", fmt.Errorf("find a free port: %w", err)
	}
	defer a.Close()
	b, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", fmt.Errorf("find a free port: %w", err)
	}
	defer b.Close()
	return a.Addr().String(), b.Addr().String(), nil
}

// withoutMinioEnv drops the caller's MINIO_* settings so that a developer's
// own MinIO configuration does not leak into the test server.
func withoutMinioEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MINIO_") {
			out = append(out, kv)
		}
	}
	return out
}

func randomString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
