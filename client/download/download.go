// Package download fetches a version's artifact the way a machine does:
// a plan from vmappd (the artifact's size, piece hashes and the sources that
// serve it), pieces fetched in parallel from those sources, each verified
// as it arrives and written to a partial file beside the destination, and
// the file renamed into place once the whole of it is verified.
//
// The parts, a file each:
//
//   - source.go: Source, a ranged read from one place. source_url.go reads
//     a replica's presigned URL, source_vmappd.go vmappd's ReadRange.
//   - plan.go: the plan in force, its sources in the order to try them
//     (by tier, then by their failures), renewed before it expires.
//   - fetch.go: the piece scheduler: runs of pieces in one read, each
//     piece from the next source when one fails, rounds, warnings.
//   - adapt.go, pool.go: the workers, a fixed or an adaptive number.
//   - verify.go: the piece hashes and the sha256 chain.
//   - writer.go: a piece's bytes hashed and written, with direct I/O or
//     through the page cache.
//   - partial.go: the partial file, its lock, its resume state, the
//     rename into place.
//   - report.go: damaged replicas reported to vmappd.
//   - sys_linux.go, sys_other.go: each platform's file-system calls, and
//     GOMAXPROCS for direct I/O.
package download

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/ratecap"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Options tune Run.
type Options struct {
	// Region is the machine's region (required): its replicas are read
	// first, other regions' only when all of them fail.
	Region string
	// MachineID spreads a fleet over the region's replicas: the first
	// replica tried is picked by hashing it (FNV-1a). "" means the hostname.
	MachineID string
	// Kind is the artifact; 0 means ARTIFACT_KIND_PACKAGE.
	Kind pb.ArtifactKind
	// Parallelism is the number of pieces fetched at once (connections);
	// 0 adapts it: 8 at first, 4 more (up to 16) while each step raises
	// throughput by more than 10%; a step that lowers it by more than 5%
	// is taken back.
	Parallelism int
	// Progress, when set, is called about every 100ms and at the end with
	// the bytes verified or in flight and the total. done steps back when a
	// piece in flight fails and is fetched again. Calls never overlap.
	Progress func(done, total int64)
	// HTTPClient fetches the presigned URLs; nil means a client with
	// enough idle connections per host for 16 parallel pieces.
	HTTPClient *http.Client
	// Durable makes the file durable before Run returns: its pieces written
	// with direct I/O where the file system takes it (else writeback started
	// as each is verified) and the file fsync'ed before the rename, then its
	// directory. Without it (the default) the pieces go through the page
	// cache and the kernel writes them back in its own time: the file is
	// usable, verified, as soon as it is renamed, and a crash before the
	// writeback loses nothing that matters, because nothing trusts the file
	// after one: a Run into the same dest hashes an existing dest whole
	// before it returns it, and pieces listed in a partial file's state
	// again before it resumes. What Durable buys is not downloading again
	// after a power cut.
	Durable bool
	// Logger gets a warning for each failed attempt at a piece, naming the
	// source, the piece and the error (presigned queries left out): a
	// corrupted or unreachable replica shows even when the download
	// succeeds from another; and, at the end, how many bytes came from
	// each source. nil discards them.
	Logger *slog.Logger
	// NoPeers reads from the stores only, even when the plan names peers
	// (machines of the region that hold the artifact). With peers, they
	// are tried first, every piece verified as any other; a peer that
	// sends a bad piece is dropped for the download and reported to
	// vmappd, one that fails three times in a row is dropped.
	NoPeers bool
	// PeerStallTimeout ends a read from a peer that received nothing for
	// so long (0: 10s); the piece is asked of the next source.
	PeerStallTimeout time.Duration
	// OnBadPeer, when set, is called with each peer dropped and reported
	// for a bad piece (for a metric).
	OnBadPeer func(peer string)
	// Cap, when set, caps the rate the download reads at (shared with
	// whatever else it caps).
	Cap *ratecap.Cap
	// OnShare, when set, is given the download in progress once its
	// partial file is open, to serve its verified pieces to peers until
	// Run returns (then the Share serves no more); OnPiece is called after
	// each piece verified.
	OnShare func(*Share)
	OnPiece func()
	// PlanWait is how long Run asks again for the first plan while
	// vmappd's nodes answer that none leads the cluster (Unavailable,
	// field "leader": between a leader's death and the next election no
	// node reads linearizably); 0 means DefaultPlanWait, a negative value
	// asks once.
	PlanWait time.Duration
}

// DefaultPlanWait is Options.PlanWait's default: as long as a vmappd node
// asks the leader of the moment again for a write (an election's worth on
// a loaded machine), so that a download started as the cluster's leader
// dies waits for the next one instead of failing.
const DefaultPlanWait = 30 * time.Second

// Backoff between the requests of a first plan vmappd couldn't give.
const (
	planRetryBase = 100 * time.Millisecond
	planRetryMax  = 2 * time.Second
)

