package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
)

// Options configure Open.
type Options struct {
	// OpenTimeout bounds the wait for the file lock; 0 means 1 second.
	OpenTimeout time.Duration
	Logger      *slog.Logger
}

// Log orders commands and has them applied: Local (the default) applies
// them to this file at once; a cluster replicates them first.
type Log interface {
	// Propose has cmd applied and returns its outcome once this node's
	// file holds it. The command may have been applied even when ctx ends
	// first.
	Propose(ctx context.Context, cmd *statepb.Command) error
	// Sync waits until this node's file holds every command committed
	// before the call, so that a read after it is linearizable.
	Sync(ctx context.Context) error
}

// DB is vmappd's state: one bbolt file, changed only by commands.
type DB struct {
	path string
	log  *slog.Logger
	bolt *bolt.DB

	mu       sync.RWMutex // Restore holds it to swap the file
	watchers []func(*statepb.Command)
	proposer Log
	local    *localLog
	applied  applied // the last raft index the file holds
	reads    atomic.Int64
}

// Open opens (creating if needed) the state file at path and migrates it
// to this code's schema. A file held by another process fails within
// OpenTimeout with Unavailable; a file of a newer schema is refused.
func Open(path string, o Options) (*DB, error) {
	if o.OpenTimeout == 0 {
		o.OpenTimeout = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := openBolt(path, o.OpenTimeout)
	if err != nil {
		return nil, err
	}
	db := &DB{path: path, log: o.Logger, bolt: b}
	if err := migrate(b, db.log); err != nil {
		b.Close()
		return nil, fmt.Errorf("state %s: %w", path, err)
	}
	db.applied.set(readApplied(b))
	db.local = newLocalLog(db)
	db.proposer = db.local
	return db, nil
}

func openBolt(path string, timeout time.Duration) (*bolt.DB, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, errs.Wrap(errs.Unavailable, err, "state %s is locked: is another vmappd running with the same --data directory?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	return b, nil
}

// Path is the file's path.
func (db *DB) Path() string { return db.path }

// Close stops applying and closes the file.
func (db *DB) Close() error {
	db.local.stop()
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.bolt.Close()
}

// View runs fn in a read transaction: a consistent view of the state.
func (db *DB) View(ctx context.Context, fn func(tx *Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.bolt.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx, reads: &db.reads}) })
}

// RecordsRead counts the records read (decoded) from the file since it was
// opened, by reads and by appliers: a measure of the work a piece of code
// does against the state, for tests and benchmarks.
func (db *DB) RecordsRead() int64 { return db.reads.Load() }

// Watch registers fn to be called with every command this node applies,
// after it is committed, in log order, and before the command's Propose (or
// a wait for its log index) returns: what a watcher drops from a cache is
// gone by the time the change is answered. fn must not block.
func (db *DB) Watch(fn func(*statepb.Command)) {
	db.mu.Lock()
	db.watchers = append(db.watchers, fn)
	db.mu.Unlock()
}

// SetLog replaces the log commands are proposed to (a cluster's).
func (db *DB) SetLog(l Log) {
	db.mu.Lock()
	db.proposer = l
	db.mu.Unlock()
}

// Propose has cmd applied through the log (see Log.Propose).
func (db *DB) Propose(ctx context.Context, cmd *statepb.Command) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	db.mu.RLock()
	l := db.proposer
	db.mu.RUnlock()
	return l.Propose(ctx, cmd)
}

// Sync waits until the file holds every command committed before the call
// (see Log.Sync): reads after it are linearizable in a cluster.
func (db *DB) Sync(ctx context.Context) error {
	db.mu.RLock()
	l := db.proposer
	db.mu.RUnlock()
	return l.Sync(ctx)
}

// notify calls the watchers with the applied commands.
func (db *DB) notify(cmds []*statepb.Command, results []error) {
	db.mu.RLock()
	ws := db.watchers
	db.mu.RUnlock()
	for i, c := range cmds {
		if results[i] != nil {
			continue
		}
		for _, w := range ws {
			w(c)
		}
	}
}

// errRetrySolo rolls a batch back when one of its commands failed inside
// (not a refusal): each is then applied in a transaction of its own.
var errRetrySolo = errors.New("retry the batch's commands one by one")

// refused tells whether an applier's error is a refusal (a classified error
// decided before anything was written) rather than a failure to write.
func refused(err error) bool { return err != nil && errs.ClassOf(err) != errs.Internal }

// applyBatch applies cmds in one write transaction and returns each one's
// outcome; terms are their raft terms (nil outside a cluster) and index,
// when not 0, the log index the batch ends at, kept with the state. A
// failure (not a refusal) of one command reruns each command in a
// transaction of its own, so one bad command costs only itself.
func (db *DB) applyBatch(cmds []*statepb.Command, terms []uint64, index uint64) []error {
	term := func(i int) uint64 {
		if terms == nil {
			return 0
		}
		return terms[i]
	}
	results := make([]error, len(cmds))
	db.mu.RLock()
	err := db.bolt.Update(func(btx *bolt.Tx) error {
		tx := &Tx{tx: btx, reads: &db.reads}
		for i, c := range cmds {
			results[i] = Apply(tx, c, term(i))
			if results[i] != nil && !refused(results[i]) {
				return errRetrySolo
			}
		}
		return setApplied(tx, index)
	})
	if errors.Is(err, errRetrySolo) {
		for i, c := range cmds {
			err := db.bolt.Update(func(btx *bolt.Tx) error {
				tx := &Tx{tx: btx, reads: &db.reads}
				if results[i] = Apply(tx, c, term(i)); results[i] != nil && !refused(results[i]) {
					return results[i]
				}
				return setApplied(tx, index)
			})
			if err != nil && results[i] == nil {
				results[i] = err
			}
		}
	} else if err != nil {
		for i := range results {
			results[i] = err
		}
	}
	db.mu.RUnlock()
	// Watchers first: a proposer waits for the applied index (WaitApplied),
	// and must find the caches the watchers keep already cleared.
	db.notify(cmds, results)
	if index != 0 && err == nil || errors.Is(err, errRetrySolo) {
		db.applied.set(max(index, db.applied.get()))
	}
	return results
}

var keyApplied = []byte("applied")

// setApplied records the log index applied last (0: none, local log).
func setApplied(tx *Tx, index uint64) error {
	if index == 0 {
		return nil
	}
	return tx.tx.Bucket(bucketMeta).Put(keyApplied, binary.BigEndian.AppendUint64(nil, index))
}

// AppliedIndex is the log index of the last command a cluster applied to
// this file (0 for a file only a single node wrote).
func (db *DB) AppliedIndex() uint64 { return db.applied.get() }

// WriteTo writes a consistent copy of the whole file to w (a backup, a
// cluster snapshot), while commands go on being applied.
func (db *DB) WriteTo(w io.Writer) (int64, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	var n int64
	err := db.bolt.View(func(tx *bolt.Tx) (err error) {
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}
