// Package server holds vmappd's gRPC handlers: thin adapters that take the
// tenant from the request metadata, call the catalog, and map errors to gRPC
// codes (errs.ToStatus) in one interceptor.
package server

import (
	"context"
	"log/slog"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/grant"
	"github.com/vmapp/vmapp/internal/wire"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/server/fleet"
	"github.com/vmapp/vmapp/server/ingest"
	"github.com/vmapp/vmapp/server/rollout"
	"github.com/vmapp/vmapp/server/signing"
	"github.com/vmapp/vmapp/server/tracker"
	"github.com/vmapp/vmapp/state"
	"github.com/vmapp/vmapp/topology"
)

// DefaultTenant is used when a request names none.
const DefaultTenant = "default"

type tenantCtx struct{}

// tenantOf returns the tenant the interceptor put in ctx.
func tenantOf(ctx context.Context) string {
	if t, ok := ctx.Value(tenantCtx{}).(string); ok {
		return t
	}
	return DefaultTenant
}

// withTenant reads and validates the tenant from the incoming metadata.
// A call that names none runs in its credential's tenant (see
// authenticate), or else in DefaultTenant.
func withTenant(ctx context.Context) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(pb.TenantMetadataKey)
	switch {
	case len(v) == 0:
		return ctx, nil
	case len(v) > 1:
		return ctx, errs.New(errs.InvalidArgument, "tenant", "metadata %s was sent %d times; send one tenant", pb.TenantMetadataKey, len(v))
	}
	if err := catalog.ValidateTenant(v[0]); err != nil {
		return ctx, err
	}
	return context.WithValue(ctx, tenantCtx{}, v[0]), nil
}

// Options are what New needs.
type Options struct {
	Store    *catalog.Store
	Topology *topology.Topology
	// Ingest serves TransferService when set.
	Ingest *ingest.Service
	// Replicator, when set, fills in versions' replicationStatus, is poked
	// when a version changes, and serves ReplicationService.
	Replicator *replicator.Replicator
	// Stores returns a region's storage endpoint; with Replicator it
	// enables DownloadService.
	Stores func(region string, i int) (blob.Store, error)
	// URLExpiry is how long download plans' presigned URLs work (default
	// DefaultURLExpiry). ProxyDownloads makes plans send machines to
	// ReadRange instead of the stores.
	URLExpiry      time.Duration
	ProxyDownloads bool
	// Tracker and Grants, with Fleet, make download plans name peers that
	// hold the artifact, and serve DownloadService's Announce and
	// ReportPeer. Nil: no peers.
	Tracker *tracker.Tracker
	Grants  *grant.Signer
	// Fleet serves FleetService when set.
	Fleet *fleet.Fleet
	// Signing serves SigningService when set.
	Signing *signing.Service
	// Rollouts serves RolloutService when set.
	Rollouts *rollout.Service
	// Auth, when set, authenticates every call and authorizes it by role,
	// and serves AccessService. Nil leaves the API open: for tests of
	// other parts; vmappd always sets it.
	Auth *auth.Service
	// BindMachineCerts accepts a machine's agent credential only over a
	// connection whose verified client certificate names that machine.
	BindMachineCerts bool
	Logger           *slog.Logger
	// Registry receives the gRPC metrics; nil means none are registered.
	Registry prometheus.Registerer
	// Creds secure the connections (TLS; see run.go); nil serves plaintext.
	Creds credentials.TransportCredentials
	// State, when set, serves snapshots (ClusterService.SaveSnapshot).
	State *state.DB
	// Cluster and Peer, when set, are the cluster this vmappd is a node
	// of and its PeerService; nil: a single vmappd.
	Cluster Cluster
	Peer    pb.PeerServiceServer
	// Serving, when set, refuses calls while this node can't answer for
	// its cluster (joining, cut off from the majority): clients retry on
	// another node. Health checks, the calls between nodes and the
	// cluster's status are answered whatever it says.
	Serving func() error
	// Self is the gRPC address, for the status of a single vmappd.
	Self string
	// Health is the health service (nil: one that always says SERVING).
	Health *health.Server
}

