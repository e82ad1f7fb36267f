// Package replicator fans each version's artifacts out from the source
// region to every target region, regionalReplicaCount replicas per region.
//
// # Model
//
// A replica is one copy of one artifact (package or default configuration)
// of one version in one region. Its record is in the state (the replicas
// table), changed by the replica commands.
//
// The replicator is level-triggered: reconcile compares what the catalog
// wants (each version with a stored artifact × its target regions × their
// replica counts) with the records, adds the missing ones (Pending) and marks
// the unwanted ones Deleting; dispatch starts workers on runnable records.
// Reconcile reads the versions the state marked dirty (a command changed
// what their records should be), and every version only when the
// replicator starts and every FullReconcileInterval; dispatch reads the
// records not completed (an index). So the work of a pass follows what
// changed and what is left to copy, not how many versions exist.
// Nothing is kept only in memory, so a restart — after a crash or SIGKILL,
// or on a new leader of a cluster — resumes from the records: a copy in
// progress keeps its multipart upload and the parts already copied. In a
// cluster only the leader runs the replicator; its commands carry its term
// and are refused once another node leads, so a deposed leader's copies
// stop at their next record.
//
// # Copies
//
// Replica 0 of a region is copied from the source object (the one ingest
// stored); replicas 1.. are copied from replica 0 of their own region, so
// the bytes cross regions once per region. Replica i lives on the region's
// endpoint i mod (number of endpoints). On the same endpoint a copy is done
// by the store (UploadPartCopy: no bytes through vmappd); otherwise vmappd
// streams each part from the source's GET into the destination's part PUT.
//
// Every replica is rebuilt with the source's part layout (the manifest's
// pieces). A streamed part is sent with its manifest sha256, which the store
// checks; every part's store ETag must equal the source part's, and the
// completed object's size and ETag the source object's. Only then is the
// replica Completed. Repair and the periodic scrub check completed
// replicas again (size and ETag; deep: every piece's sha256) and copy
// missing or damaged ones again; so does the deep scrub, which reads every
// replica back once per DeepScrubPeriod at a bounded rate, and a
// downloader's report of a bad piece once vmappd has read that piece
// itself. A replica its store keeps failing to serve while answering other
// requests (MinIO's answer to rotted data or metadata) counts as damaged;
// one whose store doesn't answer is left alone.
//
// # Scheduling
//
// At most Concurrency replicas copy at once, EndpointConcurrency per
// destination endpoint, each PartConcurrency parts at a time, within the
// overall and per-endpoint bandwidth limits. Runnable replicas are taken
// round-robin between versions, so one large version doesn't starve small
// ones. A failed copy is retried with exponential backoff and jitter; a
// region whose store is down only delays its own replicas.
package replicator

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/vmapp/vmapp/blob"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
	"github.com/vmapp/vmapp/topology"
)

// Catalog is what the replicator reads from the catalog.
type Catalog interface {
	AllVersions(ctx context.Context) ([]*pb.GalleryApplicationVersion, error)
	GetVersion(ctx context.Context, tenant, gallery, app, name string) (*pb.GalleryApplicationVersion, error)
	Manifest(ctx context.Context, tenant, gallery, app, version string, k pb.ArtifactKind) (*statepb.Manifest, error)
}

// Options configure a Replicator.
type Options struct {
	DB       *state.DB
	Catalog  Catalog
	Topology *topology.Topology
	// Store returns endpoint i of a region.
	Store  func(region string, i int) (blob.Store, error)
	Logger *slog.Logger
	// Registry, when set, gets the replicator's metrics.
	Registry prometheus.Registerer

	// Concurrency bounds the replicas copying at once (default 8);
	// EndpointConcurrency those writing to one endpoint (default 4);
	// PartConcurrency the parts of one replica in flight (default 4).
	Concurrency, EndpointConcurrency, PartConcurrency int
	// Bandwidth bounds the bytes per second vmappd streams between stores,
	// overall; 0 is unlimited. Endpoints may set their own limit in the
	// topology. Server-side copies are not limited: no bytes pass through
	// vmappd.
	Bandwidth float64
	// RetryBase and RetryMax shape the backoff between attempts (defaults
	// 1s and 5m).
	RetryBase, RetryMax time.Duration
	// FullReconcileInterval is how often the replicator compares every
	// version with every replica record (default 1h), besides when it
	// starts: a safety net, as it otherwise reconciles only the versions
	// the state marks as changed.
	FullReconcileInterval time.Duration
	// ScrubInterval is how often completed replicas are checked (size and
	// ETag); 0 disables the periodic scrub.
	ScrubInterval time.Duration
	// DeepScrubPeriod is how often the deep scrub reads each completed
	// replica back and checks every piece's sha256; 0 disables it.
	// DeepScrubRate bounds its reads, in bytes per second (default 10e6).
	DeepScrubPeriod time.Duration
	DeepScrubRate   float64
}

