package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/blob/s3"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	"github.com/vmapp/vmapp/topology"
)

const bucket = "vmapp-test"

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

func data(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(b)
	return b
}

func wantClass(t *testing.T, what string, err error, c errs.Class) {
	t.Helper()
	if !errs.Is(err, c) {
		t.Errorf("%s: got %v (class %v), want class %v", what, err, errs.ClassOf(err), c)
	}
}

func readAll(t *testing.T, st blob.Store, key string, offset, length int64) []byte {
	t.Helper()
	rc, err := st.Get(testCtx(t), key, offset, length)
	if err != nil {
		t.Fatalf("Get(%s, %d, %d): %v", key, offset, length, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%s, %d, %d): read: %v", key, offset, length, err)
	}
	return b
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

func TestPutStatGetDelete(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := testCtx(t)
	for _, size := range []int{0, 1, 1000, 5<<20 + 7, 20 << 20} { // 20 MiB goes as parallel parts
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			key := fmt.Sprintf("tenant/gallery/app/1.0.%d/package", size)
			body := data(size, uint64(size))
			meta := map[string]string{"Sha256": "abc123", "content-type": "not/a-header", "x-piece-size": "4096"}
			info, err := st.Put(ctx, key, bytes.NewReader(body), int64(size), meta)
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if info.Size != int64(size) || info.ETag == "" || info.Key != key {
				t.Errorf("Put info = %+v", info)
			}
			stat, err := st.Stat(ctx, key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			wantMeta := map[string]string{"sha256": "abc123", "content-type": "not/a-header", "x-piece-size": "4096"}
			if stat.Size != int64(size) || stat.ETag != info.ETag || stat.LastModified.IsZero() || fmt.Sprint(stat.Metadata) != fmt.Sprint(wantMeta) {
				t.Errorf("Stat = %+v, want size %d, etag %s, metadata %v", stat, size, info.ETag, wantMeta)
			}
			if got := readAll(t, st, key, 0, -1); !bytes.Equal(got, body) {
				t.Fatalf("Get whole: %d bytes, want %d", len(got), size)
			}

			if err := st.Delete(ctx, key); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if err := st.Delete(ctx, key); err != nil {
				t.Errorf("Delete of a missing object: %v", err)
			}
			_, err = st.Stat(ctx, key)
			wantClass(t, "Stat after Delete", err, errs.NotFound)
			_, err = st.Get(ctx, key, 0, -1)
			wantClass(t, "Get after Delete", err, errs.NotFound)
		})
	}
}

func TestRangedGet(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := testCtx(t)
	const size = 3<<20 + 123
	body := data(size, 7)
	if _, err := st.Put(ctx, "obj", bytes.NewReader(body), size, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "empty", bytes.NewReader(nil), 0, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key            string
		offset, length int64
		want           []byte
		class          errs.Class // when an error is wanted
	}{
		{"obj", 0, -1, body, 0},
		{"obj", 0, 1, body[:1], 0},
		{"obj", 10, 100, body[10:110], 0},
		{"obj", 1 << 20, 1 << 20, body[1<<20 : 2<<20], 0},
		{"obj", size - 5, -1, body[size-5:], 0},
		{"obj", size - 5, 100, body[size-5:], 0}, // cut short at the end
		{"obj", size - 1, 1, body[size-1:], 0},
		{"obj", size, -1, []byte{}, 0},
		{"obj", size, 10, []byte{}, 0},
		{"obj", 17, 0, []byte{}, 0},
		{"obj", size + 1, -1, nil, errs.OutOfRange},
		{"obj", size + 1, 0, nil, errs.OutOfRange},
		{"obj", -1, 10, nil, errs.InvalidArgument},
		{"obj", 0, -2, nil, errs.InvalidArgument},
		{"empty", 0, -1, []byte{}, 0},
		{"empty", 0, 10, []byte{}, 0},
		{"missing", 0, -1, nil, errs.NotFound},
		{"missing", 10, 10, nil, errs.NotFound},
		{"missing", 0, 0, nil, errs.NotFound},
	} {
		name := fmt.Sprintf("Get(%s, %d, %d)", tc.key, tc.offset, tc.length)
		rc, err := st.Get(ctx, tc.key, tc.offset, tc.length)
		if tc.want == nil {
			if err == nil {
				rc.Close()
			}
			wantClass(t, name, err, tc.class)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s = %d bytes, %v; want %d bytes", name, len(got), err, len(tc.want))
		}
	}
}

