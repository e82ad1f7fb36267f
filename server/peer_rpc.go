package server

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/grant"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/fleet"
	"github.com/vmapp/vmapp/server/tracker"
)

// peers is what DownloadService needs for peer-to-peer downloads: the
// tracker, the grant signer, and the fleet (machines' regions, scale sets
// and goal states). A nil *peers serves no peers.
type peers struct {
	tracker trackerAPI
	lease   time.Duration // of an announcement
	grants  *grant.Signer
	fleet   *fleet.Fleet
	log     *slog.Logger
	now     func() time.Time
}

// maxHeld bounds an announcement, maxPieces a held artifact's bitmap.
const (
	maxHeld   = 1000
	maxPieces = 64 << 10
)

// forPlan adds peers of the asking machine holding the plan's artifact, and
// the grant to show them, when the caller is a machine (GetDownloadPlan's
// rule checked that the version is in its goal state). A machine that
// serves peers itself is recorded as downloading the artifact, one of its
// region's swarm: the plan tells it to ask again for its peers' pieces,
// and which pieces it may take from the stores (tracker.Claims).
func (p *peers) forPlan(ctx context.Context, plan *pb.DownloadPlan) error {
	t := auth.TokenOf(ctx)
	if p == nil || t == nil || t.Role != pb.Role_ROLE_MACHINE {
		return nil
	}
	m, err := p.fleet.GetMachine(ctx, t.Tenant, t.Machine)
	if err != nil {
		return err
	}
	a := tracker.Artifact{Tenant: tenantOf(ctx), Gallery: plan.Gallery, Application: plan.Application, Version: plan.Version, Kind: int32(plan.Kind)}
	tm := tracker.Machine{Tenant: m.Tenant, Name: m.Name, Region: m.Region, ScaleSet: m.ScaleSet}
	tp, err := p.tracker.Plan(ctx, a, tm, len(plan.PieceSha256), tracker.MaxPeers)
	if err != nil { // a plan without peers still downloads
		p.log.Warn("the peer tracker didn't answer: a download plan names no peers", "machine", m.Name, "err", err)
		return nil
	}
	if tp.Swarm {
		plan.PeerRefresh = durationpb.New(tracker.SwarmRefresh)
		for _, i := range tp.Claims {
			plan.StorePieces = append(plan.StorePieces, uint32(i))
		}
	} else if len(tp.Peers) == 0 {
		return nil
	}
	g := grant.New(t.Tenant, t.Machine, a.Tenant, a.Gallery, a.Application, a.Version, plan.Kind, p.now())
	if plan.PeerGrant, err = p.grants.Sign(g); err != nil {
		return err
	}
	for _, f := range tp.Peers {
		plan.Peers = append(plan.Peers, &pb.PeerSource{Machine: f.Name, Address: f.Address, SameScaleSet: f.SameScaleSet, Pieces: f.Pieces})
	}
	return nil
}

