// Command vmapp-agent runs on a machine of the fleet: it holds the machine's
// goal-state stream from vmappd, installs, updates and removes the
// applications of its profile under --root, and reports their status.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/client/agent"
	"github.com/vmapp/vmapp/client/download"
	"github.com/vmapp/vmapp/internal/buildinfo"
	"github.com/vmapp/vmapp/internal/cobracmd"
	"github.com/vmapp/vmapp/internal/logformat"
	"github.com/vmapp/vmapp/internal/tlsfiles"
)

// extraCommands are added to the root (man.go's gen-man, built with -tags man).
var extraCommands []*cobra.Command

func main() {
	os.Exit(cobracmd.Execute(rootCmd(), os.Args[1:], os.Stdout, os.Stderr))
}

func rootCmd() *cobra.Command {
	var c agent.Config
	var o options
	cmd := &cobra.Command{
		Use:   "vmapp-agent --vm NAME --root DIR [--server ADDR] [--tenant T] [--token-file F] [--trust-file F] [--ca FILE [--cert FILE --key FILE]] [--command-timeout D] [--revoked-retry D | --exit-on-revoked] [--log-level L]",
		Short: "the vmapp machine agent: installs, updates and removes this machine's VM applications",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.Machine == "" || c.Root == "" {
				return cobracmd.Usage(cmd)
			}
			return cobracmd.Exit(run(c, o))
		},
	}
	cobracmd.Setup(cmd, buildinfo.Get().String())
	flag := cmd.Flags()
	flag.StringVar(&c.Server, "server", cmp.Or(os.Getenv("VMAPP_SERVER"), "127.0.0.1:7443"), "vmappd's address host:port, or a cluster's nodes host:port,host:port,... (env VMAPP_SERVER)")
	flag.StringVar(&c.Tenant, "tenant", os.Getenv("VMAPP_TENANT"), "tenant of the machine (env VMAPP_TENANT; empty: its credential's)")
	flag.StringVar(&c.Machine, "vm", "", "this machine's name in the fleet (required)")
	flag.StringVar(&o.tokenFile, "token-file", os.Getenv("VMAPP_TOKEN_FILE"), "file holding the machine's agent credential, from vmapp vm create --agent-token-file (env VMAPP_TOKEN_FILE)")
	flag.StringVar(&c.Root, "root", "", "directory applications are installed under, e.g. "+agent.SuggestedRoot(runtime.GOOS, os.Getenv("ProgramData"))+" (required)")
	flag.StringVar(&o.trustFile, "trust-file", "", "verify every version before it is downloaded, installed or updated: signed by the minisign public keys in this file ('required N' of them), not expired, not a rollback")
	flag.DurationVar(&c.CommandTimeout, "command-timeout", agent.DefaultCommandTimeout, "how long an install, update or remove command may run")
	flag.DurationVar(&c.RetryBase, "retry-base", agent.DefaultRetryBase, "first delay before a failed operation is retried (doubling)")
	flag.DurationVar(&c.RetryMax, "retry-max", agent.DefaultRetryMax, "longest delay between retries of a failed operation")
	flag.DurationVar(&c.RevokedRetry, "revoked-retry", agent.DefaultRevokedRetry, "delay before asking vmappd again once it refused the machine for good (deleted, or its credential revoked)")
	flag.BoolVar(&c.ExitOnRevoked, "exit-on-revoked", false, "exit with status 3 when vmappd refuses the machine for good, instead of asking again every --revoked-retry")
	flag.TextVar(&o.level, "log-level", slog.LevelInfo, "log level: debug, info, warn, error")
	flag.Var(&o.logFormat, "log-format", logformat.Usage)
	flag.StringVar(&o.metricsAddr, "metrics-listen", "", "serve the agent's Prometheus /metrics on this address, e.g. 127.0.0.1:9465 (empty: off)")
	flag.BoolVar(&o.useTLS, "tls", false, "connect over TLS, trusting the system's CAs (implied by --ca and --cert)")
	flag.StringVar(&o.ca, "ca", os.Getenv("VMAPP_CA"), "connect over TLS, trusting the CAs in this PEM file (env VMAPP_CA)")
	flag.StringVar(&o.cert, "cert", os.Getenv("VMAPP_CERT"), "PEM client certificate of this machine, for a vmappd that requires one; needs --key (env VMAPP_CERT)")
	flag.StringVar(&o.key, "key", os.Getenv("VMAPP_KEY"), "PEM private key of --cert (env VMAPP_KEY)")
	cmd.AddCommand(extraCommands...)
	return cmd
}

// options are the flags that are not fields of agent.Config.
type options struct {
	level                               slog.Level
	useTLS                              bool
	logFormat                           logformat.Format
	tokenFile, trustFile, ca, cert, key string
	metricsAddr                         string
}

// run checks the flags' values, runs the agent until SIGTERM and returns
// the exit status.
func run(c agent.Config, o options) int {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"command-timeout", c.CommandTimeout}, {"retry-base", c.RetryBase}, {"retry-max", c.RetryMax}, {"revoked-retry", c.RevokedRetry}} {
		if f.d <= 0 {
			fmt.Fprintf(os.Stderr, "vmapp-agent: --%s %s: must be positive\n", f.name, f.d)
			return 2
		}
	}
	if c.RetryMax < c.RetryBase {
		fmt.Fprintf(os.Stderr, "vmapp-agent: --retry-max %s is shorter than --retry-base %s\n", c.RetryMax, c.RetryBase)
		return 2
	}
	if (o.cert == "") != (o.key == "") {
		fmt.Fprintln(os.Stderr, "vmapp-agent: --cert and --key go together (env VMAPP_CERT, VMAPP_KEY): give both or neither")
		return 2
	}
	if o.useTLS || o.ca != "" || o.cert != "" {
		var err error
		if c.TLS, err = client.TLSConfig(o.ca, o.cert, o.key); err != nil {
			fmt.Fprintf(os.Stderr, "vmapp-agent: %v\n", tlsfiles.Flagged(err, tlsfiles.ClientFlags))
			return 1
		}
	}
	if o.trustFile != "" {
		t, err := agent.ReadTrustFile(o.trustFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmapp-agent: --trust-file: %v\n", err)
			return 2
		}
		c.Trust = t
	}
	if o.tokenFile != "" {
		tok, err := client.ReadTokenFile(o.tokenFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmapp-agent: --token-file: %v\n", err)
			return 2
		}
		c.Token = tok
	}
	c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: o.level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.metricsAddr != "" {
		reg, err := serveMetrics(ctx, o.metricsAddr, c.Logger)
		if err != nil {
			fmt.Fprintf(os.Stderr, "vmapp-agent: --metrics-listen: %v\n", err)
			return 1
		}
		c.Registry = reg
	}
	procs := download.RaiseProcsForDirectIO()
	c.Logger.Info("vmapp-agent starting", "version", agent.Version, "server", c.Server, "tls", c.TLS != nil, "vm", c.Machine, "root", c.Root, "gomaxprocs", procs)
	start := time.Now()
	if err := agent.Run(ctx, c); errors.Is(err, agent.ErrRevoked) {
		c.Logger.Error("vmapp-agent stopped (--exit-on-revoked)", "err", err)
		return 3
	} else if err != nil {
		c.Logger.Error("vmapp-agent failed", "err", err)
		return 1
	}
	c.Logger.Info("vmapp-agent stopped", "uptime", time.Since(start).Round(time.Second))
	return 0
}
