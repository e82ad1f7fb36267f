package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
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

// A write that fails tells whether it may have been applied. This is the
// rule of etcd and Consul (a write is retried for the caller only when no
// node can have taken it) and of gRPC's codes:
//   - Unavailable, field "leader" (notTaken): no node took the command (no
//     leader, a node that didn't lead, an election or a leadership transfer
//     under way, a leader too busy to enqueue it, or an entry that lost its
//     place in the log to another leader's). Retrying is safe; this node
//     does it for up to notTakenWait, then the client SDK does.
//   - Aborted (unknownOutcome): the command may or may not be applied (the
//     leader lost its leadership after appending it and couldn't learn what
//     became of it; the leader a write was forwarded to died mid-call).
//     Clients don't retry it blindly: read, then retry if it isn't there.
// A leader that loses its leadership after appending the command waits
// (settle) until the log shows whether it was committed: then the answer
// is the command's own.

// settleTimeout bounds the wait of a deposed leader for the fate of an
// entry it had appended: the cluster's election and the catching up.
const settleTimeout = 2 * time.Minute

// notTakenWait bounds how long a node asks the leader of the moment again
// for a command no node took: long enough for the cluster to notice a dead
// leader and elect another (a follower goes on naming the old leader until
// then, and its API refuses connections), on a loaded machine too.
const notTakenWait = 30 * time.Second

// apply commits an encoded command and returns its index: here when this
// node leads, else on the leader. A command no node took is asked again of
// the leader of the moment every 100 ms, for up to notTakenWait.
func (n *Node) apply(ctx context.Context, b []byte, leaderOnly bool) (uint64, error) {
	var err error
	deadline := time.Now().Add(notTakenWait)
	for attempt := 0; ; attempt++ {
		if attempt > 0 && (time.Now().After(deadline) || !sleepCtx(ctx, 100*time.Millisecond)) {
			break // an election: wait for its outcome
		}
		var index uint64
		index, err = n.applyOnce(ctx, b, leaderOnly)
		if !isNotTaken(err) || leaderOnly {
			return index, err
		}
	}
	return 0, err
}

func (n *Node) applyOnce(ctx context.Context, b []byte, leaderOnly bool) (uint64, error) {
	if n.IsLeader() {
		return n.applyHere(ctx, b)
	}
	if leaderOnly {
		return 0, errs.New(errs.Aborted, "", "this node no longer leads the cluster")
	}
	id := n.leader()
	if id == "" || id == raft.ServerID(n.cfg.ID) {
		return 0, n.noLeader()
	}
	return n.forward(ctx, id, b)
}

// forward has the leader commit b. A call that failed on the way may have
// reached the leader, unless no connection was ever made.
func (n *Node) forward(ctx context.Context, id raft.ServerID, b []byte) (uint64, error) {
	index, err := n.peers.apply(ctx, n.apiAddress(id), b)
	if err == nil || !errs.Is(err, errs.Unavailable) || isNotTaken(err) {
		return index, err
	}
	if strings.Contains(err.Error(), "Error while dialing") {
		return 0, notTaken("leader %s can't be reached: %v", id, err)
	}
	return 0, unknownOutcome(fmt.Errorf("the call to leader %s failed: %w", id, err))
}

// applyHere commits b through raft on this node, the leader.
func (n *Node) applyHere(ctx context.Context, b []byte) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, notTaken("node %s doesn't lead the cluster", n.cfg.ID)
	}
	f := n.raft.Apply(b, applyTimeout)
	err := f.Error()
	switch {
	case err == nil:
		r, _ := f.Response().(result)
		return f.Index(), r.err
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return 0, notTaken("node %s no longer leads the cluster", n.cfg.ID)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return 0, notTaken("the leader is overloaded: it didn't take the change in %s", applyTimeout)
	case errors.Is(err, raft.ErrAbortedByRestore):
		return 0, notTaken("a snapshot was restored while the change was being committed")
	case errors.Is(err, raft.ErrLeadershipLost):
		return n.settle(ctx, f.Index(), b)
	}
	return 0, unknownOutcome(err) // shut down mid-commit, the log store failing
}

// settle learns the fate of the entry this node appended at index as the
// leader before it lost the leadership: once the node has applied the log
// up to index (following the new leader, or leading again), the entry there
// is either b, committed (its result is the answer), or another leader's
// (b was never applied).
func (n *Node) settle(ctx context.Context, index uint64, b []byte) (uint64, error) {
	i, err := n.settleWait(ctx, index, b)
	outcome := "unknown"
	switch {
	case i != 0:
		outcome = "committed"
	case isNotTaken(err):
		outcome = "not_applied"
	}
	n.m.settled.WithLabelValues(outcome).Inc()
	n.log.Warn("this node lost the leadership while committing a change", "index", index, "outcome", outcome)
	return i, err
}

func (n *Node) settleWait(ctx context.Context, index uint64, b []byte) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	defer n.results.watch(index)() // applied since leadership was lost: still in results.last
	for n.raft.AppliedIndex() < index {
		select {
		case <-n.closed:
			return 0, unknownOutcome(raft.ErrLeadershipLost)
		case <-ctx.Done():
			return 0, unknownOutcome(raft.ErrLeadershipLost)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if same, ok, err := n.results.applied(index, b); ok {
		if !same {
			return 0, notTaken("the leadership changed before the change was committed: it was not applied")
		}
		if werr := n.db.WaitApplied(ctx, index); werr != nil {
			return 0, unknownOutcome(werr)
		}
		return index, err
	}
	var l raft.Log // applied before it was watched: read the log
	if err := n.logs.GetLog(index, &l); err != nil {
		return 0, unknownOutcome(fmt.Errorf("%w (entry %d: %v)", raft.ErrLeadershipLost, index, err))
	}
	if l.Type != raft.LogCommand || !bytes.Equal(l.Data, b) {
		return 0, notTaken("the leadership changed before the change was committed: it was not applied")
	}
	if err := n.db.WaitApplied(ctx, index); err != nil {
		return 0, unknownOutcome(err)
	}
	res, ok := n.results.get(index)
	if !ok {
		return 0, unknownOutcome(fmt.Errorf("%w (entry %d committed, its result forgotten)", raft.ErrLeadershipLost, index))
	}
	return index, res
}

func notTaken(format string, args ...any) error {
	return errs.New(errs.Unavailable, fieldNotLeader, format+"; it was not applied: retry", args...)
}

// isNotTaken tells whether err says no node took the command.
func isNotTaken(err error) bool {
	return errs.Is(err, errs.Unavailable) && errs.FieldOf(err) == fieldNotLeader
}

func unknownOutcome(err error) error {
	return errs.Wrap(errs.Aborted, err, "the cluster's leader changed while the change was being committed: it may or may not have been applied; read it back, then retry if it isn't there")
}

// Sync waits until this node's file holds every change committed before
// the call (a read index, confirmed by the leader): reads after it are
// linearizable. Without a leader to confirm it, it fails Unavailable with
// field "leader", as a write no node took does: no leader known, one that
// no longer leads, or one that can't be reached (dead, and not noticed
// yet: the followers name it until their heartbeat timeout).
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
	if errs.Is(err, errs.Unavailable) && !isNotTaken(err) && ctx.Err() == nil {
		return errs.New(errs.Unavailable, fieldNotLeader, "leader %s can't be reached for a read index (%v); retry, or ask another node", id, err)
	}
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