// TestParallelRangedGets reads one object as many concurrent ranges, as the
// agent does.
func TestParallelRangedGets(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := testCtx(t)
	const size, piece = 8<<20 + 5, 1 << 20
	body := data(size, 9)
	if _, err := st.Put(ctx, "obj", bytes.NewReader(body), size, nil); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, size)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for off := 0; off < size; off += piece {
		g.Go(func() error {
			rc, err := st.Get(gctx, "obj", int64(off), piece)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.ReadFull(rc, got[off:min(off+piece, size)])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Fatal("pieces do not reassemble the object")
	}
}

func TestMultipartResumeAfterCrash(t *testing.T) {
	t.Parallel()
	srv := miniotest.Start(t)
	st := storeOn(t, srv, srv.AccessKey, srv.SecretKey)
	ctx := testCtx(t)
	if err := st.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	const key = "t/g/a/1.0.0/package"
	const partSize = blob.MinPartSize
	body := data(3*partSize+1234, 3)
	part := func(n int) []byte { return body[(n-1)*partSize : min(n*partSize, len(body))] }

	id, err := st.NewMultipart(ctx, key, map[string]string{"sha256": "feed"})
	if err != nil {
		t.Fatal(err)
	}
	// Parts 1 and 3 go up in parallel before the "crash"; part 2 and 4 do not.
	uploaded := map[int]blob.Part{}
	var mu sync.Mutex
	var g errgroup.Group
	for _, n := range []int{1, 3} {
		g.Go(func() error {
			p, err := st.PutPart(ctx, key, id, n, bytes.NewReader(part(n)), int64(len(part(n))), nil)
			mu.Lock()
			uploaded[n] = p
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, key); !errs.Is(err, errs.NotFound) {
		t.Fatalf("Stat of an unfinished upload: %v, want NotFound", err)
	}

	// A new process: a new store, knowing only the key and the upload ID.
	st = storeOn(t, srv, srv.AccessKey, srv.SecretKey)
	listed, err := st.ListParts(ctx, key, id)
	if err != nil {
		t.Fatalf("ListParts: %v", err)
	}
	want := []blob.Part{uploaded[1], uploaded[3]}
	if !slices.Equal(listed, want) {
		t.Fatalf("ListParts = %+v, want %+v", listed, want)
	}
	// Re-uploading a part replaces it.
	if _, err := st.PutPart(ctx, key, id, 3, bytes.NewReader(part(3)), int64(len(part(3))), nil); err != nil {
		t.Fatal(err)
	}
	all := listed
	for _, n := range []int{4, 2} {
		p, err := st.PutPart(ctx, key, id, n, bytes.NewReader(part(n)), int64(len(part(n))), nil)
		if err != nil {
			t.Fatalf("PutPart %d: %v", n, err)
		}
		if p.Number != n || p.Size != int64(len(part(n))) || p.ETag == "" {
			t.Errorf("PutPart %d = %+v", n, p)
		}
		all = append(all, p)
	}
	info, err := st.CompleteMultipart(ctx, key, id, all) // in any order
	if err != nil {
		t.Fatalf("CompleteMultipart: %v", err)
	}
	if info.Size != int64(len(body)) || info.Metadata["sha256"] != "feed" || !strings.HasSuffix(info.ETag, "-4") {
		t.Errorf("CompleteMultipart info = %+v", info)
	}
	if got := readAll(t, st, key, 0, -1); !bytes.Equal(got, body) {
		t.Fatal("completed object differs from the parts")
	}
	// The upload is gone once completed: a repeat after a crash is NotFound.
	_, err = st.CompleteMultipart(ctx, key, id, all)
	wantClass(t, "CompleteMultipart again", err, errs.NotFound)
	_, err = st.ListParts(ctx, key, id)
	wantClass(t, "ListParts after completion", err, errs.NotFound)
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

func TestAbortMultipart(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := testCtx(t)
	id, err := st.NewMultipart(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := st.PutPart(ctx, "k", id, 1, strings.NewReader("hello"), 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AbortMultipart(ctx, "k", id); err != nil {
		t.Fatalf("AbortMultipart: %v", err)
	}
	_, err = st.ListParts(ctx, "k", id)
	wantClass(t, "ListParts after abort", err, errs.NotFound)
	_, err = st.PutPart(ctx, "k", id, 2, strings.NewReader("hello"), 5, nil)
	wantClass(t, "PutPart after abort", err, errs.NotFound)
	_, err = st.CompleteMultipart(ctx, "k", id, []blob.Part{p})
	wantClass(t, "CompleteMultipart after abort", err, errs.NotFound)
	_, err = st.Stat(ctx, "k")
	wantClass(t, "Stat after abort", err, errs.NotFound)
	// Aborting is idempotent, like Delete.
	if err := st.AbortMultipart(ctx, "k", id); err != nil {
		t.Errorf("AbortMultipart again: %v", err)
	}
	if err := st.AbortMultipart(ctx, "k", "no-such-upload"); err != nil {
		t.Errorf("AbortMultipart of an unknown upload: %v", err)
	}
}

func TestCompleteMultipartBadParts(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := testCtx(t)
	id, err := st.NewMultipart(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := st.PutPart(ctx, "k", id, 1, strings.NewReader("small"), 5, nil)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := st.PutPart(ctx, "k", id, 2, strings.NewReader("tail"), 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		parts []blob.Part
		class errs.Class
	}{
		{"no parts", nil, errs.InvalidArgument},
		{"twice", []blob.Part{p1, p1}, errs.InvalidArgument},
		{"number 0", []blob.Part{{Number: 0, ETag: p1.ETag}}, errs.InvalidArgument},
		{"no etag", []blob.Part{{Number: 1}}, errs.InvalidArgument},
		{"wrong etag", []blob.Part{{Number: 1, ETag: "0123456789abcdef0123456789abcdef"}}, errs.FailedPrecondition},
		{"not uploaded", []blob.Part{p1, {Number: 3, ETag: p2.ETag}}, errs.FailedPrecondition},
		{"non-last part under 5 MiB", []blob.Part{p1, p2}, errs.FailedPrecondition},
	} {
		_, err := st.CompleteMultipart(ctx, "k", id, tc.parts)
		wantClass(t, tc.name, err, tc.class)
	}
	// The upload survives the rejected attempts.
	if info, err := st.CompleteMultipart(ctx, "k", id, []blob.Part{p1}); err != nil || info.Size != 5 {
		t.Fatalf("CompleteMultipart with part 1 only = %+v, %v", info, err)
	}
}

func TestCopyObject(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := testCtx(t)
	body := data(6<<20, 5)
	src, err := st.Put(ctx, "src/package", bytes.NewReader(body), int64(len(body)), map[string]string{"sha256": "cafe"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.CopyObject(ctx, "replica/1/package", "src/package")
	if err != nil {
		t.Fatalf("CopyObject: %v", err)
	}
	if info.Key != "replica/1/package" || info.Size != src.Size || info.Metadata["sha256"] != "cafe" {
		t.Errorf("CopyObject info = %+v", info)
	}
	if got := readAll(t, st, "replica/1/package", 0, -1); !bytes.Equal(got, body) {
		t.Fatal("copy differs from the source")
	}
	_, err = st.CopyObject(ctx, "replica/2/package", "missing")
	wantClass(t, "CopyObject of a missing source", err, errs.NotFound)
	_, err = st.CopyObject(ctx, "src/package", "src/package")
	wantClass(t, "CopyObject onto itself", err, errs.InvalidArgument)
}

func TestPresignGet(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := testCtx(t)
	body := data(100_000, 11)
	if _, err := st.Put(ctx, "a b/pkg+1", bytes.NewReader(body), int64(len(body)), nil); err != nil {
		t.Fatal(err)
	}
	u, err := st.PresignGet(ctx, "a b/pkg+1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	get := func(rng string) (int, []byte) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, b := get(""); code != http.StatusOK || !bytes.Equal(b, body) {
		t.Errorf("GET presigned: %d, %d bytes", code, len(b))
	}
	if code, b := get("bytes=1000-1999"); code != http.StatusPartialContent || !bytes.Equal(b, body[1000:2000]) {
		t.Errorf("ranged GET presigned: %d, %d bytes", code, len(b))
	}
	// Tampering with the URL voids it.
	q := u.Query()
	q.Set("X-Amz-Expires", "604800")
	u.RawQuery = q.Encode()
	if code, _ := get(""); code != http.StatusForbidden {
		t.Errorf("GET with a changed expiry: %d, want 403", code)
	}
	for _, d := range []time.Duration{0, time.Millisecond, blob.MaxPresignAge + time.Second} {
		_, err := st.PresignGet(ctx, "a b/pkg+1", d)
		wantClass(t, fmt.Sprintf("PresignGet(%v)", d), err, errs.InvalidArgument)
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

func TestContextEnded(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := st.Stat(ctx, "k")
	wantClass(t, "Stat with a canceled context", err, errs.Canceled)
	_, err = st.Put(ctx, "k", strings.NewReader("v"), 1, nil)
	wantClass(t, "Put with a canceled context", err, errs.Canceled)

	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	_, err = st.Get(dctx, "k", 0, -1)
	wantClass(t, "Get past the deadline", err, errs.DeadlineExceeded)
}

func TestValidation(t *testing.T) {
	t.Parallel()
	st, err := s3.NewWithCredentials("http://127.0.0.1:1", bucket, "a", "b") // never contacted
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	for _, key := range []string{"", "/abs", "a//b", "trailing/", "a/./b", "../up", "a\x00b", "new\nline", strings.Repeat("k", 1025), "bad\xffutf8"} {
		_, err := st.Stat(ctx, key)
		wantClass(t, fmt.Sprintf("Stat(%q)", key), err, errs.InvalidArgument)
		_, err = st.Put(ctx, key, strings.NewReader(""), 0, nil)
		wantClass(t, fmt.Sprintf("Put(%q)", key), err, errs.InvalidArgument)
	}
	for _, meta := range []map[string]string{
		{"": "v"},
		{"under_score": "v"},
		{"sp ace": "v"},
		{"k": "caf\u00e9"},
		{"k": "new\nline"},
		{"k": " padded"},
		{"Dup": "1", "dup": "2"},
		{"k": strings.Repeat("v", blob.MaxMetadataSize)},
	} {
		_, err := st.Put(ctx, "k", strings.NewReader(""), 0, meta)
		wantClass(t, fmt.Sprintf("Put with metadata %q", meta), err, errs.InvalidArgument)
		_, err = st.NewMultipart(ctx, "k", meta)
		wantClass(t, fmt.Sprintf("NewMultipart with metadata %q", meta), err, errs.InvalidArgument)
	}
	_, err = st.Put(ctx, "k", strings.NewReader(""), -1, nil)
	wantClass(t, "Put size -1", err, errs.InvalidArgument)
	for _, n := range []int{0, -1, blob.MaxParts + 1} {
		_, err := st.PutPart(ctx, "k", "id", n, strings.NewReader("v"), 1, nil)
		wantClass(t, fmt.Sprintf("PutPart number %d", n), err, errs.InvalidArgument)
	}
	_, err = st.PutPart(ctx, "k", "", 1, strings.NewReader("v"), 1, nil)
	wantClass(t, "PutPart without an upload ID", err, errs.InvalidArgument)
	_, err = st.PutPart(ctx, "k", "id", 1, strings.NewReader("v"), blob.MaxPartSize+1, nil)
	wantClass(t, "PutPart too large", err, errs.InvalidArgument)
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
	ctx := testCtx(t)
	if err := st.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	const size = 4 << 20
	var stored []int
	deadline := time.Now().Add(time.Minute)
	for i := 0; ; {
		_, err := st.Put(ctx, fmt.Sprintf("fill/%d", i), bytes.NewReader(data(size, uint64(i))), size, nil)
		switch {
		case err == nil:
			stored = append(stored, i)
			i++
			continue
		case errs.Is(err, errs.Unavailable) && time.Now().Before(deadline):
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

// TestCopyPartAndChecksums: a multipart object rebuilt from server-side part
// copies has the source's bytes and the source's ETag (same part layout);
// a part whose declared sha256 doesn't match its bytes is refused.
func TestCopyPartAndChecksums(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	ctx := testCtx(t)
	const part = blob.MinPartSize
	src := data(2*part+1000, 7)
	id, err := st.NewMultipart(ctx, "src", nil)
	if err != nil {
		t.Fatal(err)
	}
	var parts []blob.Part
	for n, off := 1, 0; off < len(src); n, off = n+1, off+part {
		b := src[off:min(len(src), off+part)]
		sum := sha256.Sum256(b)
		p, err := st.PutPart(ctx, "src", id, n, bytes.NewReader(b), int64(len(b)), sum[:])
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	srcInfo, err := st.CompleteMultipart(ctx, "src", id, parts)
	if err != nil {
		t.Fatal(err)
	}

	id, err = st.NewMultipart(ctx, "dst", nil)
	if err != nil {
		t.Fatal(err)
	}
	var copied []blob.Part
	for i, p := range parts {
		c, err := st.CopyPart(ctx, "dst", id, p.Number, "src", int64(i*part), p.Size)
		if err != nil {
			t.Fatal(err)
		}
		if c.ETag != p.ETag || c.Size != p.Size {
			t.Fatalf("copied part %+v, source part %+v", c, p)
		}
		copied = append(copied, c)
	}
	dstInfo, err := st.CompleteMultipart(ctx, "dst", id, copied)
	if err != nil {
		t.Fatal(err)
	}
	if dstInfo.ETag != srcInfo.ETag || dstInfo.Size != srcInfo.Size {
		t.Fatalf("copy %+v, source %+v", dstInfo, srcInfo)
	}
	if !bytes.Equal(readAll(t, st, "dst", 0, -1), src) {
		t.Fatal("the copy's bytes differ")
	}
	_, err = st.CopyPart(ctx, "dst2", "no-such-upload", 1, "src", 0, 10)
	wantClass(t, "CopyPart to an unknown upload", err, errs.NotFound)
	id, _ = st.NewMultipart(ctx, "dst2", nil)
	_, err = st.CopyPart(ctx, "dst2", id, 1, "missing", 0, 10)
	wantClass(t, "CopyPart of a missing object", err, errs.NotFound)
	_, err = st.CopyPart(ctx, "dst2", id, 1, "src", 0, 0)
	wantClass(t, "CopyPart of nothing", err, errs.InvalidArgument)

	wrong := sha256.Sum256([]byte("something else"))
	_, err = st.PutPart(ctx, "dst2", id, 1, bytes.NewReader(src[:100]), 100, wrong[:])
	wantClass(t, "PutPart with a wrong sha256", err, errs.DataLoss)
}

// TestPurge: an object whose metadata rotted on disk can be neither read
// nor deleted nor written over; Purge removes it, and only it.
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
	if err := st.Purge(ctx, "a/replica-1"); err != nil {
		t.Fatalf("Purge of a missing object: %v", err)
	}
	_, err = st.Stat(ctx, "a/replica-1")
	wantClass(t, "Stat after Purge", err, errs.NotFound)
	if got := readAll(t, st, "a/replica-10", 0, -1); !bytes.Equal(got, data(1000, 1)) {
		t.Fatal("Purge took another object whose key starts with the same bytes")
	}
	if _, err := st.Put(ctx, "a/replica-1", bytes.NewReader(data(10, 2)), 10, nil); err != nil {
		t.Fatalf("Put after Purge: %v", err)
	}
	wantClass(t, "Purge of a bad key", st.Purge(ctx, "a//b"), errs.InvalidArgument)
}
