// Package signing keeps the publishers' signatures of versions and the
// galleries' trust policies (SigningService), and answers the fleet: may a
// version be deployed, and what signatures and key changes go into a
// machine's goal state.
//
// A signature is checked when it is added: it must be by a key the gallery
// trusts (not retired by a rotation, not revoked) and verify against the
// statement vmappd builds from the version as stored (package signpb) with
// the request's sequence, expiry and rollback flag. vmappd's checks spare
// operators mistakes; they are not what protects machines: agents verify
// the signatures again, with keys of their own, before they act.
package signing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
	"github.com/vmapp/vmapp/sign/signpb"
	"github.com/vmapp/vmapp/state"
)

// Options configure a Service.
type Options struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Service is signatures and trust policies on the state.
type Service struct {
	db  *state.DB
	now func() time.Time
}

// New returns the service on db.
func New(db *state.DB, o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{db: db, now: o.Now}
}

// syncView reads what every change committed before the call made: what
// API clients read.
func (s *Service) syncView(ctx context.Context, fn func(tx *state.Tx) error) error {
	if err := s.db.Sync(ctx); err != nil {
		return err
	}
	return s.db.View(ctx, fn)
}

// propose builds a command at now with set and has it applied.
func (s *Service) propose(ctx context.Context, set func(c *statepb.Command)) error {
	c := state.NewCommand(s.now())
	set(c)
	return s.db.Propose(ctx, c)
}

// retry runs a read-check-propose until its command isn't refused for a
// change that raced it (Aborted), at most a few times.
func retry(attempt func() error) error {
	for i := 0; ; i++ {
		err := attempt()
		if i == 4 || !errs.Is(err, errs.Aborted) {
			return err
		}
	}
}

func checkVersionNames(gallery, app, version string) error {
	if err := catalog.ValidateGalleryName(gallery); err != nil {
		return err
	}
	if err := catalog.ValidateApplicationName(app); err != nil {
		return err
	}
	_, err := catalog.ParseVersion(version)
	return err
}

// signed is what is read to check a version's signatures.
type signed struct {
	version *pb.GalleryApplicationVersion
	app     *pb.GalleryApplication
	sigs    *pb.VersionSignatures // nil: none
	policy  *pb.TrustPolicy       // nil: none
	highest uint64
}

func readSigned(tx *state.Tx, tenant, gallery, app, version string) (signed, error) {
	var r signed
	var err error
	if r.version, err = tx.Version(tenant, gallery, app, version); err != nil {
		return r, err
	}
	if r.app, err = tx.Application(tenant, gallery, app); err != nil {
		return r, err
	}
	if r.sigs, err = tx.VersionSignatures(tenant, gallery, app, version); err != nil {
		return r, err
	}
	if r.policy, err = tx.TrustPolicy(tenant, gallery); err != nil {
		return r, err
	}
	r.highest = tx.HighestSequence(tenant, gallery, app)
	return r, nil
}

// SignVersion checks a signature of a version's statement and adds it.
func (s *Service) SignVersion(ctx context.Context, tenant string, r *pb.SignVersionRequest) (*pb.VersionSignatures, error) {
	if err := checkVersionNames(r.Gallery, r.Application, r.Version); err != nil {
		return nil, err
	}
	sig, err := minisign.DecodeSignature([]byte(r.Signature))
	if err != nil {
		return nil, &errs.Error{Class: errs.InvalidArgument, Field: "signature", Msg: "signature is not a minisign signature file", Err: err}
	}
	what := state.VersionPath(r.Gallery, r.Application, r.Version)
	err = retry(func() error {
		var cur signed
		err := s.syncView(ctx, func(tx *state.Tx) (err error) {
			cur, err = readSigned(tx, tenant, r.Gallery, r.Application, r.Version)
			return err
		})
		if err != nil {
			return err
		}
		st := signpb.Params(cur.version, cur.app, cur.sigs,
			&pb.VersionSignatures{Tenant: tenant, Sequence: r.Sequence, ExpireTime: r.ExpireTime, Rollback: r.Rollback})
		if err := s.checkSignature(what, cur, st, sig); err != nil {
			return err
		}
		return s.propose(ctx, func(c *statepb.Command) {
			c.Op = &statepb.Command_SignVersion{SignVersion: &statepb.SignVersion{
				Version:   &statepb.VersionRef{Tenant: tenant, Gallery: r.Gallery, Application: r.Application, Version: r.Version},
				Statement: st, Signature: &pb.VersionSignature{KeyId: sig.KeyID.String(), Signature: r.Signature},
				Replace: r.Replace, VersionEtag: cur.version.Etag, PolicyEtag: cur.policy.GetEtag(),
			}}
		})
	})
	if err != nil {
		return nil, err
	}
	res, err := s.GetVersionSignatures(ctx, tenant, r.Gallery, r.Application, r.Version)
	return res.GetSignatures(), err
}

