package blobtest

import (
	"context"
	"io"
	"net/url"
	"sync"
	"time"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/errs"
)

// Op names a method of blob.Store (or blob.Purger).
type Op string

// The methods Faulty can make fail.
const (
	OpEnsureBucket      Op = "EnsureBucket"
	OpStat              Op = "Stat"
	OpGet               Op = "Get"
	OpPut               Op = "Put"
	OpDelete            Op = "Delete"
	OpCopyObject        Op = "CopyObject"
	OpPresignGet        Op = "PresignGet"
	OpNewMultipart      Op = "NewMultipart"
	OpPutPart           Op = "PutPart"
	OpCopyPart          Op = "CopyPart"
	OpListParts         Op = "ListParts"
	OpCompleteMultipart Op = "CompleteMultipart"
	OpAbortMultipart    Op = "AbortMultipart"
	OpPurge             Op = "Purge"
)

// Fault says what Faulty does to the calls it matches: calls of Op (on
// Key, when set: the object's key, the destination's for copies), after
// the first After of them, Times of them (0: every one from then on).
type Fault struct {
	Op    Op
	Key   string
	After int
	Times int

	// Err, when set, fails the call with it; the store isn't called.
	Err error
	// Cut, when positive, ends a Get's body after Cut bytes (io.EOF): a
	// store that sends less than it was asked for.
	Cut int64
	// Corrupt flips a bit of a Get's first byte, or of a PutPart's: bytes
	// changed on the way.
	Corrupt bool
	// Hold, when set, is called before every read of a Get's body, which
	// waits for it to return: a slow or stalled store, paced by the test
	// (e.g. a receive from a channel it controls). Its error ends the read.
	Hold func(ctx context.Context) error

	mu         sync.Mutex
	seen, hits int
}

// Hits is how many calls the fault changed so far.
func (f *Fault) Hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

// take counts a call of op on key and reports whether the fault applies
// to it.
func (f *Fault) take(op Op, key string) bool {
	if f.Op != op || f.Key != "" && f.Key != key {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen++
	if f.seen <= f.After || f.Times > 0 && f.seen > f.After+f.Times {
		return false
	}
	f.hits++
	return true
}

// Faulty is a store that passes every call to the one it wraps, but for
// the calls its faults match. With no faults it is the store it wraps (the
// conformance suite passes on it). It is safe for concurrent use.
type Faulty struct {
	blob.Store

	mu     sync.Mutex
	faults []*Fault
	calls  map[Op]int
}

var (
	_ blob.Store  = (*Faulty)(nil)
	_ blob.Purger = (*Faulty)(nil)
)

// NewFaulty wraps st.
func NewFaulty(st blob.Store) *Faulty { return &Faulty{Store: st, calls: map[Op]int{}} }

// Inject adds faults; the first that matches a call applies to it.
func (f *Faulty) Inject(faults ...*Fault) {
	f.mu.Lock()
	f.faults = append(f.faults, faults...)
	f.mu.Unlock()
}

// Calls is how many calls of op the store got, faulty or not.
func (f *Faulty) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// fault counts a call and returns the fault that applies to it, if any.
func (f *Faulty) fault(op Op, key string) *Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	for _, ft := range f.faults {
		if ft.take(op, key) {
			return ft
		}
	}
	return nil
}

// fail returns the error a call of op on key fails with, if any.
func (f *Faulty) fail(op Op, key string) error {
	if ft := f.fault(op, key); ft != nil {
		return ft.Err
	}
	return nil
}

func (f *Faulty) EnsureBucket(ctx context.Context) error {
	if err := f.fail(OpEnsureBucket, ""); err != nil {
		return err
	}
	return f.Store.EnsureBucket(ctx)
}

func (f *Faulty) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := f.fail(OpStat, key); err != nil {
		return blob.Info{}, err
	}
	return f.Store.Stat(ctx, key)
}

// Get applies a fault's error, or its changes to the body.
func (f *Faulty) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	ft := f.fault(OpGet, key)
	if ft != nil && ft.Err != nil {
		return nil, ft.Err
	}
	rc, err := f.Store.Get(ctx, key, offset, length)
	if err != nil || ft == nil {
		return rc, err
	}
	left := int64(-1)
	if ft.Cut > 0 {
		left = ft.Cut
	}
	return &faultyBody{ReadCloser: rc, ctx: ctx, left: left, corrupt: ft.Corrupt, hold: ft.Hold}, nil
}

// faultyBody is a Get's body with a fault's changes.
type faultyBody struct {
	io.ReadCloser
	ctx     context.Context
	left    int64 // bytes before the cut; -1: no cut
	corrupt bool
	hold    func(ctx context.Context) error
}

func (b *faultyBody) Read(p []byte) (int, error) {
	if b.hold != nil {
		if err := b.hold(b.ctx); err != nil {
			return 0, err
		}
	}
	if b.left == 0 {
		return 0, io.EOF
	}
	if b.left > 0 && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	if b.corrupt && n > 0 {
		p[0] ^= 1
		b.corrupt = false
	}
	return n, err
}

