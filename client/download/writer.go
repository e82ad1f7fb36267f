package download

import (
	"errors"
	"hash"
	"sync"
	"syscall"
)

// chunkSize is how much of a piece a worker gathers before writing it to
// the file: one write per chunk, at an offset and of a length that direct
// I/O accepts when the piece size allows.
const chunkSize = 1 << 20

// Workers' chunk buffers, aligned for direct I/O: memory stays at one
// chunk per worker.
var bufPool = sync.Pool{New: func() any { b := alignedBuf(chunkSize); return &b }}

// pieceWriter writes a piece into the partial file as it arrives: bytes
// are read into its chunk buffer (space, add), hashed at once while in the
// CPU's cache, and written a chunk at a time; the meter counts them.
type pieceWriter struct {
	file   *partial
	m      *meter
	i      int
	off, n int64 // the piece's span
	got    int64 // bytes received and hashed
	buf    []byte
	fill   int  // bytes of buf not written yet
	cached bool // a chunk went through the page cache
	h      hash.Hash
}

// newPieceWriter starts piece i with buf, a worker's chunk buffer.
func (d *downloader) newPieceWriter(i int, buf []byte) *pieceWriter {
	off, n := d.art.span(i)
	return &pieceWriter{file: d.file, m: &d.m, i: i, off: off, n: n, buf: buf, h: d.art.pieceHash(i)}
}

// space is where the piece's next bytes go; add(k) takes k bytes read
// into it.
func (w *pieceWriter) space() []byte {
	return w.buf[w.fill:min(int64(len(w.buf)), int64(w.fill)+w.n-w.got)]
}

func (w *pieceWriter) add(k int) error {
	w.m.received(int64(k))
	w.h.Write(w.buf[w.fill : w.fill+k])
	w.fill += k
	w.got += int64(k)
	if w.fill == len(w.buf) || w.got == w.n {
		return w.flush()
	}
	return nil
}

// flush writes the chunk buffer to the file. (Writing it in the
// background while a second buffer fills was measured no faster.)
func (w *pieceWriter) flush() error {
	at := w.off + w.got - int64(w.fill)
	cached, err := w.file.writeAt(w.buf[:w.fill], at)
	w.fill = 0
	w.cached = w.cached || cached
	if err != nil {
		w.abort()
		return fatal(w.file.localErr(err, "write %s", w.file.path))
	}
	return nil
}

// abort takes the piece's bytes back out of the progress.
// It returns the bytes it took back.
func (w *pieceWriter) abort() int64 {
	got := w.got
	w.m.done.Add(-got)
	w.got, w.fill = 0, 0
	return got
}

// verify checks the piece, which came from from, and marks it verified.
func (w *pieceWriter) verify(from string) error {
	if err := w.file.art.check(w.i, w.h, from); err != nil {
		w.abort()
		return err
	}
	if w.cached && w.file.durable {
		startWriteback(w.file.f, w.off, w.got)
	}
	w.file.markVerified(w.i)
	return nil
}

// writeAt writes b at off: with direct I/O when the file has it and b is
// aligned for it, else through the page cache (cached).
func (p *partial) writeAt(b []byte, off int64) (cached bool, err error) {
	if p.direct != nil && !p.noDirect.Load() && isAligned(b, off) {
		_, err := p.direct.WriteAt(b, off)
		if !errors.Is(err, syscall.EINVAL) {
			return false, err
		}
		// The file system refuses direct I/O after all.
		p.noDirect.Store(true)
	}
	_, err = p.f.WriteAt(b, off)
	return true, err
}
