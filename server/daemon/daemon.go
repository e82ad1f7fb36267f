package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"

	"github.com/vmapp/vmapp/blob/observed"
	"github.com/vmapp/vmapp/cluster"
	"github.com/vmapp/vmapp/internal/buildinfo"
	"github.com/vmapp/vmapp/internal/grant"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
	"github.com/vmapp/vmapp/server"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/server/fleet"
	"github.com/vmapp/vmapp/server/ingest"
	"github.com/vmapp/vmapp/server/rest"
	"github.com/vmapp/vmapp/server/rollout"
	"github.com/vmapp/vmapp/server/signing"
	"github.com/vmapp/vmapp/server/tracker"
	"github.com/vmapp/vmapp/state"
	"github.com/vmapp/vmapp/topology"
)

// Config is vmappd's host-specific configuration (its flags).
type Config struct {
	DataDir     string // holds vmapp.db
	Listen      string // gRPC address
	MetricsAddr string // Prometheus /metrics address; "" disables
	// HTTPListen (--http-listen) serves the REST API (server/rest) and
	// what is mounted on it (Daemon.HTTP.Mount); "" disables. Same TLS as
	// gRPC.
	HTTPListen string
	// Pprof serves Go's profiles (/debug/pprof/) on MetricsAddr too: what
	// the bench profiles vmappd with. Off by default: a profile shows what
	// the process does, and that listener has no authentication.
	Pprof       bool
	RegionsFile string
	Logger      *slog.Logger
	// PartConcurrency is the number of parts an upload stores at once.
	PartConcurrency int
	// PartSize is the multipart part and manifest piece size (default 8 MiB;
	// at least 5 MiB, S3's minimum part).
	PartSize int64
	// URLExpiry is how long download plans' presigned URLs work; 0 is
	// DefaultURLExpiry. ProxyDownloads sends machines to ReadRange.
	URLExpiry      time.Duration
	ProxyDownloads bool
	// Replicator tunes replication; the regions file's replication section
	// fills what it leaves zero, and the daemon sets the wiring fields.
	Replicator replicator.Options
	// Ready, when set, receives the bound gRPC address once serving.
	Ready func(addr net.Addr)
	// TLSCert and TLSKey are PEM files: with them the gRPC API is served
	// over TLS only. TLSClientCA, a PEM CA bundle, makes vmappd require a
	// client certificate from it of every connection (mutual TLS).
	TLSCert, TLSKey, TLSClientCA string
	// BindMachineCerts (with TLSClientCA) accepts a machine's agent
	// credential only over a connection whose client certificate's common
	// name is that machine's name.
	BindMachineCerts bool
	// Cluster makes vmappd a node of a cluster (NodeID set); zero: a single
	// vmappd on its own state file.
	Cluster ClusterConfig
	// HealthInterval is how often the data directory and the stores are
	// checked for the health service (0: DefaultHealthInterval).
	HealthInterval time.Duration
	// DrainDelay is how long vmappd, told to stop, keeps serving with its
	// health NOT_SERVING before it stops taking calls, so that load
	// balancers see it go first (0: it stops at once).
	DrainDelay time.Duration
}

// ClusterConfig is a node's part of Config.
type ClusterConfig struct {
	// NodeID names the node (--node-id); empty: no cluster.
	NodeID string
	// RaftListen (--raft-listen) and RaftAdvertise (--raft-advertise) are
	// raft's addresses; Advertise (--advertise) is the gRPC address the
	// other nodes reach this one at (default: Listen's).
	RaftListen, RaftAdvertise, Advertise string
	// KeyFile (--cluster-key) holds the key every node shares.
	KeyFile string
	// Join (--join) lists nodes' gRPC addresses to join through, when the
	// node has no raft state yet; empty: it bootstraps a new cluster.
	Join []string
	// Raft's timing, zero for its defaults (tests shorten them).
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
}

// DBFile is the state file's name inside the data directory.
const DBFile = "vmapp.db"

// AdminTokenFile is where, in the data directory, vmappd's first start
// writes the operator's bootstrap token (mode 0600): Owner of every tenant.
const AdminTokenFile = "admin.token"