// Suffixes of the files Run keeps beside dest while it works: the pieces
// land in dest+PartialSuffix, and dest+StateSuffix records which of them
// are verified, so that a download that was killed resumes.
const (
	PartialSuffix = ".partial"
	StateSuffix   = ".vmapp-state"
)

// pieceRounds is how many times a piece goes through every source before
// the download fails.
const pieceRounds = 3

var defaultHTTPClient = &http.Client{Transport: func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = adaptiveMax
	t.ResponseHeaderTimeout = stallTimeout
	return t
}()}

// Run fetches a version's artifact (version may be "latest") into dest,
// as the machine of o.Region, and returns the plan it followed.
//
// Pieces are fetched in parallel with ranged GETs of the plan's presigned
// URLs — the region's replicas first, from the one o.MachineID hashes to —
// or with DownloadService.ReadRange when the plan isn't direct or every URL
// failed for a piece. Each piece is checked against the plan's sha256 and a
// bad one is fetched from the next source. The pieces go into
// dest+".partial", allocated in full first; dest+".vmapp-state" lists the
// verified ones so a download run again after a crash skips them. Only when
// the whole file's sha256 matches the plan is it renamed to dest (synced
// first with o.Durable): dest never holds a partial file. When dest holds the artifact
// already, Run returns at once.
//
// Errors are *errs.Error: FailedPrecondition when the version isn't
// available in the region, ResourceExhausted when dest's disk is too small,
// DataLoss when no source has sound bytes for a piece, Unavailable when none
// can be reached, Canceled when ctx ends (run again to resume).
func Run(ctx context.Context, svc pb.DownloadServiceClient, gallery, app, version, dest string, o Options) (*pb.DownloadPlan, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if dest == "" {
		return nil, errs.New(errs.InvalidArgument, "dest", "the destination file is required")
	}
	t := target{gallery: gallery, app: app, version: version, kind: o.Kind, region: o.Region}
	first, err := t.firstPlan(ctx, svc, o)
	if err != nil {
		return nil, err
	}
	art, err := newArtifact(first, o.Kind)
	if err != nil {
		return nil, err
	}
	t.version = art.version // "latest" no more: the plan's version throughout
	pl := newPlanner(first, art, time.Now,
		func(ctx context.Context) (*pb.DownloadPlan, error) { return t.getPlan(ctx, svc) },
		func(p *pb.DownloadPlan) []*source {
			return planSources(p, o, art.size, t.vmappd(svc))
		})
	rep := newReporter(svc, t, art.what, o.Logger)
	rep.onBadPeer = o.OnBadPeer
	d := newDownloader(art, dest, o, pl, rep)
	defer d.rep.wait()
	if err := d.run(ctx); err != nil {
		return nil, err
	}
	d.logSources()
	return d.plan.latest(), nil
}

// withDefaults checks o and fills in what it leaves to Run.
func (o Options) withDefaults() (Options, error) {
	switch {
	case o.Region == "":
		return o, errs.New(errs.InvalidArgument, "region", "the machine's region is required")
	case o.Parallelism < 0:
		return o, errs.New(errs.InvalidArgument, "parallelism", "parallelism %d must not be negative", o.Parallelism)
	}
	if o.Kind == pb.ArtifactKind_ARTIFACT_KIND_UNSPECIFIED {
		o.Kind = pb.ArtifactKind_ARTIFACT_KIND_PACKAGE
	}
	if o.PlanWait == 0 {
		o.PlanWait = DefaultPlanWait
	}
	if o.MachineID == "" {
		o.MachineID, _ = os.Hostname()
	}
	if o.HTTPClient == nil {
		o.HTTPClient = defaultHTTPClient
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// target is what a download asks vmappd for.
type target struct {
	gallery, app, version string
	kind                  pb.ArtifactKind
	region                string
}

func (t target) getPlan(ctx context.Context, svc pb.DownloadServiceClient) (*pb.DownloadPlan, error) {
	r, err := svc.GetDownloadPlan(ctx, &pb.GetDownloadPlanRequest{
		Gallery: t.gallery, Application: t.app, Version: t.version, Kind: t.kind, Region: t.region,
	})
	if err != nil {
		return nil, err
	}
	if r.Plan == nil {
		return nil, errs.New(errs.Internal, "", "vmappd returned no download plan for %s/%s/%s", t.gallery, t.app, t.version)
	}
	return r.Plan, nil
}

// firstPlan asks for the download's first plan, again for up to o.PlanWait
// while vmappd answers that no node leads the cluster now: the gRPC client
// already tried the other nodes, and every node refuses reads between a
// leader's death and the next election. Any other refusal (the version
// doesn't exist, isn't in the region, the machine may not download it; no
// vmappd at that address) is the answer.
func (t target) firstPlan(ctx context.Context, svc pb.DownloadServiceClient, o Options) (*pb.DownloadPlan, error) {
	deadline := time.Now().Add(o.PlanWait)
	wait := planRetryBase
	for {
		p, err := t.getPlan(ctx, svc)
		if err == nil || !noLeader(err) || ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			return p, err
		}
		o.Logger.Warn("vmappd can't give the download plan now: asking again", "gallery", t.gallery, "application", t.app, "version", t.version,
			"kind", t.kind.Label(), "retry_in", wait, "err", err)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, errs.Wrap(errs.ClassOf(ctx.Err()), ctx.Err(), "asking for the download plan of %s/%s/%s", t.gallery, t.app, t.version)
		case <-timer.C:
		}
		wait = min(2*wait, planRetryMax)
	}
}

