package server

import (
	"context"
	"time"

	"google.golang.org/grpc/mem"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/wire"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/fleet"
)

type fleetServer struct {
	pb.UnimplementedFleetServiceServer
	fleet *fleet.Fleet
	auth  *auth.Service // may be nil
	m     *edgeMetrics
}

func (s *fleetServer) CreateMachine(ctx context.Context, r *pb.CreateMachineRequest) (*pb.CreateMachineResponse, error) {
	if err := required("machine", r.Machine); err != nil {
		return nil, err
	}
	// The machine and its agent's credential are made in one command.
	var cred *statepb.Credential
	var tok string
	if s.auth != nil {
		cred, tok = auth.MachineCredential(auth.TokenOf(ctx), tenantOf(ctx), r.Machine.GetName(), time.Now())
	}
	m, err := s.fleet.CreateMachine(ctx, tenantOf(ctx), r.Machine, cred)
	if err != nil {
		return nil, err
	}
	return &pb.CreateMachineResponse{Machine: m, AgentToken: tok}, nil
}

func (s *fleetServer) GetMachine(ctx context.Context, r *pb.GetMachineRequest) (*pb.GetMachineResponse, error) {
	m, err := s.fleet.GetMachine(ctx, tenantOf(ctx), r.Name)
	return &pb.GetMachineResponse{Machine: m}, err
}

func (s *fleetServer) ListMachines(ctx context.Context, r *pb.ListMachinesRequest) (*pb.ListMachinesResponse, error) {
	ms, next, err := s.fleet.ListMachines(ctx, tenantOf(ctx), r.ScaleSet, r.PageSize, r.PageToken)
	return &pb.ListMachinesResponse{Machines: ms, NextPageToken: next}, err
}

func (s *fleetServer) DeleteMachine(ctx context.Context, r *pb.DeleteMachineRequest) (*pb.DeleteMachineResponse, error) {
	return &pb.DeleteMachineResponse{}, s.fleet.DeleteMachine(ctx, tenantOf(ctx), r.Name)
}

func (s *fleetServer) CreateScaleSet(ctx context.Context, r *pb.CreateScaleSetRequest) (*pb.CreateScaleSetResponse, error) {
	if err := required("scaleSet", r.ScaleSet); err != nil {
		return nil, err
	}
	ss, err := s.fleet.CreateScaleSet(ctx, tenantOf(ctx), r.ScaleSet)
	return &pb.CreateScaleSetResponse{ScaleSet: ss}, err
}

func (s *fleetServer) GetScaleSet(ctx context.Context, r *pb.GetScaleSetRequest) (*pb.GetScaleSetResponse, error) {
	ss, err := s.fleet.GetScaleSet(ctx, tenantOf(ctx), r.Name)
	return &pb.GetScaleSetResponse{ScaleSet: ss}, err
}

func (s *fleetServer) ListScaleSets(ctx context.Context, r *pb.ListScaleSetsRequest) (*pb.ListScaleSetsResponse, error) {
	ss, next, err := s.fleet.ListScaleSets(ctx, tenantOf(ctx), r.PageSize, r.PageToken)
	return &pb.ListScaleSetsResponse{ScaleSets: ss, NextPageToken: next}, err
}

func (s *fleetServer) DeleteScaleSet(ctx context.Context, r *pb.DeleteScaleSetRequest) (*pb.DeleteScaleSetResponse, error) {
	// The instances' agents' credentials go with them, in one command.
	return &pb.DeleteScaleSetResponse{}, s.fleet.DeleteScaleSet(ctx, tenantOf(ctx), r.Name, r.Cascade)
}

func profileTarget(t *pb.ProfileTarget) fleet.Target {
	return fleet.Target{Machine: t.GetMachine(), ScaleSet: t.GetScaleSet()}
}

func (s *fleetServer) SetApplication(ctx context.Context, r *pb.SetApplicationRequest) (*pb.SetApplicationResponse, error) {
	p, err := s.fleet.SetApplication(ctx, tenantOf(ctx), profileTarget(r.Target), r.Application, r.IfMatch)
	return &pb.SetApplicationResponse{ApplicationProfile: p}, err
}

