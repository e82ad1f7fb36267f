package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	"github.com/vmapp/vmapp/state"
)

// work runs one attempt at rec: a copy, or a delete of an unwanted replica.
func (r *Replicator) work(ctx context.Context, key string, rec *statepb.Replica) {
	var err error
	if rec.Phase == statepb.ReplicaPhase_REPLICA_PHASE_DELETING {
		err = r.remove(ctx, key, rec)
	} else {
		err = r.copy(ctx, key, rec)
	}
	if errors.Is(err, errGone) || ctx.Err() != nil {
		return // no longer wanted, or stopped: the record says where it stands
	}
	copying := rec.Phase != statepb.ReplicaPhase_REPLICA_PHASE_DELETING
	if err == nil {
		if copying {
			r.m.attempts.WithLabelValues(rec.Region, resultCompleted).Inc()
		}
		return
	}
	ctx = context.WithoutCancel(ctx) // record the failure even as the worker stops
	if copying {
		r.m.attempts.WithLabelValues(rec.Region, resultFailed).Inc()
	}
	cur, cerr := r.record(key)
	if cerr != nil || cur == nil {
		return
	}
	next := timestamppb.New(r.now().Add(r.backoff(cur.Attempts + 1)))
	cerr = r.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_ReplicaFailed{ReplicaFailed: &statepb.ReplicaFailed{Replica: state.RefOf(rec), Error: err.Error(), NextAttemptTime: next}}
	})
	if cerr == nil {
		r.log.Warn("replica attempt failed; will retry", "version", what(rec), "region", rec.Region, "replica", rec.Index,
			"attempts", cur.Attempts+1, "retry_at", next.AsTime(), "err", err)
	}
}

func what(rec *statepb.Replica) string {
	return fmt.Sprintf("%s/%s/%s %s", rec.Gallery, rec.Application, rec.Version, rec.Kind.Label())
}

// source is where a replica's bytes come from.
type source struct {
	store    blob.Store
	key      string
	region   string
	endpoint int32
	seed     string // record key of the region's replica 0, when copying from it
}

func (r *Replicator) sourceOf(rec *statepb.Replica, m *statepb.Manifest) (source, error) {
	if rec.Index == 0 {
		st, err := r.store(m.Region, int(m.Endpoint))
		return source{store: st, key: m.ObjectKey, region: m.Region, endpoint: m.Endpoint}, err
	}
	seed, err := r.record(seedKey(rec))
	if err != nil {
		return source{}, err
	}
	if seed == nil || seed.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
		return source{}, errs.New(errs.Unavailable, "", "replica 0 of region %s is not completed yet", rec.Region)
	}
	st, err := r.store(rec.Region, int(seed.Endpoint))
	return source{store: st, key: seed.ObjectKey, region: rec.Region, endpoint: seed.Endpoint, seed: seedKey(rec)}, err
}

