// Package blobtest is for tests of blob.Store implementations and of their
// users: Run checks that a store keeps the contract vmapp relies on, and
// Faulty wraps a store to make chosen calls fail, read short, corrupt or
// stall.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
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
	"github.com/vmapp/vmapp/errs"
)

// Run checks every method of the stores newStore makes against the
// contract of package blob, as the ingest service, the replicator and the
// download path rely on it. newStore returns a store on an empty bucket of
// its own, EnsureBucket done; it is called once or twice per subtest, and
// the subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) blob.Store) {
	for _, c := range []struct {
		name string
		fn   func(t *testing.T, newStore func(t *testing.T) blob.Store)
	}{
		{"EnsureBucket", testEnsureBucket},
		{"PutStatGetDelete", testPutStatGetDelete},
		{"Get ranges", testGetRanges},
		{"parallel ranged Gets", testParallelGets},
		{"multipart upload resumed", testMultipartResume},
		{"multipart ETags", testMultipartETags},
		{"PutPart checks the sha256", testPutPartSHA256},
		{"PutPartCRC32C checks the CRC32C", testPutPartCRC32C},
		{"AbortMultipart", testAbort},
		{"CompleteMultipart refusals", testCompleteRefusals},
		{"CopyObject", testCopyObject},
		{"CopyPart refusals", testCopyPartRefusals},
		{"PresignGet", testPresignGet},
		{"Purge", testPurge},
		{"bad keys and metadata", testValidation},
		{"ended contexts", testContextEnded},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newStore)
		})
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Data returns n pseudo-random bytes, the same for the same seed.
func Data(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}).Read(b)
	return b
}

// WantClass fails the test unless err is of class c.
func WantClass(t testing.TB, what string, err error, c errs.Class) {
	t.Helper()
	if !errs.Is(err, c) {
		t.Errorf("%s: got %v (class %v), want class %v", what, err, errs.ClassOf(err), c)
	}
}

