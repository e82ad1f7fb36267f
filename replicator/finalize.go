package replicator

import (
	"context"
	"errors"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// going tells whether rec's version is marked for deletion, or being
// finalized.
func (r *Replicator) going(rec *statepb.Replica) bool {
	r.mu.Lock()
	going := r.finalizing[versionPrefix(rec.Tenant, rec.Gallery, rec.Application, rec.Version)]
	r.mu.Unlock()
	r.db.View(context.Background(), func(tx *state.Tx) error {
		going = going || state.DeletingVersions.Has(tx, state.VersionKey(rec.Tenant, rec.Gallery, rec.Application, rec.Version))
		return nil
	})
	return going
}

// Finalize deletes every replica of a version being deleted: it stops the
// version's copies, deletes their objects and then their records. It is the
// catalog's finalizer: until it succeeds the version stays marked for
// deletion, and the catalog's reaper calls it again.
func (r *Replicator) Finalize(ctx context.Context, v *pb.GalleryApplicationVersion) error {
	p := prefixOf(v)
	defer func() {
		r.mu.Lock()
		delete(r.finalizing, p)
		r.mu.Unlock()
	}()
	r.mu.Lock()
	r.finalizing[p] = true
	jobs := r.inflightFor(p)
	for _, j := range jobs {
		j.cancel()
	}
	r.mu.Unlock()
	for _, j := range jobs {
		select {
		case <-j.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	recs, err := r.records(p)
	if err != nil {
		return err
	}
	var failed []error
	for _, rec := range recs {
		if err := r.deleteObjects(ctx, rec); err != nil {
			failed = append(failed, err)
			continue
		}
		err := r.propose(ctx, func(c *statepb.Command) {
			c.Op = &statepb.Command_ReplicaRemoved{ReplicaRemoved: &statepb.ReplicaRemoved{Replica: state.RefOf(rec)}}
		})
		if err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return errors.Join(failed...)
	}
	return nil
}