// checkSignature checks that sig, by a key the gallery trusts, verifies
// against the statement of the version with the parameters of st.
func (s *Service) checkSignature(what string, cur signed, st *pb.VersionSignatures, sig minisign.Signature) error {
	switch {
	case cur.version.ProvisioningState == pb.ProvisioningDeleting:
		return state.MarkedForDeletion("SignVersion", what)
	case cur.version.Package == nil:
		return errs.New(errs.FailedPrecondition, "version", "version '%s' has no package yet: a statement covers the package's sha256, so sign it once the package is stored", what)
	case len(cur.policy.GetKeys()) == 0:
		return errs.New(errs.FailedPrecondition, "signature", "gallery '%s' trusts no key: its Owner adds the signing key first (vmapp gallery trust add %s --key KEY.pub)", cur.version.Gallery, cur.version.Gallery)
	}
	if t := st.GetExpireTime(); t != nil && !t.AsTime().After(s.now()) {
		return errs.New(errs.InvalidArgument, "expireTime", "expireTime %s is not in the future: machines would refuse the statement", t.AsTime().UTC().Format(time.RFC3339))
	}
	stmt := signpb.Statement(cur.version, st)
	if _, err := stmt.Encode(); err != nil {
		return renameField(err)
	}
	p, err := signpb.GalleryPolicy(cur.policy)
	if err != nil {
		return err
	}
	p.Threshold = 1 // this signature alone
	return refused(p.Check(stmt, []minisign.Signature{sig}, 0, s.now()), "signature", "signature")
}

// renameField gives a statement's invalid parameter its request field name.
func renameField(err error) error {
	e, ok := err.(*errs.Error)
	if !ok {
		return err
	}
	if e.Field == "expires" {
		return &errs.Error{Class: e.Class, Field: "expireTime", Msg: e.Msg, Err: e.Err}
	}
	return e
}

// refused classifies a refusal of package sign: no signature, one that
// doesn't verify (field sigField), or a statement past its expiry, is bad
// input; a key the gallery doesn't trust (or no longer: retired, revoked)
// fails a precondition, the gallery's trust (field keyField).
func refused(err error, sigField, keyField string) error {
	switch sign.ReasonOf(err) {
	case 0:
		return err
	case sign.SignatureInvalid, sign.Unsigned:
		return &errs.Error{Class: errs.InvalidArgument, Field: sigField, Msg: "the signature doesn't verify", Err: err}
	case sign.Expired:
		return &errs.Error{Class: errs.InvalidArgument, Field: "expireTime", Msg: "the statement expired", Err: err}
	}
	return &errs.Error{Class: errs.FailedPrecondition, Field: keyField, Msg: "the gallery's trust policy doesn't accept the signature", Err: err}
}

