// Package agent is vmapp-agent: it runs on a machine, holds the machine's
// goal-state stream from vmappd, and makes the machine match it —
// downloading application versions, running their install, update and
// remove commands in the order and with the failure semantics of Azure VM
// Applications — and reports what it did (the instance view).
//
// # Layout
//
// Under the root directory, an application's version is installed in a
// directory named as its packageReferenceId names it, like Azure's
// .../<application name>/<application version>:
//
//	<gallery>/<application>/<version>/   the installed version: the package
//	                                     (named <application>, or
//	                                     packageFileName), the configuration
//	                                     (<application>-config, or
//	                                     configFileName); commands run here
//	<tenant>:<gallery>/<application>/<version>/
//	                                     the same, for an application of
//	                                     another tenant's gallery shared with
//	                                     the machine's
//	.vmapp-agent/state.json              the local state (installed versions,
//	                                     the operation in progress, failures),
//	                                     rewritten atomically after every change
//	.vmapp-agent/lock                    held while an agent runs on the root
//
// Names hold no ':' or '/', so two applications never share a directory; a
// gallery named .vmapp-agent (in any case, on Windows) can't be installed.
// A version that an earlier agent installed in <application>/<version>/
// stays there (the state records every installed directory) until it is
// updated or removed.
//
// # Reconciling
//
// Every goal state (and every retry that comes due) starts a pass: first the
// applications that left the goal state are removed (concurrently); then the
// ordered applications install or update group by group, ascending, the
// applications of one order concurrently; a failure in a group skips every
// application of a higher order (Skipped, "an application with a lower order
// (N) failed: g/x"); the applications without an order run last,
// concurrently, whatever failed before them. Applications already at their
// goal (version and configuration) are left alone, so a restarted agent does
// nothing twice. A newer goal state ends a pass between groups.
//
// A pass is planned before anything runs, from the local state, the goal
// state and the time alone (plan.go: each application's step — none, wait
// for a retry, install, update, remove-then-install, refuse, remove — and
// walk, the failure rule applied to the groups as their outcomes come);
// reconcile.go carries the plan out: downloads, commands, the state and the
// reports.
//
// An update runs the new version's update command in its directory when it
// has one, else the old version's remove command (in the old directory) and
// then the new version's install; the old directory goes once the update
// succeeded: a machine never holds two versions of an application.
//
// A failed operation is retried with exponential backoff (RetryBase doubling
// up to RetryMax, with jitter), and at once when the goal's retry counter
// goes up (vmapp vm app retry).
//
// Commands run with /bin/bash -c, each in a process group of its own whose
// shell the kernel kills when the agent dies (Pdeathsig, Linux). Before a
// command runs, its operation is recorded in the state with the boot id and
// the command's process group (its id and session, and its leader's start
// time, which tell it from a later group of the same id). Found at start,
// the operation was cut short: by the agent stopping or dying when the boot
// id is the same — then what still runs of its group is killed (SIGKILL,
// and the agent waits until none runs; it doesn't start when some won't
// die) and the operation runs again — or by a reboot when it differs —
// then it runs again when the version's scriptBehaviorAfterReboot is Rerun,
// else it is Failed "interrupted by a reboot" until retried. The attempt
// cut short counts in the instance view's attempts.
//
// # Windows
//
// On Windows commands run with cmd.exe /d /e:on /v:off /s /c "<line>", the
// line verbatim (shell.go), each in a job object that kills its processes
// when the agent dies (sys_windows.go: nothing is left to kill at start);
// the boot is told by its time (boot.go); another tenant's gallery is
// <tenant>@<gallery>; names Windows refuses, and applications whose
// directories differ only in case, are refused by the plan (names.go).
// What differs by OS is decided by functions that take the OS as a value,
// so that Linux tests cover Windows' rules; only the system calls are in
// sys_windows.go. The Windows agent is cross-built and unit-tested, never
// run here.
//
// # Signatures
//
// With Config.Trust (vmapp-agent --trust-file) the agent verifies what it
// is about to install or update, with keys of its own, never vmappd's:
// the plan rebuilds the version's statement from the goal (package
// signpb) and refuses it, before anything is downloaded or run, unless
// enough trusted keys signed it, it hasn't expired, and its sequence is
// not below the highest installed for the application (state.json keeps
// it, also once the application is removed) unless it is an intended
// rollback; the instance view gives the refusal's reason (Unsigned,
// SignatureInvalid, UntrustedKey, Revoked, Rollback, Expired). A
// downloaded file must be the one the statement names. A custom action
// (a run, or the health check) runs only as a statement of the installed
// version the agent accepts covers it, script and parameters exactly.
// Removals run the remove command recorded at the install. Signed key changes in goal
// states are applied when the policy accepts them, and kept in state.json.
//
// When vmappd refuses the goal state for good — the machine is not in the
// fleet (deleted), its credential was refused (revoked, expired, or
// another machine's), or it was created with another osType than the OS
// the agent runs on (the agent says which) — the agent logs an error
// naming the cause and asks again after RevokedRetry (±25%), or stops when
// ExitOnRevoked.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/buildinfo"
	"github.com/vmapp/vmapp/internal/ratecap"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
)