// Daemon is vmappd's parts, wired: the state (and, in a cluster, the raft
// node), the stores, ingest, the replicator, the fleet, credentials and
// the gRPC server. New builds it; Serve runs it.
type Daemon struct {
	Config     Config
	Topology   *topology.Topology
	Stores     Stores
	State      *state.DB
	Node       *cluster.Node // nil for a single vmappd
	Catalog    *catalog.Store
	Ingest     *ingest.Service
	Replicator *replicator.Replicator
	Auth       *auth.Service
	Fleet      *fleet.Fleet
	Signing    *signing.Service
	Rollouts   *rollout.Service
	Tracker    *tracker.Tracker
	Grants     *grant.Signer
	GRPC       *grpc.Server
	// HTTP is the REST API on Config.HTTPListen (nil without it); mount
	// other handlers on it before Serve.
	HTTP     *rest.Gateway
	Health   *health.Server
	Registry *prometheus.Registry
	health   *healthState
	egress   EgressCaps // the endpoints' egress caps: a cluster node's share of each
	log      *slog.Logger
	tls      *tls.Config
	lis      net.Listener
	httpLis  net.Listener
	local    *rest.Local // the gRPC server's in-memory listener, for HTTP
}

// New opens the state in c.DataDir (and the raft node, in a cluster),
// listens on c.Listen and wires every part. Close releases it all when
// Serve is not called.
func New(ctx context.Context, c Config) (*Daemon, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.URLExpiry != 0 && (c.URLExpiry < time.Second || c.URLExpiry > server.MaxURLExpiry) {
		return nil, fmt.Errorf("--url-expiry %s: want between 1s and %s, the longest S3 presigned URLs work", c.URLExpiry, server.MaxURLExpiry)
	}
	tlsConf, err := TLSConfig(c.TLSCert, c.TLSKey, c.TLSClientCA)
	if err != nil {
		return nil, err
	}
	if c.BindMachineCerts && c.TLSClientCA == "" {
		return nil, fmt.Errorf("--tls-bind-machines needs --tls-client-ca: machines are known by their client certificates")
	}
	if c.Pprof && c.MetricsAddr == "" {
		return nil, errors.New("--pprof serves on the --metrics listener: give --metrics ADDR too")
	}
	topo, err := topology.Load(c.RegionsFile)
	if err != nil {
		return nil, err
	}
	stores, err := OpenStores(ctx, topo)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	d := &Daemon{Config: c, Topology: topo, Stores: stores, log: c.Logger, tls: tlsConf, Registry: prometheus.NewRegistry(), Health: health.NewServer()}
	if d.State, err = state.Open(filepath.Join(c.DataDir, DBFile), state.Options{Logger: c.Logger}); err != nil {
		return nil, err
	}
	d.Stores, d.egress = stores.Observed(observed.NewErrors(d.Registry)).Capped(topo)
	d.egress.Register(d.Registry)
	d.health = newHealthState(d.Health, d.Registry)
	d.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vmapp_state_records_read_total",
		Help: "Records read (decoded) from the state file, by API reads, goal states and background work: what reading the state costs.",
	}, func() float64 { return float64(d.State.RecordsRead()) }))
	if d.lis, err = net.Listen("tcp", c.Listen); err != nil {
		d.State.Close()
		return nil, fmt.Errorf("listen on %s for gRPC: %w", c.Listen, err)
	}
	d.wire()
	if err := d.listenHTTP(); err != nil {
		d.Close()
		return nil, err
	}
	if d.Grants, err = grantSigner(c); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.startNode(); err != nil {
		d.Close()
		return nil, err
	}
	if d.Node == nil {
		_, err := d.Auth.Bootstrap(ctx, filepath.Join(c.DataDir, AdminTokenFile))
		if err == nil {
			err = d.proposePending(ctx)
		}
		if err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// wire builds the parts on the open state.
func (d *Daemon) wire() {
	c, log, topo := d.Config, d.log, d.Topology
	d.Catalog = catalog.New(d.State, catalog.Options{
		Regions: topo.Names(), Logger: log,
		// A version's replicas go first, then its source objects.
		FinalizeVersion: func(ctx context.Context, v *pb.GalleryApplicationVersion) error {
			if err := d.Replicator.Finalize(ctx, v); err != nil {
				return err
			}
			return d.Ingest.DeleteObjects(ctx, v)
		},
	})
	d.Ingest = ingest.New(ingest.Options{Catalog: d.Catalog, Store: d.Stores.Get, Logger: log, Concurrency: c.PartConcurrency, PartSize: c.PartSize})
	ro, rp := c.Replicator, topo.Replication
	ro.DB, ro.Catalog, ro.Topology, ro.Store, ro.Logger, ro.Registry = d.State, d.Catalog, topo, d.Stores.Get, log, d.Registry
	ro.Concurrency = cmp.Or(ro.Concurrency, rp.Concurrency)
	ro.EndpointConcurrency = cmp.Or(ro.EndpointConcurrency, rp.EndpointConcurrency)
	ro.PartConcurrency = cmp.Or(ro.PartConcurrency, rp.PartConcurrency)
	ro.Bandwidth = cmp.Or(ro.Bandwidth, rp.BandwidthMBps*1e6)
	ro.ScrubInterval = cmp.Or(ro.ScrubInterval, rp.ScrubInterval)
	period, bps := rp.DeepScrub()
	ro.DeepScrubPeriod, ro.DeepScrubRate = cmp.Or(ro.DeepScrubPeriod, period), cmp.Or(ro.DeepScrubRate, bps)
	d.Replicator, _ = replicator.New(ro)
	d.Auth = auth.New(d.State, auth.Options{Logger: log})
	d.Signing = signing.New(d.State, signing.Options{})
	d.Fleet = fleet.New(d.State, fleet.Options{Catalog: d.Catalog, Availability: d.Replicator, Shares: d.Auth, Signing: d.Signing, Regions: topo.Names()})
	d.Rollouts = rollout.New(rollout.Options{DB: d.State, Fleet: d.Fleet, Regions: topo.Names(), Logger: log, Registry: d.Registry})
	d.Tracker = tracker.New(nil, 0)
	d.Tracker.Register(d.Registry)
}

// GrantKeyFile is where, in the data directory, a single vmappd keeps the
// seed of the key it signs peer grants with.
const GrantKeyFile = "peer-grant.key"

// grantSigner is the key peer grants are signed with: derived from the
// cluster key on a node of a cluster (every node signs with the same key),
// a single vmappd's own otherwise.
func grantSigner(c Config) (*grant.Signer, error) {
	if c.Cluster.NodeID != "" {
		key, err := readKey(c.Cluster.KeyFile)
		if err != nil {
			return nil, err
		}
		return grant.FromClusterKey(key)
	}
	g, err := grant.FromFile(filepath.Join(c.DataDir, GrantKeyFile))
	if err != nil {
		return nil, fmt.Errorf("peer grant key: %w", err)
	}
	return g, nil
}

// Addr is the address gRPC listens on.
func (d *Daemon) Addr() net.Addr { return d.lis.Addr() }

// Close releases the listeners, the raft node and the state; Serve does
// it when it returns.
func (d *Daemon) Close() error {
	d.lis.Close()
	if d.httpLis != nil {
		d.httpLis.Close()
		d.local.Close()
		d.HTTP.Conn().Close()
	}
	if d.Node != nil {
		d.Node.Shutdown()
	}
	return d.State.Close()
}

// Run serves c until ctx is cancelled, then stops gracefully.
func Run(ctx context.Context, c Config) error {
	d, err := New(ctx, c)
	if err != nil {
		return err
	}
	return d.Serve(ctx)
}

// leaderWork is what one vmappd of a cluster does (the leader; a single
// vmappd itself): reaping deleted resources, expiring uploads,
// replication, driving rollouts. It runs until ctx ends.
func (d *Daemon) leaderWork(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { d.Catalog.RunReaper(ctx, 30*time.Second) })
	wg.Go(func() { d.Ingest.RunJanitor(ctx, time.Minute) })
	wg.Go(func() { d.Replicator.Run(ctx) })
	wg.Go(func() { d.Rollouts.Run(ctx) })
	wg.Wait()
}

