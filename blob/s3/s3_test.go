package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/blob/blobtest"
	"github.com/vmapp/vmapp/blob/s3"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	"github.com/vmapp/vmapp/topology"
)

const bucket = "vmapp-test"

var (
	data      = blobtest.Data
	wantClass = blobtest.WantClass
	readAll   = blobtest.ReadAll
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newStore starts a MinIO server and returns a store on it with its bucket
// made.
func newStore(t *testing.T) (*s3.Store, *miniotest.Server) {
	t.Helper()
	srv := miniotest.Start(t)
	st := storeOn(t, srv, srv.AccessKey, srv.SecretKey)
	if err := st.EnsureBucket(testCtx(t)); err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	return st, srv
}

func storeOn(t *testing.T, srv *miniotest.Server, accessKey, secretKey string) *s3.Store {
	t.Helper()
	st, err := s3.NewWithCredentials(srv.Endpoint(), bucket, accessKey, secretKey)
	if err != nil {
		t.Fatalf("NewWithCredentials: %v", err)
	}
	return st
}

// TestConformance runs the blob.Store conformance suite on one MinIO
// server, a bucket per store: on the S3 store, and on it wrapped in
// blobtest.Faulty with no faults set.
func TestConformance(t *testing.T) {
	srv := miniotest.Start(t)
	newStore := blobtest.Buckets(srv, "conformance")
	t.Run("s3", func(t *testing.T) {
		blobtest.Run(t, func(t *testing.T) blob.Store { return newStore(t) })
	})
	t.Run("faulty without faults", func(t *testing.T) {
		blobtest.Run(t, func(t *testing.T) blob.Store { return blobtest.NewFaulty(newStore(t)) })
	})
}

func TestNewFromTopology(t *testing.T) {
	srv := miniotest.Start(t)
	ep := topology.Endpoint{URL: srv.Endpoint(), Bucket: "vmapp-eastus", CredentialsEnv: "VMAPP_S3TEST"}

	t.Setenv("VMAPP_S3TEST_ACCESS_KEY", "")
	t.Setenv("VMAPP_S3TEST_SECRET_KEY", "")
	_, err := s3.New(testCtx(t), ep)
	wantClass(t, "New without credentials", err, errs.FailedPrecondition)

	t.Setenv("VMAPP_S3TEST_ACCESS_KEY", srv.AccessKey)
	t.Setenv("VMAPP_S3TEST_SECRET_KEY", srv.SecretKey)
	st, err := s3.New(testCtx(t), ep)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if want := srv.Endpoint() + "/vmapp-eastus"; st.Endpoint() != want {
		t.Errorf("Endpoint() = %q, want %q", st.Endpoint(), want)
	}
	for i := range 2 { // idempotent
		if err := st.EnsureBucket(testCtx(t)); err != nil {
			t.Fatalf("EnsureBucket #%d: %v", i, err)
		}
	}
	if ok, err := srv.Client(t).BucketExists(testCtx(t), "vmapp-eastus"); err != nil || !ok {
		t.Fatalf("bucket after EnsureBucket: %v %v", ok, err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, bucket, ak, sk string }{
		{"127.0.0.1:9000", bucket, "a", "b"},
		{"ftp://127.0.0.1:9000", bucket, "a", "b"},
		{"http://127.0.0.1:9000/path", bucket, "a", "b"},
		{"http://", bucket, "a", "b"},
		{"http://127.0.0.1:9000", "Bad_Bucket", "a", "b"},
		{"http://127.0.0.1:9000", "ab", "a", "b"},
		{"http://127.0.0.1:9000", bucket, "", "b"},
		{"http://127.0.0.1:9000", bucket, "a", ""},
	} {
		_, err := s3.NewWithCredentials(tc.url, tc.bucket, tc.ak, tc.sk)
		wantClass(t, fmt.Sprintf("NewWithCredentials(%q, %q)", tc.url, tc.bucket), err, errs.InvalidArgument)
	}
}

func TestEnsureBucketConcurrent(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	var g errgroup.Group
	for range 8 {
		g.Go(func() error { return storeOn(t, srv, srv.AccessKey, srv.SecretKey).EnsureBucket(testCtx(t)) })
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("concurrent EnsureBucket: %v", err)
	}
}

func TestListPartsPages(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := testCtx(t)
	id, err := st.NewMultipart(ctx, "many", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.AbortMultipart(ctx, "many", id)
	const n = 1003 // more than one page of 1000
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := 1; i <= n; i++ {
		g.Go(func() error {
			_, err := st.PutPart(gctx, "many", id, i, strings.NewReader("x"), 1, nil)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	parts, err := st.ListParts(ctx, "many", id)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != n || parts[0].Number != 1 || parts[n-1].Number != n {
		t.Fatalf("ListParts: %d parts, want %d in order", len(parts), n)
	}
}

func TestPermissionDenied(t *testing.T) {
	t.Parallel()
	good, srv := newStore(t)
	ctx := testCtx(t)
	if _, err := good.Put(ctx, "k", strings.NewReader("v"), 1, nil); err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]*s3.Store{
		"wrong secret":      storeOn(t, srv, srv.AccessKey, "not-the-secret"),
		"unknown key":       storeOn(t, srv, "nobody", srv.SecretKey),
		"both keys of none": storeOn(t, srv, "nobody", "nothing-at-all"),
	} {
		t.Run(name, func(t *testing.T) {
			calls := map[string]error{}
			calls["EnsureBucket"] = st.EnsureBucket(ctx)
			_, calls["Stat"] = st.Stat(ctx, "k")
			_, calls["Get"] = st.Get(ctx, "k", 0, -1)
			_, calls["Put"] = st.Put(ctx, "k2", strings.NewReader("v"), 1, nil)
			calls["Delete"] = st.Delete(ctx, "k")
			_, calls["NewMultipart"] = st.NewMultipart(ctx, "k3", nil)
			_, calls["CopyObject"] = st.CopyObject(ctx, "k4", "k")
			for call, err := range calls {
				wantClass(t, call, err, errs.PermissionDenied)
			}
		})
	}
	if _, err := good.Stat(ctx, "k"); err != nil {
		t.Errorf("object after refused calls: %v", err)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	st, srv := newStore(t)
	ctx := testCtx(t)
	big := data(32<<20, 13)
	if _, err := st.Put(ctx, "big", bytes.NewReader(big), int64(len(big)), nil); err != nil {
		t.Fatal(err)
	}
	id, err := st.NewMultipart(ctx, "mp", nil)
	if err != nil {
		t.Fatal(err)
	}

	// A read in progress when the server dies fails as Unavailable.
	rc, err := st.Get(ctx, "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	wantClass(t, "read after Kill", err, errs.Unavailable)

	_, err = st.Stat(ctx, "big") // with the default retries
	wantClass(t, "Stat after Kill", err, errs.Unavailable)
	st, err = s3.NewWithCredentials(srv.Endpoint(), bucket, srv.AccessKey, srv.SecretKey, s3.WithMaxAttempts(1))
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]error{}
	calls["EnsureBucket"] = st.EnsureBucket(ctx)
	_, calls["Stat"] = st.Stat(ctx, "big")
	_, calls["Get"] = st.Get(ctx, "big", 0, 10)
	_, calls["Put"] = st.Put(ctx, "k", strings.NewReader("v"), 1, nil)
	calls["Delete"] = st.Delete(ctx, "big")
	_, calls["CopyObject"] = st.CopyObject(ctx, "k", "big")
	_, calls["NewMultipart"] = st.NewMultipart(ctx, "k", nil)
	_, calls["PutPart"] = st.PutPart(ctx, "mp", id, 1, strings.NewReader("v"), 1, nil)
	_, calls["ListParts"] = st.ListParts(ctx, "mp", id)
	_, calls["CompleteMultipart"] = st.CompleteMultipart(ctx, "mp", id, []blob.Part{{Number: 1, ETag: "x"}})
	calls["AbortMultipart"] = st.AbortMultipart(ctx, "mp", id)
	for call, err := range calls {
		wantClass(t, call+" after Kill", err, errs.Unavailable)
	}
	// Presigning needs no server.
	if _, err := st.PresignGet(ctx, "big", time.Minute); err != nil {
		t.Errorf("PresignGet with the server down: %v", err)
	}

	// The same store works again once the server is back.
	srv.Restart(t)
	if got := readAll(t, st, "big", 1<<20, 100); !bytes.Equal(got, big[1<<20:1<<20+100]) {
		t.Error("read after Restart differs")
	}
	if _, err := st.PutPart(ctx, "mp", id, 1, strings.NewReader("v"), 1, nil); err != nil {
		t.Errorf("PutPart after Restart: %v", err)
	}
}

func TestMissingBucket(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	st := storeOn(t, srv, srv.AccessKey, srv.SecretKey) // no EnsureBucket
	ctx := testCtx(t)
	_, err := st.Stat(ctx, "k")
	wantClass(t, "Stat", err, errs.FailedPrecondition)
	_, err = st.Put(ctx, "k", strings.NewReader("v"), 1, nil)
	wantClass(t, "Put", err, errs.FailedPrecondition)
	_, err = st.NewMultipart(ctx, "k", nil)
	wantClass(t, "NewMultipart", err, errs.FailedPrecondition)
	if err := st.Delete(ctx, "k"); err != nil {
		t.Errorf("Delete in a missing bucket: %v", err)
	}
}

// TestStorageFull fills a server's small disk: writes that do not fit fail
// as ResourceExhausted, and what was stored before stays readable and
// deletable.
//
// MinIO checks free space against drive information it refreshes only now
// and then, so the write that actually runs out of space fails with
// InternalError ("no space left on device"), also ResourceExhausted, and
// the next writes get XMinioStorageFull.
func TestStorageFull(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t, miniotest.WithDiskSize(64<<20))
	st := storeOn(t, srv, srv.AccessKey, srv.SecretKey)
	// Hang guard only: a loaded machine may take minutes to fill a disk.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := st.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20
	var stored []int
	// MinIO may say it is busy (Unavailable) while it finds its disk full:
	// a bounded number of such answers, counted, not timed.
	busy := 0
	for i := 0; ; {
		_, err := st.Put(ctx, fmt.Sprintf("fill/%d", i), bytes.NewReader(data(size, uint64(i))), size, nil)
		switch {
		case err == nil:
			stored = append(stored, i)
			i++
			continue
		case errs.Is(err, errs.Unavailable) && busy < 240:
			busy++
			time.Sleep(250 * time.Millisecond)
			continue
		}
		wantClass(t, "Put on a full disk", err, errs.ResourceExhausted)
		break
	}
	if len(stored) == 0 || len(stored) > 16 {
		t.Fatalf("%d objects of %d bytes fitted on a 64 MiB disk", len(stored), size)
	}

	id, err := st.NewMultipart(ctx, "mp", nil)
	if err == nil {
		_, err = st.PutPart(ctx, "mp", id, 1, bytes.NewReader(data(size, 99)), size, nil)
	}
	wantClass(t, "multipart upload on a full disk", err, errs.ResourceExhausted)

	for _, i := range stored {
		if got := readAll(t, st, fmt.Sprintf("fill/%d", i), 0, -1); !bytes.Equal(got, data(size, uint64(i))) {
			t.Fatalf("fill/%d changed when the disk filled", i)
		}
	}
	for _, i := range stored[:3] {
		if err := st.Delete(ctx, fmt.Sprintf("fill/%d", i)); err != nil {
			t.Fatalf("Delete on a full disk: %v", err)
		}
		_, err := st.Stat(ctx, fmt.Sprintf("fill/%d", i))
		wantClass(t, "Stat after Delete on a full disk", err, errs.NotFound)
	}
	// (MinIO moves deleted objects to its trash and frees the space later,
	// so a write right after the deletes may still find the disk full.)
}

// TestPurge: an object whose metadata rotted on disk can be neither read
// nor deleted nor written over; Purge removes it, and only it. (The
// conformance suite checks Purge on sound objects.)
func TestPurge(t *testing.T) {
	t.Parallel()
	st, srv := newStore(t)
	ctx := testCtx(t)
	for _, k := range []string{"a/replica-1", "a/replica-10"} {
		if _, err := st.Put(ctx, k, bytes.NewReader(data(1000, 1)), 1000, nil); err != nil {
			t.Fatal(err)
		}
	}
	if srv.Rot(t, bucket, "a/replica-1", "xl.meta", 40) != 1 {
		t.Fatal("no xl.meta")
	}
	_, err := st.Stat(ctx, "a/replica-1")
	wantClass(t, "Stat of rotted metadata", err, errs.Unavailable)
	wantClass(t, "Delete of rotted metadata", st.Delete(ctx, "a/replica-1"), errs.Unavailable)
	if err := st.Purge(ctx, "a/replica-1"); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	_, err = st.Stat(ctx, "a/replica-1")
	wantClass(t, "Stat after Purge", err, errs.NotFound)
	if got := readAll(t, st, "a/replica-10", 0, -1); !bytes.Equal(got, data(1000, 1)) {
		t.Fatal("Purge took another object whose key starts with the same bytes")
	}
	if _, err := st.Put(ctx, "a/replica-1", bytes.NewReader(data(10, 2)), 10, nil); err != nil {
		t.Fatalf("Put after Purge: %v", err)
	}
}
