package server

import (
	"context"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/topology"
)

type catalogServer struct {
	pb.UnimplementedCatalogServiceServer
	store *catalog.Store
	topo  *topology.Topology
	repl  *replicator.Replicator // may be nil
	auth  *auth.Service          // may be nil
	peers *peers                 // may be nil: no preheats shown
}

// decorated fills in the versions' replicationStatus, and pokes the
// replicator when poke is set (the versions changed).
func decorated[T any](repl *replicator.Replicator, out T, err error, poke bool, vs ...*pb.GalleryApplicationVersion) (T, error) {
	if err != nil || repl == nil {
		return out, err
	}
	if poke {
		repl.Poke()
	}
	return out, repl.Decorate(vs...)
}

func required[T any](field string, v *T) error {
	if v == nil {
		return errs.New(errs.InvalidArgument, field, "%s is required", field)
	}
	return nil
}

func (s *catalogServer) CreateGallery(ctx context.Context, r *pb.CreateGalleryRequest) (*pb.CreateGalleryResponse, error) {
	if err := required("gallery", r.Gallery); err != nil {
		return nil, err
	}
	g, err := s.store.CreateGallery(ctx, tenantOf(ctx), r.Gallery)
	return &pb.CreateGalleryResponse{Gallery: g}, err
}

func (s *catalogServer) GetGallery(ctx context.Context, r *pb.GetGalleryRequest) (*pb.GetGalleryResponse, error) {
	g, err := s.store.GetGallery(ctx, tenantOf(ctx), r.Gallery)
	return &pb.GetGalleryResponse{Gallery: g}, err
}

func (s *catalogServer) ListGalleries(ctx context.Context, r *pb.ListGalleriesRequest) (*pb.ListGalleriesResponse, error) {
	gs, next, err := s.store.ListGalleries(ctx, tenantOf(ctx), catalog.Page{Size: r.PageSize, Token: r.PageToken})
	return &pb.ListGalleriesResponse{Galleries: gs, NextPageToken: next}, err
}

func (s *catalogServer) UpdateGallery(ctx context.Context, r *pb.UpdateGalleryRequest) (*pb.UpdateGalleryResponse, error) {
	if err := required("gallery", r.Gallery); err != nil {
		return nil, err
	}
	g, err := s.store.UpdateGallery(ctx, tenantOf(ctx), r.Gallery, r.GetUpdateMask().GetPaths(), r.IfMatch)
	return &pb.UpdateGalleryResponse{Gallery: g}, err
}

func (s *catalogServer) DeleteGallery(ctx context.Context, r *pb.DeleteGalleryRequest) (*pb.DeleteGalleryResponse, error) {
	g, err := s.store.DeleteGallery(ctx, tenantOf(ctx), r.Gallery, r.IfMatch, r.Cascade)
	return &pb.DeleteGalleryResponse{Gallery: g}, err
}

func (s *catalogServer) CreateApplication(ctx context.Context, r *pb.CreateApplicationRequest) (*pb.CreateApplicationResponse, error) {
	if err := required("application", r.Application); err != nil {
		return nil, err
	}
	a, err := s.store.CreateApplication(ctx, tenantOf(ctx), r.Application)
	return &pb.CreateApplicationResponse{Application: a}, err
}

func (s *catalogServer) GetApplication(ctx context.Context, r *pb.GetApplicationRequest) (*pb.GetApplicationResponse, error) {
	a, err := s.store.GetApplication(ctx, tenantOf(ctx), r.Gallery, r.Application)
	return &pb.GetApplicationResponse{Application: a}, err
}

func (s *catalogServer) ListApplications(ctx context.Context, r *pb.ListApplicationsRequest) (*pb.ListApplicationsResponse, error) {
	as, next, err := s.store.ListApplications(ctx, tenantOf(ctx), r.Gallery, catalog.Page{Size: r.PageSize, Token: r.PageToken})
	return &pb.ListApplicationsResponse{Applications: as, NextPageToken: next}, err
}

func (s *catalogServer) UpdateApplication(ctx context.Context, r *pb.UpdateApplicationRequest) (*pb.UpdateApplicationResponse, error) {
	if err := required("application", r.Application); err != nil {
		return nil, err
	}
	a, err := s.store.UpdateApplication(ctx, tenantOf(ctx), r.Application, r.GetUpdateMask().GetPaths(), r.IfMatch)
	return &pb.UpdateApplicationResponse{Application: a}, err
}

func (s *catalogServer) DeleteApplication(ctx context.Context, r *pb.DeleteApplicationRequest) (*pb.DeleteApplicationResponse, error) {
	a, err := s.store.DeleteApplication(ctx, tenantOf(ctx), r.Gallery, r.Application, r.IfMatch, r.Cascade)
	return &pb.DeleteApplicationResponse{Application: a}, err
}

func (s *catalogServer) CreateVersion(ctx context.Context, r *pb.CreateVersionRequest) (*pb.CreateVersionResponse, error) {
	if err := required("version", r.Version); err != nil {
		return nil, err
	}
	v, err := s.store.CreateVersion(ctx, tenantOf(ctx), r.Version)
	return decorated(s.repl, &pb.CreateVersionResponse{Version: v}, err, true, v)
}

func (s *catalogServer) GetVersion(ctx context.Context, r *pb.GetVersionRequest) (*pb.GetVersionResponse, error) {
	v, err := s.store.GetVersion(ctx, tenantOf(ctx), r.Gallery, r.Application, r.Version)
	if t := auth.TokenOf(ctx); err == nil && (t == nil || t.Tenant == tenantOf(ctx) || t.Tenant == auth.AllTenants) {
		// The preheat names the tenant's machines: not for readers of a
		// gallery shared with another tenant.
		err = s.peers.preheats(ctx, tenantOf(ctx), v)
	}
	return decorated(s.repl, &pb.GetVersionResponse{Version: v}, err, false, v)
}

func (s *catalogServer) ListVersions(ctx context.Context, r *pb.ListVersionsRequest) (*pb.ListVersionsResponse, error) {
	vs, next, err := s.store.ListVersions(ctx, tenantOf(ctx), r.Gallery, r.Application, catalog.Page{Size: r.PageSize, Token: r.PageToken})
	return decorated(s.repl, &pb.ListVersionsResponse{Versions: vs, NextPageToken: next}, err, false, vs...)
}

func (s *catalogServer) UpdateVersion(ctx context.Context, r *pb.UpdateVersionRequest) (*pb.UpdateVersionResponse, error) {
	if err := required("version", r.Version); err != nil {
		return nil, err
	}
	v, err := s.store.UpdateVersion(ctx, tenantOf(ctx), r.Version, r.GetUpdateMask().GetPaths(), r.IfMatch)
	return decorated(s.repl, &pb.UpdateVersionResponse{Version: v}, err, true, v)
}

func (s *catalogServer) DeleteVersion(ctx context.Context, r *pb.DeleteVersionRequest) (*pb.DeleteVersionResponse, error) {
	v, err := s.store.DeleteVersion(ctx, tenantOf(ctx), r.Gallery, r.Application, r.Version, r.IfMatch)
	return decorated(s.repl, &pb.DeleteVersionResponse{Version: v}, err, true, v)
}

func (s *catalogServer) ListRegions(ctx context.Context, _ *pb.ListRegionsRequest) (*pb.ListRegionsResponse, error) {
	out := &pb.ListRegionsResponse{}
	for _, r := range s.topo.Regions {
		out.Regions = append(out.Regions, &pb.Region{Name: r.Name, EndpointCount: int32(len(r.Endpoints))})
	}
	return out, nil
}
