package state

import (
	"bytes"
	"fmt"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
)

// The dirty_versions table is the replicator's queue: the appliers mark a
// version whenever a command may change the replica records it should have
// (an artifact stored, its target regions or counts changed, marked for
// deletion, removed, one of its replica records removed), so that the
// replicator reconciles the versions that changed instead of every version.
// A mark is the etag of the command that set it; ReconcileReplicas clears
// the marks it names, unless the version was marked again since.

// markDirty marks a version for the replicator.
func markDirty(tx *Tx, c *statepb.Command, tenant, gallery, app, version string) error {
	return tx.tx.Bucket(bucketDirty).Put(dirtyKey(tenant, gallery, app, version), []byte(c.Etag))
}

// DirtyVersions returns up to limit marked versions, in key order, after
// the version after names (nil: from the first).
func (tx *Tx) DirtyVersions(after *statepb.VersionRef, limit int) ([]*statepb.DirtyMark, error) {
	var from []byte
	if after != nil {
		from = dirtyKey(after.Tenant, after.Gallery, after.Application, after.Version)
	}
	var out []*statepb.DirtyMark
	err := scanBucket(tx.tx.Bucket(bucketDirty), nil, from, func(k, v []byte) (bool, error) {
		tx.read(1)
		p := bytes.Split(k, []byte{0})
		if len(p) != 4 {
			return false, fmt.Errorf("dirty_versions: malformed key %q", k)
		}
		out = append(out, &statepb.DirtyMark{
			Version: &statepb.VersionRef{Tenant: string(p[0]), Gallery: string(p[1]), Application: string(p[2]), Version: string(p[3])},
			Mark:    string(v),
		})
		return len(out) < limit, nil
	})
	return out, err
}

// clearDirty clears the marks that are still as the reconcile read them.
func clearDirty(tx *Tx, marks []*statepb.DirtyMark) error {
	b := tx.tx.Bucket(bucketDirty)
	for _, m := range marks {
		r := m.GetVersion()
		k := dirtyKey(r.GetTenant(), r.GetGallery(), r.GetApplication(), r.GetVersion())
		if string(b.Get(k)) != m.Mark {
			continue // marked again since: the next reconcile's
		}
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