func (s *fleetServer) RemoveApplication(ctx context.Context, r *pb.RemoveApplicationRequest) (*pb.RemoveApplicationResponse, error) {
	p, err := s.fleet.RemoveApplication(ctx, tenantOf(ctx), profileTarget(r.Target), r.Application, r.IfMatch)
	return &pb.RemoveApplicationResponse{ApplicationProfile: p}, err
}

func (s *fleetServer) RetryApplication(ctx context.Context, r *pb.RetryApplicationRequest) (*pb.RetryApplicationResponse, error) {
	p, err := s.fleet.RetryApplication(ctx, tenantOf(ctx), profileTarget(r.Target), r.Application)
	return &pb.RetryApplicationResponse{ApplicationProfile: p}, err
}

func (s *fleetServer) ListInventory(ctx context.Context, r *pb.ListInventoryRequest) (*pb.ListInventoryResponse, error) {
	q := fleet.InventoryFilter{Application: r.Application, Region: r.Region, State: r.State, Version: r.Version, ScaleSet: r.ScaleSet}
	es, next, err := s.fleet.Inventory(ctx, tenantOf(ctx), q, r.PageSize, r.PageToken)
	return &pb.ListInventoryResponse{Entries: es, NextPageToken: next}, err
}

// goalStateRecheck bounds how long a goal-state stream goes without looking
// again, as a safety net: every change a goal state depends on wakes the
// streams, and a look with nothing changed is answered from the fleet's
// goal states kept computed.
const goalStateRecheck = 2 * time.Second

func (s *fleetServer) WatchGoalState(r *pb.WatchGoalStateRequest, stream pb.FleetService_WatchGoalStateServer) error {
	ctx := stream.Context()
	tenant := tenantOf(ctx)
	m, err := s.fleet.GetMachine(ctx, tenant, r.Machine)
	if err != nil {
		return err
	}
	if err := fleet.CheckAgentOS(m, r.OsType); err != nil {
		return err
	}
	defer s.fleet.Connect(tenant, r.Machine)()
	last := ""
	t := time.NewTicker(goalStateRecheck)
	defer t.Stop()
	for {
		changed := s.fleet.Changed()
		g, err := s.fleet.Goal(ctx, tenant, r.Machine)
		if err != nil {
			return err
		}
		if g.State.Generation != last {
			// Encoded with the machines sharing its body (see fleet.Goal).
			if err := stream.SendMsg(wire.Encoded{mem.SliceBuffer(g.WatchResponse())}); err != nil {
				return err
			}
			last = g.State.Generation
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-t.C:
		}
	}
}

func (s *fleetServer) ReportStatus(ctx context.Context, r *pb.ReportStatusRequest) (*pb.ReportStatusResponse, error) {
	if r.Machine == "" {
		return nil, errs.New(errs.InvalidArgument, "machine", "machine is required")
	}
	return &pb.ReportStatusResponse{}, s.fleet.ReportStatus(ctx, tenantOf(ctx), r.Machine, r.InstanceView)
}

func (s *fleetServer) RunAction(ctx context.Context, r *pb.RunActionRequest) (*pb.RunActionResponse, error) {
	runs, err := s.fleet.RunAction(ctx, tenantOf(ctx), profileTarget(r.Target), r.Application, r.Action, r.Parameters)
	return &pb.RunActionResponse{Runs: runs}, err
}

func (s *fleetServer) ListActionRuns(ctx context.Context, r *pb.ListActionRunsRequest) (*pb.ListActionRunsResponse, error) {
	runs, err := s.fleet.ListActionRuns(ctx, tenantOf(ctx), profileTarget(r.Target), r.Application, r.Ids)
	return &pb.ListActionRunsResponse{Runs: runs}, err
}

func (s *fleetServer) ReportActionResult(ctx context.Context, r *pb.ReportActionResultRequest) (*pb.ReportActionResultResponse, error) {
	if r.Machine == "" {
		return nil, errs.New(errs.InvalidArgument, "machine", "machine is required")
	}
	recorded, err := s.fleet.ReportActionResult(ctx, tenantOf(ctx), r.Machine, r.Run)
	if recorded {
		s.m.actionRuns.WithLabelValues(r.Run.State).Inc()
	}
	return &pb.ReportActionResultResponse{}, err
}
