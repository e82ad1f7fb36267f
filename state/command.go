package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
)

// NewCommand starts a command built at now with a fresh etag; the caller
// sets its Op (and LeaderTerm for leader-only work).
func NewCommand(now time.Time) *statepb.Command {
	return &statepb.Command{Time: timestamppb.New(now), Etag: NewETag()}
}

// NewETag returns a random quoted etag: 64 bits, unique for every
// practical purpose, so that whoever builds a command knows the etag its
// records will have.
func NewETag() string {
	var b [8]byte
	rand.Read(b[:]) // crypto/rand never fails
	return strconv.Quote(hex.EncodeToString(b[:]))
}

type leaderTermKey struct{}

// WithLeaderTerm marks ctx as leader-only work of a cluster's leader in
// term: the commands proposed through it carry the term, and are refused
// once another term has begun (a deposed leader's work never lands).
func WithLeaderTerm(ctx context.Context, term uint64) context.Context {
	return context.WithValue(ctx, leaderTermKey{}, term)
}

// LeaderTermOf is the term WithLeaderTerm put in ctx, 0 when none.
func LeaderTermOf(ctx context.Context) uint64 {
	t, _ := ctx.Value(leaderTermKey{}).(uint64)
	return t
}
