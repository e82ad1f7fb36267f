package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/wire"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

var testKey = bytes.Repeat([]byte("k"), 32)

// The tests' raft timing: raft's defaults doubled, so that a machine under
// heavy load (a heartbeat late by a second) doesn't depose leaders over and
// over. No test depends on it: they wait for events (a leader, an index,
// a write's answer), each guarded by hangGuard against a hang only.
const (
	testHeartbeat = 2 * time.Second
	hangGuard     = 5 * time.Minute
)

// testNode is one node: a state file, raft, and a gRPC server with
// PeerService, all on loopback.
type testNode struct {
	t        *testing.T
	id, dir  string
	raftAddr string
	raftAdv  string // when set, the node's --raft-advertise
	apiAddr  string
	key      []byte
	db       *state.DB
	n        *Node
	srv      *grpc.Server
}

func newNode(t *testing.T, id string, join ...string) *testNode {
	tn := &testNode{t: t, id: id, dir: t.TempDir(), raftAddr: "127.0.0.1:0", key: testKey}
	tn.start(join...)
	t.Cleanup(tn.stop)
	return tn
}

func (tn *testNode) start(join ...string) {
	t := tn.t
	t.Helper()
	var err error
	if tn.db, err = state.Open(filepath.Join(tn.dir, "vmapp.db"), state.Options{}); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", orAddr(tn.apiAddr))
	if err != nil {
		t.Fatal(err)
	}
	tn.apiAddr = lis.Addr().String()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	tn.n, err = Start(Config{ID: tn.id, RaftListen: tn.raftAddr, RaftAdvertise: tn.raftAdv, APIAddress: tn.apiAddr, Dir: filepath.Join(tn.dir, "raft"),
		Key: tn.key, Join: join, HeartbeatTimeout: testHeartbeat, ElectionTimeout: testHeartbeat,
		LeaderLeaseTimeout: testHeartbeat / 2, Logger: log.With("test-node", tn.id)}, tn.db)
	if err != nil {
		lis.Close()
		tn.db.Close()
		t.Fatal(err)
	}
	if tn.raftAdv == "" {
		tn.raftAddr = tn.n.cfg.RaftAdvertise
	}
	tn.srv = grpc.NewServer(wire.ServerOptions()...)
	pb.RegisterPeerServiceServer(tn.srv, tn.n.PeerServer())
	go tn.srv.Serve(lis)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := tn.n.JoinCluster(ctx); err != nil {
		t.Fatalf("%s: join: %v", tn.id, err)
	}
}

func orAddr(a string) string {
	if a == "" {
		return "127.0.0.1:0"
	}
	return a
}

func (tn *testNode) stop() {
	if tn.n == nil {
		return
	}
	tn.srv.Stop()
	tn.n.Shutdown()
	tn.db.Close()
	tn.n = nil
}

// gallery proposes the creation of a gallery through node tn, again while
// the cluster says nobody took it (Unavailable, as the client SDK retries).
func (tn *testNode) gallery(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	for {
		err := tn.proposeGallery(ctx, name)
		if !isNotTaken(err) || !sleepCtx(ctx, 100*time.Millisecond) {
			return err
		}
	}
}

// proposeGallery proposes the creation of a gallery through node tn, once.
func (tn *testNode) proposeGallery(ctx context.Context, name string) error {
	c := state.NewCommand(time.Now())
	c.Op = &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: &pb.Gallery{Tenant: "t", Name: name, ProvisioningState: "Succeeded"}}}
	return tn.db.Propose(ctx, c)
}

// galleries lists what tn's own file holds.
func (tn *testNode) galleries() []string {
	var out []string
	tn.db.View(context.Background(), func(tx *state.Tx) error {
		gs, err := state.Galleries.All(tx, state.Prefix("t"))
		for _, g := range gs {
			out = append(out, g.Name)
		}
		return err
	})
	return out
}

// eventually waits for cond, failing the test after a generous deadline:
// the deadline guards against a hang, it is not what the test checks.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(t *testing.T, nodes ...*testNode) *testNode {
	t.Helper()
	var leader *testNode
	eventually(t, "a leader is elected", func() bool {
		for _, tn := range nodes {
			if tn.n != nil && tn.n.IsLeader() {
				leader = tn
				return true
			}
		}
		return false
	})
	return leader
}

