package catalog

import (
	"bytes"
	"context"
	"encoding/base64"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// Page asks for one page of a listing.
type Page struct {
	Size  int32  // 0 means 100; at most 1000
	Token string // from the previous page's NextToken
}

// list returns one page of the values under prefix p in bucket, in key order.
// The page token is the last key returned, relative to p, so a token can't
// reach outside the listing it came from.
func list[T proto.Message](ctx context.Context, s *Store, bucket, p []byte, pg Page, newT func() T) ([]T, string, error) {
	size := int(pg.Size)
	switch {
	case size < 0:
		return nil, "", invalid("pageSize", "pageSize %d must not be negative", size)
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	start := p
	var after []byte
	if pg.Token != "" {
		rel, err := base64.RawURLEncoding.DecodeString(pg.Token)
		if err != nil || len(rel) == 0 {
			return nil, "", invalid("pageToken", "pageToken '%s' is not a token this listing returned", pg.Token)
		}
		after = append(bytes.Clone(p), rel...)
		start = after
	}
	var out []T
	next := ""
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		var last []byte
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if after != nil && bytes.Equal(k, after) {
				continue
			}
			if len(out) == size {
				next = base64.RawURLEncoding.EncodeToString(last[len(p):])
				return nil
			}
			last = k
			m := newT()
			if err := proto.Unmarshal(v, m); err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, next, err
}
