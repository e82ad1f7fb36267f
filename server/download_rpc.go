package server

import (
	"context"
	"io"
	"slices"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/state"
	"github.com/vmapp/vmapp/topology"
)

// DefaultURLExpiry is how long a download plan's presigned URLs work.
const DefaultURLExpiry = 10 * time.Minute

// MaxURLExpiry is the longest expiry S3 accepts for a presigned URL.
const MaxURLExpiry = 7 * 24 * time.Hour

// readChunk is the data size of one ReadRangeResponse.
const readChunk = 1 << 20

type downloadServer struct {
	pb.UnimplementedDownloadServiceServer
	store  *catalog.Store
	topo   *topology.Topology
	repl   *replicator.Replicator
	stores func(region string, i int) (blob.Store, error)
	expiry time.Duration
	direct bool
	m      *edgeMetrics
	peers  *peers // nil: no peers
}

// target is a version's artifact that may be downloaded in a region.
type target struct {
	v        *pb.GalleryApplicationVersion
	manifest *statepb.Manifest
	replicas []*statepb.Replica // the region's first, then the others'
}

// checkKind checks an artifact kind given as field: a package or a
// configuration.
func checkKind(field string, k pb.ArtifactKind) error {
	if k != pb.ArtifactKind_ARTIFACT_KIND_PACKAGE && k != pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION {
		return errs.New(errs.InvalidArgument, field, "kind must be ARTIFACT_KIND_PACKAGE or ARTIFACT_KIND_CONFIGURATION, not %v", k)
	}
	return nil
}

// version returns a version whose artifact k may be read in region: the
// kind and the region are valid, the version isn't being deleted, and the
// artifact is stored.
func (s *downloadServer) version(ctx context.Context, gallery, app, version string, k pb.ArtifactKind, region string) (*pb.GalleryApplicationVersion, error) {
	if err := checkKind("kind", k); err != nil {
		return nil, err
	}
	if !s.topo.Has(region) {
		return nil, errs.New(errs.InvalidArgument, "region", "region '%s' is not one of %v", region, s.topo.Names())
	}
	v, err := s.store.GetVersion(ctx, tenantOf(ctx), gallery, app, version)
	if err != nil {
		return nil, err
	}
	if v.ProvisioningState == pb.ProvisioningDeleting {
		return nil, errs.New(errs.FailedPrecondition, "version", "Gallery application version '%s/%s/%s' is marked for deletion.", v.Gallery, v.Application, v.Name)
	}
	if state.ArtifactOf(v, k) == nil {
		return nil, errs.New(errs.FailedPrecondition, "kind", "Gallery application version '%s/%s/%s' has no %s.", v.Gallery, v.Application, v.Name, k.Label())
	}
	return v, nil
}

func (s *downloadServer) target(ctx context.Context, gallery, app, version string, k pb.ArtifactKind, region string) (*target, error) {
	v, err := s.version(ctx, gallery, app, version, k, region)
	if err != nil {
		return nil, err
	}
	if err := s.repl.Available(ctx, v, region); err != nil {
		return nil, err
	}
	m, err := s.store.Manifest(ctx, v.Tenant, v.Gallery, v.Application, v.Name, k)
	if err != nil {
		return nil, err
	}
	reps, err := s.repl.Completed(v, k)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(reps, func(a, b *statepb.Replica) int {
		switch {
		case a.Region == region && b.Region != region:
			return -1
		case a.Region != region && b.Region == region:
			return 1
		}
		return 0
	})
	return &target{v: v, manifest: m, replicas: reps}, nil
}

// capped reports whether rep's endpoint caps its egress (egressMBps):
// its bytes may leave it only through vmappd, which caps them, never
// through a presigned URL.
func (s *downloadServer) capped(rep *statepb.Replica) bool {
	r, _ := s.topo.Region(rep.Region)
	return int(rep.Endpoint) < len(r.Endpoints) && r.Endpoints[rep.Endpoint].Egress() > 0
}

// anyUncapped reports whether one of region's replicas may be read
// through a URL. When none may, the plan isn't direct: the downloader
// reads through vmappd (ReadRange), not from other regions' replicas
// first.
func (s *downloadServer) anyUncapped(reps []*statepb.Replica, region string) bool {
	for _, rep := range reps {
		if rep.Region == region && !s.capped(rep) {
			return true
		}
	}
	return false
}

func (s *downloadServer) GetDownloadPlan(ctx context.Context, r *pb.GetDownloadPlanRequest) (*pb.GetDownloadPlanResponse, error) {
	t, err := s.target(ctx, r.Gallery, r.Application, r.Version, r.Kind, r.Region)
	if err != nil {
		return nil, err
	}
	m := t.manifest
	plan := &pb.DownloadPlan{
		Gallery: t.v.Gallery, Application: t.v.Application, Version: t.v.Name, Kind: r.Kind, Region: r.Region,
		SizeBytes: m.SizeBytes, Sha256: m.Sha256, PieceSize: m.PieceSize, PieceSha256: m.PieceSha256, PieceChain: m.PieceChain,
		Direct: s.direct && s.anyUncapped(t.replicas, r.Region), ExpireTime: timestamppb.New(time.Now().Add(s.expiry)),
	}
	if plan.Direct {
		for _, rep := range t.replicas {
			if s.capped(rep) {
				continue // its bytes go through vmappd's cap: ReadRange
			}
			st, err := s.stores(rep.Region, int(rep.Endpoint))
			if err != nil {
				return nil, err
			}
			u, err := st.PresignGet(ctx, rep.ObjectKey, s.expiry)
			if err != nil {
				return nil, err
			}
			plan.Sources = append(plan.Sources, &pb.DownloadSource{Region: rep.Region, Replica: rep.Index, Url: u.String(), Fallback: rep.Region != r.Region})
		}
	}
	s.m.plans.WithLabelValues(r.Region).Inc()
	if err := s.peers.forPlan(ctx, plan); err != nil {
		return nil, err
	}
	return &pb.GetDownloadPlanResponse{Plan: plan}, nil
}