func threeNodes(t *testing.T) []*testNode {
	n1 := newNode(t, "n1")
	leaderOf(t, n1)
	n2 := newNode(t, "n2", n1.apiAddr)
	n3 := newNode(t, "n3", n2.apiAddr) // asks a follower: forwarded to the leader
	nodes := []*testNode{n1, n2, n3}
	caughtUp(t, nodes...)
	return nodes
}

// caughtUp waits until every node's log holds the leader's: a node that
// has just joined may still be getting its snapshot, and without it (its
// own membership) it neither votes nor stands for election.
func caughtUp(t *testing.T, nodes ...*testNode) {
	t.Helper()
	eventually(t, "every node holds the leader's log", func() bool {
		leader := leaderOf(t, nodes...)
		last := leader.n.raft.LastIndex()
		for _, tn := range nodes {
			servers, err := tn.n.configuration()
			if err != nil || len(servers) != len(nodes) || tn.n.raft.AppliedIndex() < last {
				return false
			}
		}
		return true
	})
}

func sameGalleries(t *testing.T, want []string, nodes ...*testNode) {
	t.Helper()
	for _, tn := range nodes {
		eventually(t, fmt.Sprintf("%s holds galleries %v", tn.id, want), func() bool {
			return fmt.Sprint(tn.galleries()) == fmt.Sprint(want)
		})
	}
}

// TestReplicates: a write through any node is applied on every node, and
// the node that took it holds it when Propose returns.
func TestReplicates(t *testing.T) {
	nodes := threeNodes(t)
	for i, tn := range nodes {
		name := fmt.Sprintf("g%d", i)
		if err := tn.gallery(name); err != nil {
			t.Fatalf("write through %s: %v", tn.id, err)
		}
		if got := tn.galleries(); len(got) != i+1 {
			t.Fatalf("%s returned before its own file held the write: %v", tn.id, got)
		}
	}
	// A refusal comes back to the proposer on a follower, class and all.
	if err := nodes[2].gallery("g0"); !errs.Is(err, errs.AlreadyExists) {
		t.Fatalf("a duplicate through a follower: %v, want AlreadyExists", err)
	}
	sameGalleries(t, []string{"g0", "g1", "g2"}, nodes...)
	// A node's status asks the others, each within 2 s: on a loaded
	// machine an answer may be late, so the status is asked again.
	var st *pb.ClusterStatus
	eventually(t, "a status with every node reachable", func() bool {
		var err error
		if st, err = nodes[1].n.Status(context.Background()); err != nil {
			t.Fatal(err)
		}
		return !slices.ContainsFunc(st.Nodes, func(node *pb.ClusterNode) bool { return node.State == "Unreachable" })
	})
	if len(st.Nodes) != 3 || !slices.Contains([]string{"n1", "n2", "n3"}, st.LeaderId) {
		t.Fatalf("status: %v", st)
	}
	for _, node := range st.Nodes {
		if node.ApiAddress == "" {
			t.Errorf("status of %s: %v", node.Id, node)
		}
	}
}

// TestFailover: the leader dies; the others elect one and take writes;
// the old leader, back, catches up.
func TestFailover(t *testing.T) {
	nodes := threeNodes(t)
	if err := nodes[0].gallery("before"); err != nil {
		t.Fatal(err)
	}
	old := leaderOf(t, nodes...)
	old.stop()
	var rest []*testNode
	for _, tn := range nodes {
		if tn != old {
			rest = append(rest, tn)
		}
	}
	leaderOf(t, rest...)
	// The new leader's first entry is a no-op the state never sees: reads
	// must not wait for it (they hung until the next write). A follower
	// that doesn't know the new leader yet refuses at once; it is asked
	// again.
	for _, tn := range rest {
		eventually(t, "a read on "+tn.id+" after the election", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			return tn.n.Sync(ctx) == nil
		})
	}
	if err := rest[1].gallery("after"); err != nil {
		t.Fatalf("write after the leader died: %v", err)
	}
	old.start()
	sameGalleries(t, []string{"after", "before"}, nodes...)
}

