package catalog

import (
	"context"

	"google.golang.org/protobuf/proto"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

var galleryRules = maskRules{
	resource:  "gallery",
	mutable:   []string{"description"},
	immutable: []string{"location"},
}

// CreateGallery stores a new gallery.
func (s *Store) CreateGallery(ctx context.Context, tenant string, in *pb.Gallery) (*pb.Gallery, error) {
	g := proto.Clone(in).(*pb.Gallery)
	if err := s.validateGallery(g); err != nil {
		return nil, err
	}
	g.Tenant, g.ProvisioningState = tenant, pb.ProvisioningSucceeded
	_, err := s.propose(ctx, func(c *statepb.Command) {
		g.CreateTime, g.UpdateTime, g.Etag = c.Time, c.Time, c.Etag
		c.Op = &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: g}}
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
	err := s.syncView(ctx, func(tx *state.Tx) (err error) {
		g, err = tx.Gallery(tenant, name)
		return err
	})
	return g, err
}

// ListGalleries lists the tenant's galleries by name.
func (s *Store) ListGalleries(ctx context.Context, tenant string, pg Page) ([]*pb.Gallery, string, error) {
	return list(ctx, s, state.Galleries, state.Prefix(tenant), pg)
}

// UpdateGallery changes the mask's fields of the gallery named in.Name.
func (s *Store) UpdateGallery(ctx context.Context, tenant string, in *pb.Gallery, mask []string, ifMatch string) (*pb.Gallery, error) {
	if err := ValidateGalleryName(in.GetName()); err != nil {
		return nil, err
	}
	var next *pb.Gallery
	err := retryRace(ifMatch, func() error {
		var cur *pb.Gallery
		err := s.syncView(ctx, func(tx *state.Tx) (err error) {
			cur, err = tx.LiveGallery(tenant, in.Name, "UpdateGallery")
			return err
		})
		if err != nil {
			return err
		}
		if err := state.CheckETag("gallery '"+in.Name+"'", ifMatch, cur.Etag); err != nil {
			return err
		}
		if next, err = applyMask(cur, in, mask, galleryRules); err != nil {
			return err
		}
		if err := checkText("description", next.GetDescription(), maxTextLen); err != nil {
			return err
		}
		_, err = s.propose(ctx, func(c *statepb.Command) {
			next.UpdateTime, next.Etag = c.Time, c.Etag
			c.Op = &statepb.Command_UpdateGallery{UpdateGallery: &statepb.UpdateGallery{Gallery: next, ExpectEtag: cur.Etag}}
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return next, nil
}

// DeleteGallery marks the gallery for deletion. It must have no live
// applications unless cascade, which marks them and their versions too.
// Its shares end: a new gallery of the same name starts private.
func (s *Store) DeleteGallery(ctx context.Context, tenant, name, ifMatch string, cascade bool) (*pb.Gallery, error) {
	if err := ValidateGalleryName(name); err != nil {
		return nil, err
	}
	_, err := s.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_DeleteGallery{DeleteGallery: &statepb.DeleteGallery{Tenant: tenant, Name: name, ExpectEtag: ifMatch, Cascade: cascade}}
	})
	if err != nil {
		return nil, err
	}
	return s.GetGallery(ctx, tenant, name)
}
