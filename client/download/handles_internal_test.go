package download

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/errs"
)

// Windows refuses to rename or remove a file that a handle holds open
// (without FILE_SHARE_DELETE, as Go opens files), where Linux doesn't
// mind: a download that left a handle on its partial, state or
// destination file would fail there the next time it renames or removes
// one. Tested here where the handles can be listed (/proc/self/fd).

// openUnder lists the files under dir this process holds open.
func openUnder(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("can't list this process's files: %v", err)
	}
	var out []string
	for _, fd := range fds {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(p, dir+string(filepath.Separator)) {
			out = append(out, p)
		}
	}
	return out
}

// TestNoHandleLeft: downloads that replace an existing file, resume a
// partial one, or fail leave no file of theirs open.
func TestNoHandleLeft(t *testing.T) {
	fx := newFixture(t, size6, true)
	dir := filepath.Dir(fx.dest)
	if err := os.WriteFile(fx.dest, []byte("an older package"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Cut short for good after 2 pieces: the partial file and its state
	// stay for the next run.
	a := newFake("a", fx.data)
	a.cut = 2*testPiece + 10
	a.cutErr = fatal(errs.New(errs.FailedPrecondition, "", "gone"))
	if err := fx.run(t, Options{Parallelism: 1}, in(at(tierRegion, a))); !errs.Is(err, errs.FailedPrecondition) {
		t.Fatalf("first run: %v", err)
	}
	if open := openUnder(t, dir); len(open) > 0 {
		t.Fatalf("a failed download left open: %v", open)
	}
	if _, err := os.Stat(fx.dest + StateSuffix); err != nil {
		t.Fatalf("no resume state: %v", err)
	}
	// Resumed, it replaces the older file.
	b := newFake("b", fx.data)
	if err := fx.run(t, Options{Parallelism: 2}, in(at(tierRegion, b))); err != nil {
		t.Fatal(err)
	}
	fx.check(t)
	if got := b.reads(); len(got) == 0 || strings.HasPrefix(got[0], "0-") {
		t.Fatalf("reads %v: want the resumed pieces only", got)
	}
	if open := openUnder(t, dir); len(open) > 0 {
		t.Fatalf("a download left open: %v", open)
	}
	// Nothing but corrupt bytes: it fails.
	fx2 := newFixture(t, 2*testPiece, false)
	c := newFake("c", fx2.data)
	c.flip = testPiece + 5
	err := fx2.run(t, Options{Parallelism: 1}, in(at(tierRegion, c)))
	if open := openUnder(t, filepath.Dir(fx2.dest)); !errs.Is(err, errs.DataLoss) || len(open) > 0 {
		t.Fatalf("%v; left open: %v", err, open)
	}
}
