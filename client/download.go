package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/shachain"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// DownloadOptions tune Download.
type DownloadOptions struct {
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
	// Logger gets a warning for each failed attempt at a piece, naming the
	// source, the piece and the error (presigned queries left out): a
	// corrupted or unreachable replica shows even when the download
	// succeeds from another. nil discards them.
	Logger *slog.Logger
}

// A replica that sends a piece failing verification is reported to vmappd
// (DownloadService.ReportReplicaDamage), which reads the piece itself and
// has the replica copied again if it is damaged: once per replica per
// download, in the background. Download waits for reports still in flight
// at its end for at most reportWait, so that a process that exits right
// after still delivers them; a report that fails is logged, never the
// download's failure.
const (
	reportWait    = 5 * time.Second
	reportTimeout = time.Minute
	// maxProblem is the most of the error a report carries.
	maxProblem = 1024
)

// Suffixes of the files Download keeps beside dest while it works: the
// pieces land in dest+PartialSuffix, and dest+StateSuffix records which of
// them are verified, so that a download that was killed resumes.
const (
	PartialSuffix = ".partial"
	StateSuffix   = ".vmapp-state"
)

const (
	adaptiveStart = 8
	adaptiveMax   = 16
	adaptiveStep  = 4
	adaptiveTick  = 300 * time.Millisecond
	progressTick  = 100 * time.Millisecond
	// stallTimeout ends a piece request that received nothing for so long.
	stallTimeout = 30 * time.Second
	// pieceRounds is how many times a piece goes through every source
	// before the download fails.
	pieceRounds = 3
	// chunkSize is how much of a piece a worker gathers before writing it
	// to the file: one write per chunk, at an offset and of a length that
	// direct I/O accepts when the piece size allows.
	chunkSize = 1 << 20
	// runBytes caps how much one GET asks for: a run of consecutive
	// pieces, each verified as it arrives.
	runBytes = 32 << 20
	// refreshMargin caps how long before the plan's expiry a new one is
	// asked for.
	refreshMargin = 30 * time.Second
)

var defaultHTTPClient = &http.Client{Transport: func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = adaptiveMax
	t.ResponseHeaderTimeout = stallTimeout
	return t
}()}

// Workers' chunk buffers, aligned for direct I/O: memory stays at one
// chunk per worker.
var bufPool = sync.Pool{New: func() any { b := alignedBuf(chunkSize); return &b }}

// OrderSources returns a plan's sources in the order Download tries them:
// the own region's replicas (in the plan's order) rotated to start at
// FNV-1a(machineID) mod their number, then the other regions' (fallbacks)
// in the plan's order.
func OrderSources(plan *pb.DownloadPlan, machineID string) []*pb.DownloadSource {
	var own, other []*pb.DownloadSource
	for _, s := range plan.GetSources() {
		if s.Fallback {
			other = append(other, s)
		} else {
			own = append(own, s)
		}
	}
	out := make([]*pb.DownloadSource, 0, len(own)+len(other))
	if n := len(own); n > 0 {
		h := fnv.New32a()
		h.Write([]byte(machineID))
		k := int(h.Sum32() % uint32(n))
		out = append(append(out, own[k:]...), own[:k]...)
	}
	return append(out, other...)
}

