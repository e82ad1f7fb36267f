package replicator

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

const (
	// reportWindow is how long a piece found sound is not read again for
	// another report.
	reportWindow = 5 * time.Minute
	// reportSlots bounds the reported pieces read at once.
	reportSlots = 4
	// reportTimeout bounds the verification of one report, which goes on
	// when the reporter hangs up.
	reportTimeout = 2 * time.Minute
)

// reports verifies downloaders' reports of damaged replicas.
type reports struct {
	flight singleflight.Group // one verification of a piece at a time
	slots  chan struct{}

	mu    sync.Mutex
	sound map[string]time.Time // replica key + piece -> when it was found sound
}

// Verdict is what vmappd made of a report of damage, and why.
type Verdict struct {
	Verdict pb.ReplicaVerdict
	Detail  string
}

// VerifyReport verifies a downloader's report that piece of replica index
// of v's artifact k in region failed verification: it reads that piece from
// the replica and hashes it. A damaged piece, or one the store can't serve
// while it answers other requests, sends the replica back to be copied; a
// sound one changes nothing. Reports of the same piece share one
// verification, and a piece found sound isn't read again for reportWindow.
// The caller has checked that the replica and the piece exist in v's
// target regions and manifest; reporter and problem are for the log.
func (r *Replicator) VerifyReport(ctx context.Context, v *pb.GalleryApplicationVersion, k pb.ArtifactKind, region string, index int32, piece int, reporter, problem string) (Verdict, error) {
	key := replicaKey(v.Tenant, v.Gallery, v.Application, v.Name, k, region, index)
	id := key + "\x00" + strconv.Itoa(piece)
	log := r.log.With("version", v.Gallery+"/"+v.Application+"/"+v.Name+" "+k.Label(), "region", region, "replica", index, "piece", piece, "reporter", reporter)
	if r.reports.recent(id, r.now()) {
		r.m.reports.WithLabelValues(verdictLabel(pb.ReplicaVerdict_REPLICA_VERDICT_RECENTLY_VERIFIED)).Inc()
		return Verdict{pb.ReplicaVerdict_REPLICA_VERDICT_RECENTLY_VERIFIED, "the piece was read back sound moments ago"}, nil
	}
	log.Info("a downloader reports a damaged replica; reading the piece back", "problem", problem)
	ch := r.reports.flight.DoChan(id, func() (any, error) {
		vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportTimeout)
		defer cancel()
		return r.verifyPiece(vctx, key, piece, id)
	})
	select {
	case <-ctx.Done():
		return Verdict{}, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			log.Warn("a reported replica could not be checked", "err", res.Err)
			return Verdict{}, res.Err
		}
		vd := res.Val.(Verdict)
		r.m.reports.WithLabelValues(verdictLabel(vd.Verdict)).Inc()
		log.Info("reported replica checked", "verdict", verdictLabel(vd.Verdict), "detail", vd.Detail)
		return vd, nil
	}
}

func (r *Replicator) verifyPiece(ctx context.Context, key string, piece int, id string) (Verdict, error) {
	select {
	case r.reports.slots <- struct{}{}:
		defer func() { <-r.reports.slots }()
	case <-ctx.Done():
		return Verdict{}, errs.Wrap(errs.Unavailable, ctx.Err(), "too many reports being verified")
	}
	rec, err := r.record(key)
	if err != nil {
		return Verdict{}, err
	}
	if rec == nil || rec.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
		return Verdict{pb.ReplicaVerdict_REPLICA_VERDICT_NOT_COMPLETED, "the replica is not completed: it is being copied (again) or deleted"}, nil
	}
	m, err := r.cat.Manifest(ctx, rec.Tenant, rec.Gallery, rec.Application, rec.Version, rec.Kind)
	if err != nil {
		return Verdict{}, err
	}
	o, checked, err := r.checkAndAct(ctx, rec, m, pieces{piece, piece + 1}, nil, checkReport)
	switch {
	case err != nil:
		return Verdict{}, err
	case !checked:
		return Verdict{pb.ReplicaVerdict_REPLICA_VERDICT_NOT_COMPLETED, "the replica was copied again meanwhile"}, nil
	case o.err != nil:
		return Verdict{}, errs.Wrap(errs.Unavailable, o.err, "the replica's store can't be reached to verify the report")
	case o.problem != "":
		return Verdict{pb.ReplicaVerdict_REPLICA_VERDICT_DAMAGED, o.problem}, nil
	}
	r.reports.found(id, r.now())
	return Verdict{pb.ReplicaVerdict_REPLICA_VERDICT_SOUND, "piece " + strconv.Itoa(piece) + " read back with its sha256"}, nil
}

// recent reports whether piece id was found sound within reportWindow,
// forgetting older ones.
func (rs *reports) recent(id string, now time.Time) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for k, t := range rs.sound {
		if now.Sub(t) >= reportWindow {
			delete(rs.sound, k)
		}
	}
	_, ok := rs.sound[id]
	return ok
}

func (rs *reports) found(id string, now time.Time) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.sound == nil {
		rs.sound = map[string]time.Time{}
	}
	rs.sound[id] = now
}

// verdictLabel is a verdict's metric label: sound, damaged, ...
func verdictLabel(v pb.ReplicaVerdict) string {
	return strings.ToLower(strings.TrimPrefix(v.String(), "REPLICA_VERDICT_"))
}
