// Package catalog is vmappd's state: galleries, applications and application
// versions, kept in one bbolt file.
//
// # Schema (version 2)
//
// Every value is a protobuf message; keys are the resource path with NUL
// separators (names can't contain NUL), so that a prefix scan lists the
// children of a resource in the tenant:
//
//	meta          "schema"                                -> uint64 (big endian) schema version
//	              sequence                                -> source of etags
//	galleries     tenant 0 gallery                        -> vmapp.v1.Gallery
//	applications  tenant 0 gallery 0 application          -> vmapp.v1.GalleryApplication
//	versions      tenant 0 gallery 0 application 0 key    -> vmapp.v1.GalleryApplicationVersion
//	uploads       session id                              -> vmapp.state.v1.UploadSession   (v2)
//	manifests     version key 0 kind                      -> vmapp.state.v1.Manifest        (v2)
//
// where a version's key is its three numbers zero-padded to ten digits, so
// that byte order is numeric order (1.9.0 before 1.10.0).
//
// Migrations are ordered functions, each run in its own transaction that also
// records the new schema version; a file written by a newer vmappd is refused.
//
// # Deletion
//
// Deleting is two steps: the request marks the resource (and, with cascade,
// its descendants) Deleting in one transaction and returns; Reap then removes
// marked resources leaves first, in short transactions, and is safe to run
// again after a crash. While marked, a resource can be read and its delete
// retried; every other operation fails with the seeds' "marked for deletion"
// message.
package catalog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/boltpb"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

var (
	bucketMeta         = []byte("meta")
	bucketGalleries    = []byte("galleries")
	bucketApplications = []byte("applications")
	bucketVersions     = []byte("versions")
	bucketUploads      = []byte("uploads")
	bucketManifests    = []byte("manifests")

	keySchema = []byte("schema")
)