// GetVersionSignatures returns a version's signatures, each with its
// status under the gallery's trust policy now.
func (s *Service) GetVersionSignatures(ctx context.Context, tenant, gallery, app, version string) (*pb.GetVersionSignaturesResponse, error) {
	if err := checkVersionNames(gallery, app, version); err != nil {
		return nil, err
	}
	var cur signed
	err := s.syncView(ctx, func(tx *state.Tx) (err error) {
		cur, err = readSigned(tx, tenant, gallery, app, version)
		return err
	})
	if err != nil {
		return nil, err
	}
	res := &pb.GetVersionSignaturesResponse{NextSequence: cur.highest + 1}
	if err := s.deployable(cur); err != nil {
		res.DeployRefusal = err.Error()
	}
	if cur.sigs == nil {
		return res, nil
	}
	res.Signatures = proto.CloneOf(cur.sigs)
	p, err := signpb.GalleryPolicy(cur.policy)
	if err != nil {
		return nil, err
	}
	p.Threshold = 1
	stmt := signpb.Statement(cur.version, cur.sigs)
	for _, vs := range res.Signatures.Signatures {
		vs.Status = status(p, stmt, vs, s.now())
		for _, k := range cur.policy.GetKeys() {
			if k.KeyId == vs.KeyId {
				vs.KeyName = k.Name
			}
		}
	}
	return res, nil
}

// status is Trusted, or why p doesn't count the signature vs of stmt.
func status(p sign.Policy, stmt *sign.Version, vs *pb.VersionSignature, now time.Time) string {
	sigs, err := signpb.Signatures([]*pb.VersionSignature{vs})
	if err != nil {
		return "SignatureInvalid: " + err.Error()
	}
	err = p.Check(stmt, sigs, 0, now)
	if err == nil || sign.ReasonOf(err) == sign.Expired { // then the signature counts: the statement expired
		return "Trusted"
	}
	if r := (*sign.Refusal)(nil); errors.As(err, &r) {
		return r.Error()
	}
	return err.Error()
}

// Deployable refuses (FailedPrecondition) a version that its gallery's
// trust policy doesn't let vmappd deploy: a policy requiring signatures
// that the version's don't meet.
func (s *Service) Deployable(ctx context.Context, v *pb.GalleryApplicationVersion) error {
	var cur signed
	err := s.db.View(ctx, func(tx *state.Tx) (err error) {
		cur, err = readSigned(tx, v.Tenant, v.Gallery, v.Application, v.Name)
		return err
	})
	if err != nil {
		return err
	}
	return s.deployable(cur)
}

func (s *Service) deployable(cur signed) error {
	n := cur.policy.GetRequiredSignatures()
	if n == 0 {
		return nil
	}
	p, err := signpb.GalleryPolicy(cur.policy)
	if err != nil {
		return err
	}
	sigs, err := signpb.Signatures(cur.sigs.GetSignatures())
	switch {
	case cur.sigs == nil:
		err = &sign.Refusal{Reason: sign.Unsigned, Detail: "the version has no signature"}
	case err == nil:
		err = p.Check(signpb.Statement(cur.version, cur.sigs), sigs, 0, s.now())
	}
	if err != nil {
		v := cur.version
		return &errs.Error{Class: errs.FailedPrecondition, Field: "packageReferenceId",
			Msg: fmt.Sprintf("gallery '%s' requires %d signature(s) by the keys of its trust policy, and version %s doesn't have them", v.Gallery, n, state.VersionPath(v.Gallery, v.Application, v.Name)), Err: err}
	}
	return nil
}

// GoalSigning returns what a goal state carries of a version's signatures
// (nil when it has none), as this node's state holds them.
func (s *Service) GoalSigning(ctx context.Context, v *pb.GalleryApplicationVersion) (*pb.VersionSignatures, error) {
	var sigs *pb.VersionSignatures
	err := s.db.View(ctx, func(tx *state.Tx) (err error) {
		sigs, err = tx.VersionSignatures(v.Tenant, v.Gallery, v.Application, v.Name)
		return err
	})
	return sigs, err
}

// KeyChanges returns a gallery's signed key changes, oldest first, as this
// node's state holds them.
func (s *Service) KeyChanges(ctx context.Context, tenant, gallery string) ([]*pb.KeyChange, error) {
	var p *pb.TrustPolicy
	err := s.db.View(ctx, func(tx *state.Tx) (err error) {
		p, err = tx.TrustPolicy(tenant, gallery)
		return err
	})
	return p.GetKeyChanges(), err
}
