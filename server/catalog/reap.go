package catalog

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// reapBatch bounds the keys one reaping transaction removes, so that a large
// cascade never holds the write lock for long.
const reapBatch = 256

func (s *Store) wakeReaper() {
	select {
	case s.reap <- struct{}{}:
	default:
	}
}

// RunReaper removes resources marked for deletion until ctx ends: at once
// after each delete, and every interval to finish work a crash interrupted.
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
func (s *Store) Reap(ctx context.Context) error {
	for _, step := range []struct {
		bucket, child []byte
		zero          resource
	}{
		{bucketVersions, nil, &pb.GalleryApplicationVersion{}},
		{bucketApplications, bucketVersions, &pb.GalleryApplication{}},
		{bucketGalleries, bucketApplications, &pb.Gallery{}},
	} {
		for {
			n, err := s.reapBatch(ctx, step.bucket, step.child, step.zero)
			if err != nil {
				return err
			}
			if n < reapBatch {
				break
			}
		}
	}
	return nil
}

// reapBatch deletes up to reapBatch marked values of bucket that have no
// children left in child (nil: no children).
func (s *Store) reapBatch(ctx context.Context, bucket, child []byte, zero resource) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var doomed [][]byte
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.First(); k != nil && len(doomed) < reapBatch; k, v = c.Next() {
			m := zero.ProtoReflect().New().Interface().(resource)
			if err := proto.Unmarshal(v, m); err != nil {
				return err
			}
			if m.GetProvisioningState() != StateDeleting {
				continue
			}
			if child != nil {
				p := append(append([]byte(nil), k...), 0)
				if ck, _ := tx.Bucket(child).Cursor().Seek(p); ck != nil && hasPrefix(ck, p) {
					continue
				}
			}
			doomed = append(doomed, append([]byte(nil), k...))
		}
		b := tx.Bucket(bucket)
		for _, k := range doomed {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(doomed)
		return nil
	})
	return n, err
}
