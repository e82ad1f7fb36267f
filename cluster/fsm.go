package cluster

import (
	"crypto/sha256"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	"github.com/vmapp/vmapp/state"
)

// fsm is raft's state machine: the state file. A committed command is
// applied with state.ApplyLogged, which skips what the file already holds
// (it survives restarts, and raft replays the log from its last snapshot);
// a snapshot is a consistent copy of the file; restoring one replaces it.
type fsm struct {
	db      *state.DB
	m       *metrics
	results *results
}

// result is what Apply returns to the proposer on the leader.
type result struct {
	index uint64
	err   error
	// sum is the sha256 of the command's bytes, kept for a watched index
	// only: a deposed leader learns from it whether the entry applied there
	// is its own, even if the log was compacted since.
	sum    [32]byte
	summed bool
}

func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	entries := make([]state.Entry, len(logs))
	for i, l := range logs {
		entries[i] = state.Entry{Index: l.Index, Term: l.Term}
		if l.Type != raft.LogCommand {
			continue
		}
		c := &statepb.Command{}
		if err := proto.Unmarshal(l.Data, c); err != nil {
			// Every node would fail alike: nothing to do but stop.
			panic(fmt.Sprintf("raft log entry %d is not a command: %v", l.Index, err))
		}
		entries[i].Cmd = c
	}
	out := make([]any, len(logs))
	for i, err := range f.db.ApplyLogged(entries) {
		if err != nil && errs.ClassOf(err) == errs.Internal {
			// The file could not take a committed command: going on would
			// diverge from the other nodes. A restart replays it.
			panic(fmt.Sprintf("applying raft log entry %d failed: %v", logs[i].Index, err))
		}
		out[i] = result{index: logs[i].Index, err: err}
		if entries[i].Cmd != nil {
			f.results.put(logs[i].Index, err, logs[i].Data)
		}
	}
	return out
}

// results keeps the outcomes of the last commands applied (a refusal or
// nil), by log index, and those of the indexes a deposed leader waits for
// (watch), however many commands are applied meanwhile.
type results struct {
	mu      sync.Mutex
	last    [4096]result
	watched map[uint64]*result
}

func (r *results) put(index uint64, err error, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last[index%uint64(len(r.last))] = result{index: index, err: err}
	if w := r.watched[index]; w != nil {
		*w = result{index: index, err: err, sum: sha256.Sum256(data), summed: true}
	}
}

// applied returns what was applied at a watched index: its outcome and
// whether its bytes are data (false, false when not known).
func (r *results) applied(index uint64, data []byte) (same, ok bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.watched[index]
	if w == nil || !w.summed || w.index != index {
		return false, false, nil
	}
	return w.sum == sha256.Sum256(data), true, w.err
}

// watch keeps the outcome of the command at index until the returned
// function is called.
func (r *results) watch(index uint64) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watched == nil {
		r.watched = map[uint64]*result{}
	}
	r.watched[index] = &result{}
	return func() {
		r.mu.Lock()
		delete(r.watched, index)
		r.mu.Unlock()
	}
}

// get returns the outcome of the command at index, if known.
func (r *results) get(index uint64) (error, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w := r.watched[index]; w != nil && w.index == index {
		return w.err, true
	}
	res := r.last[index%uint64(len(r.last))]
	return res.err, res.index == index
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.db.BeginSnapshot()
	if err != nil {
		return nil, err
	}
	return snapshot{s, f.m}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.db.Restore(rc)
}

type snapshot struct {
	s *state.Snapshot
	m *metrics
}

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	n, err := s.s.WriteTo(sink)
	if err != nil {
		sink.Cancel()
		return err
	}
	s.m.snapshotBytes.Set(float64(n))
	s.m.snapshotTime.Observe(time.Since(start).Seconds())
	return sink.Close()
}

func (s snapshot) Release() { s.s.Release() }