// servePprof adds Go's profiling handlers to mux, at the paths the pprof
// tool expects.
func servePprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// Serve serves gRPC (and metrics on Config.MetricsAddr) and runs the
// background work until ctx is cancelled, then stops gracefully and closes
// the state.
func (d *Daemon) Serve(ctx context.Context) error {
	defer d.Close()
	c, log, reg := d.Config, d.log, d.Registry
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
	d.GRPC = d.grpcServer()
	d.health.serve(slices.Collect(maps.Keys(d.GRPC.GetServiceInfo())))
	transport := logTransport(log, d.lis.Addr(), d.tls)
	httpSrv := d.serveHTTP()
	var metricsSrv *http.Server
	if c.MetricsAddr != "" {
		mlis, err := net.Listen("tcp", c.MetricsAddr)
		if err != nil {
			return fmt.Errorf("listen on %s for metrics: %w", c.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		d.healthHandlers(mux)
		if c.Pprof {
			servePprof(mux)
		}
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := metricsSrv.Serve(mlis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		log.Info("metrics listening", "addr", mlis.Addr().String())
	}

	g, gctx := errgroup.WithContext(ctx)
	d.Stores.EnsureBuckets(gctx, log)
	if d.Node == nil {
		g.Go(func() error { d.leaderWork(gctx); return nil })
	} else {
		g.Go(func() error { return d.joinAndWatch(gctx) })
	}
	g.Go(func() error { d.watchHealth(gctx); return nil })
	g.Go(func() error {
		<-gctx.Done()
		d.drain()
		if httpSrv != nil {
			httpSrv.Close() // its streams end with the gRPC calls they hold
		}
		stopped := make(chan struct{})
		go func() { d.GRPC.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			d.GRPC.Stop()
		}
		if metricsSrv != nil {
			metricsSrv.Close()
		}
		return nil
	})
	if httpSrv != nil {
		g.Go(func() error { return d.GRPC.Serve(d.local) })
	}
	g.Go(func() error {
		log.Info("vmappd serving", "addr", d.lis.Addr().String(), "transport", transport, "data", c.DataDir, "regions", d.Topology.Names(), "node", c.Cluster.NodeID)
		if c.Ready != nil {
			c.Ready(d.lis.Addr())
		}
		return d.GRPC.Serve(d.lis)
	})
	err := g.Wait()
	log.Info("vmappd stopped")
	return err
}

// drain makes every health service NOT_SERVING and, for DrainDelay, keeps
// serving so that load balancers stop sending calls before vmappd stops
// taking them.
func (d *Daemon) drain() {
	d.health.set("draining", "vmappd is stopping")
	d.Health.Shutdown()
	if d.Config.DrainDelay > 0 {
		d.log.Info("draining: health NOT_SERVING; serving calls until the drain delay ends", "delay", d.Config.DrainDelay)
		time.Sleep(d.Config.DrainDelay)
	}
}

// grpcServer builds the gRPC server of every service.
func (d *Daemon) grpcServer() *grpc.Server {
	o := server.Options{State: d.State, Store: d.Catalog, Topology: d.Topology, Ingest: d.Ingest, Replicator: d.Replicator, Stores: d.Stores.Get,
		URLExpiry: d.Config.URLExpiry, ProxyDownloads: d.Config.ProxyDownloads, Fleet: d.Fleet, Signing: d.Signing, Rollouts: d.Rollouts, Auth: d.Auth, Tracker: d.Tracker, Grants: d.Grants, BindMachineCerts: d.Config.BindMachineCerts,
		Logger: d.log, Registry: d.Registry, Creds: serverCreds(d.tls, d.log), Health: d.Health, Self: d.lis.Addr().String()}
	if d.Node != nil {
		o.Cluster, o.Peer, o.Serving = d.Node, d.Node.PeerServer(), d.Node.Serving
	}
	return server.New(o)
}
