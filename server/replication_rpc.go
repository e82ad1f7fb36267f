package server

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
	"github.com/vmapp/vmapp/server/catalog"
)

type replicationServer struct {
	pb.UnimplementedReplicationServiceServer
	store *catalog.Store
	repl  *replicator.Replicator
}

// watchInterval is how often WatchReplication looks for a change.
const watchInterval = 250 * time.Millisecond

func (s *replicationServer) WatchReplication(r *pb.WatchReplicationRequest, stream pb.ReplicationService_WatchReplicationServer) error {
	ctx := stream.Context()
	var last *pb.ReplicationStatus
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		v, err := s.store.GetVersion(ctx, tenantOf(ctx), r.Gallery, r.Application, r.Version)
		if err != nil {
			return err
		}
		st, err := s.repl.Status(v)
		if err != nil {
			return err
		}
		if last == nil || !proto.Equal(withoutETA(st), withoutETA(last)) {
			if err := stream.Send(&pb.WatchReplicationResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		if v.Package != nil && replicator.Terminal(st) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// withoutETA drops the estimates, which change on every look.
func withoutETA(s *pb.ReplicationStatus) *pb.ReplicationStatus {
	c := proto.Clone(s).(*pb.ReplicationStatus)
	for _, r := range c.Summary {
		r.Eta = nil
		for _, rep := range r.Replicas {
			rep.Eta = nil
		}
		if r.State == pb.ReplicationFailed {
			r.Details = "" // holds a countdown
		}
	}
	return c
}

func (s *replicationServer) RepairVersion(ctx context.Context, r *pb.RepairVersionRequest) (*pb.RepairVersionResponse, error) {
	v, err := s.store.GetVersion(ctx, tenantOf(ctx), r.Gallery, r.Application, r.Version)
	if err != nil {
		return nil, err
	}
	rep, err := s.repl.Repair(ctx, v, r.Deep)
	if err != nil {
		return nil, err
	}
	st, err := s.repl.Status(v)
	if err != nil {
		return nil, err
	}
	return &pb.RepairVersionResponse{Problems: rep.Problems, ReplicasChecked: rep.Sound, Unchecked: rep.Unchecked, Status: st}, nil
}
