package server

import (
	"cmp"
	"context"
	"strconv"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/tracker"
)

// trackerAPI is the peer tracker as DownloadService asks it: a lone
// vmappd's own (localTracker), or a cluster's, which its leader keeps
// (clusterTracker). Announcements are soft state, so a new leader's
// tracker fills again as agents renew their leases.
type trackerAPI interface {
	Announce(ctx context.Context, m tracker.Machine, addr string, held []tracker.Held) error
	Plan(ctx context.Context, a tracker.Artifact, m tracker.Machine, pieces, max int) (tracker.Planned, error)
	Report(ctx context.Context, a tracker.Artifact, tenant, peer string) error
	HolderNames(ctx context.Context, a tracker.Artifact, tenant, region string) ([]string, error)
	Serving(ctx context.Context, tenant, machine string) (bool, error)
}

// localTracker is this node's own tracker.
type localTracker struct{ t *tracker.Tracker }

func (l localTracker) Announce(_ context.Context, m tracker.Machine, addr string, held []tracker.Held) error {
	l.t.AnnounceHeld(m, addr, held)
	return nil
}

func (l localTracker) Plan(_ context.Context, a tracker.Artifact, m tracker.Machine, pieces, max int) (tracker.Planned, error) {
	return l.t.Plan(a, m, pieces, max), nil
}

func (l localTracker) Report(_ context.Context, a tracker.Artifact, tenant, peer string) error {
	l.t.Report(a, tenant, peer)
	return nil
}

func (l localTracker) HolderNames(_ context.Context, a tracker.Artifact, tenant, region string) ([]string, error) {
	return l.t.HolderNames(a, tenant, region), nil
}

func (l localTracker) Serving(_ context.Context, tenant, machine string) (bool, error) {
	return l.t.Serving(tenant, machine), nil
}

// clusterTracker is a cluster's tracker: the leader's own, asked through
// TrackerService from the other nodes.
type clusterTracker struct {
	local   localTracker
	cluster Cluster
}

// leader returns the leader's TrackerService and the context to call it
// with, or nil when this node leads.
func (c clusterTracker) leader(ctx context.Context) (pb.TrackerServiceClient, context.Context, error) {
	cc, cctx, err := c.cluster.ToLeader(ctx)
	if err != nil || cc == nil {
		return nil, ctx, err
	}
	return pb.NewTrackerServiceClient(cc), cctx, nil
}

func (c clusterTracker) Announce(ctx context.Context, m tracker.Machine, addr string, held []tracker.Held) error {
	tc, ctx, err := c.leader(ctx)
	switch {
	case err != nil:
		return err
	case tc == nil:
		return c.local.Announce(ctx, m, addr, held)
	}
	r := &pb.TrackAnnounceRequest{Machine: machineToPB(m), Address: addr}
	for _, h := range held {
		r.Held = append(r.Held, holdingToPB(h.Artifact, h.Pieces))
	}
	_, err = tc.TrackAnnounce(ctx, r)
	return fromLeader(err)
}

func (c clusterTracker) Plan(ctx context.Context, a tracker.Artifact, m tracker.Machine, pieces, max int) (tracker.Planned, error) {
	tc, ctx, err := c.leader(ctx)
	switch {
	case err != nil:
		return tracker.Planned{}, err
	case tc == nil:
		return c.local.Plan(ctx, a, m, pieces, max)
	}
	r, err := tc.TrackPlan(ctx, &pb.TrackPlanRequest{Artifact: artifactToPB(a), Machine: machineToPB(m), Pieces: int32(pieces), MaxPeers: int32(max)})
	if err != nil {
		return tracker.Planned{}, fromLeader(err)
	}
	p := tracker.Planned{Swarm: r.Swarm}
	for _, i := range r.StorePieces {
		p.Claims = append(p.Claims, int(i))
	}
	for _, q := range r.Peers {
		p.Peers = append(p.Peers, tracker.Peer{Name: q.Name, Address: q.Address, SameScaleSet: q.SameScaleSet, Pieces: piecesFromPB(q.Holding)})
	}
	return p, nil
}

func (c clusterTracker) Report(ctx context.Context, a tracker.Artifact, tenant, peer string) error {
	tc, ctx, err := c.leader(ctx)
	switch {
	case err != nil:
		return err
	case tc == nil:
		return c.local.Report(ctx, a, tenant, peer)
	}
	_, err = tc.TrackReport(ctx, &pb.TrackReportRequest{Artifact: artifactToPB(a), Tenant: tenant, Peer: peer})
	return fromLeader(err)
}