// Download fetches a version's artifact (version may be "latest") into
// dest, as the machine of o.Region, and returns the plan it followed.
//
// Pieces are fetched in parallel with ranged GETs of the plan's presigned
// URLs — the region's replicas first, from the one o.MachineID hashes to —
// or with DownloadService.ReadRange when the plan isn't direct or every URL
// failed for a piece. Each piece is checked against the plan's sha256 and a
// bad one is fetched from the next source. The pieces go into
// dest+".partial", allocated in full first; dest+".vmapp-state" lists the
// verified ones so a download run again after a crash skips them. Only when
// the whole file's sha256 matches the plan is it synced and renamed to
// dest: dest never holds a partial file. When dest holds the artifact
// already, Download returns at once.
//
// Errors are *errs.Error: FailedPrecondition when the version isn't
// available in the region, ResourceExhausted when dest's disk is too small,
// DataLoss when no source has sound bytes for a piece, Unavailable when none
// can be reached, Canceled when ctx ends (run again to resume).
func (c *Client) Download(ctx context.Context, gallery, app, version, dest string, o DownloadOptions) (*pb.DownloadPlan, error) {
	switch {
	case o.Region == "":
		return nil, errs.New(errs.InvalidArgument, "region", "the machine's region is required")
	case dest == "":
		return nil, errs.New(errs.InvalidArgument, "dest", "the destination file is required")
	case o.Parallelism < 0:
		return nil, errs.New(errs.InvalidArgument, "parallelism", "parallelism %d must not be negative", o.Parallelism)
	}
	if o.Kind == pb.ArtifactKind_ARTIFACT_KIND_UNSPECIFIED {
		o.Kind = pb.ArtifactKind_ARTIFACT_KIND_PACKAGE
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
	d := &downloader{
		svc: pb.NewDownloadServiceClient(c.conn), o: o, gallery: gallery, app: app,
		dest: dest, partial: dest + PartialSuffix, statePath: dest + StateSuffix,
		fails: map[srcKey]int{}, reported: map[srcKey]bool{},
	}
	plan, err := d.getPlan(ctx, version)
	if err != nil {
		return nil, err
	}
	if err := d.adopt(plan); err != nil {
		return nil, err
	}
	defer d.waitReports()
	if err := d.run(ctx); err != nil {
		return nil, err
	}
	return d.currentPlan(), nil
}

// srcKey names a replica across plans (their URLs change).
type srcKey struct {
	region   string
	replica  int32
	fallback bool
}

func (k srcKey) String() string { return fmt.Sprintf("%s/%d", k.region, k.replica) }

type downloader struct {
	svc                      pb.DownloadServiceClient
	o                        DownloadOptions
	gallery, app             string
	dest, partial, statePath string

	// The artifact, from the first plan; later plans must agree.
	version         string
	what            string // "g/a/1.0.0 package", for messages
	size, pieceSize int64
	sha             string
	sums            [][]byte
	// chain is the plan's piece_chain when usable: pieces are then
	// verified against the whole file's sha256 (see shachain).
	chain [][]byte

	refreshMu sync.Mutex // one plan request at a time
	mu        sync.Mutex
	plan      *pb.DownloadPlan
	gen       int       // plan generation
	renewAt   time.Time // when to ask for a new plan
	order     []srcKey
	urls      map[srcKey]string
	fails     map[srcKey]int // consecutive failures
	reported  map[srcKey]bool
	reports   sync.WaitGroup

	f *os.File
	// direct is the partial file opened for direct I/O (O_DIRECT), which
	// writes the pieces' aligned chunks without copying them into the page
	// cache: less CPU, no writeback left for the fsync, and a package that
	// doesn't evict the machine's working set. nil where the file system
	// refuses it, or without a chain (the whole-file hash then reads the
	// file back, better from the page cache); noDirect is set when a write
	// finds the file system refusing it after all.
	direct   *os.File
	noDirect atomic.Bool
	stateMu  sync.Mutex
	verified []bool
	nVerif   int
	// wake tells the whole-file hasher that a piece was verified.
	wake chan struct{}

	moved atomic.Int64 // bytes received, failed pieces too: throughput
	// firstByte is when the first bytes were received (UnixNano; 0: not
	// yet), where the adaptive pool's first measure starts.
	firstByte atomic.Int64
	done      atomic.Int64 // bytes of verified pieces and pieces in flight
}

func (d *downloader) getPlan(ctx context.Context, version string) (*pb.DownloadPlan, error) {
	r, err := d.svc.GetDownloadPlan(ctx, &pb.GetDownloadPlanRequest{
		Gallery: d.gallery, Application: d.app, Version: version, Kind: d.o.Kind, Region: d.o.Region,
	})
	if err != nil {
		return nil, err
	}
	if r.Plan == nil {
		return nil, errs.New(errs.Internal, "", "vmappd returned no download plan for %s/%s/%s", d.gallery, d.app, version)
	}
	return r.Plan, nil
}

// adopt checks the first plan and takes the artifact's identity from it.
func (d *downloader) adopt(p *pb.DownloadPlan) error {
	d.version = p.Version
	d.what = fmt.Sprintf("%s/%s/%s %s", p.Gallery, p.Application, p.Version, d.o.Kind.Label())
	d.size, d.pieceSize, d.sha, d.sums = p.SizeBytes, p.PieceSize, p.Sha256, p.PieceSha256
	bad := func(format string, args ...any) error {
		return errs.New(errs.Internal, "", "the download plan of %s is inconsistent: %s", d.what, fmt.Sprintf(format, args...))
	}
	switch {
	case d.size < 0:
		return bad("size %d", d.size)
	case d.size > 0 && d.pieceSize <= 0:
		return bad("piece size %d", d.pieceSize)
	case len(d.sha) != 64:
		return bad("sha256 %q", d.sha)
	}
	want := 0
	if d.size > 0 {
		want = int((d.size + d.pieceSize - 1) / d.pieceSize)
	}
	if len(d.sums) != want {
		return bad("%d piece hashes for %d pieces", len(d.sums), want)
	}
	for i, s := range d.sums {
		if len(s) != sha256.Size {
			return bad("piece %d's hash has %d bytes", i, len(s))
		}
	}
	// A single piece needs no chain: it ends in the file's sha256.
	if len(p.PieceChain) > 0 || want == 1 {
		if len(p.PieceChain) != want-1 || want > 1 && d.pieceSize%sha256.BlockSize != 0 {
			return bad("%d chaining values for %d pieces of %d bytes", len(p.PieceChain), want, d.pieceSize)
		}
		for i, cv := range p.PieceChain {
			if len(cv) != sha256.Size {
				return bad("piece %d's chaining value has %d bytes", i, len(cv))
			}
		}
		if shachain.Usable() {
			d.chain = append([][]byte{}, p.PieceChain...)
		}
	}
	d.setPlan(p)
	return nil
}

func (d *downloader) setPlan(p *pb.DownloadPlan) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.plan = p
	d.gen++
	d.renewAt = time.Now().Add(100 * 365 * 24 * time.Hour) // no URLs: no expiry
	// Renew a little before the URLs expire. A plan that looks expired
	// already means the clocks disagree: then only a 403 renews it.
	if left := time.Until(p.GetExpireTime().AsTime()); p.Direct && p.ExpireTime != nil && left > 0 {
		d.renewAt = time.Now().Add(left - min(left/10, refreshMargin))
	}
	d.order, d.urls = nil, map[srcKey]string{}
	for _, s := range OrderSources(p, d.o.MachineID) {
		k := srcKey{s.Region, s.Replica, s.Fallback}
		d.order = append(d.order, k)
		d.urls[k] = s.Url
	}
}