func (s *downloadServer) ReadRange(r *pb.ReadRangeRequest, stream pb.DownloadService_ReadRangeServer) error {
	ctx := stream.Context()
	t, err := s.target(ctx, r.Gallery, r.Application, r.Version, r.Kind, r.Region)
	if err != nil {
		return err
	}
	size := t.manifest.SizeBytes
	switch {
	case r.Offset < 0 || r.Offset >= size:
		return errs.New(errs.OutOfRange, "offset", "offset %d is outside the %s's %d bytes", r.Offset, r.Kind.Label(), size)
	case r.Length <= 0:
		return errs.New(errs.InvalidArgument, "length", "length %d must be positive", r.Length)
	}
	length := min(r.Length, size-r.Offset)
	off := r.Offset
	var last error
	for _, rep := range t.replicas {
		if rep.Region != r.Region {
			continue // the region's own replicas only: that is what it's for
		}
		st, err := s.stores(rep.Region, int(rep.Endpoint))
		if err != nil {
			return err
		}
		body, err := st.Get(ctx, rep.ObjectKey, off, length-(off-r.Offset))
		if err != nil {
			last = err
			continue
		}
		sent := off
		err = sendChunks(stream, body, &off)
		body.Close()
		s.m.downloadBytes.WithLabelValues(r.Region).Add(float64(off - sent))
		if err == nil || ctx.Err() != nil {
			return err
		}
		last = err // try the next replica from where this one stopped
	}
	if last == nil {
		last = errs.New(errs.Unavailable, "", "no replica in %s", r.Region)
	}
	return errs.Wrap(errs.Unavailable, last, "read %s bytes %d+%d in %s", r.Kind.Label(), r.Offset, length, r.Region)
}

// sendChunks streams body from *off, advancing it by what was sent.
func sendChunks(stream pb.DownloadService_ReadRangeServer, body io.Reader, off *int64) error {
	buf := make([]byte, readChunk)
	for {
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			if serr := stream.Send(&pb.ReadRangeResponse{Offset: *off, Data: buf[:n]}); serr != nil {
				return serr
			}
			*off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// maxProblem bounds the downloader's account in a report of damage.
const maxProblem = 1024

func (s *downloadServer) ReportReplicaDamage(ctx context.Context, r *pb.ReportReplicaDamageRequest) (*pb.ReportReplicaDamageResponse, error) {
	switch {
	case r.Replica < 0:
		return nil, errs.New(errs.InvalidArgument, "replica", "replica %d must not be negative", r.Replica)
	case r.Piece < 0:
		return nil, errs.New(errs.InvalidArgument, "piece", "piece %d must not be negative", r.Piece)
	case len(r.Problem) > maxProblem || !utf8.ValidString(r.Problem):
		return nil, errs.New(errs.InvalidArgument, "problem", "problem must be UTF-8 text of at most %d bytes", maxProblem)
	}
	v, err := s.version(ctx, r.Gallery, r.Application, r.Version, r.Kind, r.Region)
	if err != nil {
		return nil, err
	}
	name := v.Gallery + "/" + v.Application + "/" + v.Name
	pp := v.GetPublishingProfile()
	i := slices.IndexFunc(pp.GetTargetRegions(), func(tr *pb.TargetRegion) bool { return tr.Name == r.Region })
	if i < 0 {
		return nil, errs.New(errs.InvalidArgument, "region", "'%s' has no replicas in region '%s': it is not one of its target regions", name, r.Region)
	}
	if n := pp.ReplicasIn(pp.TargetRegions[i]); r.Replica >= n {
		return nil, errs.New(errs.InvalidArgument, "replica", "'%s' has %d replicas in %s (0..%d), not replica %d", name, n, r.Region, n-1, r.Replica)
	}
	m, err := s.store.Manifest(ctx, v.Tenant, v.Gallery, v.Application, v.Name, r.Kind)
	if err != nil {
		return nil, err
	}
	if n := int64(len(m.PieceSha256)); r.Piece >= n {
		return nil, errs.New(errs.InvalidArgument, "piece", "the %s of '%s' has %d pieces (0..%d), not piece %d", r.Kind.Label(), name, n, n-1, r.Piece)
	}
	vd, err := s.repl.VerifyReport(ctx, v, r.Kind, r.Region, r.Replica, int(r.Piece), auth.Describe(auth.TokenOf(ctx)), r.Problem)
	if err != nil {
		return nil, err
	}
	return &pb.ReportReplicaDamageResponse{Verdict: vd.Verdict, Detail: vd.Detail}, nil
}
