// Package capped caps a regional store's egress: a blob.Store whose reads
// (Get) share one rate cap (internal/ratecap), whoever reads — vmappd's
// ReadRange for downloads, the replicator's copies, the scrubs. vmappd
// wraps each endpoint whose regions file entry sets egressMBps in one, and
// gives no presigned URL of it in download plans, since bytes read
// through a URL can't be capped: downloaders read it through vmappd.
//
// Calls that move no bytes out of the store (Stat, Put, CopyObject,
// CopyPart, ...) pass through uncapped.
package capped

import (
	"context"
	"io"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/internal/ratecap"
)

// Wrap returns st with every byte read from it through c (shared by every
// reader). A nil c returns st. A Purger stays a Purger.
func Wrap(st blob.Store, c *ratecap.Cap) blob.Store {
	if c == nil {
		return st
	}
	s := &store{Store: st, c: c}
	if p, ok := st.(blob.Purger); ok {
		return &purger{store: s, p: p}
	}
	return s
}

type store struct {
	blob.Store
	c *ratecap.Cap
}

// Get reads through the cap: the reader waits after each read until the
// cap lets its bytes through.
func (s *store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	r, err := s.Store.Get(ctx, key, offset, length)
	if err != nil {
		return nil, err
	}
	return s.c.Reader(ctx, r), nil
}

type purger struct {
	*store
	p blob.Purger
}

func (p *purger) Purge(ctx context.Context, key string) error { return p.p.Purge(ctx, key) }
