package replicator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	"github.com/vmapp/vmapp/state"
)

// readAttempts is how many times a check asks for what a store fails to
// serve before it decides whose fault it is: the store's (down) or the
// replica's (damaged).
const readAttempts = 3

// probeKey is an object vmapp never writes: a store that answers "no such
// key" for it is up.
const probeKey = "vmapp-probe/absent"

// Names of the checks, for metrics and logs.
const (
	checkRepair    = "repair"
	checkScrub     = "scrub"
	checkDeepScrub = "deep_scrub"
	checkReport    = "report"
)

// outcome is what a check of one replica found.
type outcome struct {
	problem  string // what is wrong with the replica; "" when nothing is
	err      error  // the check could not be made (the store is down): nothing is known
	verified int64  // bytes read back and found sound
}

// pieces is a range [from, to) of a manifest's pieces to read back.
type pieces struct{ from, to int }

var (
	noPieces = pieces{}
	// allPieces reads every piece: to is cut to the manifest's count.
	allPieces = pieces{0, math.MaxInt}
)

// check checks a completed replica: that it exists with the manifest's size
// and store ETag, and that the pieces ps read back with their sha256, at
// most as fast as pace allows (nil: unpaced).
//
// A store that fails to serve the replica again and again while it answers
// other requests holds a damaged replica: that is a problem (MinIO cuts the
// read short, or answers 503, for data that rotted on disk, and 500 for
// rotted metadata). A store that doesn't answer at all is down, and nothing
// is known of the replica.
func (r *Replicator) check(ctx context.Context, rec *statepb.Replica, m *statepb.Manifest, ps pieces, pace *rate.Limiter) outcome {
	st, err := r.store(rec.Region, int(rec.Endpoint))
	if err != nil {
		return outcome{err: err}
	}
	var info blob.Info
	err = r.retry(ctx, func() (err error) {
		info, err = st.Stat(ctx, rec.ObjectKey)
		return err
	})
	switch {
	case errs.Is(err, errs.NotFound):
		return outcome{problem: "missing"}
	case err != nil:
		return unreadable(ctx, st, rec, "its metadata", err)
	}
	if p := verify(info, m); p != "" {
		return outcome{problem: p}
	}
	ps.to = min(ps.to, len(m.PieceSha256))
	var o outcome
	for i, failures := ps.from, 0; i < ps.to; {
		n, bad, err := r.readPieces(ctx, st, rec, m, pieces{i, ps.to}, pace)
		for range n {
			o.verified += pieceLen(m, i)
			i++
		}
		switch {
		case bad != "":
			o.problem = bad
			return o
		case err == nil:
			continue
		case n > 0:
			failures = 0 // it moved on: a new piece, a new count
		}
		failures++
		if ctx.Err() != nil || !mayBeDamage(err) {
			o.err = err
			return o
		}
		if failures < readAttempts && r.pause(ctx, failures) {
			continue
		}
		u := unreadable(ctx, st, rec, fmt.Sprintf("piece %d", i), err)
		o.problem, o.err = u.problem, u.err
		return o
	}
	return o
}

// readPieces reads ps of the replica with one ranged GET, hashing each
// piece as it streams, and returns how many it found sound; then either
// the mismatch found or the error that stopped it, if any.
func (r *Replicator) readPieces(ctx context.Context, st blob.Store, rec *statepb.Replica, m *statepb.Manifest, ps pieces, pace *rate.Limiter) (int, string, error) {
	off := int64(ps.from) * m.PieceSize
	end := min(int64(ps.to)*m.PieceSize, m.SizeBytes)
	body, err := st.Get(ctx, rec.ObjectKey, off, end-off)
	if err != nil {
		return 0, "", err
	}
	defer body.Close()
	rd := limited(ctx, body, []*rate.Limiter{pace})
	h := sha256.New()
	for i := ps.from; i < ps.to; i++ {
		h.Reset()
		if _, err := io.CopyN(h, rd, pieceLen(m, i)); err != nil {
			if err == io.EOF {
				err = errs.New(errs.Unavailable, "", "the store ended the read of %s early", rec.ObjectKey)
			}
			return i - ps.from, "", err
		}
		if got := h.Sum(nil); !bytes.Equal(got, m.PieceSha256[i]) {
			return i - ps.from, fmt.Sprintf("piece %d has sha256 %x, not %x", i, got, m.PieceSha256[i]), nil
		}
	}
	return ps.to - ps.from, "", nil
}

func pieceLen(m *statepb.Manifest, i int) int64 {
	return min(m.PieceSize, m.SizeBytes-int64(i)*m.PieceSize)
}

