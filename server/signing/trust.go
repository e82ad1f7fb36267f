package signing

import (
	"context"
	"regexp"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
	"github.com/vmapp/vmapp/sign/signpb"
	"github.com/vmapp/vmapp/state"
)

// GetTrustPolicy returns a gallery's trust policy: an empty one (no keys,
// nothing required) when it has none.
func (s *Service) GetTrustPolicy(ctx context.Context, tenant, gallery string) (*pb.TrustPolicy, error) {
	if err := catalog.ValidateGalleryName(gallery); err != nil {
		return nil, err
	}
	var p *pb.TrustPolicy
	err := s.syncView(ctx, func(tx *state.Tx) (err error) {
		if _, err := tx.Gallery(tenant, gallery); err != nil {
			return err
		}
		p, err = tx.TrustPolicy(tenant, gallery)
		return err
	})
	if err != nil {
		return nil, err
	}
	if p == nil {
		p = &pb.TrustPolicy{Gallery: gallery}
	}
	return p, nil
}

// change reads a live gallery's trust policy (an empty one when it has
// none), lets edit change a copy of it (at now), and stores the result if
// the policy didn't change meanwhile.
func (s *Service) change(ctx context.Context, tenant, gallery string, edit func(p *pb.TrustPolicy, now time.Time) error) (*pb.TrustPolicy, error) {
	if err := catalog.ValidateGalleryName(gallery); err != nil {
		return nil, err
	}
	var next *pb.TrustPolicy
	err := retry(func() error {
		var cur *pb.TrustPolicy
		err := s.syncView(ctx, func(tx *state.Tx) (err error) {
			if _, err := tx.LiveGallery(tenant, gallery, "ChangeTrustPolicy"); err != nil {
				return err
			}
			cur, err = tx.TrustPolicy(tenant, gallery)
			return err
		})
		if err != nil {
			return err
		}
		next = proto.CloneOf(cur)
		if next == nil {
			next = &pb.TrustPolicy{Gallery: gallery}
		}
		c := state.NewCommand(s.now())
		if err := edit(next, c.Time.AsTime()); err != nil {
			return err
		}
		next.Etag, next.UpdateTime = c.Etag, c.Time
		c.Op = &statepb.Command_PutTrustPolicy{PutTrustPolicy: &statepb.PutTrustPolicy{Tenant: tenant, Policy: next, ExpectEtag: cur.GetEtag()}}
		return s.db.Propose(ctx, c)
	})
	if err != nil {
		return nil, err
	}
	return next, nil
}

var keyName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// AddTrustedKey trusts a public key for a gallery, under a name unique in
// its policy; optionally sets the signatures required too.
func (s *Service) AddTrustedKey(ctx context.Context, tenant string, r *pb.AddTrustedKeyRequest) (*pb.TrustPolicy, error) {
	k, err := signpb.PublicKey("publicKey", r.PublicKey)
	if err != nil {
		return nil, err
	}
	name := r.Name
	if name == "" {
		name = k.ID.String()
	}
	if !keyName.MatchString(name) {
		return nil, errs.New(errs.InvalidArgument, "name", "name '%s' is invalid: use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit", name)
	}
	return s.change(ctx, tenant, r.Gallery, func(p *pb.TrustPolicy, now time.Time) error {
		for _, t := range p.Keys {
			switch {
			case t.KeyId == k.ID.String() || t.PublicKey == k.String():
				return errs.New(errs.AlreadyExists, "publicKey", "gallery '%s' trusts key %s already, as '%s'", r.Gallery, k.ID, t.Name)
			case t.Name == name:
				return errs.New(errs.AlreadyExists, "name", "gallery '%s' trusts another key as '%s' (key %s)", r.Gallery, name, t.KeyId)
			}
		}
		if err := unchanged(p, k); err != nil {
			return err
		}
		p.Keys = append(p.Keys, &pb.TrustedKey{Name: name, KeyId: k.ID.String(), PublicKey: k.String(), AddTime: timestamppb.New(now)})
		if r.RequiredSignatures != nil {
			return setRequired(p, r.GetRequiredSignatures())
		}
		return nil
	})
}

// unchanged refuses a key that the policy's key changes retired or
// revoked: such a key is never trusted again.
func unchanged(p *pb.TrustPolicy, k minisign.PublicKey) error {
	for _, kc := range p.KeyChanges {
		st, _, err := signpb.KeyChange(kc)
		if err != nil {
			return err
		}
		switch st := st.(type) {
		case *sign.Rotation:
			if st.Old.ID == k.ID {
				return errs.New(errs.FailedPrecondition, "publicKey", "key %s was replaced by key %s in gallery '%s': a replaced key is never trusted again", k.ID, st.New.ID, p.Gallery)
			}
		case *sign.Revocation:
			if st.Key.ID == k.ID {
				return errs.New(errs.FailedPrecondition, "publicKey", "key %s was revoked in gallery '%s' (%s): a revoked key is never trusted again", k.ID, p.Gallery, st.Reason)
			}
		}
	}
	return nil
}

