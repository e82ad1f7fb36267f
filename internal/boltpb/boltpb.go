// Package boltpb keeps protobuf records in bbolt buckets: deterministic
// encoding, decode errors that name the key, and the etags that guard
// read-modify-write from API clients.
package boltpb

import (
	"fmt"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
)

// Get unmarshals the value at k into m; false when there is none.
func Get(b *bolt.Bucket, k []byte, m proto.Message) (bool, error) {
	v := b.Get(k)
	if v == nil {
		return false, nil
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return false, fmt.Errorf("decode %q: %w", k, err)
	}
	return true, nil
}

// Put stores m at k, encoded deterministically.
func Put(b *bolt.Bucket, k []byte, m proto.Message) error {
	v, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return err
	}
	return b.Put(k, v)
}

// NextETag returns a new quoted etag from the bucket's sequence, so it is
// unique across the file's life when every writer takes it from one bucket.
func NextETag(b *bolt.Bucket) (string, error) {
	n, err := b.NextSequence()
	if err != nil {
		return "", err
	}
	return strconv.Quote(strconv.FormatUint(n, 10)), nil
}

// CheckETag fails with FailedPrecondition when ifMatch is set and differs
// from etag. The quotes of an HTTP-style etag are optional in ifMatch.
func CheckETag(what, ifMatch, etag string) error {
	if ifMatch != "" && strings.Trim(ifMatch, `"`) != strings.Trim(etag, `"`) {
		return errs.New(errs.FailedPrecondition, "ifMatch", "%s has etag %s, not %s: it was changed since you read it; read it again and retry", what, etag, ifMatch)
	}
	return nil
}