// copy copies and verifies one replica, resuming its multipart upload.
func (r *Replicator) copy(ctx context.Context, key string, rec *statepb.Replica) error {
	m, err := r.cat.Manifest(ctx, rec.Tenant, rec.Gallery, rec.Application, rec.Version, rec.Kind)
	if err != nil {
		return fmt.Errorf("read the manifest: %w", err)
	}
	src, err := r.sourceOf(rec, m)
	if err != nil {
		return err
	}
	dst, err := r.store(rec.Region, int(rec.Endpoint))
	if err != nil {
		return err
	}
	serverSide := src.region == rec.Region && src.endpoint == rec.Endpoint
	cross := src.region != rec.Region

	ref := state.RefOf(rec)
	err = r.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_ReplicaStarted{ReplicaStarted: &statepb.ReplicaStarted{Replica: ref}}
	})
	if err != nil {
		return err // a refusal: changed since it was dispatched
	}
	if rec, err = r.record(key); err != nil || rec == nil {
		return errors.Join(err, errGone)
	}
	if rec.MultipartId == "" {
		// Not cancelled half-way: an upload the store made must be recorded,
		// or nothing would ever abort it.
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		id, err := dst.NewMultipart(nctx, rec.ObjectKey, map[string]string{"Vmapp-Sha256": m.Sha256})
		cancel()
		if err != nil {
			return fmt.Errorf("start the copy on %s: %w", dst.Endpoint(), err)
		}
		err = r.propose(ctx, func(c *statepb.Command) {
			c.Op = &statepb.Command_ReplicaMultipart{ReplicaMultipart: &statepb.ReplicaMultipart{Replica: ref, MultipartId: id}}
		})
		if err != nil {
			dst.AbortMultipart(context.WithoutCancel(ctx), rec.ObjectKey, id)
			return err
		}
		rec.MultipartId, rec.Parts, rec.BytesDone = id, nil, 0
	}
	uploadID := rec.MultipartId
	done := map[int32]bool{}
	for _, p := range rec.Parts {
		done[p.Number] = true
	}

	limiters := []*rate.Limiter{r.overall, r.perEP[endpointName(rec.Region, int(rec.Endpoint))]}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.o.PartConcurrency)
	for i := range m.PieceEtag {
		n := int32(i + 1)
		if done[n] {
			continue
		}
		off := int64(i) * m.PieceSize
		size := min(m.PieceSize, m.SizeBytes-off)
		g.Go(func() error {
			var p blob.Part
			var err error
			if serverSide {
				p, err = dst.CopyPart(gctx, rec.ObjectKey, uploadID, int(n), src.key, off, size)
			} else {
				var body io.ReadCloser
				if body, err = src.store.Get(gctx, src.key, off, size); err == nil {
					p, err = dst.PutPart(gctx, rec.ObjectKey, uploadID, int(n), limited(gctx, body, limiters), size, m.PieceSha256[i])
					body.Close()
				}
			}
			if err != nil {
				return r.partError(ctx, key, rec, src, err, n)
			}
			if p.ETag != m.PieceEtag[i] {
				return errs.New(errs.DataLoss, "", "part %d of %s on %s has store ETag %s, the source's is %s", n, rec.ObjectKey, dst.Endpoint(), p.ETag, m.PieceEtag[i])
			}
			done := &statepb.ReplicaPartCopied{Replica: ref, MultipartId: uploadID, Part: &statepb.Part{Number: n, Etag: p.ETag, SizeBytes: size}}
			if !serverSide && cross {
				done.CrossRegionBytes = size
			} else if !serverSide {
				done.InRegionBytes = size
			}
			err = r.propose(ctx, func(c *statepb.Command) {
				c.Op = &statepb.Command_ReplicaPartCopied{ReplicaPartCopied: done}
			})
			r.m.bytes.WithLabelValues(pathLabel(serverSide, cross)).Add(float64(size))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return r.complete(ctx, key, dst, m)
}

func pathLabel(serverSide, cross bool) string {
	switch {
	case serverSide:
		return "server_side"
	case cross:
		return "cross_region"
	}
	return "in_region"
}

// partError explains a failed part. A missing source replica is sent back
// to be copied again; a vanished multipart upload starts the copy over.
func (r *Replicator) partError(ctx context.Context, key string, rec *statepb.Replica, src source, err error, n int32) error {
	if !errs.Is(err, errs.NotFound) || ctx.Err() != nil {
		return fmt.Errorf("copy part %d: %w", n, err)
	}
	if _, serr := src.store.Stat(ctx, src.key); errs.Is(serr, errs.NotFound) {
		if src.seed != "" {
			if seed, _ := r.record(src.seed); seed != nil {
				r.reset(ctx, seed, "missing: it disappeared while other replicas were copied from it", nil)
			}
		}
		return errs.Wrap(errs.NotFound, err, "copy part %d: the source %s is missing", n, src.key)
	}
	r.restart(ctx, rec, false, "")
	return errs.Wrap(errs.Unavailable, err, "copy part %d: the store lost the upload; starting the replica over", n)
}

// complete joins the parts and verifies the replica against the manifest.
func (r *Replicator) complete(ctx context.Context, key string, dst blob.Store, m *statepb.Manifest) error {
	rec, err := r.record(key)
	if err != nil {
		return err
	}
	if rec == nil || rec.Phase == statepb.ReplicaPhase_REPLICA_PHASE_DELETING {
		return errGone
	}
	parts := make([]blob.Part, 0, len(rec.Parts))
	for _, p := range rec.Parts {
		parts = append(parts, blob.Part{Number: int(p.Number), ETag: p.Etag, Size: p.SizeBytes})
	}
	slices.SortFunc(parts, func(a, b blob.Part) int { return a.Number - b.Number })
	info, err := dst.CompleteMultipart(ctx, rec.ObjectKey, rec.MultipartId, parts)
	if errs.Is(err, errs.NotFound) { // completed before a crash?
		info, err = dst.Stat(ctx, rec.ObjectKey)
		if errs.Is(err, errs.NotFound) {
			r.restart(ctx, rec, false, "")
			return errs.Wrap(errs.Unavailable, err, "the store lost the upload of %s; starting the replica over", rec.ObjectKey)
		}
	}
	if err != nil {
		return fmt.Errorf("complete %s on %s: %w", rec.ObjectKey, dst.Endpoint(), err)
	}
	if problem := verify(info, m); problem != "" {
		dst.Delete(ctx, rec.ObjectKey)
		r.restart(ctx, rec, false, "")
		return errs.New(errs.DataLoss, "", "replica %s on %s %s; copying it again", rec.ObjectKey, dst.Endpoint(), problem)
	}
	damage := ""
	if cur, _ := r.record(key); cur != nil {
		damage = cur.Damage
	}
	err = r.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_ReplicaCompleted{ReplicaCompleted: &statepb.ReplicaCompleted{Replica: state.RefOf(rec), Etag: info.ETag, SizeBytes: m.SizeBytes}}
	})
	if err != nil {
		return err
	}
	r.log.Info("replica completed", "version", what(rec), "region", rec.Region, "replica", rec.Index, "endpoint", dst.Endpoint(), "bytes", m.SizeBytes)
	if damage != "" {
		r.m.repaired.WithLabelValues(rec.Region).Inc()
		r.log.Info("damaged replica repaired", "version", what(rec), "region", rec.Region, "replica", rec.Index, "damage", damage)
	} else {
		r.observeLag(ctx, rec)
	}
	return nil
}