// Replicator runs replication. Start it with Run.
type Replicator struct {
	o       Options
	db      *state.DB
	cat     Catalog
	topo    *topology.Topology
	store   func(region string, i int) (blob.Store, error)
	log     *slog.Logger
	now     func() time.Time
	poke    chan struct{}
	overall *rate.Limiter
	perEP   map[string]*rate.Limiter // "region/i"
	m       metrics

	mu       sync.Mutex // guards the fields below and orders reconcile against finalize
	inflight map[string]*job
	// finalizing holds the prefixes Finalize is deleting. Neither these
	// nor versions marked for deletion are dispatched.
	finalizing map[string]bool
	// wantedBy counts the records each version wants by region, as of its
	// last reconcile; wantedIn is their sum by region (the records of
	// vmapp_replicas that are wanted: all but the deleting ones).
	wantedBy map[string]map[string]int
	wantedIn map[string]int
	restored atomic.Bool // the state was restored: reconcile every version
	rr       string      // version prefix served last, for round-robin
	jobs     sync.WaitGroup

	locks   keyLocks // one check of a replica at a time
	lag     lagSeen
	reports reports
}

type job struct {
	cancel   context.CancelFunc
	done     chan struct{}
	endpoint string
	version  string // version prefix
}

// New returns a Replicator.
func New(o Options) (*Replicator, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.EndpointConcurrency <= 0 {
		o.EndpointConcurrency = 4
	}
	if o.PartConcurrency <= 0 {
		o.PartConcurrency = 4
	}
	if o.RetryBase <= 0 {
		o.RetryBase = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 5 * time.Minute
	}
	if o.FullReconcileInterval <= 0 {
		o.FullReconcileInterval = time.Hour
	}
	if o.DeepScrubRate <= 0 {
		o.DeepScrubRate = 10e6
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Replicator{
		o: o, db: o.DB, cat: o.Catalog, topo: o.Topology, store: o.Store, log: o.Logger, now: time.Now,
		poke: make(chan struct{}, 1), inflight: map[string]*job{}, finalizing: map[string]bool{}, wantedBy: map[string]map[string]int{}, wantedIn: map[string]int{}, perEP: map[string]*rate.Limiter{},
		m:       newMetrics(o.Registry, o.Topology.Names()),
		reports: reports{slots: make(chan struct{}, reportSlots)},
	}
	if o.Bandwidth > 0 {
		r.overall = rate.NewLimiter(rate.Limit(o.Bandwidth), burst(o.Bandwidth))
	}
	for _, reg := range o.Topology.Regions {
		for i, e := range reg.Endpoints {
			if bps := e.BandwidthMBps * 1e6; bps > 0 {
				r.perEP[endpointName(reg.Name, i)] = rate.NewLimiter(rate.Limit(bps), burst(bps))
			}
		}
	}
	o.DB.Watch(func(c *statepb.Command) {
		switch c.GetOp().(type) {
		case nil: // the whole state was replaced
			r.restored.Store(true)
			r.Poke()
		case *statepb.Command_FinishUpload, *statepb.Command_UpdateVersion, *statepb.Command_DeleteVersion,
			*statepb.Command_DeleteApplication, *statepb.Command_DeleteGallery, *statepb.Command_ReplicaRestart:
			r.Poke() // wherever it was proposed
		}
	})
	return r, nil
}

func burst(bps float64) int { return int(max(min(bps, 4<<20), 64<<10)) }

// Poke makes the replicator look at the catalog now (after an upload, an
// update of target regions, a repair) instead of at its next tick.
func (r *Replicator) Poke() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// Run replicates, and scrubs, until ctx ends, then waits for its workers
// to stop.
func (r *Replicator) Run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	if r.o.ScrubInterval > 0 {
		r.background(ctx, r.scrubLoop)
	}
	if r.o.DeepScrubPeriod > 0 {
		r.background(ctx, r.deepScrub)
	}
	full := time.NewTicker(r.o.FullReconcileInterval)
	defer full.Stop()
	needFull := true
	for {
		needFull = r.reconcile(ctx, needFull || r.restored.Swap(false))
		if err := r.dispatch(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("replication dispatch", "err", err)
		}
		select {
		case <-ctx.Done():
			r.mu.Lock()
			for _, j := range r.inflight {
				j.cancel()
			}
			r.mu.Unlock()
			r.jobs.Wait()
			r.mu.Lock()
			r.clearReplicaGauges()
			r.mu.Unlock()
			return
		case <-r.poke:
		case <-tick.C:
		case <-full.C:
			needFull = true
		}
	}
}

// reconcile runs a full pass when full, else an incremental one. It
// returns whether a full pass is still due (this one failed).
func (r *Replicator) reconcile(ctx context.Context, full bool) bool {
	pass := r.reconcileDirty
	if full {
		pass = r.reconcileAll
	}
	if err := pass(ctx); err != nil {
		if ctx.Err() == nil {
			r.log.Warn("replication reconcile", "full", full, "err", err)
		}
		return full
	}
	return false
}

// background runs fn until ctx ends; Run waits for it.
func (r *Replicator) background(ctx context.Context, fn func(context.Context)) {
	r.jobs.Add(1)
	go func() {
		defer r.jobs.Done()
		fn(ctx)
	}()
}

func endpointName(region string, i int) string { return region + "/" + strconv.Itoa(i) }
