package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"net"
	"sync"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/wire"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// PeerKey is the metadata key of the cluster's proof on calls between
// nodes.
const PeerKey = "vmapp-cluster-key"

// fieldNotLeader marks the refusal of a node that doesn't lead (any more):
// the caller asks the leader again.
const fieldNotLeader = "leader"

// PeerToken is what a node presents on calls between nodes (PeerService,
// TrackerService): derived from the cluster key (never the key itself,
// which also guards raft).
func PeerToken(key []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("vmapp-peer-v1"))
	return hex.EncodeToString(h.Sum(nil))
}

// CheckPeer checks that an incoming call carries this cluster's proof.
func (n *Node) CheckPeer(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(PeerKey)
	if len(v) != 1 || !hmac.Equal([]byte(v[0]), []byte(n.peers.token)) {
		return errs.New(errs.Unauthenticated, "", "calls between vmappd nodes must carry this cluster's key")
	}
	return nil
}

// peerClients keeps one connection per node the node calls.
type peerClients struct {
	token  string
	creds  credentials.TransportCredentials
	dialer net.Dialer // from the raft listen IP when it is a specific one
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
}

func newPeerClients(key []byte, clientTLS *tls.Config, local net.Addr) *peerClients {
	p := &peerClients{token: PeerToken(key), creds: insecure.NewCredentials(), conns: map[string]*grpc.ClientConn{}}
	p.dialer.LocalAddr = local
	if clientTLS != nil {
		p.creds = credentials.NewTLS(clientTLS)
	}
	return p
}

func (p *peerClients) client(addr string) (pb.PeerServiceClient, error) {
	c, err := p.conn(addr)
	if err != nil {
		return nil, err
	}
	return pb.NewPeerServiceClient(c), nil
}

// conn returns the connection to the node at addr, made once.
func (p *peerClients) conn(addr string) (*grpc.ClientConn, error) {
	if addr == "" {
		return nil, notTaken("the leader's API address is not known yet")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conns[addr]; c != nil {
		return c, nil
	}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		return p.dialer.DialContext(ctx, "tcp", addr)
	}
	c, err := grpc.NewClient(addr, append(wire.DialOptions(), grpc.WithTransportCredentials(p.creds), grpc.WithContextDialer(dial))...)
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

func (p *peerClients) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, PeerKey, p.token)
}

func (p *peerClients) apply(ctx context.Context, addr string, cmd []byte) (uint64, error) {
	c, err := p.client(addr)
	if err != nil {
		return 0, err
	}
	r, err := c.Apply(p.ctx(ctx), &pb.ApplyRequest{Command: cmd})
	if err != nil {
		return 0, errs.FromStatus(err)
	}
	return r.Index, nil
}

func (p *peerClients) readIndex(ctx context.Context, addr string) (uint64, error) {
	c, err := p.client(addr)
	if err != nil {
		return 0, err
	}
	r, err := c.ReadIndex(p.ctx(ctx), &pb.ReadIndexRequest{})
	if err != nil {
		return 0, errs.FromStatus(err)
	}
	return r.Index, nil
}

// ToLeader returns a connection to the leader's API for calls between
// nodes, and ctx with the cluster's proof for them; a nil connection when
// this node leads. With no leader known: Unavailable, field leader.
func (n *Node) ToLeader(ctx context.Context) (grpc.ClientConnInterface, context.Context, error) {
	id := n.leader()
	switch {
	case id == "":
		return nil, ctx, n.noLeader()
	case id == raft.ServerID(n.cfg.ID):
		return nil, ctx, nil
	}
	c, err := n.peers.conn(n.apiAddress(id))
	if err != nil {
		return nil, ctx, errs.New(errs.Unavailable, fieldNotLeader, "leader %s can't be reached: %v", id, err)
	}
	return c, n.peers.ctx(ctx), nil
}

func (p *peerClients) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = map[string]*grpc.ClientConn{}
}

// PeerServer serves PeerService for the node. The daemon registers it and
// lets its calls through with CheckPeer instead of a token.
type PeerServer struct {
	pb.UnimplementedPeerServiceServer
	n *Node
}

// PeerServer returns the node's PeerService.
func (n *Node) PeerServer() *PeerServer { return &PeerServer{n: n} }

// The PeerService methods answer with gRPC statuses of their own (errs'
// classes and fields), however the server is wired.

func (s *PeerServer) Apply(ctx context.Context, r *pb.ApplyRequest) (*pb.ApplyResponse, error) {
	resp, err := s.apply(ctx, r)
	return resp, errs.ToStatus(err)
}

func (s *PeerServer) apply(ctx context.Context, r *pb.ApplyRequest) (*pb.ApplyResponse, error) {
	if err := s.n.CheckPeer(ctx); err != nil {
		return nil, err
	}
	cmd := &statepb.Command{}
	if err := proto.Unmarshal(r.Command, cmd); err != nil {
		return nil, errs.New(errs.InvalidArgument, "command", "not a command: %v", err)
	}
	index, err := s.n.applyHere(ctx, r.Command)
	if err != nil {
		return nil, err
	}
	return &pb.ApplyResponse{Index: index}, nil
}

func (s *PeerServer) ReadIndex(ctx context.Context, _ *pb.ReadIndexRequest) (*pb.ReadIndexResponse, error) {
	if err := s.n.CheckPeer(ctx); err != nil {
		return nil, errs.ToStatus(err)
	}
	if !s.n.IsLeader() || s.n.raft.VerifyLeader().Error() != nil {
		return nil, errs.ToStatus(errs.New(errs.Unavailable, fieldNotLeader, "node %s doesn't lead the cluster", s.n.cfg.ID))
	}
	return &pb.ReadIndexResponse{Index: s.n.raft.CommitIndex()}, nil
}

func (s *PeerServer) NodeStatus(ctx context.Context, _ *pb.NodeStatusRequest) (*pb.NodeStatusResponse, error) {
	if err := s.n.CheckPeer(ctx); err != nil {
		return nil, errs.ToStatus(err)
	}
	return &pb.NodeStatusResponse{Node: s.n.self(), Members: s.n.members()}, nil
}

func (s *PeerServer) Join(ctx context.Context, r *pb.JoinRequest) (*pb.JoinResponse, error) {
	if err := s.n.CheckPeer(ctx); err != nil {
		return nil, errs.ToStatus(err)
	}
	st, err := s.n.AddNode(ctx, r.Id, r.RaftAddress, r.ApiAddress)
	return &pb.JoinResponse{Status: st}, errs.ToStatus(err)
}

func (s *PeerServer) Remove(ctx context.Context, r *pb.RemoveRequest) (*pb.RemoveResponse, error) {
	if err := s.n.CheckPeer(ctx); err != nil {
		return nil, errs.ToStatus(err)
	}
	st, err := s.n.RemoveNode(ctx, r.Id)
	return &pb.RemoveResponse{Status: st}, errs.ToStatus(err)
}