// verify compares a stored replica with the manifest; "" when sound.
func verify(info blob.Info, m *statepb.Manifest) string {
	switch {
	case info.Size != m.SizeBytes:
		return fmt.Sprintf("has %d bytes, not %d", info.Size, m.SizeBytes)
	case info.ETag != m.ObjectEtag:
		return fmt.Sprintf("has store ETag %s, not the source's %s", info.ETag, m.ObjectEtag)
	}
	return ""
}

// reset sends a completed replica found damaged (why) back to be copied
// from scratch. With completed set, only the copy completed then is.
func (r *Replicator) reset(ctx context.Context, rec *statepb.Replica, why string, completed *timestamppb.Timestamp) error {
	err := r.propose(context.WithoutCancel(ctx), func(c *statepb.Command) {
		c.Op = &statepb.Command_ReplicaRestart{ReplicaRestart: &statepb.ReplicaRestart{Replica: state.RefOf(rec), Pending: true, Reason: why, Damage: why, IfCompleted: completed}}
	})
	r.Poke()
	return err
}

// restart forgets a replica's multipart upload (and with pending, sends it
// back to Pending from scratch).
func (r *Replicator) restart(ctx context.Context, rec *statepb.Replica, pending bool, why string) error {
	return r.propose(context.WithoutCancel(ctx), func(c *statepb.Command) {
		c.Op = &statepb.Command_ReplicaRestart{ReplicaRestart: &statepb.ReplicaRestart{Replica: state.RefOf(rec), Pending: pending, Reason: why}}
	})
}

// remove deletes an unwanted replica's object, then its record.
func (r *Replicator) remove(ctx context.Context, key string, rec *statepb.Replica) error {
	if err := r.deleteObjects(ctx, rec); err != nil {
		return err
	}
	return r.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_ReplicaRemoved{ReplicaRemoved: &statepb.ReplicaRemoved{Replica: state.RefOf(rec), OnlyDeleting: true}}
	})
}

func (r *Replicator) deleteObjects(ctx context.Context, rec *statepb.Replica) error {
	st, err := r.store(rec.Region, int(rec.Endpoint))
	if err != nil {
		return err
	}
	if rec.MultipartId != "" {
		if err := st.AbortMultipart(ctx, rec.ObjectKey, rec.MultipartId); err != nil {
			return fmt.Errorf("abort the copy of %s on %s: %w", rec.ObjectKey, st.Endpoint(), err)
		}
	}
	if err := removeObject(ctx, st, rec.ObjectKey); err != nil {
		return fmt.Errorf("delete %s on %s: %w", rec.ObjectKey, st.Endpoint(), err)
	}
	return nil
}

// limited paces a reader by the limiters that are set.
func limited(ctx context.Context, rd io.Reader, ls []*rate.Limiter) io.Reader {
	var set []*rate.Limiter
	for _, l := range ls {
		if l != nil {
			set = append(set, l)
		}
	}
	if len(set) == 0 {
		return rd
	}
	return &pacedReader{ctx: ctx, r: rd, ls: set}
}

type pacedReader struct {
	ctx context.Context
	r   io.Reader
	ls  []*rate.Limiter
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if n := p.ls[0].Burst(); len(b) > n {
		b = b[:n]
	}
	for _, l := range p.ls[1:] {
		if n := l.Burst(); len(b) > n {
			b = b[:n]
		}
	}
	n, err := p.r.Read(b)
	for _, l := range p.ls {
		if werr := l.WaitN(p.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}
