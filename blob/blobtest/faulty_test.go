package blobtest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/blob/blobtest"
	"github.com/vmapp/vmapp/blob/s3"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
)

// faulty wraps a store on a real MinIO server holding "a" and "b", 1000
// bytes each.
func faulty(t *testing.T) (*blobtest.Faulty, []byte) {
	t.Helper()
	srv := miniotest.Start(t)
	st, err := s3.NewWithCredentials(srv.Endpoint(), "faulty", srv.AccessKey, srv.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := st.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	body := blobtest.Data(1000, 1)
	for _, k := range []string{"a", "b"} {
		if _, err := st.Put(ctx, k, bytes.NewReader(body), int64(len(body)), nil); err != nil {
			t.Fatal(err)
		}
	}
	return blobtest.NewFaulty(st), body
}

func TestFaults(t *testing.T) {
	f, body := faulty(t)
	ctx := context.Background()
	down := errs.New(errs.Unavailable, "", "injected")

	// Errors: on the 2nd and 3rd Stat of "a" only.
	errFault := &blobtest.Fault{Op: blobtest.OpStat, Key: "a", After: 1, Times: 2, Err: down}
	f.Inject(errFault)
	var got []bool
	for _, k := range []string{"a", "b", "a", "a", "b", "a"} {
		_, err := f.Stat(ctx, k)
		if err != nil && !errors.Is(err, down) {
			t.Fatalf("Stat(%s): %v", k, err)
		}
		got = append(got, err != nil)
	}
	if want := []bool{false, false, true, true, false, false}; !slices.Equal(got, want) {
		t.Errorf("failed calls %v, want %v", got, want)
	}
	if errFault.Hits() != 2 || f.Calls(blobtest.OpStat) != 6 {
		t.Errorf("hits %d, calls %d", errFault.Hits(), f.Calls(blobtest.OpStat))
	}

	// A short read, once: the body ends after Cut bytes.
	f.Inject(&blobtest.Fault{Op: blobtest.OpGet, Key: "a", Times: 1, Cut: 300})
	if b := read(t, f, "a"); !bytes.Equal(b, body[:300]) {
		t.Errorf("cut read: %d bytes", len(b))
	}
	if b := read(t, f, "a"); !bytes.Equal(b, body) {
		t.Errorf("read after the cut one: %d bytes", len(b))
	}

	// A changed byte, once.
	f.Inject(&blobtest.Fault{Op: blobtest.OpGet, Key: "b", Times: 1, Corrupt: true})
	b := read(t, f, "b")
	if len(b) != len(body) || b[0] != body[0]^1 || !bytes.Equal(b[1:], body[1:]) {
		t.Errorf("corrupt read differs otherwise")
	}
	if b := read(t, f, "b"); !bytes.Equal(b, body) {
		t.Error("read after the corrupt one differs")
	}
}

// TestHold: a held read gives nothing until the test lets it.
func TestHold(t *testing.T) {
	f, body := faulty(t)
	gate := blobtest.NewGate()
	f.Inject(&blobtest.Fault{Op: blobtest.OpGet, Key: "a", Hold: gate.Hold})
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result)
	go func() {
		rc, err := f.Get(context.Background(), "a", 0, -1)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		done <- result{b, err}
	}()
	<-gate.Entered()
	select {
	case r := <-done:
		t.Fatalf("a held read returned %d bytes, %v", len(r.b), r.err)
	default:
	}
	if b := read(t, f, "b"); !bytes.Equal(b, body) { // other keys aren't held
		t.Fatal("read of b differs")
	}
	gate.Open()
	if r := <-done; r.err != nil || !bytes.Equal(r.b, body) {
		t.Fatalf("released read: %d bytes, %v", len(r.b), r.err)
	}

	// A hold that gives up ends the read with its error.
	ctx, cancel := context.WithCancel(context.Background())
	f.Inject(&blobtest.Fault{Op: blobtest.OpGet, Key: "b", Hold: blobtest.NewGate().Hold}) // never opened
	rc, err := f.Get(ctx, "b", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("read of a held body after cancel: %v", err)
	}
	rc.Close()
}

// TestPurgeUnimplemented: Faulty purges only through a store that can.
func TestPurgeUnimplemented(t *testing.T) {
	f, _ := faulty(t)
	plain := blobtest.NewFaulty(struct{ blob.Store }{f})
	blobtest.WantClass(t, "Purge through a store without Purge", plain.Purge(context.Background(), "a"), errs.Unimplemented)
	if err := f.Purge(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, st blob.Store, key string) []byte {
	t.Helper()
	return blobtest.ReadAll(t, st, key, 0, -1)
}
