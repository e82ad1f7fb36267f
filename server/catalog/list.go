package catalog

import (
	"context"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/state"
)

// Page asks for one page of a listing.
type Page struct {
	Size  int32  // 0 means 100; at most 1000
	Token string // from the previous page's NextToken
}

// list returns one page of the records of t under prefix p, in key order.
func list[T proto.Message](ctx context.Context, s *Store, t state.Table[T], p []byte, pg Page) (out []T, next string, err error) {
	size, err := state.PageSize(pg.Size)
	if err != nil {
		return nil, "", err
	}
	err = s.syncView(ctx, func(tx *state.Tx) (err error) {
		out, next, err = state.Page(tx, t, p, pg.Token, size, nil)
		return err
	})
	return out, next, err
}
