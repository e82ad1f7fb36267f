package catalog

import (
	"context"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/boltpb"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

var galleryRules = maskRules{
	resource:  "gallery",
	mutable:   []string{"description"},
	immutable: []string{"location"},
}

func galleryNotFound(name string) error {
	return errs.New(errs.NotFound, "gallery", "Gallery '%s' doesn't exist.", name)
}

// getGallery reads a gallery inside tx.
func getGallery(tx *bolt.Tx, tenant, name string) (*pb.Gallery, error) {
	g := &pb.Gallery{}
	ok, err := boltpb.Get(tx.Bucket(bucketGalleries), key(tenant, name), g)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, galleryNotFound(name)
	}
	return g, nil
}

// liveGallery reads a gallery that is not marked for deletion; op names the
// operation refused otherwise.
func liveGallery(tx *bolt.Tx, tenant, name, op string) (*pb.Gallery, error) {
	g, err := getGallery(tx, tenant, name)
	if err == nil && g.GetProvisioningState() == StateDeleting {
		return nil, markedForDeletion(op, name)
	}
	return g, err
}

// CreateGallery stores a new gallery.
func (s *Store) CreateGallery(ctx context.Context, tenant string, in *pb.Gallery) (*pb.Gallery, error) {
	g := proto.Clone(in).(*pb.Gallery)
	if err := s.validateGallery(g); err != nil {
		return nil, err
	}
	g.Tenant, g.ProvisioningState = tenant, StateSucceeded
	g.CreateTime, g.UpdateTime = s.timestamp(), s.timestamp()
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGalleries)
		k := key(tenant, g.Name)
		if old := (&pb.Gallery{}); b.Get(k) != nil {
			if _, err := boltpb.Get(b, k, old); err != nil {
				return err
			}
			if old.GetProvisioningState() == StateDeleting {
				return markedForDeletion("CreateGallery", g.Name)
			}
			return errs.New(errs.AlreadyExists, "gallery", "Gallery '%s' already exists.", g.Name)
		}
		var err error
		if g.Etag, err = boltpb.NextETag(tx.Bucket(bucketMeta)); err != nil {
			return err
		}
		return boltpb.Put(b, k, g)
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// GetGallery reads a gallery.
func (s *Store) GetGallery(ctx context.Context, tenant, name string) (*pb.Gallery, error) {
	if err := ValidateGalleryName(name); err != nil {
		return nil, err
	}
	var g *pb.Gallery
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		g, err = getGallery(tx, tenant, name)
		return err
	})
	return g, err
}

// ListGalleries lists the tenant's galleries by name.
func (s *Store) ListGalleries(ctx context.Context, tenant string, pg Page) ([]*pb.Gallery, string, error) {
	return list(ctx, s, bucketGalleries, prefix(tenant), pg, func() *pb.Gallery { return &pb.Gallery{} })
}

// UpdateGallery changes the mask's fields of the gallery named in.Name.
func (s *Store) UpdateGallery(ctx context.Context, tenant string, in *pb.Gallery, mask []string, ifMatch string) (*pb.Gallery, error) {
	if err := ValidateGalleryName(in.GetName()); err != nil {
		return nil, err
	}
	var next *pb.Gallery
	err := s.update(ctx, func(tx *bolt.Tx) error {
		cur, err := liveGallery(tx, tenant, in.Name, "UpdateGallery")
		if err != nil {
			return err
		}
		if err := boltpb.CheckETag("gallery '"+in.Name+"'", ifMatch, cur.Etag); err != nil {
			return err
		}
		if next, err = applyMask(cur, in, mask, galleryRules); err != nil {
			return err
		}
		if err := checkText("description", next.GetDescription(), maxTextLen); err != nil {
			return err
		}
		return s.save(tx, bucketGalleries, key(tenant, in.Name), next)
	})
	if err != nil {
		return nil, err
	}
	return next, nil
}

// DeleteGallery marks the gallery for deletion. It must have no live
// applications unless cascade, which marks them and their versions too.
func (s *Store) DeleteGallery(ctx context.Context, tenant, name, ifMatch string, cascade bool) (*pb.Gallery, error) {
	if err := ValidateGalleryName(name); err != nil {
		return nil, err
	}
	var g *pb.Gallery
	err := s.update(ctx, func(tx *bolt.Tx) (err error) {
		if g, err = getGallery(tx, tenant, name); err != nil {
			return err
		}
		if err := boltpb.CheckETag("gallery '"+name+"'", ifMatch, g.Etag); err != nil {
			return err
		}
		p := prefix(tenant, name)
		if !cascade {
			n, err := countLive(tx.Bucket(bucketApplications), p, &pb.GalleryApplication{})
			if err != nil {
				return err
			}
			if n > 0 {
				return errs.New(errs.FailedPrecondition, "cascade", "Gallery '%s' has %d application(s): delete them first, or delete with cascade.", name, n)
			}
		}
		if err := s.markAll(tx, bucketVersions, p, &pb.GalleryApplicationVersion{}); err != nil {
			return err
		}
		if err := s.markAll(tx, bucketApplications, p, &pb.GalleryApplication{}); err != nil {
			return err
		}
		return s.markDeleting(tx, bucketGalleries, key(tenant, name), g)
	})
	if err != nil {
		return nil, err
	}
	s.wakeReaper()
	return g, nil
}
