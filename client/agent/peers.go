package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmapp/vmapp/client/download"
	"github.com/vmapp/vmapp/internal/atomicfile"
	"github.com/vmapp/vmapp/internal/grant"
	"github.com/vmapp/vmapp/internal/ratecap"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Serving peers. With Config.PeerListen the agent keeps a hard link of
// every package it downloaded and verified in CacheDir (named by its
// sha256, with a JSON record of what it is and the size and modification
// time it had when verified), serves those files over HTTP to machines
// presenting a grant of vmappd's for that artifact (download.PeerPath),
// and announces them to vmappd every third of the lease it gives. A file
// whose size or modification time changed since (an install command that
// wrote to its package) is not served.
//
// A package download in progress is served too, its verified pieces only
// (download.Share: each piece hashed again against the plan as it is read
// back, before a byte of it is sent), and announced with the bitmap of
// those pieces, at most every Config.PieceAnnounce as pieces are verified.
//
// Config.PeerMaxRate caps what each asking machine gets, on top of
// UploadCap's cap on what all of them get together.

// CacheDir is where, under the root's StateDir, the agent keeps what it
// serves to peers.
const CacheDir = "cache"

// DefaultPieceAnnounce is Config.PieceAnnounce's default.
const DefaultPieceAnnounce = time.Second

// cacheEntry is what the cache records of a file.
type cacheEntry struct {
	Tenant      string `json:"tenant,omitempty"`
	Gallery     string `json:"gallery"`
	Application string `json:"application"`
	Version     string `json:"version"`
	Kind        string `json:"kind"`
	Sha256      string `json:"sha256"`
	Size        int64  `json:"size"`
	ModTime     int64  `json:"modTime"` // UnixNano, when verified
}

func (e cacheEntry) key() string {
	return strings.Join([]string{e.Tenant, e.Gallery, e.Application, e.Version, e.Kind}, "\x00")
}

// peers is the agent's cache and peer server.
type peers struct {
	dir    string
	log    *slog.Logger
	upload *ratecap.Cap
	now    func() time.Time
	m      *metrics // nil in tests of the cache alone

	// max bounds the bytes the cache holds (0: no bound); protect tells
	// the keys it must keep whatever they weigh.
	max     int64
	protect func(key string) bool

	mu      sync.Mutex
	entries map[string]cacheEntry // by key
	used    map[string]time.Time  // by key: when last added or served
	keys    []ed25519.PublicKey   // vmappd's grant keys, from the last announcement
	changed chan struct{}         // kicks the announcer
	// shares are the package downloads in progress, by key.
	shares map[string]share
	pieces chan struct{} // a piece of a share was verified
	// perPeer caps what each asking machine gets (newCap, nil: no cap),
	// by tenant and machine; capped for as long as it has requests served.
	newCap  func() *ratecap.Cap
	perPeer map[string]*peerCap
}

// share is a download in progress, served to peers.
type share struct {
	e cacheEntry // ModTime unset
	s *download.Share
}

// peerCap is an asking machine's cap and its requests being served.
type peerCap struct {
	c *ratecap.Cap
	n int
}

func newPeers(root string, log *slog.Logger, upload *ratecap.Cap, now func() time.Time) (*peers, error) {
	p := &peers{dir: filepath.Join(root, StateDir, CacheDir), log: log, upload: upload, now: now,
		entries: map[string]cacheEntry{}, used: map[string]time.Time{}, changed: make(chan struct{}, 1),
		shares: map[string]share{}, pieces: make(chan struct{}, 1), perPeer: map[string]*peerCap{}}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return nil, err
	}
	recs, _ := filepath.Glob(filepath.Join(p.dir, "*.json"))
	for _, r := range recs {
		b, err := os.ReadFile(r)
		var e cacheEntry
		if err == nil {
			err = json.Unmarshal(b, &e)
		}
		if err != nil || p.stale(e) {
			os.Remove(r)
			os.Remove(strings.TrimSuffix(r, ".json"))
			continue
		}
		p.entries[e.key()] = e
		p.used[e.key()] = time.Unix(0, e.ModTime)
	}
	return p, nil
}

