package download

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/vmapp/vmapp/errs"
)

// partial is the file a download writes its pieces into, dest+PartialSuffix,
// with its resume state, dest+StateSuffix: the pieces verified so far.
type partial struct {
	art                   *artifact
	dest, path, statePath string

	f *os.File
	// durable: the file is synced before the rename (Options.Durable).
	durable bool
	// direct is the file opened for direct I/O (O_DIRECT), which writes the
	// pieces' aligned chunks without copying them into the page cache: less
	// CPU, no writeback left for the fsync, and a package that doesn't
	// evict the machine's working set. nil where the file system refuses
	// it, without Options.Durable, or without a chain (the whole-file hash then reads the file back,
	// better from the page cache); noDirect is set when a write finds the
	// file system refusing it after all.
	direct   *os.File
	noDirect atomic.Bool

	mu       sync.Mutex
	verified []bool
	n        int // verified pieces
	// wake tells the whole-file hasher that a piece was verified.
	wake chan struct{}
}

// stateFile is the JSON of the state file.
type stateFile struct {
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	PieceSize int64  `json:"piece_size"`
	Verified  []int  `json:"verified"`
}

// destDone reports whether dest holds the artifact already.
func destDone(dest string, a *artifact) (bool, error) {
	fi, err := os.Stat(dest)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, errs.Wrap(errs.InvalidArgument, err, "destination %s", dest)
	case fi.IsDir():
		return false, errs.New(errs.InvalidArgument, "dest", "destination %s is a directory", dest)
	case !fi.Mode().IsRegular() || fi.Size() != a.size || !a.isFile(dest):
		return false, nil // replaced by the download
	}
	if st, err := readState(dest + StateSuffix); err == nil && st.SHA256 == a.sha {
		os.Remove(dest + StateSuffix) // left by a download killed after its rename
	}
	return true, nil
}

// openPartial opens (or creates) the partial file, locks it, resumes from
// the state file when it matches the artifact, and allocates the file's
// size.
func openPartial(dest string, a *artifact, durable bool) (*partial, error) {
	p := &partial{art: a, dest: dest, path: dest + PartialSuffix, statePath: dest + StateSuffix, durable: durable,
		verified: make([]bool, a.pieces()), wake: make(chan struct{}, 1)}
	f, err := os.OpenFile(p.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, p.localErr(err, "create %s", p.path)
	}
	held, err := lockFile(f)
	if err != nil || held {
		f.Close()
		if held {
			return nil, errs.New(errs.Aborted, "dest", "another download into %s is running", dest)
		}
		return nil, p.localErr(err, "lock %s", p.path)
	}
	p.f = f
	if !p.resume() {
		os.Remove(p.statePath)
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, p.localErr(err, "truncate %s", p.path)
		}
	}
	if err := allocate(f, a.size); err != nil {
		f.Close()
		os.Remove(p.path)
		os.Remove(p.statePath)
		return nil, p.localErr(err, "allocate %d bytes for %s", a.size, p.path)
	}
	if durable && a.chain != nil {
		p.direct = openDirect(p.path)
	}
	return p, nil
}

func readState(path string) (*stateFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// resume marks the pieces the state file lists as verified, after hashing
// them again (the file isn't synced piece by piece, so after a power loss a
// listed piece may not be on disk). It reports whether the state matched.
func (p *partial) resume() bool {
	a := p.art
	st, err := readState(p.statePath)
	if err != nil || st.SHA256 != a.sha || st.Size != a.size || st.PieceSize != a.pieceSize {
		return false
	}
	if fi, err := p.f.Stat(); err != nil || fi.Size() != a.size {
		return false
	}
	for _, i := range st.Verified {
		if i >= 0 && i < a.pieces() && !p.verified[i] && a.checkOnDisk(p.f, i) {
			p.verified[i] = true
			p.n++
		}
	}
	return true
}

// todo lists the pieces not verified yet.
func (p *partial) todo() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for i, ok := range p.verified {
		if !ok {
			out = append(out, i)
		}
	}
	return out
}

func (p *partial) isVerified(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.verified[i]
}

func (p *partial) nVerified() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *partial) verifiedBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for i, ok := range p.verified {
		if ok {
			_, l := p.art.span(i)
			n += l
		}
	}
	return n
}

// markVerified records piece i in the state file (written to a temporary
// file and renamed over it). The state only saves work: failing to write
// it doesn't fail the download.
func (p *partial) markVerified(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.verified[i] {
		return
	}
	p.verified[i] = true
	p.n++
	select {
	case p.wake <- struct{}{}:
	default:
	}
	st := stateFile{SHA256: p.art.sha, Size: p.art.size, PieceSize: p.art.pieceSize, Verified: make([]int, 0, p.n)}
	for j, ok := range p.verified {
		if ok {
			st.Verified = append(st.Verified, j)
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	tmp := p.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		os.Remove(tmp)
		return
	}
	os.Rename(tmp, p.statePath)
}

// finish checks the whole file's sha256 (got) and moves the file to dest,
// synced first when the download is durable.
func (p *partial) finish(got string) error {
	if got != p.art.sha {
		// Every piece matched its hash: the plan's hashes disagree, or the
		// disk lost what was written. Start over next time.
		p.close()
		os.Remove(p.path)
		os.Remove(p.statePath)
		return errs.New(errs.DataLoss, "", "%s downloaded into %s has sha256 %s, not %s; removed it", p.art.what, p.path, got, p.art.sha)
	}
	if p.direct != nil {
		p.direct.Close()
		p.direct = nil
	}
	if p.durable {
		if err := p.f.Sync(); err != nil {
			return p.localErr(err, "sync %s", p.path)
		}
	}
	err := p.f.Close()
	p.f = nil
	if err != nil {
		return p.localErr(err, "close %s", p.path)
	}
	if err := os.Rename(p.path, p.dest); err != nil {
		return p.localErr(err, "rename %s to %s", p.path, p.dest)
	}
	if p.durable {
		if dir, err := os.Open(filepath.Dir(p.dest)); err == nil {
			dir.Sync()
			dir.Close()
		}
	}
	os.Remove(p.statePath)
	os.Remove(p.statePath + ".tmp")
	return nil
}

// close closes the files still open.
func (p *partial) close() {
	if p.f != nil {
		p.f.Close()
		p.f = nil
	}
	if p.direct != nil {
		p.direct.Close()
		p.direct = nil
	}
}

// localErr classifies a failure of the local file system.
func (p *partial) localErr(err error, format string, args ...any) error {
	if isNoSpace(err) {
		return errs.Wrap(errs.ResourceExhausted, err, "no space left on device for %s (%d bytes)", p.dest, p.art.size)
	}
	c := errs.Internal
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
		c = errs.InvalidArgument
	}
	return errs.Wrap(c, err, format, args...)
}