func (d *downloader) currentPlan() *pb.DownloadPlan {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.plan
}

// current returns the plan in force, asking for a new one when it expired.
func (d *downloader) current(ctx context.Context) (*pb.DownloadPlan, int, error) {
	d.mu.Lock()
	p, gen, renew := d.plan, d.gen, d.renewAt
	d.mu.Unlock()
	if time.Now().Before(renew) {
		return p, gen, nil
	}
	if err := d.refresh(ctx, gen); err != nil {
		return nil, 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.plan, d.gen, nil
}

// refresh replaces plan generation gen with a new plan; when another
// worker did so already it does nothing.
func (d *downloader) refresh(ctx context.Context, gen int) error {
	d.refreshMu.Lock()
	defer d.refreshMu.Unlock()
	d.mu.Lock()
	stale := d.gen == gen
	d.mu.Unlock()
	if !stale {
		return nil
	}
	p, err := d.getPlan(ctx, d.version)
	if err != nil {
		err = errs.Wrap(errs.ClassOf(err), err, "renew the download plan of %s", d.what)
		switch errs.ClassOf(err) {
		case errs.Unavailable, errs.DeadlineExceeded, errs.Internal, errs.Aborted, errs.ResourceExhausted:
			return err // a piece failure: retried
		}
		return fatal(err)
	}
	if p.Sha256 != d.sha || p.SizeBytes != d.size || p.PieceSize != d.pieceSize {
		return fatal(errs.New(errs.Aborted, "", "%s changed while downloading: sha256 %s, %d bytes, was %s, %d bytes", d.what, p.Sha256, p.SizeBytes, d.sha, d.size))
	}
	d.setPlan(p)
	return nil
}

// sources returns the direct sources in the order to try them for a
// piece: the own region's, then the fallbacks, each group by consecutive
// failures, then by OrderSources.
func (d *downloader) sources() []srcKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := slices.Clone(d.order)
	slices.SortStableFunc(out, func(a, b srcKey) int {
		if a.fallback != b.fallback {
			if b.fallback {
				return -1
			}
			return 1
		}
		return cmp.Compare(d.fails[a], d.fails[b])
	})
	return out
}