// noLeader tells whether err is a cluster node's refusal for want of a
// leader: Unavailable with field "leader" (package cluster).
func noLeader(err error) bool {
	return errs.Is(err, errs.Unavailable) && errs.FieldOf(err) == "leader"
}

// downloader is one download: the artifact, where it goes, and the parts
// that fetch it.
type downloader struct {
	art  *artifact
	dest string
	o    Options
	plan *planner
	rep  *reporter
	m    meter
	file *partial // while run works
	// swarm chooses the pieces of a swarm's download (nil: not one).
	swarm *swarm
}

func newDownloader(art *artifact, dest string, o Options, pl *planner, rep *reporter) *downloader {
	return &downloader{art: art, dest: dest, o: o, plan: pl, rep: rep}
}

// run fetches the missing pieces into the partial file and moves it to
// dest once it is whole and verified.
func (d *downloader) run(ctx context.Context) error {
	if ok, err := destDone(d.dest, d.art); err != nil || ok {
		if ok {
			d.progress(d.art.size)
		}
		return err
	}
	f, err := openPartial(d.dest, d.art, d.o.Durable)
	if err != nil {
		return err
	}
	defer f.close()
	d.file = f
	if d.o.OnShare != nil {
		if s, err := newShare(f); err == nil {
			defer s.close()
			d.o.OnShare(s)
		}
	}
	d.m.done.Store(f.verifiedBytes())
	d.progress(d.m.done.Load())
	// The whole file's sha256: with a chain, verifying every piece checked
	// it. Without, it is computed while pieces arrive, in order, from the
	// verified prefix of the file, not in one pass at the end.
	hctx, stopHash := context.WithCancel(ctx)
	defer stopHash()
	whole := make(chan hashResult, 1)
	if d.art.chain != nil {
		whole <- hashResult{sum: d.art.sha}
	} else {
		go func() { whole <- hashPrefix(hctx, d.art, f) }()
	}
	v := d.plan.cur.Load()
	p := &pool{parallelism: d.o.Parallelism, maxRun: maxRun(d.art.pieceSize), meter: &d.m,
		fetch: d.fetchRun, progress: func() { d.progress(d.m.done.Load()) }}
	todo := f.todo()
	if v.plan.PeerRefresh != nil { // a swarm: a piece at a time, chosen as each worker is free
		d.swarm = newSwarm(d.plan, &d.m, todo, d.o.MachineID)
		p.maxRun, p.swarm = 1, d.swarm
		p.parallelism = cmp.Or(p.parallelism, adaptiveMax)
	} else {
		todo = rarestFirst(todo, v.sources, d.o.MachineID)
	}
	if err := p.run(ctx, todo); err != nil {
		stopHash()
		<-whole
		err = unfatal(err)
		if ctx.Err() != nil && !isClassified(err) {
			return errs.Wrap(errs.ClassOf(ctx.Err()), ctx.Err(), "download of %s into %s stopped with %d of %d pieces verified; run it again to resume", d.art.what, d.dest, f.nVerified(), d.art.pieces())
		}
		return err
	}
	r := <-whole
	if r.err != nil {
		return f.localErr(r.err, "read %s", f.path)
	}
	if err := f.finish(r.sum); err != nil {
		return err
	}
	d.progress(d.art.size)
	return nil
}

// logSources logs where the download's bytes came from.
func (d *downloader) logSources() {
	var from []any
	seen := map[*health]bool{}
	for _, s := range d.plan.cur.Load().sources {
		if n := s.health.bytes.Load(); n > 0 && !seen[s.health] {
			seen[s.health] = true
			from = append(from, s.Name(), n)
		}
	}
	if len(from) > 0 {
		d.o.Logger.Info("download: complete", append([]any{"artifact", d.art.what}, slog.Group("bytes_from", from...))...)
	}
}

func (d *downloader) progress(done int64) {
	if d.o.Progress != nil {
		d.o.Progress(done, d.art.size)
	}
}

// fatalError ends the whole download: the local disk failed, or vmappd
// said the download can't go on.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func fatal(err error) error { return &fatalError{err} }

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

func unfatal(err error) error {
	var f *fatalError
	if errors.As(err, &f) {
		return f.err
	}
	return err
}

func isClassified(err error) bool {
	var e *errs.Error
	return errors.As(err, &e)
}
