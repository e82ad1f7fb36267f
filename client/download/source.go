package download

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"
)

// A Source is one place that serves the artifact's bytes: a replica's
// presigned URL, vmappd's ReadRange, a peer's agent. The scheduler
// asks it for ranges and checks what it gets: it neither knows nor cares
// what kind of source it talks to.
type Source interface {
	// Name identifies the source for the failover bookkeeping and in logs:
	// the same place has the same name in every plan ("eastus/0" however
	// often its URL is renewed; "ReadRange").
	Name() string
	// String says where the bytes come from in errors, without secrets:
	// a URL without its query.
	String() string
	// ReadRange returns the artifact's n bytes from off. The reader may
	// return fewer, or fail at any point: the scheduler checks the length
	// and the hashes, and stops reading when ctx ends. An error that
	// errors.Is ErrExpired means the source's access expired: the download
	// asks vmappd for a new plan and tries the source of the same name in
	// it. A *fatalError ends the download.
	ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error)
}

// ErrExpired is what a Source's error is (errors.Is) when its access
// expired: a presigned URL's 403.
var ErrExpired = errors.New("the source's access expired")

// tier orders the sources: every source of a lower tier is tried before
// any of a higher one, however often it failed.
type tier int

const (
	tierPeer     tier = iota // machines of the region that hold the artifact
	tierRegion               // the machine's region's replicas
	tierFallback             // other regions' replicas
	tierVmappd               // ReadRange through vmappd: the last resort
)

// source is a Source with what the scheduler keeps of it.
type source struct {
	Source
	tier tier
	// replica names a store's replica, which vmappd is told about when it
	// sends a piece failing verification; nil for other sources.
	replica *replicaRef
	// peer is the machine a peer source reads from; "" for other sources.
	peer string
	// pieces are the pieces a peer holds (PeerSource.pieces); nil: all.
	pieces []byte
	// stall ends a read that received nothing for so long; 0 means
	// stallTimeout.
	stall  time.Duration
	health *health
}

// replicaRef names a replica in vmappd's terms.
type replicaRef struct {
	region string
	index  int32
}

// health is a source's record over the whole download, kept across plans:
// its consecutive failures (sources of a tier are tried in order of them)
// and whether it was reported damaged.
type health struct {
	fails    atomic.Int32
	reported atomic.Bool
	// dropped: a peer that sent a bad piece, or failed peerMaxFails times
	// in a row, is not asked again during the download.
	dropped atomic.Bool
	// bytes counts what the source sent, for the download's account of
	// where its bytes came from.
	bytes atomic.Int64
}

// result records the outcome of an attempt at the source.
func (s *source) result(err error) {
	if err == nil {
		s.health.fails.Store(0)
	} else if s.health.fails.Add(1) >= peerMaxFails && s.peer != "" {
		s.health.dropped.Store(true)
	}
}

// stallTimeout is how long a read from s may receive nothing.
func (s *source) stallTimeout() time.Duration {
	if s.stall > 0 {
		return s.stall
	}
	return stallTimeout
}

// has tells whether s holds piece i.
func (s *source) has(i int) bool {
	return s.pieces == nil || i/8 < len(s.pieces) && s.pieces[i/8]&(1<<(i%8)) != 0
}

// hasAll tells whether s holds every piece of run.
func (s *source) hasAll(run []int) bool {
	for _, i := range run {
		if !s.has(i) {
			return false
		}
	}
	return true
}
