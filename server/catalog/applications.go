package catalog

import (
	"context"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/boltpb"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

var applicationRules = maskRules{
	resource:  "galleryApplication",
	mutable:   []string{"description", "eula", "privacy_statement_uri", "release_note_uri", "end_of_life_date"},
	immutable: []string{"location", "supported_os_type"},
}

func appPath(gallery, app string) string { return gallery + "/" + app }

// getApplication reads an application inside tx.
func getApplication(tx *bolt.Tx, tenant, gallery, name string) (*pb.GalleryApplication, error) {
	a := &pb.GalleryApplication{}
	ok, err := boltpb.Get(tx.Bucket(bucketApplications), key(tenant, gallery, name), a)
	if err != nil {
		return nil, err
	}
	if !ok {
		if _, err := getGallery(tx, tenant, gallery); err != nil {
			return nil, err
		}
		return nil, errs.New(errs.NotFound, "application", "Gallery application '%s' doesn't exist.", appPath(gallery, name))
	}
	return a, nil
}

// liveApplication reads an application (and checks its gallery) that is not
// marked for deletion.
func liveApplication(tx *bolt.Tx, tenant, gallery, name, op string) (*pb.GalleryApplication, error) {
	if _, err := liveGallery(tx, tenant, gallery, op); err != nil {
		return nil, err
	}
	a, err := getApplication(tx, tenant, gallery, name)
	if err == nil && a.GetProvisioningState() == StateDeleting {
		return nil, markedForDeletion(op, appPath(gallery, name))
	}
	return a, err
}

func checkAppNames(gallery, app string) error {
	if err := ValidateGalleryName(gallery); err != nil {
		return err
	}
	return ValidateApplicationName(app)
}

// CreateApplication stores a new application in an existing gallery.
func (s *Store) CreateApplication(ctx context.Context, tenant string, in *pb.GalleryApplication) (*pb.GalleryApplication, error) {
	a := proto.Clone(in).(*pb.GalleryApplication)
	if err := s.validateApplication(a); err != nil {
		return nil, err
	}
	a.Tenant, a.ProvisioningState = tenant, StateSucceeded
	a.CreateTime = s.timestamp()
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if _, err := liveGallery(tx, tenant, a.Gallery, "CreateApplication"); err != nil {
			return err
		}
		k := key(tenant, a.Gallery, a.Name)
		old := &pb.GalleryApplication{}
		if ok, err := boltpb.Get(tx.Bucket(bucketApplications), k, old); err != nil {
			return err
		} else if ok && old.ProvisioningState == StateDeleting {
			return markedForDeletion("CreateApplication", appPath(a.Gallery, a.Name))
		} else if ok {
			return errs.New(errs.AlreadyExists, "application", "Gallery application '%s' already exists.", appPath(a.Gallery, a.Name))
		}
		return s.save(tx, bucketApplications, k, a)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// GetApplication reads an application.
func (s *Store) GetApplication(ctx context.Context, tenant, gallery, name string) (*pb.GalleryApplication, error) {
	if err := checkAppNames(gallery, name); err != nil {
		return nil, err
	}
	var a *pb.GalleryApplication
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		a, err = getApplication(tx, tenant, gallery, name)
		return err
	})
	return a, err
}

// ListApplications lists a gallery's applications by name.
func (s *Store) ListApplications(ctx context.Context, tenant, gallery string, pg Page) ([]*pb.GalleryApplication, string, error) {
	if err := ValidateGalleryName(gallery); err != nil {
		return nil, "", err
	}
	if _, err := s.GetGallery(ctx, tenant, gallery); err != nil {
		return nil, "", err
	}
	return list(ctx, s, bucketApplications, prefix(tenant, gallery), pg, func() *pb.GalleryApplication { return &pb.GalleryApplication{} })
}

// UpdateApplication changes the mask's fields of an application.
func (s *Store) UpdateApplication(ctx context.Context, tenant string, in *pb.GalleryApplication, mask []string, ifMatch string) (*pb.GalleryApplication, error) {
	if err := checkAppNames(in.GetGallery(), in.GetName()); err != nil {
		return nil, err
	}
	// Accept any casing of the OS, as create does, before comparing it.
	if os, err := CanonicalOS(in.GetSupportedOsType()); err == nil {
		in = proto.CloneOf(in)
		in.SupportedOsType = os
	}
	var next *pb.GalleryApplication
	err := s.update(ctx, func(tx *bolt.Tx) error {
		cur, err := liveApplication(tx, tenant, in.Gallery, in.Name, "UpdateApplication")
		if err != nil {
			return err
		}
		if err := boltpb.CheckETag("application '"+appPath(in.Gallery, in.Name)+"'", ifMatch, cur.Etag); err != nil {
			return err
		}
		if next, err = applyMask(cur, in, mask, applicationRules); err != nil {
			return err
		}
		if err := s.checkApplicationMutable(next); err != nil {
			return err
		}
		return s.save(tx, bucketApplications, key(tenant, in.Gallery, in.Name), next)
	})
	if err != nil {
		return nil, err
	}
	return next, nil
}

// DeleteApplication marks an application for deletion; it must have no live
// versions unless cascade, which marks them too.
func (s *Store) DeleteApplication(ctx context.Context, tenant, gallery, name, ifMatch string, cascade bool) (*pb.GalleryApplication, error) {
	if err := checkAppNames(gallery, name); err != nil {
		return nil, err
	}
	var a *pb.GalleryApplication
	err := s.update(ctx, func(tx *bolt.Tx) (err error) {
		if a, err = getApplication(tx, tenant, gallery, name); err != nil {
			return err
		}
		if err := boltpb.CheckETag("application '"+appPath(gallery, name)+"'", ifMatch, a.Etag); err != nil {
			return err
		}
		p := prefix(tenant, gallery, name)
		if !cascade {
			n, err := countLive(tx.Bucket(bucketVersions), p, &pb.GalleryApplicationVersion{})
			if err != nil {
				return err
			}
			if n > 0 {
				return errs.New(errs.FailedPrecondition, "cascade", "Gallery application '%s' has %d version(s): delete them first, or delete with cascade.", appPath(gallery, name), n)
			}
		}
		if err := s.markAll(tx, bucketVersions, p, &pb.GalleryApplicationVersion{}); err != nil {
			return err
		}
		return s.markDeleting(tx, bucketApplications, key(tenant, gallery, name), a)
	})
	if err != nil {
		return nil, err
	}
	s.wakeReaper()
	return a, nil
}