func (c clusterTracker) HolderNames(ctx context.Context, a tracker.Artifact, tenant, region string) ([]string, error) {
	tc, ctx, err := c.leader(ctx)
	switch {
	case err != nil:
		return nil, err
	case tc == nil:
		return c.local.HolderNames(ctx, a, tenant, region)
	}
	r, err := tc.TrackHolders(ctx, &pb.TrackHoldersRequest{Artifact: artifactToPB(a), Tenant: tenant, Region: region})
	if err != nil {
		return nil, fromLeader(err)
	}
	return r.Holders, nil
}

func (c clusterTracker) Serving(ctx context.Context, tenant, machine string) (bool, error) {
	tc, ctx, err := c.leader(ctx)
	switch {
	case err != nil:
		return false, err
	case tc == nil:
		return c.local.Serving(ctx, tenant, machine)
	}
	r, err := tc.TrackServing(ctx, &pb.TrackServingRequest{Tenant: tenant, Machine: machine})
	if err != nil {
		return false, fromLeader(err)
	}
	return r.Serving, nil
}

// fromLeader is the error of a call to the leader's TrackerService.
func fromLeader(err error) error {
	if err == nil {
		return nil
	}
	return errs.Wrap(errs.ClassOf(errs.FromStatus(err)), errs.FromStatus(err), "the cluster's tracker (on its leader)")
}

// trackerServer serves TrackerService on the leader, from its own tracker.
type trackerServer struct {
	pb.UnimplementedTrackerServiceServer
	local   localTracker
	cluster Cluster
}

// check lets through a call that carries the cluster's key, to the leader.
func (s *trackerServer) check(ctx context.Context) error {
	if err := s.cluster.CheckPeer(ctx); err != nil {
		return err
	}
	cc, _, err := s.cluster.ToLeader(ctx)
	if err != nil {
		return err
	}
	if cc != nil {
		return errs.New(errs.Unavailable, "leader", "this node doesn't lead the cluster (any more): ask the leader")
	}
	return nil
}

func (s *trackerServer) TrackAnnounce(ctx context.Context, r *pb.TrackAnnounceRequest) (*pb.TrackAnnounceResponse, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := checkTrackedMachine("machine", r.Machine); err != nil {
		return nil, err
	}
	if len(r.Held) > maxHeld {
		return nil, errs.New(errs.InvalidArgument, "held", "%d artifacts announced; at most %d", len(r.Held), maxHeld)
	}
	for i, h := range r.Held {
		f := "held[" + strconv.Itoa(i) + "]"
		if err := checkTrackedArtifact(f+".artifact", h.Artifact); err != nil {
			return nil, err
		}
		if len(h.Pieces) > maxPieces {
			return nil, errs.New(errs.InvalidArgument, f+".pieces", "a bitmap of %d bytes; at most %d", len(h.Pieces), maxPieces)
		}
	}
	var held []tracker.Held
	for _, h := range r.Held {
		held = append(held, tracker.Held{Artifact: artifactFromPB(h.Artifact), Pieces: piecesFromPB(h)})
	}
	s.local.t.AnnounceHeld(machineFromPB(r.Machine), r.Address, held)
	return &pb.TrackAnnounceResponse{}, nil
}

func (s *trackerServer) TrackPlan(ctx context.Context, r *pb.TrackPlanRequest) (*pb.TrackPlanResponse, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := cmp.Or(checkTrackedArtifact("artifact", r.Artifact), checkTrackedMachine("machine", r.Machine)); err != nil {
		return nil, err
	}
	switch {
	case r.Pieces < 0 || r.Pieces > maxPieces*8:
		return nil, errs.New(errs.InvalidArgument, "pieces", "pieces %d must be 0 to %d", r.Pieces, maxPieces*8)
	case r.MaxPeers < 0 || r.MaxPeers > tracker.MaxPeers:
		return nil, errs.New(errs.InvalidArgument, "max_peers", "max_peers %d must be 0 to %d", r.MaxPeers, tracker.MaxPeers)
	}
	a := artifactFromPB(r.Artifact)
	p := s.local.t.Plan(a, machineFromPB(r.Machine), int(r.Pieces), int(r.MaxPeers))
	out := &pb.TrackPlanResponse{Swarm: p.Swarm}
	for _, i := range p.Claims {
		out.StorePieces = append(out.StorePieces, uint32(i))
	}
	for _, q := range p.Peers {
		out.Peers = append(out.Peers, &pb.TrackedPeer{Name: q.Name, Address: q.Address, SameScaleSet: q.SameScaleSet, Holding: holdingToPB(a, q.Pieces)})
	}
	return out, nil
}

