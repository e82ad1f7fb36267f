package cluster

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vmapp/vmapp/errs"
)

// others returns nodes but tn.
func others(nodes []*testNode, tn *testNode) []*testNode {
	var out []*testNode
	for _, o := range nodes {
		if o != tn {
			out = append(out, o)
		}
	}
	return out
}

// appendUncommitted stops the leader's followers and proposes gallery name
// through the leader, and returns once the leader has appended the entry,
// which it can't commit alone, with the channel the proposal's answer will
// come on. A leader that stepped down before taking the write (a slow
// machine: its lease ran out first) refuses it as not taken; then the
// followers are started again and it is tried again, up to 5 times.
func appendUncommitted(t *testing.T, nodes []*testNode, name string) (*testNode, chan error) {
	t.Helper()
	for range 5 {
		leader := leaderOf(t, nodes...)
		before := leader.n.raft.LastIndex()
		for _, f := range others(nodes, leader) {
			f.stop()
		}
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			done <- leader.proposeGallery(ctx, name)
		}()
		var early error
		eventually(t, "the leader appends the write, or refuses it", func() bool {
			select {
			case early = <-done:
				return true
			default:
				return leader.n.raft.LastIndex() > before
			}
		})
		if early == nil {
			return leader, done
		}
		if !isNotTaken(early) {
			t.Fatalf("a write the leader didn't take: %v, want Unavailable (not taken)", early)
		}
		t.Logf("the leader stepped down before taking the write (%v): again", early)
		for _, f := range others(nodes, leader) {
			f.start()
		}
	}
	t.Fatal("the leader stepped down before taking the write 5 times")
	return nil, nil
}

// TestLeadershipLostCommitted: a leader appends a write, loses the
// leadership before committing it (its followers are stopped), and is
// elected again when one follower comes back (the follower's log is
// behind, so only the old leader can win): the write commits with the new
// term's first entry, and the proposer is told it succeeded, not that it
// failed or is unknown.
func TestLeadershipLostCommitted(t *testing.T) {
	nodes := threeNodes(t)
	leader, done := appendUncommitted(t, nodes, "lost")
	eventually(t, "the leader steps down, cut off from the majority", func() bool { return !leader.n.IsLeader() })
	select {
	case err := <-done:
		t.Fatalf("answered before the write's fate was known: %v", err)
	default:
	}
	followers := others(nodes, leader)
	followers[0].start()
	if err := <-done; err != nil {
		t.Fatalf("a write committed after the leader lost its leadership: %v, want success", err)
	}
	if got := testutil.ToFloat64(leader.n.m.settled.WithLabelValues("committed")); got != 1 {
		t.Errorf("writes settled as committed: %v, want 1", got)
	}
	followers[1].start()
	sameGalleries(t, []string{"lost"}, nodes...)
}

// TestLeadershipLostUnknown: a leader appends a write and is shut down
// before it commits: the outcome is unknown to it, and it says so
// (Aborted, which clients don't retry blindly), not Unavailable (not
// taken). Here the write was indeed lost: the other two elect a leader
// without it, and the old leader, back, drops its entry.
func TestLeadershipLostUnknown(t *testing.T) {
	nodes := threeNodes(t)
	leader, done := appendUncommitted(t, nodes, "lost")
	leader.stop()
	err := <-done
	if !errs.Is(err, errs.Aborted) {
		t.Fatalf("a write of a leader shut down before committing it: %v, want Aborted (outcome unknown)", err)
	}
	t.Logf("the answer: %v", err)
	followers := others(nodes, leader)
	for _, f := range followers {
		f.start()
	}
	if err := followers[0].gallery("after"); err != nil {
		t.Fatal(err)
	}
	leader.start()
	sameGalleries(t, []string{"after"}, nodes...)
}

// TestForwardNeverSent: a follower that can't connect to the leader's API
// (its gRPC server is down, raft still leading) sent nothing: the write is
// refused as not taken (Unavailable, retried by clients) and is nowhere.
func TestForwardNeverSent(t *testing.T) {
	nodes := threeNodes(t)
	leader := leaderOf(t, nodes...)
	leader.srv.Stop()
	follower := others(nodes, leader)[0]
	// A connection made before may not have seen the server go yet: a call
	// on it is sent, and its outcome unknown (Aborted). A new one is
	// refused.
	follower.n.peers.close()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	err := follower.proposeGallery(ctx, "unsent")
	if !isNotTaken(err) {
		t.Fatalf("a write forwarded to a leader that can't be reached: %v, want Unavailable (not taken)", err)
	}
	t.Logf("the answer: %v", err)
	caughtUp(t, nodes...)
	for _, tn := range nodes {
		if got := tn.galleries(); len(got) != 0 {
			t.Fatalf("%s holds %v", tn.id, got)
		}
	}
}