// stale tells whether e's file is gone or changed since it was verified.
func (p *peers) stale(e cacheEntry) bool {
	fi, err := os.Stat(filepath.Join(p.dir, e.Sha256))
	return err != nil || fi.Size() != e.Size || fi.ModTime().UnixNano() != e.ModTime
}

// add links the verified file path of plan's artifact into the cache.
func (p *peers) add(plan *pb.DownloadPlan, tenant, path string) error {
	e := cacheEntry{Tenant: tenant, Gallery: plan.Gallery, Application: plan.Application, Version: plan.Version,
		Kind: kindName(plan.Kind), Sha256: plan.Sha256, Size: plan.SizeBytes}
	dst := filepath.Join(p.dir, e.Sha256)
	if err := os.Remove(dst); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Link(path, dst); err != nil {
		return err
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return err
	}
	if fi.Size() != e.Size {
		os.Remove(dst)
		return fmt.Errorf("%s has %d bytes, not %d", path, fi.Size(), e.Size)
	}
	e.ModTime = fi.ModTime().UnixNano()
	b, _ := json.Marshal(e)
	if err := atomicfile.Write(dst+".json", b, 0o600); err != nil {
		return err
	}
	p.mu.Lock()
	p.entries[e.key()] = e
	p.used[e.key()] = p.now()
	p.mu.Unlock()
	p.evict(e.key())
	select {
	case p.changed <- struct{}{}:
	default:
	}
	return nil
}

func kindName(k pb.ArtifactKind) string { return strings.TrimPrefix(k.String(), "ARTIFACT_KIND_") }

// size is the bytes and number of the packages the cache holds.
func (p *peers) size() (bytes int64, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.entries {
		bytes += e.Size
	}
	return bytes, len(p.entries)
}

// held is what the cache holds, and the pieces verified of the downloads
// in progress that verified some, as announced.
func (p *peers) held() []*pb.HeldArtifact {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*pb.HeldArtifact
	ha := func(e cacheEntry) *pb.HeldArtifact {
		return &pb.HeldArtifact{Tenant: e.Tenant, Gallery: e.Gallery, Application: e.Application, Version: e.Version,
			Kind: pb.ArtifactKind(pb.ArtifactKind_value["ARTIFACT_KIND_"+e.Kind])}
	}
	for _, e := range p.entries {
		out = append(out, ha(e))
	}
	for k, sh := range p.shares {
		if _, whole := p.entries[k]; whole {
			continue
		}
		if bits, n := sh.s.Pieces(); n > 0 {
			h := ha(sh.e)
			h.Pieces = bits
			out = append(out, h)
		}
	}
	return out
}

// share serves the download in progress s of plan's artifact until the
// download ends (unshare).
func (p *peers) share(e cacheEntry, s *download.Share) {
	p.mu.Lock()
	p.shares[e.key()] = share{e: e, s: s}
	p.mu.Unlock()
}

func (p *peers) unshare(e cacheEntry) {
	p.mu.Lock()
	delete(p.shares, e.key())
	p.mu.Unlock()
}

// pieceVerified kicks the announcer for a piece of a share.
func (p *peers) pieceVerified() {
	select {
	case p.pieces <- struct{}{}:
	default:
	}
}

// shareOptions makes o serve the download of artifact e in progress to
// peers, when serving them; call the function returned when it ends.
func (a *agent) shareOptions(o *download.Options, e cacheEntry) func() {
	if a.peers == nil {
		return func() {}
	}
	o.OnShare = func(s *download.Share) {
		e.Sha256, e.Size = s.Sha256(), s.Size()
		a.peers.share(e, s)
	}
	o.OnPiece = a.peers.pieceVerified
	return func() { a.peers.unshare(e) }
}