func (d *downloader) sourceResult(k srcKey, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		delete(d.fails, k)
	} else {
		d.fails[k]++
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

func (d *downloader) span(i int) (off, n int64) {
	off = int64(i) * d.pieceSize
	return off, min(d.pieceSize, d.size-off)
}

// run fetches the missing pieces into the partial file and moves it to
// dest once it is whole and verified.
func (d *downloader) run(ctx context.Context) error {
	if ok, err := d.destDone(); err != nil || ok {
		if ok {
			d.progress(d.size)
		}
		return err
	}
	if err := d.open(); err != nil {
		return err
	}
	defer func() {
		if d.f != nil {
			d.f.Close()
		}
		if d.direct != nil {
			d.direct.Close()
		}
	}()
	var todo []int
	for i := range d.sums {
		if !d.verified[i] {
			todo = append(todo, i)
		}
	}
	d.done.Store(d.verifiedBytes())
	d.progress(d.done.Load())
	// The whole file's sha256: with a chain, verifying every piece checked
	// it. Without, it is computed while pieces arrive, in order, from the
	// verified prefix of the file, not in one pass at the end.
	hctx, stopHash := context.WithCancel(ctx)
	defer stopHash()
	d.wake = make(chan struct{}, 1)
	whole := make(chan hashResult, 1)
	if d.chain != nil {
		whole <- hashResult{sum: d.sha}
	} else {
		go func() { whole <- d.hashPrefix(hctx) }()
	}
	if err := d.fetchAll(ctx, todo); err != nil {
		stopHash()
		<-whole
		err = unfatal(err)
		if ctx.Err() != nil && !isClassified(err) {
			d.stateMu.Lock()
			n := d.nVerif
			d.stateMu.Unlock()
			return errs.Wrap(errs.ClassOf(ctx.Err()), ctx.Err(), "download of %s into %s stopped with %d of %d pieces verified; run it again to resume", d.what, d.dest, n, len(d.sums))
		}
		return err
	}
	r := <-whole
	if r.err != nil {
		return d.localErr(r.err, "read %s", d.partial)
	}
	return d.finish(r.sum)
}

type hashResult struct {
	sum string
	err error
}

// hashPrefix hashes the file's pieces in order, each once it is verified,
// until the whole file is hashed or ctx ends.
func (d *downloader) hashPrefix(ctx context.Context) hashResult {
	h := sha256.New()
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	for next := 0; next < len(d.sums); {
		d.stateMu.Lock()
		ok := d.verified[next]
		d.stateMu.Unlock()
		if !ok {
			select {
			case <-d.wake:
				continue
			case <-ctx.Done():
				return hashResult{err: ctx.Err()}
			}
		}
		off, n := d.span(next)
		if _, err := io.CopyBuffer(h, io.NewSectionReader(d.f, off, n), *bufp); err != nil {
			return hashResult{err: err}
		}
		next++
	}
	return hashResult{sum: hex.EncodeToString(h.Sum(nil))}
}

func isClassified(err error) bool {
	var e *errs.Error
	return errors.As(err, &e)
}

func (d *downloader) progress(done int64) {
	if d.o.Progress != nil {
		d.o.Progress(done, d.size)
	}
}

func (d *downloader) verifiedBytes() int64 {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	var n int64
	for i, ok := range d.verified {
		if ok {
			_, l := d.span(i)
			n += l
		}
	}
	return n
}

// destDone reports whether dest holds the artifact already.
func (d *downloader) destDone() (bool, error) {
	fi, err := os.Stat(d.dest)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, errs.Wrap(errs.InvalidArgument, err, "destination %s", d.dest)
	case fi.IsDir():
		return false, errs.New(errs.InvalidArgument, "dest", "destination %s is a directory", d.dest)
	case !fi.Mode().IsRegular() || fi.Size() != d.size:
		return false, nil
	}
	sum, _, err := FileSHA256(d.dest)
	if err != nil || sum != d.sha {
		return false, nil // replaced by the download
	}
	if st, err := d.readState(); err == nil && st.SHA256 == d.sha {
		os.Remove(d.statePath) // left by a download killed after its rename
	}
	return true, nil
}

func (d *downloader) noSpace(err error) error {
	return errs.Wrap(errs.ResourceExhausted, err, "no space left on device for %s (%d bytes)", d.dest, d.size)
}

// localErr classifies a failure of the local file system.
func (d *downloader) localErr(err error, format string, args ...any) error {
	if isNoSpace(err) {
		return d.noSpace(err)
	}
	c := errs.Internal
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
		c = errs.InvalidArgument
	}
	return errs.Wrap(c, err, format, args...)
}

// open opens (or creates) the partial file, locks it, resumes from the
// state file when it matches the plan, and allocates the file's size.
func (d *downloader) open() error {
	f, err := os.OpenFile(d.partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return d.localErr(err, "create %s", d.partial)
	}
	held, err := lockFile(f)
	if err != nil || held {
		f.Close()
		if held {
			return errs.New(errs.Aborted, "dest", "another download into %s is running", d.dest)
		}
		return d.localErr(err, "lock %s", d.partial)
	}
	d.f = f
	d.verified = make([]bool, len(d.sums))
	if !d.resume() {
		os.Remove(d.statePath)
		if err := f.Truncate(0); err != nil {
			return d.localErr(err, "truncate %s", d.partial)
		}
	}
	if err := allocate(f, d.size); err != nil {
		f.Close()
		d.f = nil
		os.Remove(d.partial)
		os.Remove(d.statePath)
		return d.localErr(err, "allocate %d bytes for %s", d.size, d.partial)
	}
	if d.chain != nil {
		d.direct = openDirect(d.partial)
	}
	return nil
}

// downloadState is the JSON of the state file.
type downloadState struct {
	SHA256    string `json:"sha256"`
	Size      int64  `json:"size"`
	PieceSize int64  `json:"piece_size"`
	Verified  []int  `json:"verified"`
}

