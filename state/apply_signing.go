package state

import (
	"encoding/binary"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// signVersion adds a signature to a version's statement (see
// statepb.SignVersion).
func signVersion(tx *Tx, c *statepb.Command, op *statepb.SignVersion) error {
	r := op.GetVersion()
	what := VersionPath(r.GetGallery(), r.GetApplication(), r.GetVersion())
	v, err := tx.Version(r.Tenant, r.Gallery, r.Application, r.Version)
	if err != nil {
		return err
	}
	if v.ProvisioningState == pb.ProvisioningDeleting {
		return MarkedForDeletion("SignVersion", what)
	}
	policy, err := tx.TrustPolicy(r.Tenant, r.Gallery)
	if err != nil {
		return err
	}
	if v.Etag != op.VersionEtag || policy.GetEtag() != op.PolicyEtag {
		return errs.New(errs.Aborted, "", "version '%s' or its gallery's trust policy changed while the signature was checked: check it again", what)
	}
	k := refVersionKey(r)
	cur, _, err := Signatures.Get(tx, k)
	if err != nil {
		return err
	}
	st := proto.CloneOf(op.GetStatement())
	sig := proto.CloneOf(op.GetSignature())
	sig.AddTime, sig.Status, sig.KeyName = timestamppb.New(c.Time.AsTime()), "", ""
	highest := tx.HighestSequence(r.Tenant, r.Gallery, r.Application)
	switch {
	case len(cur.GetSignatures()) > 0 && cur.SameStatement(st) && !sameActions(cur, st):
		return errs.New(errs.Aborted, "", "the statement of version '%s' was signed while the signature was checked: check it again", what)
	case len(cur.GetSignatures()) > 0 && cur.SameStatement(st):
		st.Signatures = withSignature(cur.Signatures, sig)
	case len(cur.GetSignatures()) > 0 && !op.Replace:
		return errs.New(errs.FailedPrecondition, "sequence", "version '%s' is signed with sequence %d already: sign that statement, or replace it (its %d signature(s) then go)", what, cur.Sequence, len(cur.Signatures))
	case !st.Rollback && st.Sequence <= highest:
		return errs.New(errs.FailedPrecondition, "sequence", "sequence %d is not above %d, the highest signed for '%s': machines that installed that one would refuse it as a rollback", st.Sequence, highest, AppPath(r.Gallery, r.Application))
	default:
		st.Signatures = []*pb.VersionSignature{sig}
	}
	if st.Sequence > highest {
		app := ApplicationKey(r.Tenant, r.Gallery, r.Application)
		if err := tx.tx.Bucket(bucketSequences).Put(app, binary.BigEndian.AppendUint64(nil, st.Sequence)); err != nil {
			return err
		}
	}
	return Signatures.put(tx, k, st)
}

// sameActions tells whether statements a and b cover the same custom
// actions.
func sameActions(a, b *pb.VersionSignatures) bool {
	return slices.EqualFunc(a.CustomActions, b.CustomActions, func(x, y *pb.GalleryApplicationCustomAction) bool { return proto.Equal(x, y) })
}

// withSignature is sigs with sig added, in place of its key's earlier
// signature.
func withSignature(sigs []*pb.VersionSignature, sig *pb.VersionSignature) []*pb.VersionSignature {
	out := make([]*pb.VersionSignature, 0, len(sigs)+1)
	for _, s := range sigs {
		if s.KeyId != sig.KeyId {
			out = append(out, s)
		}
	}
	return append(out, sig)
}

// putTrustPolicy replaces a live gallery's trust policy.
func putTrustPolicy(tx *Tx, c *statepb.Command, op *statepb.PutTrustPolicy) error {
	p := op.GetPolicy()
	if _, err := tx.LiveGallery(op.Tenant, p.GetGallery(), "PutTrustPolicy"); err != nil {
		return err
	}
	cur, err := tx.TrustPolicy(op.Tenant, p.Gallery)
	if err != nil {
		return err
	}
	if cur.GetEtag() != op.ExpectEtag {
		return errs.New(errs.Aborted, "", "the trust policy of gallery '%s' changed since it was read: read it again", p.Gallery)
	}
	return TrustPolicies.put(tx, GalleryKey(op.Tenant, p.Gallery), stamp(proto.CloneOf(p), c))
}

// TrustPolicy reads a gallery's trust policy; nil when it has none.
func (tx *Tx) TrustPolicy(tenant, gallery string) (*pb.TrustPolicy, error) {
	p, ok, err := TrustPolicies.Get(tx, GalleryKey(tenant, gallery))
	if !ok {
		return nil, err
	}
	return p, err
}

// VersionSignatures reads a version's signatures; nil when it has none.
func (tx *Tx) VersionSignatures(tenant, gallery, app, version string) (*pb.VersionSignatures, error) {
	s, ok, err := Signatures.Get(tx, VersionKey(tenant, gallery, app, version))
	if !ok {
		return nil, err
	}
	return s, err
}

// HighestSequence is the highest statement sequence signed for an
// application, 0 when none. It outlives the application's versions, and
// the application itself, so that no new statement takes a sequence
// machines may have installed.
func (tx *Tx) HighestSequence(tenant, gallery, app string) uint64 {
	v := tx.tx.Bucket(bucketSequences).Get(ApplicationKey(tenant, gallery, app))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
