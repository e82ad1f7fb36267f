package state

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/vmapp/vmapp/internal/atomicfile"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
)

// Entry is a committed log entry holding a command.
type Entry struct {
	Index, Term uint64
	Cmd         *statepb.Command // nil for entries that change nothing here
}

// applied tracks the last log index this file holds, for waiters.
type applied struct {
	mu    sync.Mutex
	index uint64
	wake  chan struct{} // closed and replaced when index grows
}

func (a *applied) get() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.index
}

func (a *applied) set(i uint64) {
	a.mu.Lock()
	if a.wake == nil {
		a.wake = make(chan struct{})
	}
	if i != a.index {
		a.index = i
		close(a.wake)
		a.wake = make(chan struct{})
	}
	a.mu.Unlock()
}

func (a *applied) waitChan() (uint64, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.wake == nil {
		a.wake = make(chan struct{})
	}
	return a.index, a.wake
}

// ApplyLogged applies a cluster's committed entries in one transaction and
// returns each one's outcome. Entries at or below the index the file holds
// were applied before (the file is kept across restarts, and raft replays
// the log from its last snapshot): they are skipped, so applying is
// idempotent. A nil outcome for them and for entries without a command.
func (db *DB) ApplyLogged(entries []Entry) []error {
	results := make([]error, len(entries))
	have := db.applied.get()
	var cmds []*statepb.Command
	var idx []int
	var last uint64
	for i, e := range entries {
		last = max(last, e.Index)
		if e.Index <= have || e.Cmd == nil {
			continue
		}
		cmds = append(cmds, e.Cmd)
		idx = append(idx, i)
	}
	if last <= have {
		return results
	}
	terms := make([]uint64, len(cmds))
	for j, i := range idx {
		terms[j] = entries[i].Term
	}
	for j, err := range db.applyBatch(cmds, terms, last) {
		results[idx[j]] = err
	}
	return results
}

// WaitApplied waits until the file holds log index i (or ctx ends).
func (db *DB) WaitApplied(ctx context.Context, i uint64) error {
	for {
		have, wake := db.applied.waitChan()
		if have >= i {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func readApplied(b *bolt.DB) uint64 {
	var n uint64
	b.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			if v := m.Get(keyApplied); len(v) == 8 {
				n = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	return n
}

// Snapshot is a consistent view of the file taken at one instant, written
// out later (while commands go on being applied).
type Snapshot struct {
	tx    *bolt.Tx
	Index uint64 // the log index it holds
}

// BeginSnapshot captures the state as it is now. Release it when done.
func (db *DB) BeginSnapshot() (*Snapshot, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	tx, err := db.bolt.Begin(false)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{tx: tx}
	if v := tx.Bucket(bucketMeta).Get(keyApplied); len(v) == 8 {
		s.Index = binary.BigEndian.Uint64(v)
	}
	return s, nil
}

// WriteTo writes the captured file.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) { return s.tx.WriteTo(w) }

// Size is the captured file's size.
func (s *Snapshot) Size() int64 { return s.tx.Size() }

// Release ends the snapshot.
func (s *Snapshot) Release() { s.tx.Rollback() }

// Restore replaces the whole state with a file read from r (a snapshot of
// this or another node, a backup). The file is checked first: it must open
// as a state file of a schema this code reads. Watchers are called with nil:
// everything may have changed.
func (db *DB) Restore(r io.Reader) error {
	tmp := db.path + ".restore"
	if err := atomicfile.WriteFrom(tmp, r, 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := checkFile(tmp); err != nil {
		return fmt.Errorf("the snapshot is not a usable state file: %w", err)
	}
	db.mu.Lock()
	if err := db.bolt.Close(); err != nil {
		db.mu.Unlock()
		return err
	}
	err := os.Rename(tmp, db.path)
	if err == nil {
		err = atomicfile.SyncDir(filepath.Dir(db.path))
	}
	b, oerr := openBolt(db.path, 0)
	if oerr == nil {
		oerr = migrate(b, db.log)
	}
	if oerr != nil {
		db.mu.Unlock()
		return fmt.Errorf("reopen the state after restoring it: %w", oerr) // unusable: vmappd must stop
	}
	db.bolt = b
	db.mu.Unlock()
	db.applied.set(readApplied(b))
	db.notify([]*statepb.Command{nil}, []error{nil})
	return err
}

// checkFile opens a state file read-only and checks its schema.
func checkFile(path string) error {
	b, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 1e9})
	if err != nil {
		return err
	}
	defer b.Close()
	return b.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			return fmt.Errorf("no meta bucket")
		}
		if s := schemaOf(tx); s > SchemaVersion || s == 0 {
			return fmt.Errorf("schema version %d (this vmappd reads 1 to %d)", s, SchemaVersion)
		}
		return nil
	})
}

// ForgetLog drops the log index the file holds: it is about to start a new
// log (a cluster bootstrapped on it, a restored snapshot), whose indexes
// start again at 1.
func (db *DB) ForgetLog() error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	err := db.bolt.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyApplied) })
	if err == nil {
		db.applied.reset()
	}
	return err
}

// Empty tells whether the file holds no record at all.
func (db *DB) Empty() (bool, error) {
	empty := true
	db.mu.RLock()
	defer db.mu.RUnlock()
	err := db.bolt.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			if string(name) != string(bucketMeta) {
				if k, _ := b.Cursor().First(); k != nil {
					empty = false
				}
			}
			return nil
		})
	})
	return empty, err
}

func (a *applied) reset() {
	a.mu.Lock()
	a.index = 0
	a.mu.Unlock()
}