func (d *downloader) readState() (*downloadState, error) {
	b, err := os.ReadFile(d.statePath)
	if err != nil {
		return nil, err
	}
	var st downloadState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// resume marks the pieces the state file lists as verified, after hashing
// them again (the file isn't synced piece by piece, so after a power loss a
// listed piece may not be on disk). It reports whether the state matched.
func (d *downloader) resume() bool {
	st, err := d.readState()
	if err != nil || st.SHA256 != d.sha || st.Size != d.size || st.PieceSize != d.pieceSize {
		return false
	}
	if fi, err := d.f.Stat(); err != nil || fi.Size() != d.size {
		return false
	}
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	for _, i := range st.Verified {
		if i < 0 || i >= len(d.sums) || d.verified[i] {
			continue
		}
		off, n := d.span(i)
		h := d.pieceHash(i)
		if _, err := io.CopyBuffer(h, io.NewSectionReader(d.f, off, n), *bufp); err != nil {
			continue
		}
		if d.checkPiece(i, h, "") == nil {
			d.verified[i] = true
			d.nVerif++
		}
	}
	return true
}

// markVerified records piece i in the state file (written to a temporary
// file and renamed over it). The state only saves work: failing to write
// it doesn't fail the download.
func (d *downloader) markVerified(i int) {
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	if d.verified[i] {
		return
	}
	d.verified[i] = true
	d.nVerif++
	select {
	case d.wake <- struct{}{}:
	default:
	}
	st := downloadState{SHA256: d.sha, Size: d.size, PieceSize: d.pieceSize, Verified: make([]int, 0, d.nVerif)}
	for j, ok := range d.verified {
		if ok {
			st.Verified = append(st.Verified, j)
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	tmp := d.statePath + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		os.Remove(tmp)
		return
	}
	os.Rename(tmp, d.statePath)
}

// finish checks the whole file's sha256 (got) and moves the file to dest.
func (d *downloader) finish(got string) error {
	if got != d.sha {
		// Every piece matched its hash: the plan's hashes disagree, or the
		// disk lost what was written. Start over next time.
		d.f.Close()
		d.f = nil
		os.Remove(d.partial)
		os.Remove(d.statePath)
		return errs.New(errs.DataLoss, "", "%s downloaded into %s has sha256 %s, not %s; removed it", d.what, d.partial, got, d.sha)
	}
	if d.direct != nil {
		d.direct.Close()
		d.direct = nil
	}
	if err := d.f.Sync(); err != nil {
		return d.localErr(err, "sync %s", d.partial)
	}
	err := d.f.Close()
	d.f = nil
	if err != nil {
		return d.localErr(err, "close %s", d.partial)
	}
	if err := os.Rename(d.partial, d.dest); err != nil {
		return d.localErr(err, "rename %s to %s", d.partial, d.dest)
	}
	if dir, err := os.Open(filepath.Dir(d.dest)); err == nil {
		dir.Sync()
		dir.Close()
	}
	os.Remove(d.statePath)
	os.Remove(d.statePath + ".tmp")
	d.progress(d.size)
	return nil
}

// fetchAll fetches the pieces todo with a pool of workers: o.Parallelism
// of them, or an adaptive number.
func (d *downloader) fetchAll(ctx context.Context, todo []int) error {
	if len(todo) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := todo // with mu held: pieces not taken yet, in order

	target := d.o.Parallelism
	if target == 0 {
		target = adaptiveStart
	}
	target = min(target, len(todo))
	var ad *adaptive // nil: a fixed number of connections
	if d.o.Parallelism == 0 {
		ad = &adaptive{target: target}
	}
	var (
		mu       sync.Mutex
		active   int
		finished = make(chan struct{})
	)
	exit := func() {
		active--
		if active == 0 {
			close(finished)
		}
	}
	// take returns the next run of consecutive pieces, with mu held: up
	// to runBytes, and shorter as the queue empties, so that the last
	// pieces still spread over every worker.
	maxRun := max(1, int(runBytes/max(d.pieceSize, 1)))
	take := func() []int {
		n := min(maxRun, max(1, len(queue)/(2*target)), len(queue))
		k := 1
		for k < n && queue[k] == queue[k-1]+1 {
			k++
		}
		run := queue[:k:k]
		queue = queue[k:]
		return run
	}
	var worker func()
	spawn := func() { // with mu held
		active++
		go worker()
	}
	worker = func() {
		bufp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bufp)
		for {
			mu.Lock()
			if active > target || ctx.Err() != nil || len(queue) == 0 {
				exit()
				mu.Unlock()
				return
			}
			run := take()
			mu.Unlock()
			if err := d.fetchRun(ctx, run, *bufp); err != nil {
				cancel(err)
			}
		}
	}
	mu.Lock()
	for range target {
		spawn()
	}
	mu.Unlock()

	tick := time.NewTicker(progressTick)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			if err := context.Cause(ctx); err != nil {
				return err
			}
			return nil
		case now := <-tick.C:
			d.progress(d.done.Load())
			if ad == nil {
				continue
			}
			var first time.Time
			if ns := d.firstByte.Load(); ns != 0 {
				first = time.Unix(0, ns)
			}
			mu.Lock()
			if t := ad.observe(now, d.moved.Load(), first, len(queue)); active > 0 {
				// Workers above the target leave by themselves.
				for range t - target {
					spawn()
				}
				target = t
			}
			mu.Unlock()
		}
	}
}

