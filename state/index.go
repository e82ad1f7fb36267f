package state

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// Index is a bucket that orders a table's records another way (machines by
// scale set, tokens by tenant, inventory by state, ...), so that a listing
// that filters reads what it returns and not every record: each index key
// maps to the key of its record in the table. The appliers keep indexes
// and tables in step, in the same transaction; the package doc gives each
// index's key layout.
type Index[M proto.Message] struct {
	name  []byte
	table Table[M]
}

func index[M proto.Message](name string, t Table[M]) Index[M] {
	buckets = append(buckets, []byte(name))
	return Index[M]{name: []byte(name), table: t}
}

func (ix Index[M]) bucket(tx *Tx) *bolt.Bucket { return tx.tx.Bucket(ix.name) }

// Scan calls fn with the records the index keys under prefix name, in
// index key order, from the first index key after after (nil: from the
// start) until fn returns false or an error. k is the index key.
func (ix Index[M]) Scan(tx *Tx, prefix, after []byte, fn func(k []byte, m M) (bool, error)) error {
	return scanBucket(ix.bucket(tx), prefix, after, func(k, rk []byte) (bool, error) {
		m, ok, err := ix.table.Get(tx, rk)
		if err == nil && !ok {
			err = fmt.Errorf("index %s: %q names %s record %q, which doesn't exist", ix.name, k, ix.table.name, rk)
		}
		if err != nil {
			return false, err
		}
		return fn(k, m)
	})
}

// All returns every record the index keys under prefix name, in index key
// order.
func (ix Index[M]) All(tx *Tx, prefix []byte) ([]M, error) {
	var out []M
	err := ix.Scan(tx, prefix, nil, func(_ []byte, m M) (bool, error) {
		out = append(out, m)
		return true, nil
	})
	return out, err
}

// Has tells whether the index holds k.
func (ix Index[M]) Has(tx *Tx, k []byte) bool { return ix.bucket(tx).Get(k) != nil }

// put indexes the record at rk under k. Only appliers write.
func (ix Index[M]) put(tx *Tx, k, rk []byte) error { return ix.bucket(tx).Put(k, rk) }

func (ix Index[M]) delete(tx *Tx, k []byte) error { return ix.bucket(tx).Delete(k) }

// rebuild indexes every record of the table under k(record key, record)
// (nil keys: not indexed): what a migration that adds an index does.
func (ix Index[M]) rebuild(tx *Tx, k func(rk []byte, m M) [][]byte) error {
	type entry struct{ k, rk []byte }
	var todo []entry
	err := ix.table.Scan(tx, nil, nil, func(rk []byte, m M) (bool, error) {
		for _, ik := range k(rk, m) {
			todo = append(todo, entry{ik, append([]byte(nil), rk...)})
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, e := range todo { // no writes while the cursor walks
		if err := ix.put(tx, e.k, e.rk); err != nil {
			return err
		}
	}
	return nil
}
