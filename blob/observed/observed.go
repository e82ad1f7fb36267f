// Package observed counts a regional store's failures: a blob.Store that
// passes every call to another and counts, in vmapp_store_errors_total,
// the errors that say the store is in trouble (unreachable, failing,
// refusing the credentials) as opposed to answers about an object (not
// found, out of range) or calls the caller gave up on.
package observed

import (
	"context"
	"errors"
	"io"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/errs"
)

// Errors is vmapp_store_errors_total, by region and endpoint (its index in
// the region, as in the regions file).
type Errors struct{ vec *prometheus.CounterVec }

// NewErrors registers vmapp_store_errors_total on reg (when not nil).
func NewErrors(reg prometheus.Registerer) *Errors {
	e := &Errors{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vmapp_store_errors_total",
		Help: "Failed calls to a regional store that say the store is in trouble (unreachable, failing, refusing vmappd's credentials), by region and endpoint index; an object not found is not one.",
	}, []string{"region", "endpoint"})}
	if reg != nil {
		reg.MustRegister(e.vec)
	}
	return e
}

// Wrap returns st counting its errors as endpoint (an index) of region.
// The series exists at 0 from now on. A Purger stays a Purger.
func (e *Errors) Wrap(st blob.Store, region, endpoint string) blob.Store {
	s := &store{Store: st, errs: e.vec.WithLabelValues(region, endpoint)}
	if p, ok := st.(blob.Purger); ok {
		return &purger{store: s, p: p}
	}
	return s
}

// trouble reports whether err says the store is in trouble. A call its
// caller cancelled says nothing; one past the caller's deadline says the
// store was too slow.
func trouble(ctx context.Context, err error) bool {
	if err == nil || errors.Is(ctx.Err(), context.Canceled) {
		return false
	}
	switch errs.ClassOf(err) {
	case errs.NotFound, errs.OutOfRange, errs.AlreadyExists, errs.InvalidArgument, errs.FailedPrecondition, errs.Aborted:
		return false
	}
	return true
}

type store struct {
	blob.Store
	errs prometheus.Counter
}

func (s *store) count(ctx context.Context, err error) error {
	if trouble(ctx, err) {
		s.errs.Inc()
	}
	return err
}

func (s *store) EnsureBucket(ctx context.Context) error {
	return s.count(ctx, s.Store.EnsureBucket(ctx))
}

func (s *store) Stat(ctx context.Context, key string) (blob.Info, error) {
	i, err := s.Store.Stat(ctx, key)
	return i, s.count(ctx, err)
}

func (s *store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key, offset, length)
	if err != nil {
		return nil, s.count(ctx, err)
	}
	return &body{ReadCloser: rc, ctx: ctx, s: s}, nil
}

func (s *store) Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) (blob.Info, error) {
	i, err := s.Store.Put(ctx, key, r, size, meta)
	return i, s.count(ctx, err)
}

func (s *store) Delete(ctx context.Context, key string) error {
	return s.count(ctx, s.Store.Delete(ctx, key))
}

func (s *store) CopyObject(ctx context.Context, dstKey, srcKey string) (blob.Info, error) {
	i, err := s.Store.CopyObject(ctx, dstKey, srcKey)
	return i, s.count(ctx, err)
}

func (s *store) PresignGet(ctx context.Context, key string, expiry time.Duration) (*url.URL, error) {
	u, err := s.Store.PresignGet(ctx, key, expiry)
	return u, s.count(ctx, err)
}

func (s *store) NewMultipart(ctx context.Context, key string, meta map[string]string) (string, error) {
	id, err := s.Store.NewMultipart(ctx, key, meta)
	return id, s.count(ctx, err)
}

func (s *store) PutPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64, sha256 []byte) (blob.Part, error) {
	p, err := s.Store.PutPart(ctx, key, uploadID, n, r, size, sha256)
	return p, s.count(ctx, err)
}

func (s *store) CopyPart(ctx context.Context, key, uploadID string, n int, srcKey string, offset, length int64) (blob.Part, error) {
	p, err := s.Store.CopyPart(ctx, key, uploadID, n, srcKey, offset, length)
	return p, s.count(ctx, err)
}

func (s *store) ListParts(ctx context.Context, key, uploadID string) ([]blob.Part, error) {
	ps, err := s.Store.ListParts(ctx, key, uploadID)
	return ps, s.count(ctx, err)
}

func (s *store) CompleteMultipart(ctx context.Context, key, uploadID string, parts []blob.Part) (blob.Info, error) {
	i, err := s.Store.CompleteMultipart(ctx, key, uploadID, parts)
	return i, s.count(ctx, err)
}

func (s *store) AbortMultipart(ctx context.Context, key, uploadID string) error {
	return s.count(ctx, s.Store.AbortMultipart(ctx, key, uploadID))
}

// body counts the errors of a Get's body (a connection lost mid-read).
type body struct {
	io.ReadCloser
	ctx context.Context
	s   *store
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.s.count(b.ctx, err)
	}
	return n, err
}

type purger struct {
	*store
	p blob.Purger
}

func (p *purger) Purge(ctx context.Context, key string) error {
	return p.count(ctx, p.p.Purge(ctx, key))
}