// fetchRun fetches a run of consecutive pieces: with one ranged GET of
// the first source when the plan is direct (fewer requests: less work for
// the store and no wait for response headers between pieces), and what
// that didn't verify piece by piece.
func (d *downloader) fetchRun(ctx context.Context, run []int, buf []byte) error {
	if len(run) > 1 {
		if plan, _, err := d.current(ctx); err == nil && plan.Direct {
			if srcs := d.sources(); len(srcs) > 0 {
				n, err := d.tryURL(ctx, run, srcs[0], buf)
				d.sourceResult(srcs[0], err)
				if isFatal(err) {
					return err
				}
				if err != nil && ctx.Err() == nil {
					d.warn(srcs[0].String(), run[n:], err)
					d.report(ctx, srcs[0], run[n], err)
				}
				run = run[n:]
			}
		}
	}
	for _, i := range run {
		if err := d.fetchPiece(ctx, i, buf); err != nil {
			return err
		}
	}
	return nil
}

// warn logs a failed attempt at pieces from src; they are tried again.
func (d *downloader) warn(src string, pieces []int, err error) {
	d.o.Logger.Warn("download: a piece failed; trying again", "artifact", d.what, "source", src,
		"pieces", fmt.Sprint(pieces), "class", errs.ClassOf(err).String(), "err", err)
}

// report tells vmappd, in the background, that piece i from replica k
// failed verification (err is DataLoss); once per replica.
func (d *downloader) report(ctx context.Context, k srcKey, i int, err error) {
	if !errs.Is(err, errs.DataLoss) || isFatal(err) {
		return
	}
	d.mu.Lock()
	seen := d.reported[k]
	d.reported[k] = true
	d.mu.Unlock()
	if seen {
		return
	}
	problem := err.Error()
	if len(problem) > maxProblem {
		problem = strings.ToValidUTF8(problem[:maxProblem], "")
	}
	req := &pb.ReportReplicaDamageRequest{
		Gallery: d.gallery, Application: d.app, Version: d.version, Kind: d.o.Kind,
		Region: k.region, Replica: k.replica, Piece: int64(i), Problem: problem,
	}
	d.reports.Go(func() {
		// Not cancelled with the download: the report is worth making.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportTimeout)
		defer cancel()
		r, err := d.svc.ReportReplicaDamage(rctx, req)
		log := d.o.Logger.With("artifact", d.what, "source", k.String(), "piece", i)
		switch {
		case errs.Is(errs.FromStatus(err), errs.Unimplemented):
			log.Debug("download: vmappd takes no reports of corrupted replicas")
		case err != nil:
			log.Warn("download: could not report a corrupted replica to vmappd", "err", errs.FromStatus(err))
		default:
			log.Info("download: reported a corrupted replica to vmappd", "verdict", r.Verdict.String(), "detail", r.Detail)
		}
	})
}

// waitReports waits for the reports in flight, at most reportWait.
func (d *downloader) waitReports() {
	done := make(chan struct{})
	go func() {
		d.reports.Wait()
		close(done)
	}()
	t := time.NewTimer(reportWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// fetchPiece fetches piece i from the first source that has it right.
func (d *downloader) fetchPiece(ctx context.Context, i int, buf []byte) error {
	off, n := d.span(i)
	var failures []string
	corrupt := true
	for round := range pieceRounds {
		if round > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(round) * time.Second):
			}
		}
		failures, corrupt = failures[:0], true
		fail := func(src string, err error) error {
			if isFatal(err) || ctx.Err() != nil {
				return err
			}
			failures = append(failures, src+": "+err.Error())
			corrupt = corrupt && errs.Is(err, errs.DataLoss)
			d.warn(src, []int{i}, err)
			return nil
		}
		plan, _, err := d.current(ctx)
		if err != nil {
			if err := fail("plan", err); err != nil {
				return err
			}
			continue
		}
		if plan.Direct {
			for _, k := range d.sources() {
				_, err := d.tryURL(ctx, []int{i}, k, buf)
				d.sourceResult(k, err)
				if err == nil {
					return nil
				}
				d.report(ctx, k, i, err)
				if err := fail(k.String(), err); err != nil {
					return err
				}
			}
		}
		err = d.readRange(ctx, i, buf)
		if err == nil {
			return nil
		}
		if err := fail("ReadRange", err); err != nil {
			return err
		}
	}
	c := errs.Unavailable
	if corrupt {
		c = errs.DataLoss
	}
	return errs.New(c, "", "%s piece %d (bytes %d-%d): every source failed %d times; last: %s", d.what, i, off, off+n-1, pieceRounds, strings.Join(failures, "; "))
}

// tryURL fetches the consecutive pieces run from source k's presigned URL
// and reports how many of them it verified; on 403 (the URL expired) it
// asks for a new plan and tries again.
func (d *downloader) tryURL(ctx context.Context, run []int, k srcKey, buf []byte) (int, error) {
	for renewed := 0; ; renewed++ {
		_, gen, err := d.current(ctx)
		if err != nil {
			return 0, err
		}
		d.mu.Lock()
		u, ok := d.urls[k]
		d.mu.Unlock()
		if !ok {
			return 0, errs.New(errs.Unavailable, "", "no longer in the download plan")
		}
		n, err := d.get(ctx, run, u, buf)
		var se *statusError
		if errors.As(err, &se) && se.code == http.StatusForbidden && renewed < 2 {
			if err := d.refresh(ctx, gen); err != nil {
				return n, err
			}
			continue
		}
		return n, err
	}
}

