package state

import (
	"encoding/base64"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
)

// Page sizes of listings.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// PageSize checks a requested page size: 0 means DefaultPageSize, more
// than MaxPageSize means MaxPageSize, negative is refused.
func PageSize(n int32) (int, error) {
	switch {
	case n < 0:
		return 0, errs.New(errs.InvalidArgument, "pageSize", "pageSize %d must not be negative", n)
	case n == 0:
		return DefaultPageSize, nil
	}
	return int(min(n, MaxPageSize)), nil
}

// Page lists up to size records of t under prefix for which keep returns
// true (nil: all), in key order, after the record a previous page's token
// names. The token is the last key returned, relative to prefix, so it
// can't reach outside the listing it came from; records added or removed
// between pages don't make a listing repeat or skip the others. next is ""
// on the last page.
func Page[M proto.Message](tx *Tx, t Table[M], prefix []byte, token string, size int, keep func(M) bool) (out []M, next string, err error) {
	var after []byte
	if token != "" {
		rel, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || len(rel) == 0 {
			return nil, "", errs.New(errs.InvalidArgument, "pageToken", "pageToken '%s' is not a token this listing returned", token)
		}
		after = append(append([]byte(nil), prefix...), rel...)
	}
	var last []byte
	err = t.Scan(tx, prefix, after, func(k []byte, m M) (bool, error) {
		if keep != nil && !keep(m) {
			return true, nil
		}
		if len(out) == size {
			next = base64.RawURLEncoding.EncodeToString(last[len(prefix):])
			return false, nil
		}
		last = append(last[:0], k...)
		out = append(out, m)
		return true, nil
	})
	return out, next, err
}