// Version is the agent's version, reported in the instance view.
var Version = buildinfo.Get().Version

// Defaults of Config.
const (
	DefaultCommandTimeout = 30 * time.Minute
	DefaultRetryBase      = 30 * time.Second
	DefaultRetryMax       = 10 * time.Minute
	DefaultReconnectBase  = 250 * time.Millisecond
	DefaultReconnectMax   = 15 * time.Second
	DefaultRevokedRetry   = 5 * time.Minute
	// groupEndWait bounds the wait for the processes of an interrupted
	// command to die of SIGKILL.
	groupEndWait = 30 * time.Second
	// progressInterval throttles the reports of download progress.
	progressInterval = 500 * time.Millisecond
)

// Config configures an agent.
type Config struct {
	// Server is vmappd's address (host:port), used when Client is nil.
	Server string
	// Client is a connection to use instead of dialing Server.
	Client *client.Client
	// Tenant the machine belongs to ("" lets the server use its default);
	// only used when dialing Server.
	Tenant string
	// Token is the machine's agent credential (from CreateMachine), used
	// when Client is nil.
	Token string
	// TLS secures the connection when dialing Server (client.TLSConfig);
	// nil dials plaintext.
	TLS *tls.Config
	// Machine is the machine's name in the fleet (required).
	Machine string
	// Root is the directory applications are installed under (required).
	Root string
	// CommandTimeout bounds each install, update or remove command;
	// default 30m.
	CommandTimeout time.Duration
	// BootID identifies the current boot; default: ReadBootID.
	BootID func() (string, error)
	// RetryBase and RetryMax bound the backoff between automatic retries of
	// a failed operation; default 30s and 10m.
	RetryBase, RetryMax time.Duration
	// ReconnectBase and ReconnectMax bound the backoff between attempts to
	// reopen the goal-state stream; default 250ms and 15s.
	ReconnectBase, ReconnectMax time.Duration
	// RevokedRetry is how long the agent waits (±25%) before asking again
	// for a goal state that vmappd refused for good: the machine is not in
	// the fleet (NotFound: deleted), its credential was refused
	// (Unauthenticated: revoked with the machine or by a new credential,
	// or expired) or is another machine's (PermissionDenied), or the
	// machine's osType isn't the agent's OS (FailedPrecondition on
	// osType); default 5m.
	RevokedRetry time.Duration
	// ExitOnRevoked makes Run stop at such a refusal (commands running
	// then are stopped as when ctx ends) and return an error wrapping
	// ErrRevoked.
	ExitOnRevoked bool
	// Clock is the agent's time: retries, reconnects, the instance view's
	// times; nil means the real clock.
	Clock clockwork.Clock
	// HTTPClient fetches configurationReference URLs and is handed to the
	// downloader; nil means its defaults.
	HTTPClient *http.Client
	// Trust, when set, makes the agent verify every version it installs or
	// updates: signed by the trusted keys, not expired, not a rollback
	// (ReadTrustFile). Nil: versions aren't verified.
	Trust *Trust
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Registry, when set, gets the agent's metrics (vmapp_agent_*).
	Registry prometheus.Registerer
	// PeerListen, when set, serves the packages the agent downloaded to
	// the machines vmappd sends to it (host:port; see peers.go), and
	// announces them to vmappd as held at PeerAdvertise (default
	// PeerListen, which must then name a host).
	PeerListen, PeerAdvertise string
	// NoPeers downloads from the stores only, never from peers.
	NoPeers bool
	// CacheMax bounds the bytes of the packages kept for peers (0: no
	// bound), or CacheMaxPercent of root's disk: the least recently used
	// go first, never a version of the goal state.
	CacheMax        int64
	CacheMaxPercent float64
	// DownloadCap and UploadCap cap the rates of every download and of
	// what is served to peers (nil: no cap).
	DownloadCap, UploadCap *ratecap.Cap
	// PeerMaxRate caps the bytes per second served to each asking machine
	// (0: no cap), within UploadCap.
	PeerMaxRate int64
	// PieceAnnounce is how long the pieces verified by downloads in
	// progress gather before they are announced to vmappd (0:
	// DefaultPieceAnnounce).
	PieceAnnounce time.Duration
	// HealthTimeout bounds each attempt of a health check, HealthAttempts
	// is how many attempts it makes, HealthInterval the wait between them
	// (health.go); default 2m, 3 and 10s.
	HealthTimeout  time.Duration
	HealthAttempts int
	HealthInterval time.Duration
}

