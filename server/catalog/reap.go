package catalog

import (
	"context"
	"errors"
	"fmt"
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
//
// A version whose finalizer fails (a store is down) stays marked; the
// others are reaped, and the error names what is left.
func (s *Store) Reap(ctx context.Context) error {
	unfinished, err := s.reapVersions(ctx)
	if err != nil {
		return err
	}
	for _, step := range []struct {
		bucket, child []byte
		zero          resource
	}{
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
	return unfinished
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

// reapVersions removes the versions marked for deletion: for each, the
// finalizer deletes its stored objects (outside any transaction), then one
// transaction removes the version, its manifests and its upload sessions.
// A version whose finalizer fails stays marked for the next pass.
// reapVersions removes the versions marked for deletion whose finalizer
// succeeds. unfinished joins the finalizers' errors; err is a catalog error.
func (s *Store) reapVersions(ctx context.Context) (unfinished, err error) {
	type doomed struct {
		k []byte
		v *pb.GalleryApplicationVersion
	}
	var todo []doomed
	err = s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVersions).ForEach(func(k, val []byte) error {
			v := &pb.GalleryApplicationVersion{}
			if err := proto.Unmarshal(val, v); err != nil {
				return err
			}
			if v.ProvisioningState == StateDeleting {
				todo = append(todo, doomed{append([]byte(nil), k...), v})
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	var failed []error
	for _, d := range todo {
		if s.finalize != nil {
			if err := s.finalize(ctx, d.v); err != nil {
				s.log.Warn("deleting a version's stored objects failed; will retry", "version", versionPath(d.v.Gallery, d.v.Application, d.v.Name), "tenant", d.v.Tenant, "err", err)
				failed = append(failed, fmt.Errorf("version '%s' stays marked for deletion: %w", versionPath(d.v.Gallery, d.v.Application, d.v.Name), err))
				continue
			}
		}
		err := s.update(ctx, func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketVersions).Delete(d.k); err != nil {
				return err
			}
			for _, k := range []pb.ArtifactKind{pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION} {
				if err := tx.Bucket(bucketManifests).Delete(manifestKey(d.k, k)); err != nil {
					return err
				}
				sess, err := findSession(tx, d.v.Tenant, d.v.Gallery, d.v.Application, d.v.Name, k)
				if err != nil {
					return err
				}
				if sess != nil {
					if err := tx.Bucket(bucketUploads).Delete([]byte(sess.Id)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return errors.Join(failed...), nil
}
