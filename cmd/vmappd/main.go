// Command vmappd is the vmapp service: the catalog, ingest, replication and
// fleet API over gRPC.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/internal/buildinfo"
	"github.com/vmapp/vmapp/internal/cobracmd"
	"github.com/vmapp/vmapp/internal/logformat"
	"github.com/vmapp/vmapp/server"
	"github.com/vmapp/vmapp/server/daemon"
)

// extraCommands are added to the root (man.go's gen-man, built with -tags man).
var extraCommands []*cobra.Command

func main() {
	os.Exit(cobracmd.Execute(rootCmd(os.Stdout, os.Stderr), os.Args[1:], os.Stdout, os.Stderr))
}

func rootCmd(stdout, stderr io.Writer) *cobra.Command {
	var c daemon.Config
	var level slog.Level
	var logFormat logformat.Format
	var join string
	cmd := &cobra.Command{
		Use:   "vmappd --data DIR --regions FILE [--listen ADDR] [--http-listen ADDR] [--metrics ADDR] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE [--tls-bind-machines]]] [--node-id ID --raft-listen ADDR --cluster-key FILE [--join ADDR,...] [--advertise ADDR] [--raft-advertise ADDR]]",
		Short: "the vmapp service: galleries, uploads, replication and the fleet API over gRPC",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if join != "" {
				c.Cluster.Join = strings.Split(join, ",")
			}
			if c.DataDir == "" || c.RegionsFile == "" {
				return cobracmd.Usage(cmd)
			}
			if c.HealthInterval <= 0 {
				fmt.Fprintf(stderr, "vmappd: --health-interval %s: must be positive\n", c.HealthInterval)
				return cobracmd.Exit(2)
			}
			if c.DrainDelay < 0 {
				fmt.Fprintf(stderr, "vmappd: --drain-delay %s: must not be negative\n", c.DrainDelay)
				return cobracmd.Exit(2)
			}
			c.Logger = logFormat.Logger(os.Stderr, level)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// Once told to stop, a second signal ends vmappd at once (the
			// signals' default), cutting the drain delay and the graceful stop.
			context.AfterFunc(ctx, stop)
			if err := daemon.Run(ctx, c); err != nil {
				c.Logger.Error("vmappd failed", "err", err)
				return cobracmd.Exit(1)
			}
			return nil
		},
	}
	cobracmd.Setup(cmd, buildinfo.Get().String())
	flag := cmd.Flags()
	flag.StringVar(&c.DataDir, "data", "", "directory holding vmappd's state (required)")
	flag.StringVar(&c.Listen, "listen", "127.0.0.1:7443", "gRPC listen address")
	flag.StringVar(&c.MetricsAddr, "metrics", "", "Prometheus /metrics listen address (empty: off)")
	flag.StringVar(&c.HTTPListen, "http-listen", "", "HTTP listen address of the REST/JSON API (/openapi.json) and the web console (/ui/): the same TLS certificate and tokens as gRPC (empty: off)")
	flag.BoolVar(&c.Pprof, "pprof", false, "with --metrics: serve Go's profiles (/debug/pprof/) there too; that listener has no authentication")
	flag.StringVar(&c.RegionsFile, "regions", "", "regions file (YAML): regions and their storage endpoints (required)")
	flag.TextVar(&level, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	flag.Var(&logFormat, "log-format", logformat.Usage)
	flag.DurationVar(&c.HealthInterval, "health-interval", daemon.DefaultHealthInterval, "how often the health service checks the data directory and every store endpoint")
	flag.DurationVar(&c.DrainDelay, "drain-delay", 0, "on SIGTERM, serve this long with health NOT_SERVING before stopping, for load balancers (a second signal stops at once)")
	flag.DurationVar(&c.URLExpiry, "url-expiry", server.DefaultURLExpiry, "how long the presigned URLs of download plans work")
	flag.BoolVar(&c.ProxyDownloads, "proxy-downloads", false, "machines can't reach the stores: download plans send them to ReadRange on vmappd")
	flag.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain) to serve gRPC over TLS with; needs --tls-key (empty: plaintext)")
	flag.StringVar(&c.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	flag.StringVar(&c.TLSClientCA, "tls-client-ca", "", "PEM CA bundle: require client certificates it issued (mutual TLS)")
	flag.BoolVar(&c.BindMachineCerts, "tls-bind-machines", false, "with --tls-client-ca: accept a machine's agent credential only with a client certificate whose CN is that machine's name")
	cc := &c.Cluster
	flag.StringVar(&cc.NodeID, "node-id", "", "run as this node of a cluster (empty: a single vmappd)")
	flag.StringVar(&cc.RaftListen, "raft-listen", "", "with --node-id: the address raft listens on for the other nodes")
	flag.StringVar(&cc.RaftAdvertise, "raft-advertise", "", "with --node-id: the raft address the other nodes dial (default --raft-listen's)")
	flag.StringVar(&cc.Advertise, "advertise", "", "with --node-id: the gRPC address the other nodes reach this one at (default --listen's)")
	flag.StringVar(&cc.KeyFile, "cluster-key", "", "with --node-id: a file holding the secret every node of the cluster shares (32 bytes at least)")
	flag.StringVar(&join, "join", "", "with --node-id: gRPC addresses of nodes to join through (a,b,c), for a node without raft state; empty: it bootstraps a cluster")
	cmd.AddCommand(certsCmd(stdout), operatorTokenCmd(stdout), restoreCmd(stdout))
	cmd.AddCommand(extraCommands...)
	return cmd
}
