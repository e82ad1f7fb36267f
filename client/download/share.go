package download

import (
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"

	"github.com/vmapp/vmapp/errs"
)

// A Share is a download in progress as its machine serves it to peers:
// the pieces verified so far, read back from the partial file.
//
// Why this serves only verified bytes though it reads a partial file: a
// piece is in the bitmap only once its bytes were verified against the
// plan's hashes and written, and the download never writes to a verified
// piece again; and, whatever the file holds, WriteRange checks every piece
// it sends again, as it read it, before it writes a byte of it: the first
// time against the plan's sha256, and then (a piece is served to many
// peers) against the CRC-32C of the bytes that passed, a small part of
// the work (BenchmarkPieceRecheck). A piece that doesn't check (the disk lost a write, the file was
// changed) fails the request: it is never sent. The downloader at the
// other end checks every piece against the sha256 as well, so even a
// lying peer plants nothing; this check keeps an honest one from being
// reported.
type Share struct {
	art  *artifact
	file *partial
	f    *os.File // the partial file, opened again: still the file after its rename

	mu     sync.Mutex
	closed bool
	crcs   map[int]uint32 // pieces read back and checked against the sha256: their CRC-32C

	bufs sync.Pool // of *[]byte of a piece, for WriteRange
}

// newShare opens the partial file of p for reading.
func newShare(p *partial) (*Share, error) {
	f, err := os.Open(p.path)
	if err != nil {
		return nil, err
	}
	s := &Share{art: p.art, file: p, f: f, crcs: map[int]uint32{}}
	s.bufs.New = func() any { b := make([]byte, min(p.art.pieceSize, p.art.size)); return &b }
	return s, nil
}

// Size is the artifact's size; Sha256 its hex sha256.
func (s *Share) Size() int64    { return s.art.size }
func (s *Share) Sha256() string { return s.art.sha }

// Pieces returns the bitmap of the pieces verified (bit i, byte i/8 from
// the least significant bit, is piece i) and their number.
func (s *Share) Pieces() ([]byte, int) {
	p := s.file
	p.mu.Lock()
	defer p.mu.Unlock()
	b := make([]byte, (len(p.verified)+7)/8)
	for i, ok := range p.verified {
		if ok {
			b[i/8] |= 1 << (i % 8)
		}
	}
	return b, p.n
}

// Covers tells whether every piece holding bytes [off, off+n) is verified,
// and the download still runs.
func (s *Share) Covers(off, n int64) bool {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed || n <= 0 || off < 0 || off+n > s.art.size {
		return false
	}
	first, last := s.pieceOf(off), s.pieceOf(off+n-1)
	for i := first; i <= last; i++ {
		if !s.file.isVerified(i) {
			return false
		}
	}
	return true
}

func (s *Share) pieceOf(off int64) int { return int(off / s.art.pieceSize) }

// WriteRange writes the artifact's n bytes from off to w, piece by piece,
// each read whole from the file and verified again before any of it is
// written. It fails, having written what came before, at a piece not
// verified or that doesn't check.
func (s *Share) WriteRange(w io.Writer, off, n int64) error {
	if !s.Covers(off, n) {
		return errs.New(errs.NotFound, "", "bytes %d-%d of %s are not verified here", off, off+n-1, s.art.what)
	}
	bufp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bufp)
	buf := *bufp
	for end := off + n; off < end; {
		i := s.pieceOf(off)
		poff, pn := s.art.span(i)
		if err := s.readPiece(i, buf[:pn]); err != nil {
			return err
		}
		k := min(end, poff+pn) - off
		if _, err := w.Write(buf[off-poff : off-poff+k]); err != nil {
			return err
		}
		off += k
	}
	return nil
}

// readPiece reads piece i into b and checks it: against the sha256 the
// first time, against the CRC-32C of what passed then after.
func (s *Share) readPiece(i int, b []byte) error {
	s.mu.Lock()
	closed := s.closed
	crc, checked := s.crcs[i]
	s.mu.Unlock()
	if closed {
		return errs.New(errs.NotFound, "", "the download of %s ended", s.art.what)
	}
	off, _ := s.art.span(i)
	if _, err := s.f.ReadAt(b, off); err != nil {
		return errs.Wrap(errs.Internal, err, "read piece %d of %s", i, s.art.what)
	}
	changed := func(err error) error {
		return errs.Wrap(errs.DataLoss, err, "piece %d of %s changed since it was verified; not served", i, s.art.what)
	}
	if checked {
		if got := crc32.Checksum(b, castagnoli); got != crc {
			return changed(fmt.Errorf("CRC-32C %08x, %08x when it was checked", got, crc))
		}
		return nil
	}
	h := s.art.pieceHash(i)
	h.Write(b)
	if err := s.art.check(i, h, s.file.path); err != nil {
		return changed(err)
	}
	s.mu.Lock()
	s.crcs[i] = crc32.Checksum(b, castagnoli)
	s.mu.Unlock()
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// close stops serving the share: Run's, when it returns.
func (s *Share) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.f.Close()
}

// String names the share's artifact.
func (s *Share) String() string { return fmt.Sprintf("%s (%s)", s.art.what, s.file.path) }