// ReadAll reads length bytes of key from offset, failing the test on an
// error.
func ReadAll(t testing.TB, st blob.Store, key string, offset, length int64) []byte {
	t.Helper()
	rc, err := st.Get(context.Background(), key, offset, length)
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

// must(f()).ok(t) is what f returned, the test failed if f failed.
func must[T any](v T, err error) result[T] { return result[T]{v, err} }

type result[T any] struct {
	v   T
	err error
}

func (r result[T]) ok(t *testing.T) T {
	t.Helper()
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.v
}

func testEnsureBucket(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	for i := range 2 {
		if err := st.EnsureBucket(testCtx(t)); err != nil {
			t.Fatalf("EnsureBucket on a made bucket, #%d: %v", i, err)
		}
	}
}

func testPutStatGetDelete(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	for _, size := range []int{0, 1, 1000, blob.MinPartSize + 7, 20 << 20} {
		key := fmt.Sprintf("tenant/gallery/app/1.0.%d/package", size)
		body := Data(size, uint64(size))
		meta := map[string]string{"Sha256": "abc123", "content-type": "not/a-header", "x-piece-size": "4096"}
		info, err := st.Put(ctx, key, bytes.NewReader(body), int64(size), meta)
		if err != nil {
			t.Fatalf("Put %d bytes: %v", size, err)
		}
		if info.Size != int64(size) || info.ETag == "" || info.Key != key {
			t.Errorf("Put info = %+v", info)
		}
		stat := must(st.Stat(ctx, key)).ok(t)
		// Keys come back in lower case, whatever case they were given in.
		wantMeta := map[string]string{"sha256": "abc123", "content-type": "not/a-header", "x-piece-size": "4096"}
		if stat.Size != int64(size) || stat.ETag != info.ETag || stat.LastModified.IsZero() || fmt.Sprint(stat.Metadata) != fmt.Sprint(wantMeta) {
			t.Errorf("Stat = %+v, want size %d, etag %s, metadata %v", stat, size, info.ETag, wantMeta)
		}
		if got := ReadAll(t, st, key, 0, -1); !bytes.Equal(got, body) {
			t.Fatalf("Get of %d bytes: %d bytes back, or others", size, len(got))
		}
		if err := st.Delete(ctx, key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := st.Delete(ctx, key); err != nil {
			t.Errorf("Delete of a missing object: %v", err)
		}
		_, err = st.Stat(ctx, key)
		WantClass(t, "Stat after Delete", err, errs.NotFound)
		_, err = st.Get(ctx, key, 0, -1)
		WantClass(t, "Get after Delete", err, errs.NotFound)
	}
	// Put replaces.
	must(st.Put(ctx, "k", strings.NewReader("one"), 3, map[string]string{"a": "1"})).ok(t)
	must(st.Put(ctx, "k", strings.NewReader("second"), 6, nil)).ok(t)
	if info := must(st.Stat(ctx, "k")).ok(t); info.Size != 6 || len(info.Metadata) != 0 || string(ReadAll(t, st, "k", 0, -1)) != "second" {
		t.Errorf("after a second Put: %+v", info)
	}
}

func testGetRanges(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	const size = 3<<20 + 123
	body := Data(size, 7)
	must(st.Put(ctx, "obj", bytes.NewReader(body), size, nil)).ok(t)
	must(st.Put(ctx, "empty", bytes.NewReader(nil), 0, nil)).ok(t)
	for _, c := range []struct {
		key            string
		offset, length int64
		want           []byte
		class          errs.Class // when an error is wanted (want nil)
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
		name := fmt.Sprintf("Get(%s, %d, %d)", c.key, c.offset, c.length)
		rc, err := st.Get(ctx, c.key, c.offset, c.length)
		if c.want == nil {
			if err == nil {
				rc.Close()
			}
			WantClass(t, name, err, c.class)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, c.want) {
			t.Errorf("%s = %d bytes, %v; want %d bytes", name, len(got), err, len(c.want))
		}
	}
}

// testParallelGets reads one object as many concurrent ranges, as the
// agent does.
func testParallelGets(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	const size, piece = 8<<20 + 5, 1 << 20
	body := Data(size, 9)
	must(st.Put(ctx, "obj", bytes.NewReader(body), size, nil)).ok(t)
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

// parts cuts b into parts of blob.MinPartSize (the last shorter).
func parts(b []byte) [][]byte {
	var out [][]byte
	for off := 0; off < len(b); off += blob.MinPartSize {
		out = append(out, b[off:min(len(b), off+blob.MinPartSize)])
	}
	return out
}

// testMultipartResume uploads some parts, then, as a new process knowing
// only the key and the upload ID, lists them and uploads the rest.
func testMultipartResume(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	const key = "t/g/a/1.0.0/package"
	body := Data(3*blob.MinPartSize+1234, 3)
	part := parts(body)
	id := must(st.NewMultipart(ctx, key, map[string]string{"sha256": "feed"})).ok(t)
	uploaded := map[int]blob.Part{}
	var mu sync.Mutex
	var g errgroup.Group
	for _, n := range []int{1, 3} { // in parallel
		g.Go(func() error {
			p, err := st.PutPart(ctx, key, id, n, bytes.NewReader(part[n-1]), int64(len(part[n-1])), nil)
			mu.Lock()
			uploaded[n] = p
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	_, err := st.Stat(ctx, key)
	WantClass(t, "Stat of an unfinished upload", err, errs.NotFound)

	listed := must(st.ListParts(ctx, key, id)).ok(t)
	if want := []blob.Part{uploaded[1], uploaded[3]}; !slices.Equal(listed, want) {
		t.Fatalf("ListParts = %+v, want %+v", listed, want)
	}
	// Uploading a part again replaces it.
	again := must(st.PutPart(ctx, key, id, 3, bytes.NewReader(part[2]), int64(len(part[2])), nil)).ok(t)
	if again != uploaded[3] {
		t.Errorf("part 3 again = %+v, first %+v", again, uploaded[3])
	}
	all := listed
	for _, n := range []int{4, 2} {
		p := must(st.PutPart(ctx, key, id, n, bytes.NewReader(part[n-1]), int64(len(part[n-1])), nil)).ok(t)
		if p.Number != n || p.Size != int64(len(part[n-1])) || p.ETag == "" {
			t.Errorf("PutPart %d = %+v", n, p)
		}
		all = append(all, p)
	}
	info := must(st.CompleteMultipart(ctx, key, id, all)).ok(t) // in any order
	if info.Size != int64(len(body)) || info.Metadata["sha256"] != "feed" || info.Key != key {
		t.Errorf("CompleteMultipart info = %+v", info)
	}
	if stat := must(st.Stat(ctx, key)).ok(t); stat.ETag != info.ETag || stat.Size != info.Size {
		t.Errorf("Stat %+v after CompleteMultipart %+v", stat, info)
	}
	if got := ReadAll(t, st, key, 0, -1); !bytes.Equal(got, body) {
		t.Fatal("completed object differs from the parts")
	}
	// The upload is gone once completed: a repeat after a crash is
	// NotFound (the replicator then checks the object).
	_, err = st.CompleteMultipart(ctx, key, id, all)
	WantClass(t, "CompleteMultipart again", err, errs.NotFound)
	_, err = st.ListParts(ctx, key, id)
	WantClass(t, "ListParts after completion", err, errs.NotFound)
}

// testMultipartETags: a part's ETag depends on its bytes alone, and a
// multipart object's on its parts': the replicator checks every copied part
// and every replica against the source's ETags, whether the parts were
// uploaded (to another store) or copied by the store.
func testMultipartETags(t *testing.T, newStore func(t *testing.T) blob.Store) {
	src, other := newStore(t), newStore(t)
	ctx := testCtx(t)
	body := Data(2*blob.MinPartSize+1000, 11)
	upload := func(st blob.Store, key string) ([]blob.Part, blob.Info) {
		id := must(st.NewMultipart(ctx, key, nil)).ok(t)
		var ps []blob.Part
		for i, b := range parts(body) {
			sum := sha256.Sum256(b)
			ps = append(ps, must(st.PutPart(ctx, key, id, i+1, bytes.NewReader(b), int64(len(b)), sum[:])).ok(t))
		}
		return ps, must(st.CompleteMultipart(ctx, key, id, ps)).ok(t)
	}
	srcParts, srcInfo := upload(src, "source")
	otherParts, otherInfo := upload(other, "replica-0")
	if !slices.Equal(srcParts, otherParts) || otherInfo.ETag != srcInfo.ETag {
		t.Fatalf("the same parts in another store: %+v %s, source's %+v %s", otherParts, otherInfo.ETag, srcParts, srcInfo.ETag)
	}

	id := must(src.NewMultipart(ctx, "replica-1", nil)).ok(t)
	var copied []blob.Part
	for i, p := range srcParts {
		c := must(src.CopyPart(ctx, "replica-1", id, p.Number, "source", int64(i*blob.MinPartSize), p.Size)).ok(t)
		if c != p {
			t.Fatalf("copied part %+v, source part %+v", c, p)
		}
		copied = append(copied, c)
	}
	info := must(src.CompleteMultipart(ctx, "replica-1", id, copied)).ok(t)
	if info.ETag != srcInfo.ETag || info.Size != srcInfo.Size || !bytes.Equal(ReadAll(t, src, "replica-1", 0, -1), body) {
		t.Fatalf("copy %+v, source %+v", info, srcInfo)
	}
}

func testPutPartSHA256(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	b := Data(1000, 5)
	id := must(st.NewMultipart(ctx, "k", nil)).ok(t)
	wrong := sha256.Sum256([]byte("something else"))
	_, err := st.PutPart(ctx, "k", id, 1, bytes.NewReader(b), int64(len(b)), wrong[:])
	WantClass(t, "PutPart with a wrong sha256", err, errs.DataLoss)
	if ps := must(st.ListParts(ctx, "k", id)).ok(t); len(ps) != 0 {
		t.Fatalf("a part refused for its sha256 was kept: %+v", ps)
	}
	// A stream whose bytes differ from the digest's is refused as well.
	flipped := bytes.Clone(b)
	flipped[500] ^= 1
	right := sha256.Sum256(b)
	_, err = st.PutPart(ctx, "k", id, 1, io.MultiReader(bytes.NewReader(flipped)), int64(len(b)), right[:])
	WantClass(t, "PutPart of a changed stream", err, errs.DataLoss)
	p := must(st.PutPart(ctx, "k", id, 1, bytes.NewReader(b), int64(len(b)), right[:])).ok(t)
	if info := must(st.CompleteMultipart(ctx, "k", id, []blob.Part{p})).ok(t); info.Size != int64(len(b)) {
		t.Fatalf("CompleteMultipart = %+v", info)
	}
}

func testPutPartCRC32C(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	b := Data(1000, 6)
	id := must(st.NewMultipart(ctx, "k", nil)).ok(t)
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	right := crc32.Checksum(b, castagnoli)
	_, err := st.PutPartCRC32C(ctx, "k", id, 1, bytes.NewReader(b), int64(len(b)), right^1)
	WantClass(t, "PutPartCRC32C with a wrong CRC32C", err, errs.DataLoss)
	flipped := bytes.Clone(b)
	flipped[500] ^= 1
	_, err = st.PutPartCRC32C(ctx, "k", id, 1, io.MultiReader(bytes.NewReader(flipped)), int64(len(b)), right)
	WantClass(t, "PutPartCRC32C of a changed stream", err, errs.DataLoss)
	if ps := must(st.ListParts(ctx, "k", id)).ok(t); len(ps) != 0 {
		t.Fatalf("a part refused for its CRC32C was kept: %+v", ps)
	}
	p := must(st.PutPartCRC32C(ctx, "k", id, 1, bytes.NewReader(b), int64(len(b)), right)).ok(t)
	if info := must(st.CompleteMultipart(ctx, "k", id, []blob.Part{p})).ok(t); info.Size != int64(len(b)) {
		t.Fatalf("CompleteMultipart = %+v", info)
	}
	rc := must(st.Get(ctx, "k", 0, -1)).ok(t)
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("the object is not the bytes sent: %d bytes, %v", len(got), err)
	}
}

func testAbort(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	id := must(st.NewMultipart(ctx, "k", nil)).ok(t)
	p := must(st.PutPart(ctx, "k", id, 1, strings.NewReader("hello"), 5, nil)).ok(t)
	if err := st.AbortMultipart(ctx, "k", id); err != nil {
		t.Fatalf("AbortMultipart: %v", err)
	}
	// A vanished upload is NotFound to every call on it.
	_, err := st.ListParts(ctx, "k", id)
	WantClass(t, "ListParts after abort", err, errs.NotFound)
	_, err = st.PutPart(ctx, "k", id, 2, strings.NewReader("hello"), 5, nil)
	WantClass(t, "PutPart after abort", err, errs.NotFound)
	must(st.Put(ctx, "src", strings.NewReader("source"), 6, nil)).ok(t)
	_, err = st.CopyPart(ctx, "k", id, 2, "src", 0, 6)
	WantClass(t, "CopyPart after abort", err, errs.NotFound)
	_, err = st.CompleteMultipart(ctx, "k", id, []blob.Part{p})
	WantClass(t, "CompleteMultipart after abort", err, errs.NotFound)
	_, err = st.Stat(ctx, "k")
	WantClass(t, "Stat after abort", err, errs.NotFound)
	// Aborting is idempotent, like Delete.
	if err := st.AbortMultipart(ctx, "k", id); err != nil {
		t.Errorf("AbortMultipart again: %v", err)
	}
	if err := st.AbortMultipart(ctx, "k", "no-such-upload"); err != nil {
		t.Errorf("AbortMultipart of an unknown upload: %v", err)
	}
}

func testCompleteRefusals(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	id := must(st.NewMultipart(ctx, "k", nil)).ok(t)
	p1 := must(st.PutPart(ctx, "k", id, 1, strings.NewReader("small"), 5, nil)).ok(t)
	p2 := must(st.PutPart(ctx, "k", id, 2, strings.NewReader("tail"), 4, nil)).ok(t)
	for _, c := range []struct {
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
		_, err := st.CompleteMultipart(ctx, "k", id, c.parts)
		WantClass(t, c.name, err, c.class)
	}
	// The upload survives the refused attempts.
	if info, err := st.CompleteMultipart(ctx, "k", id, []blob.Part{p1}); err != nil || info.Size != 5 {
		t.Fatalf("CompleteMultipart with part 1 only = %+v, %v", info, err)
	}
}

func testCopyObject(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	body := Data(6<<20, 5)
	src := must(st.Put(ctx, "src/package", bytes.NewReader(body), int64(len(body)), map[string]string{"sha256": "cafe"})).ok(t)
	info := must(st.CopyObject(ctx, "replica/1/package", "src/package")).ok(t)
	if info.Key != "replica/1/package" || info.Size != src.Size || info.Metadata["sha256"] != "cafe" {
		t.Errorf("CopyObject info = %+v", info)
	}
	if got := ReadAll(t, st, "replica/1/package", 0, -1); !bytes.Equal(got, body) {
		t.Fatal("copy differs from the source")
	}
	_, err := st.CopyObject(ctx, "replica/2/package", "missing")
	WantClass(t, "CopyObject of a missing source", err, errs.NotFound)
	_, err = st.CopyObject(ctx, "src/package", "src/package")
	WantClass(t, "CopyObject onto itself", err, errs.InvalidArgument)
}

func testCopyPartRefusals(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	must(st.Put(ctx, "src", strings.NewReader("0123456789"), 10, nil)).ok(t)
	_, err := st.CopyPart(ctx, "dst", "no-such-upload", 1, "src", 0, 10)
	WantClass(t, "CopyPart to an unknown upload", err, errs.NotFound)
	id := must(st.NewMultipart(ctx, "dst", nil)).ok(t)
	_, err = st.CopyPart(ctx, "dst", id, 1, "missing", 0, 10)
	WantClass(t, "CopyPart of a missing object", err, errs.NotFound)
	_, err = st.CopyPart(ctx, "dst", id, 1, "src", 0, 0)
	WantClass(t, "CopyPart of nothing", err, errs.InvalidArgument)
	_, err = st.CopyPart(ctx, "dst", id, 0, "src", 0, 10)
	WantClass(t, "CopyPart number 0", err, errs.InvalidArgument)
	p := must(st.CopyPart(ctx, "dst", id, 1, "src", 2, 5)).ok(t)
	must(st.CompleteMultipart(ctx, "dst", id, []blob.Part{p})).ok(t)
	if got := string(ReadAll(t, st, "dst", 0, -1)); got != "23456" {
		t.Fatalf("a copied range: %q", got)
	}
}

func testPresignGet(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	body := Data(100_000, 11)
	must(st.Put(ctx, "a b/pkg+1", bytes.NewReader(body), int64(len(body)), nil)).ok(t)
	get := func(url, rng string) (int, []byte) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
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
	u := must(st.PresignGet(ctx, "a b/pkg+1", time.Hour)).ok(t)
	if code, b := get(u.String(), ""); code != http.StatusOK || !bytes.Equal(b, body) {
		t.Errorf("GET presigned: %d, %d bytes", code, len(b))
	}
	if code, b := get(u.String(), "bytes=1000-1999"); code != http.StatusPartialContent || !bytes.Equal(b, body[1000:2000]) {
		t.Errorf("ranged GET presigned: %d, %d bytes", code, len(b))
	}
	// Changing the URL voids it.
	q := u.Query()
	q.Set("X-Amz-Expires", "604800")
	tampered := *u
	tampered.RawQuery = q.Encode()
	if code, _ := get(tampered.String(), ""); code != http.StatusForbidden {
		t.Errorf("GET with a changed expiry: %d, want 403", code)
	}
	// It works until it expires: wait until it has, whatever the time the
	// request then takes.
	signed := time.Now()
	short := must(st.PresignGet(ctx, "a b/pkg+1", time.Second)).ok(t)
	time.Sleep(time.Until(signed.Add(2 * time.Second)))
	if code, _ := get(short.String(), ""); code != http.StatusForbidden {
		t.Errorf("GET after the expiry: %d, want 403", code)
	}
	for _, d := range []time.Duration{0, time.Millisecond, blob.MaxPresignAge + time.Second} {
		_, err := st.PresignGet(ctx, "a b/pkg+1", d)
		WantClass(t, fmt.Sprintf("PresignGet(%v)", d), err, errs.InvalidArgument)
	}
}

// testPurge, for stores that can purge: it removes the object, and only
// it; a missing object is no error.
func testPurge(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	p, ok := st.(blob.Purger)
	if !ok {
		t.Skip("the store can't purge")
	}
	ctx := testCtx(t)
	for _, k := range []string{"a/replica-1", "a/replica-10"} {
		must(st.Put(ctx, k, bytes.NewReader(Data(1000, 1)), 1000, nil)).ok(t)
	}
	err := p.Purge(ctx, "a/replica-1")
	if errs.Is(err, errs.Unimplemented) {
		t.Skip("the store can't purge")
	}
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	_, err = st.Stat(ctx, "a/replica-1")
	WantClass(t, "Stat after Purge", err, errs.NotFound)
	if err := p.Purge(ctx, "a/replica-1"); err != nil {
		t.Fatalf("Purge of a missing object: %v", err)
	}
	if got := ReadAll(t, st, "a/replica-10", 0, -1); !bytes.Equal(got, Data(1000, 1)) {
		t.Fatal("Purge took another object whose key starts with the same bytes")
	}
	WantClass(t, "Purge of a bad key", p.Purge(ctx, "a//b"), errs.InvalidArgument)
}

func testValidation(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx := testCtx(t)
	for _, key := range []string{"", "/abs", "a//b", "trailing/", "a/./b", "../up", "a\x00b", "new\nline", strings.Repeat("k", 1025), "bad\xffutf8"} {
		_, err := st.Stat(ctx, key)
		WantClass(t, fmt.Sprintf("Stat(%q)", key), err, errs.InvalidArgument)
		_, err = st.Put(ctx, key, strings.NewReader(""), 0, nil)
		WantClass(t, fmt.Sprintf("Put(%q)", key), err, errs.InvalidArgument)
		WantClass(t, fmt.Sprintf("Delete(%q)", key), st.Delete(ctx, key), errs.InvalidArgument)
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
		WantClass(t, fmt.Sprintf("Put with metadata %q", meta), err, errs.InvalidArgument)
		_, err = st.NewMultipart(ctx, "k", meta)
		WantClass(t, fmt.Sprintf("NewMultipart with metadata %q", meta), err, errs.InvalidArgument)
	}
	_, err := st.Stat(ctx, "k")
	WantClass(t, "Stat after refused writes", err, errs.NotFound)
	_, err = st.Put(ctx, "k", strings.NewReader(""), -1, nil)
	WantClass(t, "Put size -1", err, errs.InvalidArgument)
	for _, n := range []int{0, -1, blob.MaxParts + 1} {
		_, err := st.PutPart(ctx, "k", "id", n, strings.NewReader("v"), 1, nil)
		WantClass(t, fmt.Sprintf("PutPart number %d", n), err, errs.InvalidArgument)
	}
	_, err = st.PutPart(ctx, "k", "", 1, strings.NewReader("v"), 1, nil)
	WantClass(t, "PutPart without an upload ID", err, errs.InvalidArgument)
	_, err = st.PutPart(ctx, "k", "id", 1, strings.NewReader("v"), blob.MaxPartSize+1, nil)
	WantClass(t, "PutPart too large", err, errs.InvalidArgument)
}

func testContextEnded(t *testing.T, newStore func(t *testing.T) blob.Store) {
	st := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := st.Stat(ctx, "k")
	WantClass(t, "Stat with a canceled context", err, errs.Canceled)
	_, err = st.Put(ctx, "k", strings.NewReader("v"), 1, nil)
	WantClass(t, "Put with a canceled context", err, errs.Canceled)
	_, err = st.NewMultipart(ctx, "k", nil)
	WantClass(t, "NewMultipart with a canceled context", err, errs.Canceled)

	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	_, err = st.Get(dctx, "k", 0, -1)
	WantClass(t, "Get past the deadline", err, errs.DeadlineExceeded)
}
