package state

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"

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

// Scanner is what Page lists: a Table, or an Index of one.
type Scanner[M proto.Message] interface {
	Scan(tx *Tx, prefix, after []byte, fn func(k []byte, m M) (bool, error)) error
}

// Page lists up to size records of s under prefix for which keep returns
// true (nil: all), in key order, after the record a previous page's token
// names. The token is the last key returned, relative to prefix, so it
// can't reach outside the listing it came from; records added or removed
// between pages don't make a listing repeat or skip the others. A token
// that isn't one (its checksum) is InvalidArgument on pageToken. next is
// "" on the last page.
func Page[M proto.Message](tx *Tx, s Scanner[M], prefix []byte, token string, size int, keep func(M) bool) (out []M, next string, err error) {
	return PageOver(tx, s, [][]byte{prefix}, token, size, keep)
}

// PageOver is Page over the records under each of prefixes in turn (such
// as a tenant's tokens, then the operator's). With more than one prefix the
// token's first byte is the index of the prefix its key is under.
func PageOver[M proto.Message](tx *Tx, s Scanner[M], prefixes [][]byte, token string, size int, keep func(M) bool) (out []M, next string, err error) {
	from, after, err := pageStart(prefixes, token)
	if err != nil {
		return nil, "", err
	}
	var last []byte // the last key returned, under prefixes[lastIn]
	lastIn := from
	for i := from; i < len(prefixes) && next == "" && err == nil; i++ {
		err = s.Scan(tx, prefixes[i], after, func(k []byte, m M) (bool, error) {
			if keep != nil && !keep(m) {
				return true, nil
			}
			if len(out) == size {
				next = pageToken(prefixes, lastIn, last)
				return false, nil
			}
			last, lastIn = append(last[:0], k...), i
			out = append(out, m)
			return true, nil
		})
		after = nil
	}
	return out, next, err
}

// pageToken is the token of a page whose last key, under prefixes[i], is
// last: the key relative to the prefix (after the prefix's index when there
// are several), and a CRC-32 of it, so that a mistyped or made-up token is
// refused rather than taken as a position.
func pageToken(prefixes [][]byte, i int, last []byte) string {
	var rel []byte
	if len(prefixes) > 1 {
		rel = append(rel, byte(i))
	}
	rel = append(rel, last[len(prefixes[i]):]...)
	return base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint32(rel, crc32.ChecksumIEEE(rel)))
}

// pageStart decodes a page token: the prefix to start from and the key to
// start after (nil: from the start).
func pageStart(prefixes [][]byte, token string) (int, []byte, error) {
	if token == "" {
		return 0, nil, nil
	}
	bad := errs.New(errs.InvalidArgument, "pageToken", "pageToken '%s' is not a token this listing returned", token)
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) <= 4 {
		return 0, nil, bad
	}
	rel, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(rel) != sum {
		return 0, nil, bad
	}
	i := 0
	if len(prefixes) > 1 {
		if i = int(rel[0]); i >= len(prefixes) || len(rel) == 1 {
			return 0, nil, bad
		}
		rel = rel[1:]
	}
	return i, append(bytes.Clone(prefixes[i]), rel...), nil
}
