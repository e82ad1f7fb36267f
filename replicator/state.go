package replicator

import (
	"bytes"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/internal/boltpb"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

var bucketReplicas = []byte("replicas")

// versionPrefix is the key prefix of a version's replica records.
func versionPrefix(tenant, gallery, app, version string) string {
	return strings.Join([]string{tenant, gallery, app, version}, "\x00") + "\x00"
}

func prefixOf(v *pb.GalleryApplicationVersion) string {
	return versionPrefix(v.Tenant, v.Gallery, v.Application, v.Name)
}

// replicaKey is the record key of replica index of a version's artifact k
// in region.
func replicaKey(tenant, gallery, app, version string, k pb.ArtifactKind, region string, index int32) string {
	return versionPrefix(tenant, gallery, app, version) + fmt.Sprintf("%d\x00%s\x00%02d", k, region, index)
}

// recordKey is a replica record's key.
func recordKey(r *statepb.Replica) string {
	return replicaKey(r.Tenant, r.Gallery, r.Application, r.Version, r.Kind, r.Region, r.Index)
}

// seedKey is the record key of replica 0 of r's region.
func seedKey(r *statepb.Replica) string {
	return replicaKey(r.Tenant, r.Gallery, r.Application, r.Version, r.Kind, r.Region, 0)
}

// ObjectKey is where replica index of a version's artifact lives in its
// region's store.
func ObjectKey(tenant, gallery, app, version string, k pb.ArtifactKind, index int32) string {
	name := "package"
	if k == pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION {
		name = "config"
	}
	return fmt.Sprintf("tenants/%s/galleries/%s/applications/%s/versions/%s/replicas/%s-%d", tenant, gallery, app, version, name, index)
}

func getRecord(tx *bolt.Tx, key string) (*statepb.Replica, error) {
	r := &statepb.Replica{}
	if ok, err := boltpb.Get(tx.Bucket(bucketReplicas), []byte(key), r); !ok {
		return nil, err
	}
	return r, nil
}

func putRecord(tx *bolt.Tx, r *statepb.Replica) error {
	return boltpb.Put(tx.Bucket(bucketReplicas), []byte(recordKey(r)), r)
}

// scan returns the records under prefix ("" for all), copied out.
func scan(tx *bolt.Tx, prefix string) ([]*statepb.Replica, error) {
	var out []*statepb.Replica
	c := tx.Bucket(bucketReplicas).Cursor()
	p := []byte(prefix)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		r := &statepb.Replica{}
		if err := proto.Unmarshal(v, r); err != nil {
			return nil, fmt.Errorf("replica record %q: %w", k, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// record reads the record with key; nil when there is none.
func (r *Replicator) record(key string) (*statepb.Replica, error) {
	var out *statepb.Replica
	err := r.db.View(func(tx *bolt.Tx) (err error) {
		out, err = getRecord(tx, key)
		return err
	})
	return out, err
}

// records reads the records under prefix.
func (r *Replicator) records(prefix string) ([]*statepb.Replica, error) {
	var out []*statepb.Replica
	err := r.db.View(func(tx *bolt.Tx) (err error) {
		out, err = scan(tx, prefix)
		return err
	})
	return out, err
}

// errGone is returned by change when the record was deleted or marked
// Deleting since the worker read it: the worker stops.
var errGone = fmt.Errorf("the replica is no longer wanted")

// change applies fn to the stored record with key, in one transaction.
func (r *Replicator) change(key string, fn func(rec *statepb.Replica) error) (*statepb.Replica, error) {
	return r.changeWith(r.db.Update, key, fn)
}

// changeBatched is change for frequent updates from many goroutines (parts
// copied): bbolt commits them together, one fsync for many. fn may run more
// than once, each time on the stored record.
func (r *Replicator) changeBatched(key string, fn func(rec *statepb.Replica) error) (*statepb.Replica, error) {
	return r.changeWith(r.db.Batch, key, fn)
}

func (r *Replicator) changeWith(run func(func(*bolt.Tx) error) error, key string, fn func(rec *statepb.Replica) error) (*statepb.Replica, error) {
	var out *statepb.Replica
	err := run(func(tx *bolt.Tx) error {
		rec, err := getRecord(tx, key)
		if err != nil {
			return err
		}
		if rec == nil {
			return errGone
		}
		if err := fn(rec); err != nil {
			return err
		}
		out = rec
		return putRecord(tx, rec)
	})
	return out, err
}