func (s *trackerServer) TrackReport(ctx context.Context, r *pb.TrackReportRequest) (*pb.TrackReportResponse, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := cmp.Or(checkTrackedArtifact("artifact", r.Artifact), present("tenant", r.Tenant), present("peer", r.Peer)); err != nil {
		return nil, err
	}
	s.local.t.Report(artifactFromPB(r.Artifact), r.Tenant, r.Peer)
	return &pb.TrackReportResponse{}, nil
}

func (s *trackerServer) TrackHolders(ctx context.Context, r *pb.TrackHoldersRequest) (*pb.TrackHoldersResponse, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := cmp.Or(checkTrackedArtifact("artifact", r.Artifact), present("tenant", r.Tenant), present("region", r.Region)); err != nil {
		return nil, err
	}
	return &pb.TrackHoldersResponse{Holders: s.local.t.HolderNames(artifactFromPB(r.Artifact), r.Tenant, r.Region)}, nil
}

func (s *trackerServer) TrackServing(ctx context.Context, r *pb.TrackServingRequest) (*pb.TrackServingResponse, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := cmp.Or(present("tenant", r.Tenant), present("machine", r.Machine)); err != nil {
		return nil, err
	}
	return &pb.TrackServingResponse{Serving: s.local.t.Serving(r.Tenant, r.Machine)}, nil
}

// The checks of TrackerService's requests: a node sends what its own
// edge checked, so these catch a node's bug, not a client's.

func present(field, v string) error {
	if v == "" {
		return errs.New(errs.InvalidArgument, field, "%s is required", field)
	}
	return nil
}

func checkTrackedArtifact(field string, a *pb.TrackedArtifact) error {
	return cmp.Or(checkKind(field+".kind", a.GetKind()), present(field+".tenant", a.GetTenant()), present(field+".gallery", a.GetGallery()),
		present(field+".application", a.GetApplication()), present(field+".version", a.GetVersion()))
}

func checkTrackedMachine(field string, m *pb.TrackedMachine) error {
	return cmp.Or(present(field+".tenant", m.GetTenant()), present(field+".name", m.GetName()), present(field+".region", m.GetRegion()))
}

func artifactToPB(a tracker.Artifact) *pb.TrackedArtifact {
	return &pb.TrackedArtifact{Tenant: a.Tenant, Gallery: a.Gallery, Application: a.Application, Version: a.Version, Kind: pb.ArtifactKind(a.Kind)}
}

func artifactFromPB(a *pb.TrackedArtifact) tracker.Artifact {
	return tracker.Artifact{Tenant: a.GetTenant(), Gallery: a.GetGallery(), Application: a.GetApplication(), Version: a.GetVersion(), Kind: int32(a.GetKind())}
}

func machineToPB(m tracker.Machine) *pb.TrackedMachine {
	return &pb.TrackedMachine{Tenant: m.Tenant, Name: m.Name, Region: m.Region, ScaleSet: m.ScaleSet}
}

func machineFromPB(m *pb.TrackedMachine) tracker.Machine {
	return tracker.Machine{Tenant: m.GetTenant(), Name: m.GetName(), Region: m.GetRegion(), ScaleSet: m.GetScaleSet()}
}

// holdingToPB is artifact a held whole (pieces nil) or in part.
func holdingToPB(a tracker.Artifact, pieces []byte) *pb.TrackedHolding {
	return &pb.TrackedHolding{Artifact: artifactToPB(a), Whole: pieces == nil, Pieces: pieces}
}

// piecesFromPB is a holding's bitmap as the tracker keeps it: nil when
// whole, never nil when not.
func piecesFromPB(h *pb.TrackedHolding) []byte {
	if h.GetWhole() {
		return nil
	}
	if h.GetPieces() == nil {
		return []byte{}
	}
	return h.GetPieces()
}