// ServeHTTP serves a cached artifact's bytes (ranges too) to a machine
// whose grant names it.
func (p *peers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != download.PeerPath || r.Method != http.MethodGet {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	e, sh, who, status, why := p.authorize(r)
	if status != http.StatusOK {
		p.log.Warn("peer: refused a request", "from", r.RemoteAddr, "status", status, "why", why)
		p.count(status)
		http.Error(w, why, status)
		return
	}
	pc := p.capFor(who)
	defer p.uncap(who)
	cw := &cappedWriter{ResponseWriter: w, w: p.upload.Writer(r.Context(), pc.Writer(r.Context(), w))}
	defer func() {
		if p.m != nil {
			p.m.peerServed.Add(float64(cw.n))
		}
	}()
	if sh != nil {
		p.servePieces(cw, r, sh)
		return
	}
	f, err := os.Open(filepath.Join(p.dir, e.Sha256))
	if err != nil {
		p.count(http.StatusNotFound)
		http.Error(w, "not held", http.StatusNotFound)
		return
	}
	defer f.Close()
	p.mu.Lock()
	p.used[e.key()] = p.now()
	p.mu.Unlock()
	if fi, err := f.Stat(); err != nil || fi.Size() != e.Size || fi.ModTime().UnixNano() != e.ModTime {
		p.log.Warn("peer: a cached file changed since it was verified; not served", "sha256", e.Sha256)
		p.count(http.StatusNotFound)
		http.Error(w, "not held", http.StatusNotFound)
		return
	}
	p.count(http.StatusOK)
	http.ServeContent(cw, r, "", time.Time{}, f)
}

// servePieces serves the range r asks of a download in progress: only
// when every piece it touches is verified (else 404: the asker tries
// another source), each verified again as it is read (download.Share).
func (p *peers) servePieces(w http.ResponseWriter, r *http.Request, sh *download.Share) {
	off, n, ok := parseRange(r.Header.Get("Range"), sh.Size())
	if !ok || !sh.Covers(off, n) {
		p.count(http.StatusNotFound)
		http.Error(w, "those pieces are not held (a download in progress: ask for verified pieces, by range)", http.StatusNotFound)
		return
	}
	p.count(http.StatusOK)
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, sh.Size()))
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusPartialContent)
	if err := sh.WriteRange(w, off, n); err != nil && r.Context().Err() == nil {
		p.log.Warn("peer: stopped serving pieces of a download in progress", "share", sh.String(), "err", err)
	}
}

// parseRange parses a Range header of one range, "bytes=first-last" or
// "bytes=first-", of an artifact of size bytes.
func parseRange(h string, size int64) (off, n int64, ok bool) {
	spec, found := strings.CutPrefix(h, "bytes=")
	first, last, dash := strings.Cut(spec, "-")
	if !found || !dash || strings.Contains(last, ",") {
		return 0, 0, false
	}
	off, err := strconv.ParseInt(first, 10, 64)
	if err != nil || off < 0 || off >= size {
		return 0, 0, false
	}
	end := size - 1
	if last != "" {
		if end, err = strconv.ParseInt(last, 10, 64); err != nil || end < off {
			return 0, 0, false
		}
		end = min(end, size-1)
	}
	return off, end - off + 1, true
}

// capFor returns the cap of the asking machine who, counting a request;
// uncap ends it.
func (p *peers) capFor(who string) *ratecap.Cap {
	if p.newCap == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pc := p.perPeer[who]
	if pc == nil {
		pc = &peerCap{c: p.newCap()}
		p.perPeer[who] = pc
	}
	pc.n++
	return pc.c
}

func (p *peers) uncap(who string) {
	if p.newCap == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc := p.perPeer[who]; pc != nil {
		if pc.n--; pc.n == 0 {
			delete(p.perPeer, who)
		}
	}
}

// count counts a peer's request by the status it was answered.
func (p *peers) count(status int) {
	if p.m == nil {
		return
	}
	r := "served"
	switch status {
	case http.StatusOK:
	case http.StatusNotFound:
		r = "missing"
	default:
		r = "refused"
	}
	p.m.peerRequests.WithLabelValues(r).Inc()
}

