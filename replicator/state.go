package replicator

import (
	"context"
	"fmt"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// versionPrefix is the key prefix of a version's replica records.
func versionPrefix(tenant, gallery, app, version string) string {
	return string(state.ReplicaPrefix(tenant, gallery, app, version))
}

func prefixOf(v *pb.GalleryApplicationVersion) string {
	return versionPrefix(v.Tenant, v.Gallery, v.Application, v.Name)
}

// recordKey is a replica record's key.
func recordKey(r *statepb.Replica) string { return string(state.KeyOfReplica(r)) }

// seedKey is the record key of replica 0 of r's region.
func seedKey(r *statepb.Replica) string {
	return string(state.ReplicaKey(r.Tenant, r.Gallery, r.Application, r.Version, r.Kind, r.Region, 0))
}

// records reads the records under prefix ("" for all).
func (r *Replicator) records(prefix string) ([]*statepb.Replica, error) {
	var out []*statepb.Replica
	err := r.db.View(context.Background(), func(tx *state.Tx) (err error) {
		out, err = state.Replicas.All(tx, []byte(prefix))
		return err
	})
	return out, err
}

// record reads the record at key; nil when there is none.
func (r *Replicator) record(key string) (*statepb.Replica, error) {
	var rec *statepb.Replica
	err := r.db.View(context.Background(), func(tx *state.Tx) (err error) {
		rec, _, err = state.Replicas.Get(tx, []byte(key))
		return err
	})
	return rec, err
}

// propose has a replica command applied. ctx is the replicator's (in a
// cluster, the leader's, carrying its term). A refusal because the replica
// is no longer wanted, or no longer copied by this worker, is errGone: the
// worker stops.
func (r *Replicator) propose(ctx context.Context, set func(c *statepb.Command)) error {
	c := state.NewCommand(r.now())
	set(c)
	err := r.db.Propose(ctx, c)
	if state.IsReplicaGone(err) {
		return fmt.Errorf("%w: %v", errGone, err)
	}
	return err
}

// errGone is returned when the record was deleted or marked Deleting since
// the worker read it (or another copy of it started): the worker stops.
var errGone = fmt.Errorf("the replica is no longer wanted")

// replicaKey is the record key of replica index of a version's artifact k
// in region.
func replicaKey(tenant, gallery, app, version string, k pb.ArtifactKind, region string, index int32) string {
	return string(state.ReplicaKey(tenant, gallery, app, version, k, region, index))
}
