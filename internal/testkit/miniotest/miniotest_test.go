package miniotest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/vmapp/vmapp/internal/testkit/miniotest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, c *minio.Client, bucket, key string, data []byte) {
	t.Helper()
	if _, err := c.PutObject(ctxT(t), bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

func get(t *testing.T, c *minio.Client, bucket, key string) ([]byte, error) {
	t.Helper()
	o, err := c.GetObject(ctxT(t), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	return io.ReadAll(o)
}

func TestTwoServers(t *testing.T) {
	t.Parallel()
	a, b := miniotest.Start(t), miniotest.Start(t)
	if a.Endpoint() == b.Endpoint() {
		t.Fatalf("both servers on %s", a.Endpoint())
	}
	if !strings.HasPrefix(a.Endpoint(), "http://127.0.0.1:") || a.Endpoint() != "http://"+a.Addr() {
		t.Errorf("Endpoint() = %q, Addr() = %q", a.Endpoint(), a.Addr())
	}
	if a.AccessKey == b.AccessKey || a.SecretKey == b.SecretKey || a.DataDir == b.DataDir {
		t.Errorf("servers share credentials or data: %+v %+v", a, b)
	}
	a.MakeBucket(t, "east")
	b.MakeBucket(t, "west")

	want := []byte("hello from east")
	put(t, a.Client(t), "east", "app/1.0.0/package", want)
	got, err := get(t, a.Client(t), "east", "app/1.0.0/package")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("get from a = %q, %v; want %q", got, err, want)
	}
	// The other server is another store: it has neither the bucket nor
	// the object, and does not take the first one's keys.
	if _, err := get(t, b.Client(t), "east", "app/1.0.0/package"); minio.ToErrorResponse(err).Code != "NoSuchBucket" {
		t.Errorf("get from b: %v, want NoSuchBucket", err)
	}
	wrong, err := minio.New(b.Addr(), &minio.Options{Creds: credentials.NewStaticV4(a.AccessKey, a.SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.ListBuckets(ctxT(t)); minio.ToErrorResponse(err).Code != "InvalidAccessKeyId" {
		t.Errorf("b with a's keys: %v, want InvalidAccessKeyId", err)
	}
}

func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	s := miniotest.Start(t)
	s.MakeBucket(t, "data")
	addr := s.Endpoint()
	put(t, s.Client(t), "data", "graceful", []byte("one"))

	s.Restart(t) // SIGTERM, start again
	if s.Endpoint() != addr || !s.Running() {
		t.Fatalf("after Restart: endpoint %s (was %s), running %v", s.Endpoint(), addr, s.Running())
	}
	if got, err := get(t, s.Client(t), "data", "graceful"); err != nil || string(got) != "one" {
		t.Fatalf("after Restart: %q, %v", got, err)
	}

	put(t, s.Client(t), "data", "crash", []byte("two"))
	s.Kill(t)
	s.Restart(t) // from a crash
	for key, want := range map[string]string{"graceful": "one", "crash": "two"} {
		if got, err := get(t, s.Client(t), "data", key); err != nil || string(got) != want {
			t.Errorf("after Kill and Restart: %s = %q, %v; want %q", key, got, err, want)
		}
	}
}

func TestKillRefusesConnections(t *testing.T) {
	t.Parallel()
	s := miniotest.Start(t)
	s.Kill(t)
	if s.Running() {
		t.Fatal("Running() after Kill")
	}
	_, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s after Kill: %v, want connection refused", s.Addr(), err)
	}
	_, err = s.Client(t).ListBuckets(ctxT(t))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("ListBuckets after Kill: %v, want connection refused", err)
	}
	s.Kill(t) // a second Kill, and Stop, do nothing
	s.Stop(t)
}

func TestStop(t *testing.T) {
	t.Parallel()
	s := miniotest.Start(t, miniotest.WithCredentials("tester", "tester-secret"))
	if s.AccessKey != "tester" || s.SecretKey != "tester-secret" {
		t.Fatalf("credentials %q %q", s.AccessKey, s.SecretKey)
	}
	s.MakeBucket(t, "bkt")
	s.Stop(t)
	if s.Running() {
		t.Fatal("Running() after Stop")
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial after Stop: %v, want connection refused", err)
	}
	// A new server on the old one's data directory sees its buckets.
	s2 := miniotest.Start(t, miniotest.WithDataDir(s.DataDir), miniotest.WithCredentials("tester", "tester-secret"))
	if ok, err := s2.Client(t).BucketExists(ctxT(t), "bkt"); err != nil || !ok {
		t.Fatalf("bucket on the reused data dir: %v, %v", ok, err)
	}
	if _, err := os.Stat(s2.LogPath()); err != nil {
		t.Errorf("log file: %v", err)
	}
}

func TestToolsDir(t *testing.T) {
	t.Setenv("VMAPP_TOOLS_DIR", "")
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if d, _ := miniotest.ToolsDir(); d != "/x/cache/vmapp/bin" {
		t.Errorf("with XDG_CACHE_HOME: %s", d)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/x/home")
	if d, _ := miniotest.ToolsDir(); d != "/x/home/.cache/vmapp/bin" {
		t.Errorf("with HOME: %s", d)
	}
	t.Setenv("VMAPP_TOOLS_DIR", "/x/tools")
	if d, _ := miniotest.ToolsDir(); d != "/x/tools" {
		t.Errorf("with VMAPP_TOOLS_DIR: %s", d)
	}
}

// TestBinaryStamp checks that a binary with the right stamp is used as is,
// and that a binary of the right version without a stamp (as a manual
// `go install` leaves it) is adopted without a rebuild.
func TestBinaryStamp(t *testing.T) {
	real, ok := miniotest.Installed()
	if !ok {
		t.Skip("MinIO is not installed")
	}

	dir := t.TempDir()
	t.Setenv("VMAPP_TOOLS_DIR", dir)
	fake := filepath.Join(dir, "minio")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "minio.version"), []byte(miniotest.Version+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := miniotest.Binary(); err != nil || got != fake {
		t.Fatalf("Binary() with a matching stamp = %q, %v; want %q", got, err, fake)
	}

	dir = t.TempDir()
	t.Setenv("VMAPP_TOOLS_DIR", dir)
	if err := os.Link(real, filepath.Join(dir, "minio")); err != nil {
		t.Skipf("cannot link the real binary into a temporary directory: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "minio.version"), []byte("v0.0.0-old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := miniotest.Binary()
	if err != nil || got != filepath.Join(dir, "minio") {
		t.Fatalf("Binary() adopting a stamped-old but current binary = %q, %v", got, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "minio.version")); strings.TrimSpace(string(b)) != miniotest.Version {
		t.Errorf("stamp after adopting: %q", b)
	}
}