// authorize checks r's grant against vmappd's keys and the artifact r
// names, and returns the cache entry, or the download in progress, and
// the asking machine (tenant and name).
func (p *peers) authorize(r *http.Request) (cacheEntry, *download.Share, string, int, string) {
	scheme, enc, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if scheme != download.GrantScheme || enc == "" {
		return cacheEntry{}, nil, "", http.StatusUnauthorized, "no grant: send Authorization: " + download.GrantScheme + " <grant from the download plan>"
	}
	p.mu.Lock()
	keys := p.keys
	p.mu.Unlock()
	g, err := grant.Check(enc, keys, p.now())
	if err != nil {
		return cacheEntry{}, nil, "", http.StatusForbidden, err.Error()
	}
	q := r.URL.Query()
	if q.Get("gallery") != g.Gallery || q.Get("application") != g.Application || q.Get("version") != g.Version || q.Get("kind") != kindName(g.Kind) {
		return cacheEntry{}, nil, "", http.StatusForbidden, fmt.Sprintf("the grant of machine %s is for %s/%s/%s %s, not %s/%s/%s %s", g.Machine,
			g.Gallery, g.Application, g.Version, kindName(g.Kind), q.Get("gallery"), q.Get("application"), q.Get("version"), q.Get("kind"))
	}
	who := g.Tenant + "/" + g.Machine
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tenant := range []string{g.GalleryTenant, ""} {
		if tenant == "" && g.GalleryTenant != g.Tenant {
			continue
		}
		k := cacheEntry{Tenant: tenant, Gallery: g.Gallery, Application: g.Application, Version: g.Version, Kind: kindName(g.Kind)}.key()
		if e, ok := p.entries[k]; ok {
			return e, nil, who, http.StatusOK, ""
		}
		if sh, ok := p.shares[k]; ok {
			return sh.e, sh.s, who, http.StatusOK, ""
		}
	}
	return cacheEntry{}, nil, "", http.StatusNotFound, "not held"
}

// cappedWriter writes a response's body through the upload cap, and counts
// it.
type cappedWriter struct {
	http.ResponseWriter
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *cappedWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// serve serves peers on l until ctx ends.
func (p *peers) serve(ctx context.Context, l net.Listener) {
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		p.log.Error("peer: serving stopped", "err", err)
	}
}

// announce tells vmappd what the cache holds and where it is served, every
// third of the lease and whenever the cache changes, until ctx ends; then
// it withdraws. It closes first once the first announcement was answered
// or failed.
func (a *agent) announce(ctx context.Context, p *peers, addr string, first chan<- struct{}) {
	dl := pb.NewDownloadServiceClient(a.cl.Conn())
	wait := 10 * time.Second
	for {
		r, err := dl.Announce(ctx, &pb.AnnounceRequest{Machine: a.cfg.Machine, Address: addr, Held: p.held()})
		if first != nil {
			close(first)
			first = nil
		}
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("peer: announcing to vmappd failed", "err", err)
			}
			wait = 10 * time.Second
		} else {
			keys := make([]ed25519.PublicKey, 0, len(r.GrantKeys))
			for _, k := range r.GrantKeys {
				keys = append(keys, ed25519.PublicKey(k))
			}
			p.mu.Lock()
			p.keys = keys
			p.mu.Unlock()
			wait = max(time.Second, r.Lease.AsDuration()/3)
		}
		select {
		case <-ctx.Done():
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			dl.Announce(wctx, &pb.AnnounceRequest{Machine: a.cfg.Machine})
			cancel()
			return
		case <-p.changed:
		case <-p.pieces: // pieces verified: those of PieceAnnounce together
			select {
			case <-ctx.Done():
			case <-a.clock.After(a.cfg.PieceAnnounce):
			}
		case <-a.clock.After(wait):
		}
	}
}

