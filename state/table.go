package state

import (
	"bytes"
	"fmt"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Tx is a transaction on the state: read-only in View, read-write in the
// appliers (the only writers).
type Tx struct {
	tx    *bolt.Tx
	reads *atomic.Int64 // the DB's count of records read
}

// read counts n records read.
func (tx *Tx) read(n int64) {
	if tx.reads != nil {
		tx.reads.Add(n)
	}
}

// Table is one bucket of protobuf records of type M.
type Table[M proto.Message] struct {
	name []byte
	new  func() M
}

func table[M proto.Message](name string, new func() M) Table[M] {
	t := Table[M]{name: []byte(name), new: new}
	buckets = append(buckets, t.name)
	return t
}

// buckets lists every bucket the schema declares; migrations create them.
var buckets [][]byte

// The tables; the package doc gives each one's key layout.
var (
	Galleries     = table("galleries", func() *pb.Gallery { return &pb.Gallery{} })
	Applications  = table("applications", func() *pb.GalleryApplication { return &pb.GalleryApplication{} })
	Versions      = table("versions", func() *pb.GalleryApplicationVersion { return &pb.GalleryApplicationVersion{} })
	Uploads       = table("uploads", func() *statepb.UploadSession { return &statepb.UploadSession{} })
	Manifests     = table("manifests", func() *statepb.Manifest { return &statepb.Manifest{} })
	Replicas      = table("replicas", func() *statepb.Replica { return &statepb.Replica{} })
	Tokens        = table("auth_tokens", func() *statepb.Credential { return &statepb.Credential{} })
	Shares        = table("auth_shares", func() *pb.Share { return &pb.Share{} })
	Machines      = table("machines", func() *pb.Machine { return &pb.Machine{} })
	ScaleSets     = table("scalesets", func() *pb.ScaleSet { return &pb.ScaleSet{} })
	InstanceViews = table("instanceviews", func() *pb.InstanceView { return &pb.InstanceView{} })
	Nodes         = table("nodes", func() *pb.ClusterNode { return &pb.ClusterNode{} })
	Signatures    = table("signatures", func() *pb.VersionSignatures { return &pb.VersionSignatures{} })
	TrustPolicies = table("trust_policies", func() *pb.TrustPolicy { return &pb.TrustPolicy{} })
	Inventory     = table("inventory", func() *pb.InventoryEntry { return &pb.InventoryEntry{} })
	ActionRuns    = table("actionruns", func() *pb.ActionRun { return &pb.ActionRun{} })
	Preheats      = table("preheats", func() *statepb.Preheat { return &statepb.Preheat{} })
	Rollouts      = table("rollouts", func() *pb.Rollout { return &pb.Rollout{} })
	RolloutPins   = table("rollout_pins", func() *statepb.RolloutPin { return &statepb.RolloutPin{} })
)

// The indexes (schema 5); the package doc gives each one's key layout.
var (
	MachinesByScaleSet   = index("machines_by_scaleset", Machines)
	TokensByTenant       = index("tokens_by_tenant", Tokens)
	InventoryByState     = index("inventory_by_state", Inventory)
	InventoryByApp       = index("inventory_by_app", Inventory)
	InventoryByRegion    = index("inventory_by_region", Inventory)
	DeletingGalleries    = index("deleting_galleries", Galleries)
	DeletingApplications = index("deleting_applications", Applications)
	DeletingVersions     = index("deleting_versions", Versions)
	ActiveReplicas       = index("replicas_active", Replicas)
	PreheatsByTarget     = index("preheats_by_target", Preheats) // schema 6
	ActiveRollouts       = index("rollouts_active", Rollouts)
	MachinesOwnApps      = index("machines_own_apps", Machines) // schema 9
)

// Buckets that hold raw values rather than records.
var (
	bucketMeta          = []byte("meta")           // "schema" -> uint64 BE; "applied" -> raft index BE
	bucketMachineTokens = []byte("auth_machines")  // tenant 0 machine -> token id
	bucketSequences     = []byte("sign_sequences") // tenant 0 gallery 0 application -> uint64 BE
	bucketDirty         = []byte("dirty_versions") // tenant 0 gallery 0 application 0 version -> mark
)

func init() { buckets = append(buckets, bucketMeta, bucketMachineTokens, bucketSequences, bucketDirty) }

func (t Table[M]) bucket(tx *Tx) *bolt.Bucket { return tx.tx.Bucket(t.name) }

func (t Table[M]) decode(k, v []byte) (M, error) {
	m := t.new()
	if err := proto.Unmarshal(v, m); err != nil {
		return m, fmt.Errorf("%s record %q: %w", t.name, k, err)
	}
	return m, nil
}

// Get reads the record at k; false when there is none.
func (t Table[M]) Get(tx *Tx, k []byte) (M, bool, error) {
	tx.read(1)
	v := t.bucket(tx).Get(k)
	if v == nil {
		var zero M
		return zero, false, nil
	}
	m, err := t.decode(k, v)
	return m, err == nil, err
}

// Has tells whether a record is at k.
func (t Table[M]) Has(tx *Tx, k []byte) bool { return t.bucket(tx).Get(k) != nil }

// Scan calls fn with the records whose keys start with prefix, in key
// order, from the first key after after (nil: from the start) until fn
// returns false or an error.
func (t Table[M]) Scan(tx *Tx, prefix, after []byte, fn func(k []byte, m M) (bool, error)) error {
	return scanBucket(t.bucket(tx), prefix, after, func(k, v []byte) (bool, error) {
		tx.read(1)
		m, err := t.decode(k, v)
		if err != nil {
			return false, err
		}
		return fn(k, m)
	})
}

// scanBucket calls fn with the keys of b that start with prefix and their
// values, in key order, from the first key after after (nil: from the
// start), until fn returns false or an error.
func scanBucket(b *bolt.Bucket, prefix, after []byte, fn func(k, v []byte) (bool, error)) error {
	c := b.Cursor()
	k, v := c.Seek(prefix)
	if after != nil {
		if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
			k, v = c.Next()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// ScanDesc is Scan in descending key order, from the last key under
// prefix.
func (t Table[M]) ScanDesc(tx *Tx, prefix []byte, fn func(k []byte, m M) (bool, error)) error {
	c := t.bucket(tx).Cursor()
	k, v := c.Seek(append(bytes.Clone(prefix), 0xff))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
		tx.read(1)
		m, err := t.decode(k, v)
		if err != nil {
			return err
		}
		more, err := fn(k, m)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// All returns every record under prefix.
func (t Table[M]) All(tx *Tx, prefix []byte) ([]M, error) {
	var out []M
	err := t.Scan(tx, prefix, nil, func(_ []byte, m M) (bool, error) {
		out = append(out, m)
		return true, nil
	})
	return out, err
}

// Count counts the records under prefix for which keep is true (nil: all).
func (t Table[M]) Count(tx *Tx, prefix []byte, keep func(M) bool) (int, error) {
	n := 0
	err := t.Scan(tx, prefix, nil, func(_ []byte, m M) (bool, error) {
		if keep == nil || keep(m) {
			n++
		}
		return true, nil
	})
	return n, err
}

// put stores m at k, encoded deterministically. Only appliers write.
func (t Table[M]) put(tx *Tx, k []byte, m M) error {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return err
	}
	return t.bucket(tx).Put(k, v)
}

func (t Table[M]) delete(tx *Tx, k []byte) error { return t.bucket(tx).Delete(k) }