// ErrRevoked is wrapped by Run's error when vmappd refused the machine for
// good and Config.ExitOnRevoked is set.
var ErrRevoked = errors.New("vmappd refuses this machine")

// ReadBootID identifies the current boot: the kernel's boot id on Linux,
// the time the machine booted on Windows (boot.go).
func ReadBootID() (string, error) { return readBootID() }

// GenerationNumber maps a goal state's generation (a hex fingerprint) to the
// instance view's applied_generation: its first 15 hex digits. A generation
// that isn't hex maps to 0.
func GenerationNumber(generation string) int64 {
	if len(generation) > 15 {
		generation = generation[:15]
	}
	n, err := strconv.ParseInt(generation, 16, 64)
	if err != nil {
		return 0
	}
	return n
}

type agent struct {
	cfg    Config
	clock  clockwork.Clock
	cl     *client.Client
	fleet  pb.FleetServiceClient
	log    *slog.Logger
	m      *metrics
	bootID string

	mu sync.Mutex // guards st, policy, refusedChanges and lastProgress
	st *state
	// policy is Config.Trust's with the key changes applied.
	policy sign.Policy
	// refusedChanges are the key changes refused, logged once (by
	// their bytes).
	refusedChanges map[string]bool

	lastProgress time.Time
	report       chan struct{} // kicks the reporter

	peers *peers // nil unless serving peers

	goalMu  sync.Mutex
	goal    *pb.GoalState
	goalSeq uint64
	goalCh  chan struct{}
	// preheatCh kicks the preheater with a new goal state.
	preheatCh chan struct{}
}

// Run runs the agent until ctx ends (then it returns nil) or it can't go on
// (its root or state is unusable). Commands running when ctx ends are
// stopped, and their operations left recorded: the next Run reruns them.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Machine == "" {
		return errors.New("agent: the machine name is required")
	}
	if cfg.Root == "" {
		return errors.New("agent: the root directory is required")
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.BootID == nil {
		cfg.BootID = ReadBootID
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryBase)
	if cfg.ReconnectBase <= 0 {
		cfg.ReconnectBase = DefaultReconnectBase
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = DefaultReconnectMax
	}
	cfg.ReconnectMax = max(cfg.ReconnectMax, cfg.ReconnectBase)
	if cfg.RevokedRetry <= 0 {
		cfg.RevokedRetry = DefaultRevokedRetry
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.HealthAttempts <= 0 {
		cfg.HealthAttempts = DefaultHealthAttempts
	}
	if cfg.HealthInterval < 0 {
		cfg.HealthInterval = 0
	} else if cfg.HealthInterval == 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.PieceAnnounce <= 0 {
		cfg.PieceAnnounce = DefaultPieceAnnounce
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return err
	}
	cfg.Root = root
	if err := os.MkdirAll(filepath.Join(root, StateDir), 0o755); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := secureRoot(root); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	unlock, err := lockRoot(filepath.Join(root, StateDir, "lock"))
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer unlock()
	bootID, err := cfg.BootID()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	st, err := loadState(root)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a := &agent{cfg: cfg, clock: cfg.Clock, cl: cfg.Client, log: cfg.Logger.With("machine", cfg.Machine), m: newMetrics(cfg.Registry), bootID: bootID, st: st,
		report: make(chan struct{}, 1), goalCh: make(chan struct{}, 1), preheatCh: make(chan struct{}, 1)}
	if a.cl == nil {
		if cfg.Server == "" {
			return errors.New("agent: the server address is required")
		}
		if a.cl, err = client.New(cfg.Server, client.Options{Tenant: cfg.Tenant, Token: cfg.Token, TLS: cfg.TLS, Keepalive: true, WaitForReady: true}); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		defer a.cl.Close()
	}
	a.fleet = pb.NewFleetServiceClient(a.cl.Conn())
	a.replayKeyChanges()
	if err := a.recover(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}

	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var wg sync.WaitGroup
	if err := a.startPeers(ctx, &wg); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	wg.Go(func() { a.reporter(ctx) })
	wg.Go(func() { a.watch(ctx, stop) })
	a.kick()
	a.reconcileLoop(ctx)
	wg.Wait()
	if err := context.Cause(ctx); errors.Is(err, ErrRevoked) {
		return err
	}
	// A last report of where things stand.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := a.sendReport(fctx); err != nil {
		a.log.Debug("final status report failed", "err", err)
	}
	return nil
}

