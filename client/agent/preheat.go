package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Preheat: the goal state's Preheat lists versions vmappd asks this
// machine to hold before a rollout (vmapp version preheat). An agent that
// serves peers downloads each package into its cache, as it would for an
// install (verified piece by piece, from peers first), and announces it; a
// later install of the version takes it from the cache. An agent that
// serves no peers has no cache and ignores them.

// preheatKey is the cache key of a preheated package (the machine's own
// tenant).
func preheatKey(p *pb.GoalPreheat) string {
	return cacheEntry{Gallery: p.Gallery, Application: p.Application, Version: p.Version, Kind: "PACKAGE"}.key()
}

// preheatLoop fetches the preheats of every new goal state, and again after
// a failure (backing off as retries of installs do), until ctx ends.
func (a *agent) preheatLoop(ctx context.Context) {
	fails := 0
	for {
		var retry <-chan time.Time
		if fails > 0 {
			retry = a.clock.After(backoff(a.cfg.RetryBase, a.cfg.RetryMax, fails))
		}
		select {
		case <-ctx.Done():
			return
		case <-a.preheatCh:
		case <-retry:
		}
		gs, _ := a.latestGoal()
		if err := a.preheat(ctx, gs.GetPreheat()); err != nil && ctx.Err() == nil {
			fails++
			a.log.Warn("preheat: a download failed; trying again later", "err", err, "failures", fails)
			continue
		}
		fails = 0
	}
}

// preheat fetches into the cache the packages of ps it doesn't hold.
func (a *agent) preheat(ctx context.Context, ps []*pb.GoalPreheat) error {
	var errs []error
	for _, p := range ps {
		if a.peers.holds(preheatKey(p), p.Package.GetSha256()) {
			continue
		}
		if err := a.preheatOne(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// preheatOne downloads p's package beside the cache and adds it.
func (a *agent) preheatOne(ctx context.Context, p *pb.GoalPreheat) error {
	gs, _ := a.latestGoal()
	tmp := filepath.Join(a.peers.dir, p.Package.GetSha256()+".preheat")
	defer os.Remove(tmp)
	o := client.DownloadOptions{Region: gs.GetRegion(), MachineID: a.cfg.Machine, Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE,
		HTTPClient: a.cfg.HTTPClient, Logger: a.log.With("preheat", p.Gallery+"/"+p.Application+"/"+p.Version),
		NoPeers: a.cfg.NoPeers, Cap: a.cfg.DownloadCap, OnBadPeer: a.m.badPeer}
	start := a.clock.Now()
	unshare := a.shareOptions(&o, cacheEntry{Gallery: p.Gallery, Application: p.Application, Version: p.Version, Kind: "PACKAGE"})
	plan, err := a.cl.Download(ctx, p.Gallery, p.Application, p.Version, tmp, o)
	unshare()
	a.countDownload(ctx, "package", p.Package.GetSizeBytes(), start, err)
	if err != nil {
		return err
	}
	if plan.Sha256 != p.Package.GetSha256() { // the version changed since: the next goal state says
		return nil
	}
	if err := a.peers.add(plan, "", tmp); err != nil {
		return err
	}
	a.log.Info("preheat: holding a version for peers", "artifact", p.Gallery+"/"+p.Application+"/"+p.Version, "bytes", plan.SizeBytes)
	return nil
}

// holds tells whether the cache holds key with sha256 sum, unchanged since
// it was verified.
func (p *peers) holds(key, sum string) bool {
	p.mu.Lock()
	e, ok := p.entries[key]
	p.mu.Unlock()
	return ok && e.Sha256 == sum && !p.stale(e)
}

// fromCache links the cached package of sha256 sum and size into dest when
// the cache holds it unchanged and dest doesn't exist: the download then
// verifies it whole instead of fetching it.
func (a *agent) fromCache(sum string, size int64, dest string) {
	if a.peers == nil || sum == "" {
		return
	}
	src := filepath.Join(a.peers.dir, sum)
	fi, err := os.Stat(src)
	if err != nil || fi.Size() != size {
		return
	}
	if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
		return
	}
	if err := os.Link(src, dest); err == nil {
		a.m.cacheHits.Inc()
		a.log.Info("download: the package is in the cache (preheated or kept); verifying it", "sha256", sum, "file", dest)
	}
}
