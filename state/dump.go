package state

import (
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// Dump writes every bucket's keys and values, in order, one line each:
// two files hold the same state exactly when their dumps are equal
// (whatever their pages look like). The applied raft index is left out:
// it says where the file stands in a log, not what it holds.
func (db *DB) Dump(w io.Writer) error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.bolt.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			fmt.Fprintf(w, "[%s]\n", name)
			return b.ForEach(func(k, v []byte) error {
				if string(name) == string(bucketMeta) && string(k) == string(keyApplied) {
					return nil
				}
				_, err := fmt.Fprintf(w, "%q = %x\n", k, v)
				return err
			})
		})
	})
}