// TestSyncLeaderUnreachable: a follower whose leader's API can't be
// reached (its gRPC server stopped while its raft still leads, as a leader
// killed is until the followers' heartbeat timeout) refuses a read as it
// refuses a write no node took: Unavailable with field "leader", which
// tells clients (a download's plan) that the cluster is between leaders.
// Every node without a leader at all refuses the same way.
func TestSyncLeaderUnreachable(t *testing.T) {
	nodes := threeNodes(t)
	leader := leaderOf(t, nodes...)
	leader.srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	for _, tn := range nodes {
		if tn == leader {
			continue
		}
		err := tn.n.Sync(ctx)
		if !errs.Is(err, errs.Unavailable) || errs.FieldOf(err) != fieldNotLeader || !strings.Contains(err.Error(), "can't be reached for a read index") {
			t.Fatalf("a read on %s, its leader %s unreachable: %v (field %q), want Unavailable on field leader", tn.id, leader.id, err, errs.FieldOf(err))
		}
		t.Logf("%s: %v", tn.id, err)
	}
	// Alone, a node knows no leader: the same class and field.
	for _, tn := range nodes {
		if tn != nodes[2] {
			tn.stop()
		}
	}
	eventually(t, nodes[2].id+" knows no leader", func() bool { return nodes[2].n.leader() == "" })
	if err := nodes[2].n.Sync(ctx); !errs.Is(err, errs.Unavailable) || errs.FieldOf(err) != fieldNotLeader {
		t.Fatalf("a read on %s alone: %v (field %q), want Unavailable on field leader", nodes[2].id, err, errs.FieldOf(err))
	}
}

// TestDeposedLeaderWork: a command of leader-only work from an older term
// is refused.
func TestDeposedLeaderWork(t *testing.T) {
	nodes := threeNodes(t)
	leader := leaderOf(t, nodes...)
	c := state.NewCommand(time.Now())
	c.Op = &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: &pb.Gallery{Tenant: "t", Name: "old"}}}
	ctx := state.WithLeaderTerm(context.Background(), leader.n.raft.CurrentTerm()-1)
	if err := leader.n.Propose(ctx, c); !errs.Is(err, errs.Aborted) {
		t.Fatalf("a command from an older term: %v, want Aborted", err)
	}
	for _, tn := range nodes {
		if tn != leader {
			if err := tn.n.Propose(state.WithLeaderTerm(context.Background(), 99), c); !errs.Is(err, errs.Aborted) {
				t.Fatalf("leader-only work on a follower: %v, want Aborted", err)
			}
		}
	}
}

