package state

import (
	"encoding/binary"
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var keySchema = []byte("schema")

func createBuckets(tx *bolt.Tx, names ...string) error {
	for _, n := range names {
		if _, err := tx.CreateBucketIfNotExists([]byte(n)); err != nil {
			return err
		}
	}
	return nil
}

// migrations[i] upgrades a file from schema version i to i+1, in one
// transaction that also records the new version. Append; never edit one
// that shipped.
var migrations = []func(tx *bolt.Tx) error{
	func(tx *bolt.Tx) error { // 0 -> 1: the catalog
		return createBuckets(tx, "meta", "galleries", "applications", "versions")
	},
	func(tx *bolt.Tx) error { // 1 -> 2: upload sessions and piece manifests
		return createBuckets(tx, "uploads", "manifests")
	},
	func(tx *bolt.Tx) error { // 2 -> 3: one owner of every bucket
		// The replicator, credentials and the fleet made their buckets at
		// start-up until now; a file may lack any of them.
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// The fleet's etag sequence: etags travel in commands now.
		if err := tx.DeleteBucket([]byte("fleetmeta")); err != nil && err != bolterrors.ErrBucketNotFound {
			return err
		}
		return nil
	},
	func(tx *bolt.Tx) error { // 3 -> 4: signatures, trust policies, sequences
		return createBuckets(tx, "signatures", "trust_policies", "sign_sequences")
	},
	func(tx *bolt.Tx) error { // 4 -> 5: indexes, and the replicator's dirty versions
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return buildIndexes(&Tx{tx: tx})
	},
	func(tx *bolt.Tx) error { // 5 -> 6: custom actions' runs
		return createBuckets(tx, "actionruns")
	},
	func(tx *bolt.Tx) error { // 6 -> 7: preheats
		return createBuckets(tx, "preheats", "preheats_by_target")
	},
	func(tx *bolt.Tx) error { // 7 -> 8: rollouts, their pins, the active ones
		return createBuckets(tx, "rollouts", "rollout_pins", "rollouts_active")
	},
	func(tx *bolt.Tx) error { // 8 -> 9: the instances with applications of their own
		if err := createBuckets(tx, "machines_own_apps"); err != nil {
			return err
		}
		return buildOwnApps(&Tx{tx: tx})
	},
}

// SchemaVersion is the schema version this code writes.
var SchemaVersion = uint64(len(migrations))

// SchemaOf reads a file's schema version (0: a new file).
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

// migrate brings the file to SchemaVersion; a newer file is refused.
func migrate(db *bolt.DB, log *slog.Logger) error {
	var have uint64
	if err := db.View(func(tx *bolt.Tx) error { have = schemaOf(tx); return nil }); err != nil {
		return err
	}
	if have > SchemaVersion {
		return fmt.Errorf("schema version %d is newer than this vmappd understands (%d): upgrade vmappd", have, SchemaVersion)
	}
	for v := have; v < SchemaVersion; v++ {
		err := db.Update(func(tx *bolt.Tx) error {
			if err := migrations[v](tx); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, v+1))
		})
		if err != nil {
			return fmt.Errorf("migrate schema %d -> %d: %w", v, v+1, err)
		}
		log.Info("state schema migrated", "from", v, "to", v+1)
	}
	return nil
}