// startPeers opens the cache and starts serving and announcing it when
// Config.PeerListen is set.
func (a *agent) startPeers(ctx context.Context, wg *sync.WaitGroup) error {
	if a.cfg.PeerListen == "" || a.cfg.NoPeers {
		return nil
	}
	l, err := net.Listen("tcp", a.cfg.PeerListen)
	if err != nil {
		return fmt.Errorf("peer listen: %w", err)
	}
	addr := a.cfg.PeerAdvertise
	if addr == "" {
		addr = l.Addr().String()
		if ta, ok := l.Addr().(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
			l.Close()
			return fmt.Errorf("peer listen %s names no address peers can dial: give the one they reach this machine at (--peer-advertise)", a.cfg.PeerListen)
		}
	}
	limit, err := cacheLimit(a.cfg)
	if err != nil {
		l.Close()
		return err
	}
	if a.peers, err = newPeers(a.cfg.Root, a.log, a.cfg.UploadCap, a.clock.Now); err != nil {
		l.Close()
		return err
	}
	a.peers.max, a.peers.protect, a.peers.m = limit, a.inGoal, a.m
	if a.cfg.PeerMaxRate > 0 {
		a.peers.newCap = func() *ratecap.Cap { return ratecap.New(a.cfg.PeerMaxRate) }
	}
	registerCache(a.cfg.Registry, a.peers)
	a.log.Info("serving peers", "listen", l.Addr().String(), "advertise", addr, "cached", len(a.peers.held()))
	wg.Go(func() { a.peers.serve(ctx, l) })
	first := make(chan struct{})
	wg.Go(func() { a.announce(ctx, a.peers, addr, first) })
	wg.Go(func() { a.preheatLoop(ctx) })
	// Downloads start once vmappd knows this machine serves peers: a
	// first plan asked before would download outside the region's swarm,
	// every piece no peer holds yet from the stores.
	select {
	case <-first:
	case <-ctx.Done():
	case <-a.clock.After(firstAnnounceWait):
	}
	return nil
}

// firstAnnounceWait bounds how long the agent's start waits for its first
// announcement.
const firstAnnounceWait = 10 * time.Second

// cache keeps a verified download for peers, when serving them.
func (a *agent) cache(plan *pb.DownloadPlan, tenant, path string) {
	if a.peers == nil {
		return
	}
	if err := a.peers.add(plan, tenant, path); err != nil {
		a.log.Warn("peer: could not cache a download for peers", "file", path, "err", err)
	}
}

// evict removes the least recently used entries while the cache holds more
// than max bytes: never keep (just added), nor an entry protect keeps (a
// version of the goal state: installed, or being installed).
func (p *peers) evict(keep string) {
	if p.max <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	total := int64(0)
	var keys []string
	for k, e := range p.entries {
		total += e.Size
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return p.used[a].Compare(p.used[b]) })
	for _, k := range keys {
		if total <= p.max {
			return
		}
		if k == keep || (p.protect != nil && p.protect(k)) {
			continue
		}
		e := p.entries[k]
		os.Remove(filepath.Join(p.dir, e.Sha256) + ".json")
		os.Remove(filepath.Join(p.dir, e.Sha256))
		delete(p.entries, k)
		delete(p.used, k)
		total -= e.Size
		p.log.Info("peer: evicted from the cache (least recently used)", "artifact", e.Gallery+"/"+e.Application+"/"+e.Version, "bytes", e.Size, "cached", total, "max", p.max)
	}
}

// inGoal tells whether a cache key names a version of the goal state.
func (a *agent) inGoal(key string) bool {
	a.goalMu.Lock()
	gs := a.goal
	a.goalMu.Unlock()
	for _, ga := range gs.GetApplications() {
		for _, k := range []string{"PACKAGE", "CONFIGURATION"} {
			if key == (cacheEntry{Tenant: ga.Tenant, Gallery: ga.Gallery, Application: ga.Application, Version: ga.Version, Kind: k}).key() {
				return true
			}
		}
	}
	for _, p := range gs.GetPreheat() {
		if key == preheatKey(p) {
			return true
		}
	}
	return false
}

// cacheLimit is Config.CacheMax in bytes: CacheMaxPercent of root's disk
// when set.
func cacheLimit(cfg Config) (int64, error) {
	if cfg.CacheMaxPercent <= 0 {
		return cfg.CacheMax, nil
	}
	size, err := diskSize(cfg.Root)
	if err != nil {
		return 0, fmt.Errorf("cache max %g%%: %w", cfg.CacheMaxPercent, err)
	}
	return int64(float64(size) * cfg.CacheMaxPercent / 100), nil
}