// setRequired sets the signatures required, at most the keys trusted.
func setRequired(p *pb.TrustPolicy, n int32) error {
	if n < 0 || int(n) > len(p.Keys) {
		return errs.New(errs.InvalidArgument, "requiredSignatures", "requiredSignatures %d: want 0 (not required) to %d, the keys gallery '%s' trusts", n, len(p.Keys), p.Gallery)
	}
	p.RequiredSignatures = n
	return nil
}

// RemoveTrustedKey stops trusting a key (by name or id) for a gallery.
func (s *Service) RemoveTrustedKey(ctx context.Context, tenant, gallery, key string) (*pb.TrustPolicy, error) {
	return s.change(ctx, tenant, gallery, func(p *pb.TrustPolicy, _ time.Time) error {
		i := slices.IndexFunc(p.Keys, func(t *pb.TrustedKey) bool { return t.Name == key || t.KeyId == key })
		if i < 0 {
			return errs.New(errs.NotFound, "key", "gallery '%s' trusts no key named or with the id '%s'", gallery, key)
		}
		if len(p.Keys)-1 < int(p.RequiredSignatures) {
			return errs.New(errs.FailedPrecondition, "key", "gallery '%s' requires %d signatures: with key '%s' gone it would trust %d keys; lower requiredSignatures first", gallery, p.RequiredSignatures, key, len(p.Keys)-1)
		}
		p.Keys = slices.Delete(p.Keys, i, i+1)
		return nil
	})
}

// SetRequiredSignatures sets how many trusted keys must have signed a
// version for vmappd to deploy it.
func (s *Service) SetRequiredSignatures(ctx context.Context, tenant, gallery string, n int32) (*pb.TrustPolicy, error) {
	return s.change(ctx, tenant, gallery, func(p *pb.TrustPolicy, _ time.Time) error { return setRequired(p, n) })
}

// RotateTrustedKey applies a rotation statement signed by the old key: the
// new key takes its place (and name).
func (s *Service) RotateTrustedKey(ctx context.Context, tenant string, r *pb.RotateTrustedKeyRequest) (*pb.TrustPolicy, error) {
	if r.Rotation == nil {
		return nil, errs.New(errs.InvalidArgument, "rotation", "rotation is required")
	}
	kc := &pb.KeyChange{Change: &pb.KeyChange_Rotation{Rotation: r.Rotation}, Signatures: r.Signatures}
	return s.change(ctx, tenant, r.Gallery, func(p *pb.TrustPolicy, now time.Time) error {
		st, err := s.applyChange(p, kc, "rotation.oldPublicKey")
		if err != nil {
			return err
		}
		rot := st.(*sign.Rotation)
		for _, t := range p.Keys {
			if t.KeyId == rot.Old.ID.String() {
				t.KeyId, t.PublicKey, t.AddTime = rot.New.ID.String(), rot.New.String(), timestamppb.New(now)
			}
		}
		kc.Time = timestamppb.New(now)
		p.KeyChanges = append(p.KeyChanges, kc)
		return nil
	})
}

// RevokeTrustedKey applies a revocation statement: the key is no longer
// trusted, and never will be again.
func (s *Service) RevokeTrustedKey(ctx context.Context, tenant string, r *pb.RevokeTrustedKeyRequest) (*pb.TrustPolicy, error) {
	if r.Revocation == nil {
		return nil, errs.New(errs.InvalidArgument, "revocation", "revocation is required")
	}
	kc := &pb.KeyChange{Change: &pb.KeyChange_Revocation{Revocation: r.Revocation}, Signatures: r.Signatures}
	return s.change(ctx, tenant, r.Gallery, func(p *pb.TrustPolicy, now time.Time) error {
		st, err := s.applyChange(p, kc, "revocation.publicKey")
		if err != nil {
			return err
		}
		id := st.(*sign.Revocation).Key.ID.String()
		p.Keys = slices.DeleteFunc(p.Keys, func(t *pb.TrustedKey) bool { return t.KeyId == id })
		kc.Time = timestamppb.New(now)
		p.KeyChanges = append(p.KeyChanges, kc)
		return nil
	})
}

// applyChange checks that the policy p accepts the signed key change kc,
// and returns its statement; field names the key at fault in refusals.
func (s *Service) applyChange(p *pb.TrustPolicy, kc *pb.KeyChange, field string) (sign.Statement, error) {
	st, _, err := signpb.KeyChange(kc)
	if err != nil {
		return nil, err
	}
	policy, err := signpb.GalleryPolicy(p)
	if err != nil {
		return nil, err
	}
	next, err := signpb.Apply(policy, kc)
	if err != nil {
		return nil, refused(err, "signatures", field)
	}
	if slices.EqualFunc(next.Keys, policy.Keys, minisign.PublicKey.Equal) && len(next.Revoked) == len(policy.Revoked) {
		return nil, errs.New(errs.AlreadyExists, field, "gallery '%s' applied this %s already", p.Gallery, st.Subject())
	}
	return st, nil
}