// statusError is an unexpected HTTP status.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

var s3Code = regexp.MustCompile(`<Code>([^<]{1,64})</Code>`)

// redact drops the query (the presigned signature) of a URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexByte(raw, '?'); i >= 0 {
			return raw[:i]
		}
		return raw
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}

var errStalled = fmt.Errorf("no data for %v", stallTimeout)

// get fetches the consecutive pieces run with one ranged GET of rawURL,
// verifying each as it arrives, and reports how many it verified.
func (d *downloader) get(ctx context.Context, run []int, rawURL string, buf []byte) (int, error) {
	off, _ := d.span(run[0])
	end, last := d.span(run[len(run)-1])
	end += last
	where := redact(rawURL)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(stallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, errs.New(errs.Internal, "", "bad source URL %s", where)
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end-1))
	resp, err := d.o.HTTPClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if cause := context.Cause(ctx); cause == errStalled {
			err = cause
		}
		msg := strings.ReplaceAll(err.Error(), rawURL, where)
		return 0, errs.New(errs.Unavailable, "", "GET %s: %s", where, msg)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			if err := checkContentRange(cr, off, end-off, d.size); err != nil {
				return 0, errs.New(errs.DataLoss, "", "GET %s: %v", where, err)
			}
		}
	case http.StatusOK: // the whole object
		if off != 0 || (resp.ContentLength >= 0 && resp.ContentLength != d.size) {
			return 0, errs.New(errs.Unavailable, "", "GET %s ignored the range of piece %d", where, run[0])
		}
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		msg := fmt.Sprintf("GET %s: %s", where, resp.Status)
		if m := s3Code.FindSubmatch(b); m != nil {
			msg += " (" + string(m[1]) + ")"
		}
		return 0, &statusError{code: resp.StatusCode, msg: msg}
	}
	for done, i := range run {
		w := d.newPieceWriter(i, buf)
		for w.got < w.n {
			m, err := resp.Body.Read(w.space())
			if m > 0 {
				stall.Reset(stallTimeout)
				if err := w.add(m); err != nil {
					return done, err
				}
			}
			if err != nil {
				if err == io.EOF && w.got == w.n {
					break
				}
				got := w.abort()
				if cause := context.Cause(ctx); cause == errStalled {
					err = cause
				} else if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return done, errs.New(errs.Unavailable, "", "GET %s: piece %d: %d of %d bytes: %v", where, i, got, w.n, err)
			}
		}
		if err := w.verify(where); err != nil {
			return done, err
		}
	}
	return len(run), nil
}

// checkContentRange checks "bytes first-last/size" against the request.
func checkContentRange(cr string, off, n, size int64) error {
	var first, last int64
	var total string
	if _, err := fmt.Sscanf(strings.Replace(cr, "/", " ", 1), "bytes %d-%d %s", &first, &last, &total); err != nil {
		return fmt.Errorf("bad Content-Range %q", cr)
	}
	if first != off || last != off+n-1 {
		return fmt.Errorf("Content-Range %q, asked for bytes %d-%d", cr, off, off+n-1)
	}
	if total != "*" {
		if t, err := strconv.ParseInt(total, 10, 64); err != nil || t != size {
			return fmt.Errorf("the object has %s bytes, not %d", total, size)
		}
	}
	return nil
}

// readRange fetches piece i through vmappd.
func (d *downloader) readRange(ctx context.Context, i int, buf []byte) error {
	off, n := d.span(i)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(stallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	classify := func(err error) error {
		if cause := context.Cause(ctx); cause == errStalled {
			return errs.New(errs.Unavailable, "", "%v", cause)
		}
		err = errs.FromStatus(err)
		switch errs.ClassOf(err) {
		case errs.FailedPrecondition, errs.NotFound, errs.PermissionDenied, errs.Unauthenticated, errs.InvalidArgument:
			return fatal(err) // it won't get better
		}
		return err
	}
	stream, err := d.svc.ReadRange(ctx, &pb.ReadRangeRequest{
		Gallery: d.gallery, Application: d.app, Version: d.version, Kind: d.o.Kind, Region: d.o.Region,
		Offset: off, Length: n,
	})
	if err != nil {
		return classify(err)
	}
	w := d.newPieceWriter(i, buf)
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			w.abort()
			return classify(err)
		}
		stall.Reset(stallTimeout)
		if r.Offset != off+w.got || w.got+int64(len(r.Data)) > n {
			got := w.abort()
			return errs.New(errs.DataLoss, "", "ReadRange sent bytes %d+%d, expected from %d of %d+%d", r.Offset, len(r.Data), off+got, off, n)
		}
		if err := w.write(r.Data); err != nil {
			return err
		}
	}
	if w.got != n {
		got := w.abort()
		return errs.New(errs.Unavailable, "", "ReadRange ended after %d of %d bytes", got, n)
	}
	return w.verify("ReadRange")
}

