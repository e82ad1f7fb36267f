package download

import (
	"fmt"
	"os"
	"testing"

	"github.com/vmapp/vmapp/errs"
)

// loseWriteback zeroes n bytes of path at off, keeping its size: what a
// power cut can leave of a file whose pages the kernel had not written
// back (extents allocated, data never written).
func loseWriteback(t *testing.T, path string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, n), off); err != nil {
		t.Fatal(err)
	}
}

// covers reports whether one of reads ("first-last") includes byte off.
func covers(reads []string, off int64) bool {
	for _, r := range reads {
		var first, last int64
		if _, err := fmt.Sscanf(r, "%d-%d", &first, &last); err == nil && first <= off && off <= last {
			return true
		}
	}
	return false
}

// TestLostWritebackNotTrusted: without Options.Durable nothing is synced,
// so after a crash a finished file or a partial one may hold zeros where
// verified pieces were. Neither is trusted: a finished dest is hashed whole
// and downloaded again when it doesn't match, and the pieces a partial
// file's state lists are hashed again before the download resumes, the
// lost ones fetched again. Durable downloads come out the same.
func TestLostWritebackNotTrusted(t *testing.T) {
	for _, durable := range []bool{false, true} {
		o := Options{Parallelism: 1, Durable: durable}
		fx := newFixture(t, size6, true)
		if err := fx.run(t, o, in(at(tierRegion, newFake("a", fx.data)))); err != nil {
			t.Fatal(err)
		}
		fx.check(t)

		// The finished file lost piece 4's bytes: downloaded again.
		loseWriteback(t, fx.dest, 4*testPiece, testPiece)
		b := newFake("b", fx.data)
		if err := fx.run(t, o, in(at(tierRegion, b))); err != nil {
			t.Fatal(err)
		}
		fx.check(t)
		if !covers(b.reads(), 4*testPiece) {
			t.Fatalf("durable %v: reads %v: a dest that lost piece 4 was returned as it was", durable, b.reads())
		}
		// A sound file is returned without a read.
		c := newFake("c", fx.data)
		if err := fx.run(t, o, in(at(tierRegion, c))); err != nil || len(c.reads()) > 0 {
			t.Fatalf("durable %v: a sound dest: %v, reads %v", durable, err, c.reads())
		}

		// A partial file whose state lists pieces 0, 1 and 2, piece 1 lost:
		// piece 1 is fetched again, 0 and 2 are not.
		os.Remove(fx.dest)
		d := newFake("d", fx.data)
		d.cut = 3*testPiece + 10
		d.cutErr = fatal(errs.New(errs.FailedPrecondition, "", "gone"))
		if err := fx.run(t, o, in(at(tierRegion, d))); !errs.Is(err, errs.FailedPrecondition) {
			t.Fatalf("durable %v: cut run: %v", durable, err)
		}
		loseWriteback(t, fx.dest+PartialSuffix, testPiece, testPiece)
		e := newFake("e", fx.data)
		if err := fx.run(t, o, in(at(tierRegion, e))); err != nil {
			t.Fatal(err)
		}
		fx.check(t)
		reads := e.reads()
		if !covers(reads, testPiece) {
			t.Fatalf("durable %v: reads %v: the lost piece 1 was not fetched again", durable, reads)
		}
		if covers(reads, 0) || covers(reads, 2*testPiece) {
			t.Fatalf("durable %v: reads %v: piece 0 or 2, sound on disk, was fetched again", durable, reads)
		}
	}
}