// TestSingleBecomesCluster: a file a single vmappd wrote becomes the first
// node's state, and a node that joins gets all of it.
func TestSingleBecomesCluster(t *testing.T) {
	dir := t.TempDir()
	db, err := state.Open(filepath.Join(dir, "vmapp.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	single := &testNode{t: t, db: db}
	for _, g := range []string{"a", "b"} {
		if err := single.gallery(g); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	n1 := &testNode{t: t, id: "n1", dir: dir, raftAddr: "127.0.0.1:0", key: testKey}
	n1.start()
	t.Cleanup(n1.stop)
	leaderOf(t, n1)
	n2 := newNode(t, "n2", n1.apiAddr)
	sameGalleries(t, []string{"a", "b"}, n1, n2)
}

// TestAdvertisedName: a raft address given as a host name stays a name in
// the cluster's configuration and status, so that the nodes dial it by
// name and a node whose IP changes (a container recreated) is still found;
// the node takes part in the log, after a restart too.
func TestAdvertisedName(t *testing.T) {
	n1 := newNode(t, "n1")
	leaderOf(t, n1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	named := fmt.Sprintf("localhost:%d", port)
	n2 := &testNode{t: t, id: "n2", dir: t.TempDir(), raftAddr: fmt.Sprintf("127.0.0.1:%d", port), raftAdv: named, key: testKey}
	n2.start(n1.apiAddr)
	t.Cleanup(n2.stop)

	servers, err := n1.n.configuration()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range servers {
		got = append(got, fmt.Sprintf("%s=%s", s.ID, s.Address))
	}
	if want := fmt.Sprintf("[n1=%s n2=%s]", n1.raftAddr, named); fmt.Sprint(got) != want {
		t.Fatalf("raft configuration %v, want %s", got, want)
	}
	st, err := n2.n.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range st.Nodes {
		if node.Id == "n2" && node.RaftAddress != named {
			t.Errorf("status shows n2 at %s, want %s", node.RaftAddress, named)
		}
	}
	if err := n1.gallery("a"); err != nil {
		t.Fatal(err)
	}
	sameGalleries(t, []string{"a"}, n1, n2)
	n2.stop()
	n2.start()
	if err := n1.gallery("b"); err != nil {
		t.Fatal(err)
	}
	sameGalleries(t, []string{"a", "b"}, n1, n2)
}

// TestMembershipRefusals: the wrong ids, addresses and keys are refused
// with clear errors, and the last node can't be removed.
func TestMembershipRefusals(t *testing.T) {
	n1 := newNode(t, "n1")
	leaderOf(t, n1)
	ctx := context.Background()
	if _, err := n1.n.RemoveNode(ctx, "n1"); !errs.Is(err, errs.FailedPrecondition) {
		t.Fatalf("removing the last node: %v", err)
	}
	if _, err := n1.n.RemoveNode(ctx, "nope"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("removing an unknown node: %v", err)
	}
	if _, err := n1.n.AddNode(ctx, "bad id!", "127.0.0.1:1", "127.0.0.1:2"); !errs.Is(err, errs.InvalidArgument) {
		t.Fatalf("a bad id: %v", err)
	}
	if _, err := n1.n.AddNode(ctx, "n1", "127.0.0.1:1", n1.apiAddr); !errs.Is(err, errs.AlreadyExists) {
		t.Fatalf("a duplicate id: %v", err)
	}
	// An address where nothing listens.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	if _, err := n1.n.AddNode(ctx, "n9", deadAddr, deadAddr); !errs.Is(err, errs.FailedPrecondition) {
		t.Fatalf("a wrong address: %v", err)
	}
	// A node of another cluster (its own, bootstrapped alone).
	other := newNode(t, "n2")
	leaderOf(t, other)
	if _, err := n1.n.AddNode(ctx, "n2", other.raftAddr, other.apiAddr); !errs.Is(err, errs.FailedPrecondition) {
		t.Fatalf("a node of another cluster: %v", err)
	}
	// A node holding another key.
	wrong := &testNode{t: t, id: "n3", dir: t.TempDir(), raftAddr: "127.0.0.1:0", key: bytes.Repeat([]byte("x"), 32)}
	wrong.start()
	t.Cleanup(wrong.stop)
	if _, err := n1.n.AddNode(ctx, "n3", wrong.raftAddr, wrong.apiAddr); !errs.Is(err, errs.FailedPrecondition) {
		t.Fatalf("a node with another key: %v", err)
	}
	st, _ := n1.n.Status(ctx)
	if len(st.Nodes) != 1 {
		t.Fatalf("refused nodes were added: %v", st.Nodes)
	}
}

// TestMetrics: a node's raft figures are on its registry.
func TestMetrics(t *testing.T) {
	n1 := newNode(t, "n1")
	leaderOf(t, n1)
	if err := n1.gallery("g"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	n1.n.Register(reg)
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			name := mf.GetName()
			for _, l := range m.Label {
				name += "{" + l.GetValue() + "}"
			}
			got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if got["vmapp_raft_state{Leader}"] != 1 || got["vmapp_raft_state{Follower}"] != 0 || got["vmapp_raft_has_leader"] != 1 {
		t.Errorf("state metrics: %v", got)
	}
	if got["vmapp_raft_applied_index"] == 0 || got["vmapp_raft_applied_index"] > got["vmapp_raft_commit_index"] {
		t.Errorf("index metrics: %v", got)
	}
	if got["vmapp_raft_leader_changes_total"] < 1 {
		t.Errorf("leader changes: %v", got)
	}
}