func (f *Faulty) Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) (blob.Info, error) {
	if err := f.fail(OpPut, key); err != nil {
		return blob.Info{}, err
	}
	return f.Store.Put(ctx, key, r, size, meta)
}

func (f *Faulty) Delete(ctx context.Context, key string) error {
	if err := f.fail(OpDelete, key); err != nil {
		return err
	}
	return f.Store.Delete(ctx, key)
}

func (f *Faulty) CopyObject(ctx context.Context, dstKey, srcKey string) (blob.Info, error) {
	if err := f.fail(OpCopyObject, dstKey); err != nil {
		return blob.Info{}, err
	}
	return f.Store.CopyObject(ctx, dstKey, srcKey)
}

func (f *Faulty) PresignGet(ctx context.Context, key string, expiry time.Duration) (*url.URL, error) {
	if err := f.fail(OpPresignGet, key); err != nil {
		return nil, err
	}
	return f.Store.PresignGet(ctx, key, expiry)
}

func (f *Faulty) NewMultipart(ctx context.Context, key string, meta map[string]string) (string, error) {
	if err := f.fail(OpNewMultipart, key); err != nil {
		return "", err
	}
	return f.Store.NewMultipart(ctx, key, meta)
}

func (f *Faulty) PutPart(ctx context.Context, key, uploadID string, partNumber int, r io.Reader, size int64, sha256 []byte) (blob.Part, error) {
	r, err := f.partBody(key, r)
	if err != nil {
		return blob.Part{}, err
	}
	return f.Store.PutPart(ctx, key, uploadID, partNumber, r, size, sha256)
}

func (f *Faulty) PutPartCRC32C(ctx context.Context, key, uploadID string, partNumber int, r io.Reader, size int64, crc uint32) (blob.Part, error) {
	r, err := f.partBody(key, r)
	if err != nil {
		return blob.Part{}, err
	}
	return f.Store.PutPartCRC32C(ctx, key, uploadID, partNumber, r, size, crc)
}

// partBody applies a PutPart fault: its error, or with Corrupt a bit of
// the part's first byte flipped on the way (the part then a stream, sent
// once).
func (f *Faulty) partBody(key string, r io.Reader) (io.Reader, error) {
	ft := f.fault(OpPutPart, key)
	switch {
	case ft == nil:
		return r, nil
	case ft.Err != nil:
		return nil, ft.Err
	case ft.Corrupt:
		return &faultyBody{ReadCloser: io.NopCloser(r), ctx: context.Background(), left: -1, corrupt: true}, nil
	}
	return r, nil
}

func (f *Faulty) CopyPart(ctx context.Context, key, uploadID string, partNumber int, srcKey string, offset, length int64) (blob.Part, error) {
	if err := f.fail(OpCopyPart, key); err != nil {
		return blob.Part{}, err
	}
	return f.Store.CopyPart(ctx, key, uploadID, partNumber, srcKey, offset, length)
}

func (f *Faulty) ListParts(ctx context.Context, key, uploadID string) ([]blob.Part, error) {
	if err := f.fail(OpListParts, key); err != nil {
		return nil, err
	}
	return f.Store.ListParts(ctx, key, uploadID)
}

func (f *Faulty) CompleteMultipart(ctx context.Context, key, uploadID string, parts []blob.Part) (blob.Info, error) {
	if err := f.fail(OpCompleteMultipart, key); err != nil {
		return blob.Info{}, err
	}
	return f.Store.CompleteMultipart(ctx, key, uploadID, parts)
}

func (f *Faulty) AbortMultipart(ctx context.Context, key, uploadID string) error {
	if err := f.fail(OpAbortMultipart, key); err != nil {
		return err
	}
	return f.Store.AbortMultipart(ctx, key, uploadID)
}

// Purge purges through the wrapped store, or fails with Unimplemented when
// it can't purge.
func (f *Faulty) Purge(ctx context.Context, key string) error {
	if err := f.fail(OpPurge, key); err != nil {
		return err
	}
	p, ok := f.Store.(blob.Purger)
	if !ok {
		return errs.New(errs.Unimplemented, "", "%s can't purge", f.Endpoint())
	}
	return p.Purge(ctx, key)
}

// Gate stalls the reads it holds until it is opened: its Hold is a
// Fault's Hold.
type Gate struct {
	entered, open       chan struct{}
	enterOnce, openOnce sync.Once
}

// NewGate returns a closed gate.
func NewGate() *Gate { return &Gate{entered: make(chan struct{}), open: make(chan struct{})} }

// Hold waits until the gate is open or ctx ends.
func (g *Gate) Hold(ctx context.Context) error {
	g.enterOnce.Do(func() { close(g.entered) })
	select {
	case <-g.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Entered is closed once a read waited at the gate.
func (g *Gate) Entered() <-chan struct{} { return g.entered }

// Open lets every read through, now and from then on.
func (g *Gate) Open() { g.openOnce.Do(func() { close(g.open) }) }
