package server

import (
	"context"
	"time"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/rollout"
)

type rolloutServer struct {
	pb.UnimplementedRolloutServiceServer
	rollouts *rollout.Service
}

func (s *rolloutServer) CreateRollout(ctx context.Context, r *pb.CreateRolloutRequest) (*pb.CreateRolloutResponse, error) {
	if err := required("rollout", r.Rollout); err != nil {
		return nil, err
	}
	ro, err := s.rollouts.Create(ctx, tenantOf(ctx), r.Rollout)
	return &pb.CreateRolloutResponse{Rollout: ro}, err
}

func (s *rolloutServer) GetRollout(ctx context.Context, r *pb.GetRolloutRequest) (*pb.GetRolloutResponse, error) {
	ro, err := s.rollouts.Get(ctx, tenantOf(ctx), r.Name)
	return &pb.GetRolloutResponse{Rollout: ro}, err
}

func (s *rolloutServer) ListRollouts(ctx context.Context, r *pb.ListRolloutsRequest) (*pb.ListRolloutsResponse, error) {
	rs, next, err := s.rollouts.List(ctx, tenantOf(ctx), r.PageSize, r.PageToken)
	return &pb.ListRolloutsResponse{Rollouts: rs, NextPageToken: next}, err
}

func (s *rolloutServer) PauseRollout(ctx context.Context, r *pb.PauseRolloutRequest) (*pb.PauseRolloutResponse, error) {
	ro, err := s.rollouts.Pause(ctx, tenantOf(ctx), r.Name)
	return &pb.PauseRolloutResponse{Rollout: ro}, err
}

func (s *rolloutServer) ResumeRollout(ctx context.Context, r *pb.ResumeRolloutRequest) (*pb.ResumeRolloutResponse, error) {
	ro, err := s.rollouts.Resume(ctx, tenantOf(ctx), r.Name)
	return &pb.ResumeRolloutResponse{Rollout: ro}, err
}

func (s *rolloutServer) AbortRollout(ctx context.Context, r *pb.AbortRolloutRequest) (*pb.AbortRolloutResponse, error) {
	ro, err := s.rollouts.Abort(ctx, tenantOf(ctx), r.Name)
	return &pb.AbortRolloutResponse{Rollout: ro}, err
}

// WatchRollout sends the rollout as it is, then again whenever it changes
// (its etag), until it can move no machine any more.
func (s *rolloutServer) WatchRollout(r *pb.WatchRolloutRequest, stream pb.RolloutService_WatchRolloutServer) error {
	ctx := stream.Context()
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	last := ""
	for {
		ro, err := s.rollouts.Get(ctx, tenantOf(ctx), r.Name)
		if err != nil {
			return err
		}
		if ro.Etag != last {
			if err := stream.Send(&pb.WatchRolloutResponse{Rollout: ro}); err != nil {
				return err
			}
			last = ro.Etag
		}
		if !pb.RolloutActive(ro.State) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
