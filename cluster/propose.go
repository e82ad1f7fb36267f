package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	"github.com/vmapp/vmapp/state"
)

// applyTimeout bounds the wait for raft to take a command.
const applyTimeout = 10 * time.Second

// Propose has cmd committed by the cluster and applied to this node's file
// (state.Log): on the leader through raft, elsewhere forwarded to the
// leader. Leader-only work (a ctx from WithLeaderTerm) is never forwarded.
func (n *Node) Propose(ctx context.Context, cmd *statepb.Command) error {
	if t := state.LeaderTermOf(ctx); t != 0 {
		cmd.LeaderTerm = t
		if !n.IsLeader() {
			return errs.New(errs.Aborted, "", "this node no longer leads the cluster")
		}
	}
	b, err := proto.Marshal(cmd)
	if err != nil {
		return err
	}
	index, err := n.apply(ctx, b, cmd.LeaderTerm != 0)
	if err != nil {
		return err
	}
	return n.db.WaitApplied(ctx, index)
}

// apply commits an encoded command and returns its index: here when this
// node leads, else on the leader (again on a new leader when the one asked
// had stepped down before taking it).
func (n *Node) apply(ctx context.Context, b []byte, leaderOnly bool) (uint64, error) {
	for attempt := 0; ; attempt++ {
		if n.IsLeader() {
			index, err := n.applyHere(b)
			if !errors.Is(err, raft.ErrNotLeader) || leaderOnly {
				return index, err
			}
		} else if leaderOnly {
			return 0, errs.New(errs.Aborted, "", "this node no longer leads the cluster")
		}
		id := n.leader()
		if id == "" {
			if attempt < 20 && sleepCtx(ctx, 100*time.Millisecond) {
				continue // an election: wait for its outcome
			}
			return 0, n.noLeader()
		}
		if id == raft.ServerID(n.cfg.ID) {
			continue
		}
		index, err := n.peers.apply(ctx, n.apiAddress(id), b)
		if errs.Is(err, errs.Unavailable) && errs.FieldOf(err) == fieldNotLeader && attempt < 20 {
			sleepCtx(ctx, 50*time.Millisecond) // it stepped down before taking it: ask the new one
			continue
		}
		return index, err
	}
}

// applyHere commits b through raft on this node, the leader.
func (n *Node) applyHere(b []byte) (uint64, error) {
	f := n.raft.Apply(b, applyTimeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return 0, err
		case errors.Is(err, raft.ErrLeadershipLost):
			return 0, errs.Wrap(errs.Unavailable, err, "leadership changed while the change was being committed: it may or may not have been applied; read, then retry")
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return 0, errs.Wrap(errs.Unavailable, err, "the cluster is overloaded: retry")
		}
		return 0, errs.Wrap(errs.Unavailable, err, "the cluster couldn't commit the change")
	}
	r, _ := f.Response().(result)
	return f.Index(), r.err
}

// Sync waits until this node's file holds every change committed before
// the call (a read index, confirmed by the leader): reads after it are
// linearizable.
func (n *Node) Sync(ctx context.Context) error {
	if n.IsLeader() {
		if err := n.raft.VerifyLeader().Error(); err == nil {
			return n.waitApplied(ctx, n.raft.CommitIndex())
		}
	}
	id := n.leader()
	if id == "" {
		return n.noLeader()
	}
	index, err := n.peers.readIndex(ctx, n.apiAddress(id))
	if err != nil {
		return err
	}
	return n.waitApplied(ctx, index)
}

// waitApplied waits until the file holds every entry of the log up to
// index. Raft never hands the state machine its no-op entries (a new
// leader's first entry, often the very commit index a read waits for), so
// the file's own applied index can stay below index for good: the wait ends
// at the last entry the state machine does see, and is re-aimed now and
// then while the entries are still arriving on this node.
func (n *Node) waitApplied(ctx context.Context, index uint64) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := n.db.WaitApplied(wctx, n.lastStateEntry(index))
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
	}
}

// lastStateEntry is the index of the last entry up to index that the state
// machine applies (skipping no-ops and barriers), or index itself when this
// node's log doesn't hold it yet.
func (n *Node) lastStateEntry(index uint64) uint64 {
	applied := n.db.AppliedIndex()
	for i := index; i > applied; i-- {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			return i
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i
		}
	}
	return applied
}

// apiAddress is a node's gRPC address, from the state (PutNode).
func (n *Node) apiAddress(id raft.ServerID) string {
	var addr string
	n.db.View(context.Background(), func(tx *state.Tx) error {
		if node, ok, _ := state.Nodes.Get(tx, state.NodeKey(string(id))); ok {
			addr = node.ApiAddress
		}
		return nil
	})
	return addr
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
