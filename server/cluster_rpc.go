package server

import (
	"context"
	"io"

	"google.golang.org/grpc"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// Cluster is the cluster a vmappd is a node of (package cluster's Node).
type Cluster interface {
	Status(ctx context.Context) (*pb.ClusterStatus, error)
	AddNode(ctx context.Context, id, raftAddr, apiAddr string) (*pb.ClusterStatus, error)
	RemoveNode(ctx context.Context, id string) (*pb.ClusterStatus, error)
	// CheckPeer checks that a call carries the cluster's key.
	CheckPeer(ctx context.Context) error
	// ToLeader returns a connection to the leader for calls between nodes
	// and the context to make them with (it carries the cluster's key), or
	// a nil connection when this node leads; Unavailable (field leader)
	// when no node leads.
	ToLeader(ctx context.Context) (grpc.ClientConnInterface, context.Context, error)
}

type clusterServer struct {
	pb.UnimplementedClusterServiceServer
	cluster Cluster // nil: a single vmappd
	state   *state.DB
	self    string
}

func (s *clusterServer) single() error {
	return errs.New(errs.FailedPrecondition, "", "this vmappd is not a node of a cluster: restart it with --node-id, --raft-listen and --cluster-key to make it the first node of one (its state is kept)")
}

func (s *clusterServer) GetClusterStatus(ctx context.Context, _ *pb.GetClusterStatusRequest) (*pb.GetClusterStatusResponse, error) {
	if s.cluster == nil {
		return &pb.GetClusterStatusResponse{Status: &pb.ClusterStatus{Nodes: []*pb.ClusterNode{{Id: "vmappd", ApiAddress: s.self, State: "Standalone"}}}}, nil
	}
	st, err := s.cluster.Status(ctx)
	return &pb.GetClusterStatusResponse{Status: st}, err
}

func (s *clusterServer) AddNode(ctx context.Context, r *pb.AddNodeRequest) (*pb.AddNodeResponse, error) {
	if s.cluster == nil {
		return nil, s.single()
	}
	st, err := s.cluster.AddNode(ctx, r.Id, r.RaftAddress, r.ApiAddress)
	return &pb.AddNodeResponse{Status: st}, err
}

func (s *clusterServer) RemoveNode(ctx context.Context, r *pb.RemoveNodeRequest) (*pb.RemoveNodeResponse, error) {
	if s.cluster == nil {
		return nil, s.single()
	}
	st, err := s.cluster.RemoveNode(ctx, r.Id)
	return &pb.RemoveNodeResponse{Status: st}, err
}

// snapshotChunk is the size of SaveSnapshot's messages.
const snapshotChunk = 1 << 20

func (s *clusterServer) SaveSnapshot(_ *pb.SaveSnapshotRequest, stream pb.ClusterService_SaveSnapshotServer) error {
	snap, err := s.state.BeginSnapshot()
	if err != nil {
		return err
	}
	defer snap.Release()
	w := &chunkWriter{stream: stream, index: snap.Index}
	if _, err := snap.WriteTo(w); err != nil {
		return err
	}
	return w.flush()
}

// chunkWriter sends what is written to it in messages of snapshotChunk
// bytes.
type chunkWriter struct {
	stream pb.ClusterService_SaveSnapshotServer
	buf    []byte
	index  uint64
	sent   bool
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), snapshotChunk-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == snapshotChunk {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 && w.sent {
		return nil
	}
	m := &pb.SaveSnapshotResponse{Data: w.buf}
	if !w.sent {
		m.Index = w.index
	}
	w.sent = true
	err := w.stream.Send(m)
	w.buf = w.buf[:0]
	return err
}

var _ io.Writer = (*chunkWriter)(nil)
