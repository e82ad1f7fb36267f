package cluster

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// membershipTimeout bounds a change of the raft configuration.
const membershipTimeout = 30 * time.Second

var nodeID = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$`)

func isNotLeader(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errs.Is(err, errs.Unavailable) && errs.FieldOf(err) == fieldNotLeader
}

// configuration is the raft configuration's servers.
func (n *Node) configuration() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Configuration().Servers, nil
}

// AddNode adds a voter to the cluster, on the leader (asking it when this
// node doesn't lead). The new node must be reachable at raftAddr, hold the
// cluster key, and belong to no other cluster.
func (n *Node) AddNode(ctx context.Context, id, raftAddr, apiAddr string) (*pb.ClusterStatus, error) {
	switch {
	case !nodeID.MatchString(id):
		return nil, errs.New(errs.InvalidArgument, "id", "node id '%s' is invalid: 1-64 letters, digits, '.', '_' and '-'", id)
	case raftAddr == "" || apiAddr == "":
		return nil, errs.New(errs.InvalidArgument, "raftAddress", "a node needs its raft address and its API address")
	}
	if !n.IsLeader() {
		return n.askLeader(ctx, func(c pb.PeerServiceClient, ctx context.Context) error {
			_, err := c.Join(ctx, &pb.JoinRequest{Id: id, RaftAddress: raftAddr, ApiAddress: apiAddr})
			return err
		})
	}
	servers, err := n.configuration()
	if err != nil {
		return nil, err
	}
	for _, s := range servers {
		switch {
		case string(s.ID) == id && string(s.Address) != raftAddr:
			return nil, errs.New(errs.AlreadyExists, "id", "node id '%s' is a member already, at %s: remove it first, or give the new node another id", id, s.Address)
		case string(s.ID) != id && string(s.Address) == raftAddr:
			return nil, errs.New(errs.AlreadyExists, "raftAddress", "raft address %s belongs to node '%s' already", raftAddr, s.ID)
		}
	}
	if err := n.checkCandidate(ctx, id, raftAddr, apiAddr, servers); err != nil {
		return nil, err
	}
	if err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, membershipTimeout).Error(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "adding node '%s' failed", id)
	}
	if err := n.putNode(ctx, id, raftAddr, apiAddr); err != nil {
		return nil, err
	}
	n.log.Info("node added to the cluster", "id", id, "raft", raftAddr, "api", apiAddr)
	return n.Status(ctx)
}

// checkCandidate refuses a node that can't be reached, doesn't hold the
// key, or is part of another cluster.
func (n *Node) checkCandidate(ctx context.Context, id, raftAddr, apiAddr string, servers []raft.Server) error {
	conn, err := n.stream.Dial(raft.ServerAddress(raftAddr), 5*time.Second)
	if err != nil {
		return errs.Wrap(errs.FailedPrecondition, err, "node '%s' can't be reached at raft address %s with this cluster's key: is the address right, is it started with the same --cluster-key?", id, raftAddr)
	}
	conn.Close()
	c, err := n.peers.client(apiAddr)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.NodeStatus(n.peers.ctx(cctx), &pb.NodeStatusRequest{})
	if err != nil {
		return errs.Wrap(errs.FailedPrecondition, errs.FromStatus(err), "node '%s' doesn't answer at API address %s", id, apiAddr)
	}
	if got := st.GetNode().GetId(); got != id {
		return errs.New(errs.FailedPrecondition, "id", "the node at %s is '%s', not '%s'", apiAddr, got, id)
	}
	// A member already (rejoining) knows only this cluster's nodes; a node
	// that bootstrapped or joined another knows others (or itself alone).
	for _, m := range st.Members {
		if !slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == m }) {
			return errs.New(errs.FailedPrecondition, "id", "node '%s' belongs to another cluster (of %v): stop it and empty its data directory first", id, st.Members)
		}
	}
	return nil
}

// RemoveNode takes a node out of the cluster (on the leader).
func (n *Node) RemoveNode(ctx context.Context, id string) (*pb.ClusterStatus, error) {
	if !n.IsLeader() {
		return n.askLeader(ctx, func(c pb.PeerServiceClient, ctx context.Context) error {
			_, err := c.Remove(ctx, &pb.RemoveRequest{Id: id})
			return err
		})
	}
	servers, err := n.configuration()
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(servers, func(s raft.Server) bool { return string(s.ID) == id }) {
		return nil, errs.New(errs.NotFound, "id", "node '%s' is not in the cluster", id)
	}
	if len(servers) == 1 {
		return nil, errs.New(errs.FailedPrecondition, "id", "node '%s' is the cluster's last node: it can't be removed", id)
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, membershipTimeout).Error(); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "removing node '%s' failed: a change of membership needs a majority of the voters", id)
	}
	if id != n.cfg.ID {
		c := state.NewCommand(time.Now())
		c.Op = &statepb.Command_RemoveNode{RemoveNode: &statepb.RemoveNode{Id: id}}
		if err := n.Propose(ctx, c); err != nil {
			return nil, err
		}
	}
	n.log.Info("node removed from the cluster", "id", id)
	return n.Status(ctx)
}

// askLeader makes a change of membership through a PeerService call on
// the leader, and returns the cluster's status after it.
func (n *Node) askLeader(ctx context.Context, call func(pb.PeerServiceClient, context.Context) error) (*pb.ClusterStatus, error) {
	id := n.leader()
	if id == "" {
		return nil, n.noLeader()
	}
	c, err := n.peers.client(n.apiAddress(id))
	if err != nil {
		return nil, err
	}
	if err := errs.FromStatus(call(c, n.peers.ctx(ctx))); err != nil {
		return nil, err
	}
	return n.Status(ctx)
}

func (n *Node) putSelf(ctx context.Context) error {
	return n.putNode(ctx, n.cfg.ID, n.cfg.RaftAdvertise, n.cfg.APIAddress)
}

func (n *Node) putNode(ctx context.Context, id, raftAddr, apiAddr string) error {
	c := state.NewCommand(time.Now())
	c.Op = &statepb.Command_PutNode{PutNode: &statepb.PutNode{Node: &pb.ClusterNode{Id: id, RaftAddress: raftAddr, ApiAddress: apiAddr}}}
	return n.Propose(ctx, c)
}

// JoinCluster asks the nodes of cfg.Join, in turn, to add this one, until
// one does or ctx ends. A node that has raft state is a member already.
func (n *Node) JoinCluster(ctx context.Context) error {
	if len(n.cfg.Join) == 0 {
		return nil
	}
	if servers, err := n.configuration(); err == nil && len(servers) > 0 {
		return nil
	}
	backoff := 500 * time.Millisecond
	for {
		var last error
		for _, addr := range n.cfg.Join {
			c, err := n.peers.client(addr)
			if err == nil {
				_, err = c.Join(n.peers.ctx(ctx), &pb.JoinRequest{Id: n.cfg.ID, RaftAddress: n.cfg.RaftAdvertise, ApiAddress: n.cfg.APIAddress})
				err = errs.FromStatus(err)
			}
			if err == nil {
				n.log.Info("joined the cluster", "through", addr)
				return nil
			}
			if errs.Is(err, errs.AlreadyExists) || errs.Is(err, errs.InvalidArgument) || errs.Is(err, errs.Unauthenticated) || errs.Is(err, errs.FailedPrecondition) && errs.FieldOf(err) == "id" {
				return fmt.Errorf("joining through %s: %w", addr, err)
			}
			last = fmt.Errorf("%s: %w", addr, err)
		}
		n.log.Warn("joining the cluster failed; retrying", "err", last, "retry_in", backoff)
		if !sleepCtx(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, 15*time.Second)
	}
}

// self is this node as it sees itself.
func (n *Node) self() *pb.ClusterNode {
	node := &pb.ClusterNode{Id: n.cfg.ID, RaftAddress: n.cfg.RaftAdvertise, ApiAddress: n.cfg.APIAddress,
		State: n.raft.State().String(), Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.db.AppliedIndex()}
	if t := n.raft.LastContact(); !t.IsZero() {
		node.LastContact = timestamppb.New(t)
	}
	return node
}

// Members lists the ids in this node's raft configuration.
func (n *Node) members() []string {
	servers, _ := n.configuration()
	var out []string
	for _, s := range servers {
		out = append(out, string(s.ID))
	}
	return out
}

// Members is the number of nodes in the cluster's configuration as this
// node knows it (0 before it has one).
func (n *Node) Members() int { return len(n.members()) }

// Status reports every node of the configuration: this one from itself,
// the others from what they answer (Unreachable when they don't).
func (n *Node) Status(ctx context.Context) (*pb.ClusterStatus, error) {
	servers, err := n.configuration()
	if err != nil {
		return nil, err
	}
	_, leader := n.raft.LeaderWithID()
	st := &pb.ClusterStatus{Clustered: true, LeaderId: string(leader), Term: n.raft.CurrentTerm(), AnsweredBy: n.cfg.ID}
	st.Nodes = make([]*pb.ClusterNode, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { st.Nodes[i] = n.nodeStatus(ctx, s) })
	}
	wg.Wait()
	for _, node := range st.Nodes {
		if node.Id == string(leader) {
			st.CommitIndex = node.CommitIndex
		}
	}
	for _, node := range st.Nodes {
		if node.State != "Unreachable" && st.CommitIndex > node.AppliedIndex {
			node.Lag = st.CommitIndex - node.AppliedIndex
		}
	}
	return st, nil
}

func (n *Node) nodeStatus(ctx context.Context, s raft.Server) *pb.ClusterNode {
	var node *pb.ClusterNode
	if string(s.ID) == n.cfg.ID {
		node = n.self()
	} else {
		node = &pb.ClusterNode{Id: string(s.ID), RaftAddress: string(s.Address), ApiAddress: n.apiAddress(s.ID), State: "Unreachable"}
		if c, err := n.peers.client(node.ApiAddress); err != nil {
			node.Error = err.Error()
		} else {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			r, err := c.NodeStatus(n.peers.ctx(cctx), &pb.NodeStatusRequest{})
			cancel()
			if err != nil {
				node.Error = errs.FromStatus(err).Error()
			} else {
				node = r.Node
			}
		}
	}
	node.Suffrage = s.Suffrage.String()
	return node
}