// mayBeDamage reports whether a failed read may be the replica's fault: the
// store answered with a server error (MinIO's for data or metadata that
// fails its checksums), or cut the reply short. Refused credentials, a
// missing bucket or a full store are the store's.
func mayBeDamage(err error) bool {
	switch errs.ClassOf(err) {
	case errs.Unavailable, errs.Internal, errs.DataLoss, errs.NotFound:
		return true
	}
	return false
}

// retry runs fn until it succeeds, fails in a way a retry won't change,
// or has failed readAttempts times.
func (r *Replicator) retry(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || errs.Is(err, errs.NotFound) || !mayBeDamage(err) || attempt == readAttempts || !r.pause(ctx, attempt) {
			return err
		}
	}
}

// pause waits before attempt+1 (RetryBase times attempt); false when ctx
// ended.
func (r *Replicator) pause(ctx context.Context, attempt int) bool {
	t := time.NewTimer(time.Duration(attempt) * r.o.RetryBase)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// unreadable decides what a replica the store keeps failing to serve is:
// damaged when the store answers other requests — a stat of the object, or
// of a key that doesn't exist — and unknown when it answers nothing.
func unreadable(ctx context.Context, st blob.Store, rec *statepb.Replica, what string, err error) outcome {
	if ctx.Err() != nil || !answers(ctx, st, rec.ObjectKey) {
		return outcome{err: err}
	}
	return outcome{problem: fmt.Sprintf("%s can't be read (the store answers other requests): %v", what, err)}
}

// answers reports whether the store is up: it describes the object, or
// says that an object vmapp never writes doesn't exist.
func answers(ctx context.Context, st blob.Store, key string) bool {
	if _, err := st.Stat(ctx, key); err == nil {
		return true
	}
	_, err := st.Stat(ctx, probeKey)
	return errs.Is(err, errs.NotFound)
}

// condemn sends a completed replica found damaged back to be copied: it
// deletes the object (purging it where the store can't delete it, e.g. its
// metadata is what rotted) and resets the record, unless the record is no
// longer the copy that was checked. The caller holds the replica's lock.
func (r *Replicator) condemn(ctx context.Context, rec *statepb.Replica, problem, check string) {
	r.m.damage.WithLabelValues(rec.Region, check).Inc()
	r.log.Warn("replica damaged or missing; copying it again", "version", what(rec), "region", rec.Region, "replica", rec.Index, "check", check, "problem", problem)
	if st, err := r.store(rec.Region, int(rec.Endpoint)); err == nil {
		if err := removeObject(ctx, st, rec.ObjectKey); err != nil {
			// The copy writes over it, or fails saying why.
			r.log.Warn("could not delete the damaged replica", "version", what(rec), "region", rec.Region, "replica", rec.Index, "err", err)
		}
	}
	r.reset(ctx, rec, problem, rec.CompleteTime)
}

// removeObject deletes key; when the store can't (it fails to read the
// object's metadata to delete it), it purges it if it can.
func removeObject(ctx context.Context, st blob.Store, key string) error {
	err := st.Delete(ctx, key)
	if p, ok := st.(blob.Purger); ok && err != nil && ctx.Err() == nil {
		if perr := p.Purge(ctx, key); perr == nil {
			return nil
		}
	}
	return err
}

// sameCopy reports whether cur is still the completed copy that rec was.
func sameCopy(cur, rec *statepb.Replica) bool {
	return cur != nil && cur.Phase == statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED && proto.Equal(cur.CompleteTime, rec.CompleteTime)
}

// markDeepVerified records that the completed copy rec was read back sound.
func (r *Replicator) markDeepVerified(ctx context.Context, rec *statepb.Replica) {
	r.propose(context.WithoutCancel(ctx), func(c *statepb.Command) {
		c.Op = &statepb.Command_ReplicaVerified{ReplicaVerified: &statepb.ReplicaVerified{Replica: state.RefOf(rec), Deep: true, IfCompleted: rec.CompleteTime}}
	})
}

// keyLocks serializes the checks of one replica (repair, scrub, reports), so
// that damage is acted on once.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch      chan struct{}
	waiters int
}

// lock takes the lock of key; release it with the function returned.
func (l *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	k := l.m[key]
	if k == nil {
		k = &keyLock{ch: make(chan struct{}, 1)}
		l.m[key] = k
	}
	k.waiters++
	l.mu.Unlock()
	drop := func() {
		l.mu.Lock()
		if k.waiters--; k.waiters == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case k.ch <- struct{}{}:
		return func() { <-k.ch; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
}
