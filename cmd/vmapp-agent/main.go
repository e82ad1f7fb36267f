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
	"math"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/client/agent"
	"github.com/vmapp/vmapp/client/download"
	"github.com/vmapp/vmapp/internal/buildinfo"
	"github.com/vmapp/vmapp/internal/cobracmd"
	"github.com/vmapp/vmapp/internal/logformat"
	"github.com/vmapp/vmapp/internal/ratecap"
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
		Use:   "vmapp-agent --vm NAME --root DIR [--server ADDR] [--tenant T] [--token-file F] [--trust-file F] [--ca FILE [--cert FILE --key FILE]] [--command-timeout D] [--revoked-retry D | --exit-on-revoked] [--peer-listen ADDR [--peer-advertise ADDR] | --no-peer] [--max-download-rate R] [--max-upload-rate R] [--peer-max-rate R] [--log-level L]",
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
	flag.DurationVar(&c.HealthTimeout, "health-timeout", agent.DefaultHealthTimeout, "how long each attempt of a health check (the version's custom action 'health', with enableHealthCheck) may run")
	flag.IntVar(&c.HealthAttempts, "health-attempts", agent.DefaultHealthAttempts, "attempts of a health check before the application is Unhealthy")
	flag.DurationVar(&c.HealthInterval, "health-interval", agent.DefaultHealthInterval, "wait between the attempts of a health check")
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
	flag.StringVar(&c.PeerListen, "peer-listen", "", "serve the packages this machine downloaded to the machines of its region that vmappd sends here, on this host:port (HTTP; every request must carry a grant vmappd signed for the asking machine and version); empty: serve none")
	flag.StringVar(&c.PeerAdvertise, "peer-advertise", "", "the host:port peers reach --peer-listen at (default: --peer-listen, which must then name a host)")
	flag.BoolVar(&c.NoPeers, "no-peer", false, "download from the stores only, never from peers, and serve none")
	flag.Var(&o.downRate, "max-download-rate", "cap on the bytes per second of every download together, e.g. 50MB, 100MiB (0: no cap)")
	flag.Var(&o.upRate, "max-upload-rate", "cap on the bytes per second served to peers together, e.g. 20MB (0: no cap)")
	flag.Var(&o.peerRate, "peer-max-rate", "cap on the bytes per second served to each asking machine, e.g. 5MB, within --max-upload-rate (0: no cap)")
	flag.Var(&o.cacheMax, "cache-max", "with --peer-listen: bound on the packages kept for peers, in bytes (10GB) or percent of --root's disk (5%); the least recently used go first, never a version of the goal state (0: no bound)")
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
	downRate, upRate, peerRate          rateFlag
	cacheMax                            cacheFlag
}

// run checks the flags' values, runs the agent until SIGTERM and returns
// the exit status.
func run(c agent.Config, o options) int {
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"command-timeout", c.CommandTimeout}, {"retry-base", c.RetryBase}, {"retry-max", c.RetryMax}, {"revoked-retry", c.RevokedRetry},
		{"health-timeout", c.HealthTimeout}, {"health-interval", c.HealthInterval}} {
		if f.d <= 0 {
			fmt.Fprintf(os.Stderr, "vmapp-agent: --%s %s: must be positive\n", f.name, f.d)
			return 2
		}
	}
	if c.HealthAttempts <= 0 {
		fmt.Fprintf(os.Stderr, "vmapp-agent: --health-attempts %d: must be positive\n", c.HealthAttempts)
		return 2
	}
	if c.RetryMax < c.RetryBase {
		fmt.Fprintf(os.Stderr, "vmapp-agent: --retry-max %s is shorter than --retry-base %s\n", c.RetryMax, c.RetryBase)
		return 2
	}
	if c.NoPeers && c.PeerListen != "" {
		fmt.Fprintln(os.Stderr, "vmapp-agent: --no-peer and --peer-listen contradict each other: give one")
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
	c.DownloadCap, c.UploadCap, c.PeerMaxRate = ratecap.New(int64(o.downRate)), ratecap.New(int64(o.upRate)), int64(o.peerRate)
	c.CacheMax, c.CacheMaxPercent = o.cacheMax.bytes, o.cacheMax.percent
	c.Logger = o.logFormat.Logger(os.Stderr, o.level)
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

// rateFlag is a rate in bytes per second: a number of bytes with an
// optional unit (50MB, 100MiB, 1.5GB); 0 is no cap.
type rateFlag int64

func (r *rateFlag) Type() string { return "rate" }

func (r *rateFlag) String() string { return strconv.FormatInt(int64(*r), 10) }

func (r *rateFlag) Set(s string) error {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > math.MaxInt64 {
		return fmt.Errorf("not a number of bytes per second (e.g. 50MB, 100MiB)")
	}
	*r = rateFlag(n)
	return nil
}

// cacheFlag is a size in bytes (10GB) or a percentage (5%).
type cacheFlag struct {
	bytes   int64
	percent float64
}

func (c *cacheFlag) Type() string { return "size" }

func (c *cacheFlag) String() string {
	if c.percent > 0 {
		return strconv.FormatFloat(c.percent, 'g', -1, 64) + "%"
	}
	return strconv.FormatInt(c.bytes, 10)
}

func (c *cacheFlag) Set(s string) error {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 || f > 100 {
			return fmt.Errorf("a percentage must be above 0 and at most 100")
		}
		c.percent = f
		return nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n > math.MaxInt64 {
		return fmt.Errorf("not a size (10GB, 500MiB) or a percentage (5%%)")
	}
	c.bytes = int64(n)
	return nil
}