// migrations[i] upgrades the file from schema version i to i+1.
var migrations = []func(tx *bolt.Tx) error{
	func(tx *bolt.Tx) error { // 0 -> 1: the initial buckets
		for _, b := range [][]byte{bucketMeta, bucketGalleries, bucketApplications, bucketVersions} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
	func(tx *bolt.Tx) error { // 1 -> 2: upload sessions and piece manifests
		for _, b := range [][]byte{bucketUploads, bucketManifests} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	},
}

// SchemaVersion is the schema version this code writes.
var SchemaVersion = uint64(len(migrations))

// Options configure a Store.
type Options struct {
	// Regions are the known region names (from the topology file).
	Regions []string
	// MaxVersionsPerRegion limits a tenant's versions targeting one region;
	// 0 means DefaultMaxVersionsPerRegion.
	MaxVersionsPerRegion int
	// OpenTimeout bounds the wait for the file lock; 0 means 1 second.
	OpenTimeout time.Duration
	// FinalizeVersion, when set, runs before a version marked for deletion is
	// removed (it deletes the version's stored objects); an error leaves the
	// version marked, to be retried by the next reaping.
	FinalizeVersion func(ctx context.Context, v *pb.GalleryApplicationVersion) error
	// Now returns the current time; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Store is the catalog over one bbolt file. It is safe for concurrent use.
type Store struct {
	db          *bolt.DB
	regions     []string
	maxVersions int
	now         func() time.Time
	log         *slog.Logger
	reap        chan struct{}
	finalize    func(ctx context.Context, v *pb.GalleryApplicationVersion) error
}

// Open opens (creating if needed) the catalog file at path and migrates it.
// A file held by another process fails within OpenTimeout with Unavailable.
func Open(ctx context.Context, path string, o Options) (*Store, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.OpenTimeout == 0 {
		o.OpenTimeout = time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: o.OpenTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, errs.Wrap(errs.Unavailable, err, "database %s is locked: is another vmappd running with the same --data directory?", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	s := &Store{db: db, regions: o.Regions, maxVersions: o.MaxVersionsPerRegion, now: o.Now, log: o.Logger, reap: make(chan struct{}, 1), finalize: o.FinalizeVersion}
	if s.maxVersions == 0 {
		s.maxVersions = DefaultMaxVersionsPerRegion
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := s.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	return s, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

func schemaOf(tx *bolt.Tx) uint64 {
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return 0
	}
	v := b.Get(keySchema)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (s *Store) migrate() error {
	var have uint64
	if err := s.db.View(func(tx *bolt.Tx) error { have = schemaOf(tx); return nil }); err != nil {
		return err
	}
	if have > SchemaVersion {
		return fmt.Errorf("schema version %d is newer than this vmappd understands (%d): upgrade vmappd", have, SchemaVersion)
	}
	for v := have; v < SchemaVersion; v++ {
		err := s.db.Update(func(tx *bolt.Tx) error {
			if err := migrations[v](tx); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, v+1))
		})
		if err != nil {
			return fmt.Errorf("migrate schema %d -> %d: %w", v, v+1, err)
		}
		s.log.Info("catalog schema migrated", "from", v, "to", v+1)
	}
	return nil
}

// update runs fn in a write transaction after checking ctx.
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(fn)
}

// view runs fn in a read transaction after checking ctx.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.View(fn)
}

// key joins path parts with NUL.
func key(parts ...string) []byte {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}

// prefix is key(parts...) followed by a separator: the children of parts.
func prefix(parts ...string) []byte { return append(key(parts...), 0) }

func markedForDeletion(op, what string) error {
	return errs.New(errs.FailedPrecondition, "", "Operation '%s' isn't allowed on '%s' since it's marked for deletion. You can only retry the delete operation (or wait for an ongoing one to complete).", op, what)
}

func (s *Store) timestamp() *timestamppb.Timestamp { return timestamppb.New(s.now()) }

func hasPrefix(k, p []byte) bool { return bytes.HasPrefix(k, p) }

// resource is what galleries, applications and versions share.
type resource interface {
	proto.Message
	GetProvisioningState() string
}

func setField(m proto.Message, name string, v protoreflect.Value) {
	r := m.ProtoReflect()
	r.Set(r.Descriptor().Fields().ByName(protoreflect.Name(name)), v)
}

// save writes m at k with a new etag and update time.
func (s *Store) save(tx *bolt.Tx, bucket, k []byte, m resource) error {
	etag, err := boltpb.NextETag(tx.Bucket(bucketMeta))
	if err != nil {
		return err
	}
	setField(m, "etag", protoreflect.ValueOfString(etag))
	setField(m, "update_time", protoreflect.ValueOfMessage(s.timestamp().ProtoReflect()))
	return boltpb.Put(tx.Bucket(bucket), k, m)
}

// markDeleting marks m (stored at k) Deleting; marking twice is a no-op so a
// retried delete keeps its etag.
func (s *Store) markDeleting(tx *bolt.Tx, bucket, k []byte, m resource) error {
	if m.GetProvisioningState() == StateDeleting {
		return nil
	}
	setField(m, "provisioning_state", protoreflect.ValueOfString(StateDeleting))
	return s.save(tx, bucket, k, m)
}

// markAll marks every value under prefix p in bucket Deleting.
func (s *Store) markAll(tx *bolt.Tx, bucket, p []byte, zero resource) error {
	type kv struct {
		k []byte
		m resource
	}
	var todo []kv
	c := tx.Bucket(bucket).Cursor()
	for k, v := c.Seek(p); k != nil && hasPrefix(k, p); k, v = c.Next() {
		m := zero.ProtoReflect().New().Interface().(resource)
		if err := proto.Unmarshal(v, m); err != nil {
			return fmt.Errorf("decode %q: %w", k, err)
		}
		if m.GetProvisioningState() != StateDeleting {
			todo = append(todo, kv{bytes.Clone(k), m})
		}
	}
	for _, t := range todo { // no writes while the cursor walks
		if err := s.markDeleting(tx, bucket, t.k, t.m); err != nil {
			return err
		}
	}
	return nil
}

// countLive counts the values under prefix p that are not marked Deleting.
func countLive(b *bolt.Bucket, p []byte, zero resource) (int, error) {
	n := 0
	c := b.Cursor()
	for k, v := c.Seek(p); k != nil && hasPrefix(k, p); k, v = c.Next() {
		m := zero.ProtoReflect().New().Interface().(resource)
		if err := proto.Unmarshal(v, m); err != nil {
			return 0, fmt.Errorf("decode %q: %w", k, err)
		}
		if m.GetProvisioningState() != StateDeleting {
			n++
		}
	}
	return n, nil
}

// DB is the bbolt file, for packages that keep their own buckets in it (the
// replicator). They must not touch the catalog's buckets.
func (s *Store) DB() *bolt.DB { return s.db }
