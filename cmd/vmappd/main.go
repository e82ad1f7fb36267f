// Command vmappd is the vmapp service: the catalog, ingest, replication and
// fleet API over gRPC.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vmapp/vmapp/internal/buildinfo"
	"github.com/vmapp/vmapp/server"
	"github.com/vmapp/vmapp/server/daemon"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "certs":
			os.Exit(certs(os.Args[2:], os.Stdout, os.Stderr))
		case "operator-token":
			os.Exit(operatorToken(os.Args[2:], os.Stdout, os.Stderr))
		case "restore":
			os.Exit(restore(os.Args[2:], os.Stdout, os.Stderr))
		}
	}
	var c daemon.Config
	var level slog.Level
	flag.StringVar(&c.DataDir, "data", "", "directory holding vmappd's state (required)")
	flag.StringVar(&c.Listen, "listen", "127.0.0.1:7443", "gRPC listen address")
	flag.StringVar(&c.MetricsAddr, "metrics", "", "Prometheus /metrics listen address (empty: off)")
	flag.BoolVar(&c.Pprof, "pprof", false, "with --metrics: serve Go's profiles (/debug/pprof/) there too; that listener has no authentication")
	flag.StringVar(&c.RegionsFile, "regions", "", "regions file (YAML): regions and their storage endpoints (required)")
	flag.TextVar(&level, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
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
	version := flag.Bool("version", false, "print the version and exit")
	join := flag.String("join", "", "with --node-id: gRPC addresses of nodes to join through (a,b,c), for a node without raft state; empty: it bootstraps a cluster")
	flag.Parse()
	if *version {
		fmt.Println("vmappd", buildinfo.Get())
		return
	}
	if *join != "" {
		cc.Join = strings.Split(*join, ",")
	}
	if c.DataDir == "" || c.RegionsFile == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: vmappd --data DIR --regions FILE [--listen ADDR] [--metrics ADDR [--pprof]] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE [--tls-bind-machines]]]")
		fmt.Fprintln(os.Stderr, "              [--node-id ID --raft-listen ADDR --cluster-key FILE [--join ADDR,...] [--advertise ADDR] [--raft-advertise ADDR]]")
		fmt.Fprintln(os.Stderr, "       vmappd certs --dir DIR [--hosts H,...] [--clients NAME,...]   (development certificates)")
		fmt.Fprintln(os.Stderr, "       vmappd operator-token --data DIR --out FILE                   (a new operator token; vmappd stopped)")
		fmt.Fprintln(os.Stderr, "       vmappd restore --data DIR FILE                                (replace the state with a snapshot; vmappd stopped)")
		flag.PrintDefaults()
		os.Exit(2)
	}
	c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, c); err != nil {
		c.Logger.Error("vmappd failed", "err", err)
		os.Exit(1)
	}
}
