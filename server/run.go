package server

import (
	"context"
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

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
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
	// RetryMax caps the replicator's backoff between attempts (default 5m).
	RetryMax time.Duration
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

// Run serves until ctx is cancelled, then stops gracefully.
func Run(ctx context.Context, c Config) error {
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if c.URLExpiry != 0 && (c.URLExpiry < time.Second || c.URLExpiry > MaxURLExpiry) {
		return fmt.Errorf("--url-expiry %s: want between 1s and %s, the longest S3 presigned URLs work", c.URLExpiry, MaxURLExpiry)
	}
	tlsConf, err := TLSConfig(c.TLSCert, c.TLSKey, c.TLSClientCA)
	if err != nil {
		return err
	}
	if c.BindMachineCerts && c.TLSClientCA == "" {
		return fmt.Errorf("--tls-bind-machines needs --tls-client-ca: machines are known by their client certificates")
	}
	topo, err := topology.Load(c.RegionsFile)
	if err != nil {
		return err
	}
	stores, err := OpenStores(ctx, topo)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	var ing *ingest.Service
	var repl *replicator.Replicator
	store, err := catalog.Open(ctx, filepath.Join(c.DataDir, DBFile), catalog.Options{
		Regions: topo.Names(), Logger: log,
		// A version's replicas go first, then its source objects.
		FinalizeVersion: func(ctx context.Context, v *pb.GalleryApplicationVersion) error {
			if err := repl.Finalize(ctx, v); err != nil {
				return err
			}
			return ing.DeleteObjects(ctx, v)
		},
	})
	if err != nil {
		return err
	}
	defer store.Close()
	ing = ingest.New(ingest.Options{Catalog: store, Store: stores.Get, Logger: log, Concurrency: c.PartConcurrency, PartSize: c.PartSize})
	reg := prometheus.NewRegistry()
	rp := topo.Replication
	repl, err = replicator.New(replicator.Options{
		DB: store.DB(), Catalog: store, Topology: topo, Store: stores.Get, Logger: log, Registry: reg,
		Concurrency: rp.Concurrency, EndpointConcurrency: rp.EndpointConcurrency, PartConcurrency: rp.PartConcurrency,
		Bandwidth: rp.BandwidthMBps * 1e6, ScrubInterval: rp.ScrubInterval, RetryMax: c.RetryMax,
	})
	if err != nil {
		return err
	}

	au, err := auth.New(auth.Options{DB: store.DB(), Logger: log})
	if err != nil {
		return err
	}
	flt, err := fleet.New(fleet.Options{DB: store.DB(), Catalog: store, Availability: repl, Shares: au, Regions: topo.Names()})
	if err != nil {
		return err
	}
	if _, err := au.Bootstrap(filepath.Join(c.DataDir, AdminTokenFile)); err != nil {
		return err
	}

	lis, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s for gRPC: %w", c.Listen, err)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	transport := logTransport(log, lis.Addr(), tlsConf)
	gs := New(Options{Store: store, Topology: topo, Ingest: ing, Replicator: repl, Stores: stores.Get, URLExpiry: c.URLExpiry, ProxyDownloads: c.ProxyDownloads, Fleet: flt, Auth: au, BindMachineCerts: c.BindMachineCerts, Logger: log, Registry: reg, Creds: serverCreds(tlsConf, log)})

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
	stores.EnsureBuckets(gctx, log)
	g.Go(func() error {
		store.RunReaper(gctx, 30*time.Second)
		return nil
	})
	g.Go(func() error {
		ing.RunJanitor(gctx, time.Minute)
		return nil
	})
	g.Go(func() error {
		repl.Run(gctx)
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(10 * time.Second):
			gs.Stop()
		}
		if metricsSrv != nil {
			metricsSrv.Close()
		}
		return nil
	})
	g.Go(func() error {
		log.Info("vmappd serving", "addr", lis.Addr().String(), "transport", transport, "data", c.DataDir, "regions", topo.Names())
		if c.Ready != nil {
			c.Ready(lis.Addr())
		}
		return gs.Serve(lis)
	})
	err = g.Wait()
	log.Info("vmappd stopped")
	return err
}
