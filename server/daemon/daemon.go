package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
	"github.com/vmapp/vmapp/server"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/server/fleet"
	"github.com/vmapp/vmapp/server/ingest"
	"github.com/vmapp/vmapp/topology"
)

// Config is vmappd's host-specific configuration (its flags).
type Config struct {
	DataDir     string // holds vmapp.db
	Listen      string // gRPC address
	MetricsAddr string // Prometheus /metrics address; "" disables
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
}

// DBFile is the catalog file's name inside the data directory.
const DBFile = "vmapp.db"

// AdminTokenFile is where, in the data directory, vmappd's first start
// writes the operator's bootstrap token (mode 0600): Owner of every tenant.
const AdminTokenFile = "admin.token"

// Daemon is vmappd's parts, wired: the state, the stores, ingest, the
// replicator, the fleet, credentials and the gRPC server. New builds it;
// Serve runs it.
type Daemon struct {
	Config     Config
	Topology   *topology.Topology
	Stores     Stores
	Catalog    *catalog.Store
	Ingest     *ingest.Service
	Replicator *replicator.Replicator
	Auth       *auth.Service
	Fleet      *fleet.Fleet
	GRPC       *grpc.Server
	Registry   *prometheus.Registry
	log        *slog.Logger
	transport  string
	tls        *tls.Config
}

// New opens the state in c.DataDir and wires every part; nothing listens
// yet. Close releases the state when Serve is not called.
func New(ctx context.Context, c Config) (*Daemon, error) {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
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
	d := &Daemon{Config: c, Topology: topo, Stores: stores, log: log, tls: tlsConf, Registry: prometheus.NewRegistry()}
	d.Catalog, err = catalog.Open(ctx, filepath.Join(c.DataDir, DBFile), catalog.Options{
		Regions: topo.Names(), Logger: log,
		// A version's replicas go first, then its source objects.
		FinalizeVersion: func(ctx context.Context, v *pb.GalleryApplicationVersion) error {
			if err := d.Replicator.Finalize(ctx, v); err != nil {
				return err
			}
			return d.Ingest.DeleteObjects(ctx, v)
		},
	})
	if err != nil {
		return nil, err
	}
	if err := d.wire(); err != nil {
		d.Catalog.Close()
		return nil, err
	}
	return d, nil
}

// wire builds the parts on the open state.
func (d *Daemon) wire() (err error) {
	c, log, topo := d.Config, d.log, d.Topology
	d.Ingest = ingest.New(ingest.Options{Catalog: d.Catalog, Store: d.Stores.Get, Logger: log, Concurrency: c.PartConcurrency, PartSize: c.PartSize})
	ro, rp := c.Replicator, topo.Replication
	ro.DB, ro.Catalog, ro.Topology, ro.Store, ro.Logger, ro.Registry = d.Catalog.DB(), d.Catalog, topo, d.Stores.Get, log, d.Registry
	ro.Concurrency = cmp.Or(ro.Concurrency, rp.Concurrency)
	ro.EndpointConcurrency = cmp.Or(ro.EndpointConcurrency, rp.EndpointConcurrency)
	ro.PartConcurrency = cmp.Or(ro.PartConcurrency, rp.PartConcurrency)
	ro.Bandwidth = cmp.Or(ro.Bandwidth, rp.BandwidthMBps*1e6)
	ro.ScrubInterval = cmp.Or(ro.ScrubInterval, rp.ScrubInterval)
	period, bps := rp.DeepScrub()
	ro.DeepScrubPeriod, ro.DeepScrubRate = cmp.Or(ro.DeepScrubPeriod, period), cmp.Or(ro.DeepScrubRate, bps)
	if d.Replicator, err = replicator.New(ro); err != nil {
		return err
	}
	if d.Auth, err = auth.New(auth.Options{DB: d.Catalog.DB(), Logger: log}); err != nil {
		return err
	}
	if d.Fleet, err = fleet.New(fleet.Options{DB: d.Catalog.DB(), Catalog: d.Catalog, Availability: d.Replicator, Shares: d.Auth, Regions: topo.Names()}); err != nil {
		return err
	}
	if _, err := d.Auth.Bootstrap(filepath.Join(c.DataDir, AdminTokenFile)); err != nil {
		return err
	}
	d.GRPC = server.New(server.Options{Store: d.Catalog, Topology: topo, Ingest: d.Ingest, Replicator: d.Replicator, Stores: d.Stores.Get,
		URLExpiry: c.URLExpiry, ProxyDownloads: c.ProxyDownloads, Fleet: d.Fleet, Auth: d.Auth, BindMachineCerts: c.BindMachineCerts,
		Logger: log, Registry: d.Registry, Creds: serverCreds(d.tls, log)})
	return nil
}

// Close releases the state; Serve does it when it returns.
func (d *Daemon) Close() error { return d.Catalog.Close() }

// Run serves c until ctx is cancelled, then stops gracefully.
func Run(ctx context.Context, c Config) error {
	d, err := New(ctx, c)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		d.Close()
		return fmt.Errorf("listen on %s for gRPC: %w", c.Listen, err)
	}
	return d.Serve(ctx, lis)
}

// Serve serves gRPC on lis (and metrics on Config.MetricsAddr) and runs the
// background work until ctx is cancelled, then stops gracefully and closes
// the state.
func (d *Daemon) Serve(ctx context.Context, lis net.Listener) error {
	defer d.Close()
	c, log, reg := d.Config, d.log, d.Registry
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	transport := logTransport(log, lis.Addr(), d.tls)
	var metricsSrv *http.Server
	if c.MetricsAddr != "" {
		mlis, err := net.Listen("tcp", c.MetricsAddr)
		if err != nil {
			lis.Close()
			return fmt.Errorf("listen on %s for metrics: %w", c.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
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
	g.Go(func() error {
		d.Catalog.RunReaper(gctx, 30*time.Second)
		return nil
	})
	g.Go(func() error {
		d.Ingest.RunJanitor(gctx, time.Minute)
		return nil
	})
	g.Go(func() error {
		d.Replicator.Run(gctx)
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
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
	g.Go(func() error {
		log.Info("vmappd serving", "addr", lis.Addr().String(), "transport", transport, "data", c.DataDir, "regions", d.Topology.Names())
		if c.Ready != nil {
			c.Ready(lis.Addr())
		}
		return d.GRPC.Serve(lis)
	})
	err := g.Wait()
	log.Info("vmappd stopped")
	return err
}