// New returns a gRPC server with the catalog, health and reflection services
// registered, plus the interceptors for tenant, errors, logs and metrics.
func New(o Options) *grpc.Server {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	metrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	if o.Registry != nil {
		o.Registry.MustRegister(metrics)
	}
	var regions []string
	if o.Topology != nil {
		regions = o.Topology.Names()
	}
	em := newEdgeMetrics(o.Registry, regions, o.Fleet)
	var az *authorizer
	if o.Auth != nil {
		az = &authorizer{auth: o.Auth, store: o.Store, fleet: o.Fleet, bindCerts: o.BindMachineCerts}
	}
	opts := wire.ServerOptions()
	if o.Creds != nil {
		opts = append(opts, grpc.Creds(o.Creds))
	}
	gs := grpc.NewServer(append(opts,
		grpc.ChainUnaryInterceptor(metrics.UnaryServerInterceptor(), unaryEdge(log, az, o.Serving)),
		grpc.ChainStreamInterceptor(metrics.StreamServerInterceptor(), streamEdge(log, az, o.Serving)),
	)...)
	var ps *peers
	if o.Tracker != nil && o.Grants != nil && o.Fleet != nil {
		ps = &peers{tracker: localTracker{o.Tracker}, lease: o.Tracker.LeaseTime(), grants: o.Grants, fleet: o.Fleet, log: log, now: time.Now}
		if o.Cluster != nil { // the leader's tracker, asked through TrackerService
			ps.tracker = clusterTracker{local: localTracker{o.Tracker}, cluster: o.Cluster}
			pb.RegisterTrackerServiceServer(gs, &trackerServer{local: localTracker{o.Tracker}, cluster: o.Cluster})
		}
	}
	pb.RegisterCatalogServiceServer(gs, &catalogServer{store: o.Store, topo: o.Topology, repl: o.Replicator, auth: o.Auth, peers: ps})
	if o.Auth != nil {
		pb.RegisterAccessServiceServer(gs, &accessServer{auth: o.Auth, store: o.Store, fleet: o.Fleet})
	}
	if o.Ingest != nil {
		pb.RegisterTransferServiceServer(gs, &transferServer{ingest: o.Ingest, repl: o.Replicator, m: em})
	}
	if o.Replicator != nil {
		pb.RegisterReplicationServiceServer(gs, &replicationServer{store: o.Store, repl: o.Replicator})
	}
	if o.Replicator != nil && o.Stores != nil {
		expiry := o.URLExpiry
		if expiry <= 0 {
			expiry = DefaultURLExpiry
		}
		ds := &downloadServer{store: o.Store, topo: o.Topology, repl: o.Replicator, stores: o.Stores, expiry: expiry, direct: !o.ProxyDownloads, m: em}
		ds.peers = ps
		pb.RegisterDownloadServiceServer(gs, ds)
	}
	if o.Fleet != nil {
		pb.RegisterFleetServiceServer(gs, &fleetServer{fleet: o.Fleet, auth: o.Auth, m: em})
	}
	if o.Signing != nil {
		pb.RegisterSigningServiceServer(gs, &signingServer{signing: o.Signing})
	}
	if o.Rollouts != nil {
		pb.RegisterRolloutServiceServer(gs, &rolloutServer{rollouts: o.Rollouts})
	}
	if o.State != nil {
		pb.RegisterClusterServiceServer(gs, &clusterServer{cluster: o.Cluster, state: o.State, self: o.Self})
	}
	if o.Peer != nil {
		pb.RegisterPeerServiceServer(gs, o.Peer)
	}
	hs := o.Health
	if hs == nil {
		hs = health.NewServer()
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(pb.CatalogService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	metrics.InitializeMetrics(gs)
	return gs
}

// logCall logs one finished RPC: client errors at Info, server errors at
// Error with the cause (which the reply does not carry).
func logCall(log *slog.Logger, ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(errs.ToStatus(err))
	attrs := []any{"method", method, "tenant", tenantOf(ctx), "code", code.String(), "duration", time.Since(start)}
	if t := auth.TokenOf(ctx); t != nil {
		attrs = append(attrs, "token", t.Id)
	}
	switch {
	case err == nil:
		log.Debug("rpc", attrs...)
	case errs.ClassOf(err) == errs.Internal:
		log.Error("rpc", append(attrs, "err", err)...)
	default:
		log.Info("rpc", append(attrs, "err", err)...)
	}
}

// gate refuses a call while the node can't serve it (see Options.Serving).
func gate(serving func() error, method string) error {
	if serving == nil || open(method) || method == pb.ClusterService_GetClusterStatus_FullMethodName {
		return nil
	}
	return serving()
}

func unaryEdge(log *slog.Logger, az *authorizer, serving func() error) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		if err := gate(serving, info.FullMethod); err != nil {
			return nil, errs.ToStatus(err)
		}
		ctx, err := withTenant(ctx)
		if err == nil {
			ctx, err = az.authenticate(ctx, info.FullMethod)
		}
		if err == nil {
			err = az.authorize(ctx, info.FullMethod, req)
		}
		var resp any
		if err == nil {
			resp, err = h(ctx, req)
		}
		logCall(log, ctx, info.FullMethod, start, err)
		return resp, errs.ToStatus(err)
	}
}

type tenantStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s tenantStream) Context() context.Context { return s.ctx }

func streamEdge(log *slog.Logger, az *authorizer, serving func() error) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		if err := gate(serving, info.FullMethod); err != nil {
			return errs.ToStatus(err)
		}
		ctx, err := withTenant(ss.Context())
		if err == nil {
			ctx, err = az.authenticate(ctx, info.FullMethod)
		}
		if err == nil {
			var s grpc.ServerStream = tenantStream{ss, ctx}
			if az != nil {
				// The request is authorized when the handler receives it.
				s = &authStream{ServerStream: s, a: az, method: info.FullMethod}
			}
			err = h(srv, s)
		}
		logCall(log, ctx, info.FullMethod, start, err)
		return errs.ToStatus(err)
	}
}