// pieceWriter writes a piece into the partial file as it arrives: bytes
// are read into its chunk buffer (space, add), hashed at once while in the
// CPU's cache, and written a chunk at a time; progress counts them.
type pieceWriter struct {
	d      *downloader
	i      int
	off, n int64 // the piece's span
	got    int64 // bytes received and hashed
	buf    []byte
	fill   int  // bytes of buf not written yet
	cached bool // a chunk went through the page cache
	h      hash.Hash
}

// newPieceWriter starts piece i with buf, a worker's chunk buffer.
func (d *downloader) newPieceWriter(i int, buf []byte) *pieceWriter {
	off, n := d.span(i)
	return &pieceWriter{d: d, i: i, off: off, n: n, buf: buf, h: d.pieceHash(i)}
}

// pieceHash returns the hash that verifies piece i: a fresh sha256, or
// with a chain the whole file's, resumed where the piece starts.
func (d *downloader) pieceHash(i int) hash.Hash {
	if d.chain == nil {
		return sha256.New()
	}
	var cv []byte // nil: the start of the file
	if i > 0 {
		cv = d.chain[i-1]
	}
	off, _ := d.span(i)
	return shachain.Resume(cv, off)
}

// checkPiece checks piece i's hash h, which read it from from.
func (d *downloader) checkPiece(i int, h hash.Hash, from string) error {
	switch {
	case d.chain == nil:
		if sum := h.Sum(nil); !bytes.Equal(sum, d.sums[i]) {
			return errs.New(errs.DataLoss, "", "piece %d from %s has sha256 %x, not %x", i, from, sum, d.sums[i])
		}
	case i == len(d.sums)-1:
		if sum := hex.EncodeToString(h.Sum(nil)); sum != d.sha {
			return errs.New(errs.DataLoss, "", "piece %d (the last) from %s ends the file's sha256 as %s, not %s", i, from, sum, d.sha)
		}
	default:
		if cv := shachain.Value(h); !bytes.Equal(cv, d.chain[i]) {
			return errs.New(errs.DataLoss, "", "piece %d from %s leaves the file's sha256 chaining value at %x, not %x", i, from, cv, d.chain[i])
		}
	}
	return nil
}

// space is where the piece's next bytes go; add(m) takes m bytes read
// into it.
func (w *pieceWriter) space() []byte {
	return w.buf[w.fill:min(int64(len(w.buf)), int64(w.fill)+w.n-w.got)]
}

func (w *pieceWriter) add(m int) error {
	if w.d.moved.Add(int64(m)) == int64(m) { // the download's first bytes
		w.d.firstByte.Store(time.Now().UnixNano())
	}
	w.h.Write(w.buf[w.fill : w.fill+m])
	w.fill += m
	w.got += int64(m)
	w.d.done.Add(int64(m))
	if w.fill == len(w.buf) || w.got == w.n {
		return w.flush()
	}
	return nil
}

// write takes p, copying it into the chunk buffer; p must fit in what is
// left of the piece (readRange checks each message against the span).
func (w *pieceWriter) write(p []byte) error {
	for len(p) > 0 {
		m := copy(w.space(), p)
		p = p[m:]
		if err := w.add(m); err != nil {
			return err
		}
	}
	return nil
}

// flush writes the chunk buffer to the file. (Writing it in the
// background while a second buffer fills was measured no faster.)
func (w *pieceWriter) flush() error {
	at := w.off + w.got - int64(w.fill)
	cached, err := w.d.writeAt(w.buf[:w.fill], at)
	w.fill = 0
	w.cached = w.cached || cached
	if err != nil {
		w.abort()
		return fatal(w.d.localErr(err, "write %s", w.d.partial))
	}
	return nil
}

// writeAt writes p at off: with direct I/O when the file has it and p is
// aligned for it, else through the page cache (cached).
func (d *downloader) writeAt(p []byte, off int64) (cached bool, err error) {
	if d.direct != nil && !d.noDirect.Load() && isAligned(p, off) {
		_, err := d.direct.WriteAt(p, off)
		if !errors.Is(err, syscall.EINVAL) {
			return false, err
		}
		// The file system refuses direct I/O after all.
		d.noDirect.Store(true)
	}
	_, err = d.f.WriteAt(p, off)
	return true, err
}

// abort takes the piece's bytes back out of the progress.
// It returns the bytes it took back.
func (w *pieceWriter) abort() int64 {
	got := w.got
	w.d.done.Add(-got)
	w.got, w.fill = 0, 0
	return got
}

// verify checks the piece and marks it verified.
func (w *pieceWriter) verify(from string) error {
	if err := w.d.checkPiece(w.i, w.h, from); err != nil {
		w.abort()
		return err
	}
	if w.cached {
		startWriteback(w.d.f, w.off, w.got)
	}
	w.d.markVerified(w.i)
	return nil
}
