package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/shachain"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// artifact is what a download fetches, as its first plan describes it:
// later plans must agree.
type artifact struct {
	version         string
	what            string // "g/a/1.0.0 package", for messages
	size, pieceSize int64
	sha             string
	sums            [][]byte
	// chain is the plan's piece_chain when usable: pieces are then
	// verified against the whole file's sha256 (see shachain).
	chain [][]byte
}

// newArtifact checks the first plan and takes the artifact from it.
func newArtifact(p *pb.DownloadPlan, kind pb.ArtifactKind) (*artifact, error) {
	a := &artifact{
		version: p.Version, what: fmt.Sprintf("%s/%s/%s %s", p.Gallery, p.Application, p.Version, kind.Label()),
		size: p.SizeBytes, pieceSize: p.PieceSize, sha: p.Sha256, sums: p.PieceSha256,
	}
	bad := func(format string, args ...any) error {
		return errs.New(errs.Internal, "", "the download plan of %s is inconsistent: %s", a.what, fmt.Sprintf(format, args...))
	}
	switch {
	case a.size < 0:
		return nil, bad("size %d", a.size)
	case a.size > 0 && a.pieceSize <= 0:
		return nil, bad("piece size %d", a.pieceSize)
	case len(a.sha) != 64:
		return nil, bad("sha256 %q", a.sha)
	}
	want := 0
	if a.size > 0 {
		want = int((a.size + a.pieceSize - 1) / a.pieceSize)
	}
	if len(a.sums) != want {
		return nil, bad("%d piece hashes for %d pieces", len(a.sums), want)
	}
	for i, s := range a.sums {
		if len(s) != sha256.Size {
			return nil, bad("piece %d's hash has %d bytes", i, len(s))
		}
	}
	// A single piece needs no chain: it ends in the file's sha256.
	if len(p.PieceChain) > 0 || want == 1 {
		if len(p.PieceChain) != want-1 || want > 1 && a.pieceSize%sha256.BlockSize != 0 {
			return nil, bad("%d chaining values for %d pieces of %d bytes", len(p.PieceChain), want, a.pieceSize)
		}
		for i, cv := range p.PieceChain {
			if len(cv) != sha256.Size {
				return nil, bad("piece %d's chaining value has %d bytes", i, len(cv))
			}
		}
		if shachain.Usable() {
			a.chain = append([][]byte{}, p.PieceChain...)
		}
	}
	return a, nil
}

// sameAs checks that a later plan is of the same artifact.
func (a *artifact) sameAs(p *pb.DownloadPlan) error {
	if p.Sha256 != a.sha || p.SizeBytes != a.size || p.PieceSize != a.pieceSize {
		return errs.New(errs.Aborted, "", "%s changed while downloading: sha256 %s, %d bytes, was %s, %d bytes", a.what, p.Sha256, p.SizeBytes, a.sha, a.size)
	}
	return nil
}

func (a *artifact) pieces() int { return len(a.sums) }

// span is piece i's bytes.
func (a *artifact) span(i int) (off, n int64) {
	off = int64(i) * a.pieceSize
	return off, min(a.pieceSize, a.size-off)
}

// pieceHash returns the hash that verifies piece i: a fresh sha256, or
// with a chain the whole file's, resumed where the piece starts.
func (a *artifact) pieceHash(i int) hash.Hash {
	if a.chain == nil {
		return sha256.New()
	}
	var cv []byte // nil: the start of the file
	if i > 0 {
		cv = a.chain[i-1]
	}
	off, _ := a.span(i)
	return shachain.Resume(cv, off)
}

// check checks piece i's hash h, which read it from from.
func (a *artifact) check(i int, h hash.Hash, from string) error {
	switch {
	case a.chain == nil:
		if sum := h.Sum(nil); !bytes.Equal(sum, a.sums[i]) {
			return errs.New(errs.DataLoss, "", "piece %d from %s has sha256 %x, not %x", i, from, sum, a.sums[i])
		}
	case i == len(a.sums)-1:
		if sum := hex.EncodeToString(h.Sum(nil)); sum != a.sha {
			return errs.New(errs.DataLoss, "", "piece %d (the last) from %s ends the file's sha256 as %s, not %s", i, from, sum, a.sha)
		}
	default:
		if cv := shachain.Value(h); !bytes.Equal(cv, a.chain[i]) {
			return errs.New(errs.DataLoss, "", "piece %d from %s leaves the file's sha256 chaining value at %x, not %x", i, from, cv, a.chain[i])
		}
	}
	return nil
}

// checkOnDisk checks piece i as f holds it.
func (a *artifact) checkOnDisk(f *os.File, i int) bool {
	off, n := a.span(i)
	h := a.pieceHash(i)
	return hashSection(h, f, off, n) == nil && a.check(i, h, "") == nil
}

// hashSection hashes f's n bytes from off into h.
func hashSection(h hash.Hash, f *os.File, off, n int64) error {
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	_, err := io.CopyBuffer(h, io.NewSectionReader(f, off, n), *bufp)
	return err
}

type hashResult struct {
	sum string
	err error
}

// hashPrefix hashes the partial file's pieces in order, each once it is
// verified, until the whole file is hashed or ctx ends: the whole file's
// sha256 of an artifact without a chain.
func hashPrefix(ctx context.Context, a *artifact, f *partial) hashResult {
	h := sha256.New()
	for next := 0; next < a.pieces(); {
		if !f.isVerified(next) {
			select {
			case <-f.wake:
				continue
			case <-ctx.Done():
				return hashResult{err: ctx.Err()}
			}
		}
		off, n := a.span(next)
		if err := hashSection(h, f.f, off, n); err != nil {
			return hashResult{err: err}
		}
		next++
	}
	return hashResult{sum: hex.EncodeToString(h.Sum(nil))}
}

// isFile reports whether the file at path holds the artifact.
func (a *artifact) isFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	return hashSection(h, f, 0, a.size) == nil && hex.EncodeToString(h.Sum(nil)) == a.sha
}
