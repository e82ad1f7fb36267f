package server

import (
	"cmp"
	"context"
	"slices"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/fleet"
	"github.com/vmapp/vmapp/server/tracker"
)

func (s *downloadServer) Preheat(ctx context.Context, r *pb.PreheatRequest) (*pb.PreheatResponse, error) {
	p := s.peers
	if p == nil {
		return nil, errs.New(errs.Unimplemented, "", "this vmappd tracks no peers: nothing to preheat")
	}
	tenant := tenantOf(ctx)
	if r.Cancel {
		if r.Machines != 0 || r.ScaleSet != "" {
			return nil, errs.New(errs.InvalidArgument, "cancel", "cancel ends the preheat in the region: give neither machines nor a scale set")
		}
		return &pb.PreheatResponse{}, p.fleet.CancelPreheat(ctx, tenant, r.Gallery, r.Application, r.Version, r.Region)
	}
	var trackErr error
	serving := func(m string) bool {
		ok, err := p.tracker.Serving(ctx, tenant, m)
		trackErr = cmp.Or(trackErr, err)
		return ok
	}
	ph, err := p.fleet.Preheat(ctx, tenant, fleet.PreheatRequest{Gallery: r.Gallery, Application: r.Application, Version: r.Version,
		Region: r.Region, Machines: int(r.Machines), ScaleSet: r.ScaleSet, Serving: serving})
	if err := cmp.Or(trackErr, err); err != nil {
		return nil, err
	}
	if ph.ScaleSet != "" { // its instances, as GetVersion shows them
		all, err := p.fleet.Preheats(ctx, tenant, r.Gallery, r.Application, ph.Version.Version)
		if err != nil {
			return nil, err
		}
		for _, q := range all {
			if q.Region == ph.Region {
				ph = q
			}
		}
	}
	st, err := p.status(ctx, ph)
	if err != nil {
		return nil, err
	}
	return &pb.PreheatResponse{Status: st}, nil
}

// status is a preheat's progress: how many of its machines announce the
// version's package to the tracker.
func (p *peers) status(ctx context.Context, ph *statepb.Preheat) (*pb.PreheatStatus, error) {
	r := ph.GetVersion()
	a := tracker.Artifact{Tenant: r.Tenant, Gallery: r.Gallery, Application: r.Application, Version: r.Version, Kind: int32(pb.ArtifactKind_ARTIFACT_KIND_PACKAGE)}
	holders, err := p.tracker.HolderNames(ctx, a, ph.Tenant, ph.Region)
	if err != nil {
		return nil, err
	}
	st := &pb.PreheatStatus{Region: ph.Region, ScaleSet: ph.ScaleSet, Machines: ph.Machines, Wanted: int32(len(ph.Machines)),
		HoldingInRegion: int32(len(holders)), CreateTime: ph.CreateTime}
	for _, m := range ph.Machines {
		if _, ok := slices.BinarySearch(holders, m); ok {
			st.Holding++
			st.Holders = append(st.Holders, m)
		}
	}
	return st, nil
}

// preheats fills in a version's preheat and the peers holding its
// package, region by region (GetVersion).
func (p *peers) preheats(ctx context.Context, tenant string, v *pb.GalleryApplicationVersion) error {
	if p == nil || v == nil {
		return nil
	}
	a := tracker.Artifact{Tenant: tenant, Gallery: v.Gallery, Application: v.Application, Version: v.Name, Kind: int32(pb.ArtifactKind_ARTIFACT_KIND_PACKAGE)}
	for _, r := range v.GetPublishingProfile().GetTargetRegions() {
		names, err := p.tracker.HolderNames(ctx, a, tenant, r.Name)
		if err != nil {
			return err
		}
		if len(names) > 0 {
			v.Peers = append(v.Peers, &pb.RegionPeers{Region: r.Name, Machines: names})
		}
	}
	all, err := p.fleet.Preheats(ctx, tenant, v.Gallery, v.Application, v.Name)
	if err != nil {
		return err
	}
	for _, ph := range all {
		st, err := p.status(ctx, ph)
		if err != nil {
			return err
		}
		v.Preheat = append(v.Preheat, st)
	}
	return nil
}