// recover handles the operations a previous run left in progress. Cut
// short in this boot (the agent stopped or was killed), an operation's
// processes that still run are killed first; then it runs again. Cut
// short by a reboot, it runs again when its scriptBehaviorAfterReboot is
// Rerun, else it is Failed until retried. Either way the attempt counts.
func (a *agent) recover() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bootID = continueBoot(a.st.BootID, a.bootID)
	rebooted := a.st.BootID != "" && a.st.BootID != a.bootID
	for _, key := range sortedKeys(a.st.Apps) {
		as := a.st.Apps[key]
		op := as.Op
		if op == nil {
			continue
		}
		log := a.log.With("app", key, "op", op.Op, "step", op.Step, "version", op.Version)
		if op.BootID == a.bootID && op.Group != nil {
			n, err := op.Group.end(groupEndWait)
			if err != nil {
				return fmt.Errorf("the interrupted %s of %s left processes that can't be killed; not running anything: %w", op.Step, key, err)
			}
			if n > 0 {
				log.Warn("killed the processes the interrupted command left running", "group", op.Group.ID, "killed", n)
			}
		}
		log.Warn(as.interrupted(a.bootID, a.clock.Now()))
	}
	if rebooted {
		a.log.Info("the machine rebooted", "boot_id", a.bootID)
	}
	a.st.BootID = a.bootID
	return a.st.save(a.cfg.Root)
}

// saveLocked writes the state; a.mu is held. A failed write is logged: the
// agent goes on with what it has in memory.
func (a *agent) saveLocked() {
	if err := a.st.save(a.cfg.Root); err != nil {
		a.log.Error("writing the local state failed", "err", err)
	}
}

// change changes the state under the lock (f), saves it and reports.
func (a *agent) change(f func()) {
	a.mu.Lock()
	f()
	a.saveLocked()
	a.mu.Unlock()
	a.kick()
}

// update changes an application's state under the lock, saves it and
// reports.
func (a *agent) update(key string, f func(as *appState)) {
	a.mu.Lock()
	as := a.st.Apps[key]
	if as == nil {
		a.mu.Unlock()
		return
	}
	f(as)
	a.saveLocked()
	a.mu.Unlock()
	a.kick()
}