func (s *downloadServer) Announce(ctx context.Context, r *pb.AnnounceRequest) (*pb.AnnounceResponse, error) {
	p := s.peers
	if p == nil {
		return nil, errs.New(errs.Unimplemented, "", "this vmappd tracks no peers")
	}
	if err := checkPeerAddress(r.Address); err != nil {
		return nil, err
	}
	if len(r.Held) > maxHeld {
		return nil, errs.New(errs.InvalidArgument, "held", "%d artifacts announced; at most %d", len(r.Held), maxHeld)
	}
	tenant := tenantOf(ctx)
	m, err := p.fleet.GetMachine(ctx, tenant, r.Machine)
	if err != nil {
		return nil, err
	}
	gs, err := p.fleet.GoalState(ctx, tenant, r.Machine)
	if err != nil {
		return nil, err
	}
	given := map[tracker.Artifact]bool{}
	for _, app := range gs.Applications {
		from := app.Tenant
		if from == "" {
			from = tenant
		}
		for _, k := range []pb.ArtifactKind{pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION} {
			given[tracker.Artifact{Tenant: from, Gallery: app.Gallery, Application: app.Application, Version: app.Version, Kind: int32(k)}] = true
		}
	}
	for _, ph := range gs.Preheat {
		given[tracker.Artifact{Tenant: tenant, Gallery: ph.Gallery, Application: ph.Application, Version: ph.Version, Kind: int32(pb.ArtifactKind_ARTIFACT_KIND_PACKAGE)}] = true
	}
	var arts []tracker.Held
	for i, h := range r.Held {
		if err := checkKind("held["+strconv.Itoa(i)+"].kind", h.Kind); err != nil {
			return nil, err
		}
		if len(h.Pieces) > maxPieces {
			return nil, errs.New(errs.InvalidArgument, "held["+strconv.Itoa(i)+"].pieces", "a bitmap of %d bytes; at most %d", len(h.Pieces), maxPieces)
		}
		a := tracker.Artifact{Tenant: h.Tenant, Gallery: h.Gallery, Application: h.Application, Version: h.Version, Kind: int32(h.Kind)}
		if a.Tenant == "" {
			a.Tenant = tenant
		}
		if given[a] { // a machine never serves what it wasn't given
			arts = append(arts, tracker.Held{Artifact: a, Pieces: h.Pieces})
		}
	}
	if err := p.tracker.Announce(ctx, tracker.Machine{Tenant: m.Tenant, Name: m.Name, Region: m.Region, ScaleSet: m.ScaleSet}, r.Address, arts); err != nil {
		return nil, err
	}
	return &pb.AnnounceResponse{Lease: durationpb.New(p.lease), Recorded: int32(len(arts)),
		GrantKeys: [][]byte{[]byte(p.grants.Public())}}, nil
}

// checkPeerAddress checks an announced address: host:port, or empty.
func checkPeerAddress(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return errs.New(errs.InvalidArgument, "address", "address %q must be host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return errs.New(errs.InvalidArgument, "address", "address %q: port %q is not 1-65535", addr, port)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return errs.New(errs.InvalidArgument, "address", "address %q names no host peers can dial", addr)
	}
	return nil
}

func (s *downloadServer) ReportPeer(ctx context.Context, r *pb.ReportPeerRequest) (*pb.ReportPeerResponse, error) {
	p := s.peers
	switch {
	case p == nil:
		return nil, errs.New(errs.Unimplemented, "", "this vmappd tracks no peers")
	case r.Peer == "":
		return nil, errs.New(errs.InvalidArgument, "peer", "peer is required: the machine name the plan gave")
	case r.Piece < 0:
		return nil, errs.New(errs.InvalidArgument, "piece", "piece %d must not be negative", r.Piece)
	case len(r.Problem) > maxProblem || !utf8.ValidString(r.Problem):
		return nil, errs.New(errs.InvalidArgument, "problem", "problem must be UTF-8 text of at most %d bytes", maxProblem)
	}
	if err := checkKind("kind", r.Kind); err != nil {
		return nil, err
	}
	t := auth.TokenOf(ctx)
	tenant := tenantOf(ctx)
	if t != nil && t.Role == pb.Role_ROLE_MACHINE {
		tenant = t.Tenant // peers are machines of the reporter's tenant
	}
	a := tracker.Artifact{Tenant: tenantOf(ctx), Gallery: r.Gallery, Application: r.Application, Version: r.Version, Kind: int32(r.Kind)}
	if err := p.tracker.Report(ctx, a, tenant, r.Peer); err != nil {
		return nil, err
	}
	p.log.Warn("a peer sent a piece that failed verification; not offered for the artifact for a while",
		"peer", r.Peer, "by", auth.Describe(t), "artifact", r.Gallery+"/"+r.Application+"/"+r.Version, "kind", r.Kind.Label(),
		"piece", r.Piece, "problem", r.Problem, "ban", tracker.BanTime)
	return &pb.ReportPeerResponse{}, nil
}
