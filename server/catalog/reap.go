package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// reapBatch bounds the resources one reaping command removes, so that a
// large cascade never makes one long transaction.
const reapBatch = 256

func (s *Store) wakeReaper() {
	select {
	case s.reap <- struct{}{}:
	default:
	}
}

// RunReaper removes resources marked for deletion until ctx ends: at once
// after each delete, and every interval to finish work a crash interrupted.
// In a cluster only the leader runs it.
func (s *Store) RunReaper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.Reap(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("reaping deleted resources", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.reap:
		case <-t.C:
		}
	}
}

// Reap removes every resource marked for deletion whose children are gone:
// versions first, then applications, then galleries.
//
// A version whose finalizer fails (a store is down) stays marked; the
// others are reaped, and the error names what is left.
func (s *Store) Reap(ctx context.Context) error {
	unfinished, err := s.reapVersions(ctx)
	if err != nil {
		return err
	}
	for _, kind := range []statepb.RemoveDeleted_Kind{statepb.RemoveDeleted_KIND_APPLICATION, statepb.RemoveDeleted_KIND_GALLERY} {
		for {
			n, err := s.reapBatch(ctx, kind)
			if err != nil {
				return err
			}
			if n < reapBatch {
				break
			}
		}
	}
	return unfinished
}

// reapBatch removes up to reapBatch marked applications or galleries that
// have no children left. It reads those marked (an index), not every one.
func (s *Store) reapBatch(ctx context.Context, kind statepb.RemoveDeleted_Kind) (int, error) {
	var doomed []*statepb.VersionRef
	err := s.view(ctx, func(tx *state.Tx) error {
		if kind == statepb.RemoveDeleted_KIND_APPLICATION {
			return state.DeletingApplications.Scan(tx, nil, nil, func(_ []byte, a *pb.GalleryApplication) (bool, error) {
				if !hasAny(tx, state.Versions, state.Prefix(a.Tenant, a.Gallery, a.Name)) {
					doomed = append(doomed, &statepb.VersionRef{Tenant: a.Tenant, Gallery: a.Gallery, Application: a.Name})
				}
				return len(doomed) < reapBatch, nil
			})
		}
		return state.DeletingGalleries.Scan(tx, nil, nil, func(_ []byte, g *pb.Gallery) (bool, error) {
			if !hasAny(tx, state.Applications, state.Prefix(g.Tenant, g.Name)) {
				doomed = append(doomed, &statepb.VersionRef{Tenant: g.Tenant, Gallery: g.Name})
			}
			return len(doomed) < reapBatch, nil
		})
	})
	if err != nil || len(doomed) == 0 {
		return 0, err
	}
	_, err = s.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_RemoveDeleted{RemoveDeleted: &statepb.RemoveDeleted{Kind: kind, Resources: doomed}}
	})
	return len(doomed), err
}

// hasAny tells whether t holds a record under prefix p.
func hasAny[M proto.Message](tx *state.Tx, t state.Table[M], p []byte) bool {
	found := false
	t.Scan(tx, p, nil, func([]byte, M) (bool, error) { found = true; return false, nil })
	return found
}

// reapVersions removes the versions marked for deletion whose finalizer
// (deleting their stored objects, outside any transaction) succeeds.
// unfinished joins the finalizers' errors; err is a state error.
func (s *Store) reapVersions(ctx context.Context) (unfinished, err error) {
	var todo []*pb.GalleryApplicationVersion
	err = s.view(ctx, func(tx *state.Tx) (err error) {
		todo, err = state.DeletingVersions.All(tx, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	var failed []error
	for _, v := range todo {
		what := state.VersionPath(v.Gallery, v.Application, v.Name)
		if s.finalize != nil {
			if err := s.finalize(ctx, v); err != nil {
				s.log.Warn("deleting a version's stored objects failed; will retry", "version", what, "tenant", v.Tenant, "err", err)
				failed = append(failed, fmt.Errorf("version '%s' stays marked for deletion: %w", what, err))
				continue
			}
		}
		_, err := s.propose(ctx, func(c *statepb.Command) {
			c.Op = &statepb.Command_RemoveVersion{RemoveVersion: &statepb.RemoveVersion{Version: vref(v.Tenant, v.Gallery, v.Application, v.Name)}}
		})
		if err != nil {
			return nil, err
		}
	}
	return errors.Join(failed...), nil
}