// watch holds the goal-state stream, reopening it with backoff and jitter
// whenever it breaks; slowly (RevokedRetry) when vmappd refused the machine
// for good, or it stops the agent then (stop) when ExitOnRevoked.
func (a *agent) watch(ctx context.Context, stop context.CancelCauseFunc) {
	failures := 0
	for ctx.Err() == nil {
		received, err := a.watchOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if received {
			failures = 0
		}
		failures++
		d := backoff(a.cfg.ReconnectBase, a.cfg.ReconnectMax, failures)
		switch why := refusal(err); {
		case why != "" && a.cfg.ExitOnRevoked:
			stop(fmt.Errorf("%w: %s: %w", ErrRevoked, why, err))
			return
		case why != "":
			d = jitter(a.cfg.RevokedRetry)
			a.log.Error(why+": asking again later", "err", err, "retry_in", d.Round(time.Second))
		default:
			a.log.Info("goal-state stream broke: reconnecting", "err", err, "retry_in", d.Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-a.clock.After(d):
		}
	}
}

// refusal says why vmappd refused the machine for good, or "" when err is
// no such refusal.
func refusal(err error) string {
	if err == nil {
		return ""
	}
	switch errs.ClassOf(err) {
	case errs.NotFound:
		return "the machine is not in the fleet: it was deleted (or never created)"
	case errs.Unauthenticated:
		return "vmappd refused the machine's credential: it was revoked (the machine was deleted, or given a new credential) or it expired"
	case errs.PermissionDenied:
		return "vmappd refused the machine's credential for this machine: it is another machine's (check --vm)"
	case errs.FailedPrecondition:
		if errs.FieldOf(err) == "osType" {
			return "the machine's osType isn't the OS this agent runs on"
		}
	}
	return ""
}

// watchOnce opens the stream and takes goal states from it until it breaks.
func (a *agent) watchOnce(ctx context.Context) (received bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := a.fleet.WatchGoalState(ctx, &pb.WatchGoalStateRequest{Machine: a.cfg.Machine, OsType: osType(hostOS)})
	if err != nil {
		return false, err
	}
	for {
		r, err := stream.Recv()
		if err != nil {
			return received, errs.FromStatus(err)
		}
		if !received {
			a.m.connected.Set(1)
			defer a.m.connected.Set(0)
			a.log.Info("goal-state stream open")
			a.kick() // the server may have restarted: tell it where we stand
		}
		received = true
		gs := r.GetGoalState()
		if gs == nil {
			continue
		}
		a.log.Debug("goal state", "generation", gs.Generation, "applications", len(gs.Applications))
		a.goalMu.Lock()
		a.goal = gs
		a.goalSeq++
		a.goalMu.Unlock()
		for _, ch := range []chan struct{}{a.goalCh, a.preheatCh} {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func (a *agent) latestGoal() (*pb.GoalState, uint64) {
	a.goalMu.Lock()
	defer a.goalMu.Unlock()
	return a.goal, a.goalSeq
}

// stale tells whether a goal state newer than seq arrived.
func (a *agent) stale(seq uint64) bool {
	_, s := a.latestGoal()
	return s != seq
}

// reconcileLoop runs a pass for every new goal state and whenever a retry
// comes due.
func (a *agent) reconcileLoop(ctx context.Context) {
	timer := a.clock.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.goalCh:
		case <-timer.Chan():
		}
		gs, seq := a.latestGoal()
		if gs == nil {
			continue
		}
		a.reconcile(ctx, gs, seq)
		if ctx.Err() != nil {
			return
		}
		timer.Stop()
		if next, ok := a.nextRetry(); ok {
			timer.Reset(max(a.clock.Until(next), time.Millisecond))
		}
	}
}

// backoff is base·2^(n-1), at most maxD, with ±25% jitter.
func backoff(base, maxD time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < maxD; i++ {
		d *= 2
	}
	return jitter(min(d, maxD))
}

// jitter is d ±25%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
}

// kick asks the reporter for a report.
func (a *agent) kick() {
	select {
	case a.report <- struct{}{}:
	default:
	}
}

// kickProgress asks for a report of progress, at most every
// progressInterval.
func (a *agent) kickProgress() {
	a.mu.Lock()
	now := a.clock.Now()
	ok := now.Sub(a.lastProgress) >= progressInterval
	if ok {
		a.lastProgress = now
	}
	a.mu.Unlock()
	if ok {
		a.kick()
	}
}

// reporter sends the instance view whenever kicked, retrying failed reports
// with backoff until one goes through or a new kick comes. A report vmappd
// refused for good isn't retried: the stream's reopening kicks the next.
func (a *agent) reporter(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.report:
		}
		for n := 1; ; n++ {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := a.sendReport(rctx)
			cancel()
			if err == nil || ctx.Err() != nil || refusal(err) != "" {
				break
			}
			a.log.Debug("status report failed", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-a.report:
			case <-a.clock.After(backoff(a.cfg.ReconnectBase, a.cfg.ReconnectMax, n)):
			}
		}
	}
}

// instanceView is the report: every application the agent has state for.
func (a *agent) instanceView() *pb.InstanceView {
	a.mu.Lock()
	defer a.mu.Unlock()
	iv := &pb.InstanceView{AgentVersion: Version, BootId: a.bootID, AppliedGeneration: GenerationNumber(a.st.Generation)}
	for _, key := range sortedKeys(a.st.Apps) {
		as := a.st.Apps[key]
		if as.Status.State == "" {
			continue
		}
		iv.Applications = append(iv.Applications, as.Status.proto(key))
	}
	return iv
}

func (a *agent) sendReport(ctx context.Context) error {
	_, err := a.fleet.ReportStatus(ctx, &pb.ReportStatusRequest{Machine: a.cfg.Machine, InstanceView: a.instanceView()})
	return err
}
