package catalog

import (
	"context"

	"google.golang.org/protobuf/proto"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

var applicationRules = maskRules{
	resource:  "galleryApplication",
	mutable:   []string{"description", "eula", "privacy_statement_uri", "release_note_uri", "end_of_life_date", "custom_actions"},
	immutable: []string{"location", "supported_os_type"},
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
	a.Tenant, a.ProvisioningState = tenant, pb.ProvisioningSucceeded
	_, err := s.propose(ctx, func(c *statepb.Command) {
		a.CreateTime, a.UpdateTime, a.Etag = c.Time, c.Time, c.Etag
		c.Op = &statepb.Command_CreateApplication{CreateApplication: &statepb.CreateApplication{Application: a}}
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
	err := s.syncView(ctx, func(tx *state.Tx) (err error) {
		a, err = tx.Application(tenant, gallery, name)
		return err
	})
	return a, err
}

// ListApplications lists a gallery's applications by name.
func (s *Store) ListApplications(ctx context.Context, tenant, gallery string, pg Page) ([]*pb.GalleryApplication, string, error) {
	if _, err := s.GetGallery(ctx, tenant, gallery); err != nil {
		return nil, "", err
	}
	return list(ctx, s, state.Applications, state.Prefix(tenant, gallery), pg)
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
	err := retryRace(ifMatch, func() error {
		var cur *pb.GalleryApplication
		err := s.syncView(ctx, func(tx *state.Tx) (err error) {
			cur, err = tx.LiveApplication(tenant, in.Gallery, in.Name, "UpdateApplication")
			return err
		})
		if err != nil {
			return err
		}
		if err := state.CheckETag("application '"+state.AppPath(in.Gallery, in.Name)+"'", ifMatch, cur.Etag); err != nil {
			return err
		}
		if next, err = applyMask(cur, in, mask, applicationRules); err != nil {
			return err
		}
		if err := s.checkApplicationMutable(next); err != nil {
			return err
		}
		_, err = s.propose(ctx, func(c *statepb.Command) {
			next.UpdateTime, next.Etag = c.Time, c.Etag
			c.Op = &statepb.Command_UpdateApplication{UpdateApplication: &statepb.UpdateApplication{Application: next, ExpectEtag: cur.Etag}}
		})
		return err
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
	_, err := s.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_DeleteApplication{DeleteApplication: &statepb.DeleteApplication{Tenant: tenant, Gallery: gallery, Name: name, ExpectEtag: ifMatch, Cascade: cascade}}
	})
	if err != nil {
		return nil, err
	}
	return s.GetApplication(ctx, tenant, gallery, name)
}
