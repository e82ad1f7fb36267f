// Package signpb builds package sign's statements and policies from the
// API's messages, so that vmappd, the CLI and the agent build the same
// statement of a version: from the version as the catalog holds it
// (Statement), or as a goal state carries it (GoalStatement). It also
// reads signatures, trust policies and key changes.
package signpb

import (
	"fmt"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
)

// Statement is the statement of version v with the parameters of s
// (sequence, expiry, rollback, the custom actions it covers; s.tenant is
// not read: v's is).
func Statement(v *pb.GalleryApplicationVersion, s *pb.VersionSignatures) *sign.Version {
	pp := v.GetPublishingProfile()
	return statement(v.GetTenant(), v.GetGallery(), v.GetApplication(), v.GetName(), s,
		v.GetPackage(), v.GetDefaultConfiguration(), pp.GetManageActions(), pp.GetSettings())
}

// GoalStatement is the statement of what an agent is to install for ga:
// its names, ga.signing's parameters, tenant and custom actions, its
// artifacts, commands and settings. Nil when ga has no signatures.
func GoalStatement(ga *pb.GoalApplication) *sign.Version {
	s := ga.GetSigning()
	if s == nil {
		return nil
	}
	return statement(s.GetTenant(), ga.GetGallery(), ga.GetApplication(), ga.GetVersion(), s,
		ga.GetPackage(), ga.GetDefaultConfiguration(), ga.GetManageActions(), ga.GetSettings())
}

func statement(tenant, gallery, app, version string, s *pb.VersionSignatures, pkg, cfg *pb.Artifact,
	ma *pb.UserArtifactManage, set *pb.UserArtifactSettings) *sign.Version {
	v := &sign.Version{
		Tenant: tenant, Gallery: gallery, Application: app, Version: version,
		Sequence: s.GetSequence(), Rollback: s.GetRollback(),
		Package: artifact(pkg), DefaultConfiguration: artifact(cfg),
		Install: ma.GetInstall(), Update: ma.GetUpdate(), Remove: ma.GetRemove(),
		Settings: sign.Settings{
			PackageFileName:           set.GetPackageFileName(),
			ConfigFileName:            set.GetConfigFileName(),
			ScriptBehaviorAfterReboot: set.GetScriptBehaviorAfterReboot(),
		},
	}
	for _, a := range s.GetCustomActions() {
		v.CustomActions = append(v.CustomActions, customAction(a))
	}
	if t := s.GetExpireTime(); t != nil {
		v.Expires = t.AsTime()
	}
	return v
}

func customAction(a *pb.GalleryApplicationCustomAction) sign.CustomAction {
	out := sign.CustomAction{Name: a.GetName(), Script: a.GetScript(), Description: a.GetDescription()}
	for _, p := range a.GetParameters() {
		out.Parameters = append(out.Parameters, sign.Parameter{Name: p.GetName(), Required: p.GetRequired(), Type: p.GetType(),
			DefaultValue: p.GetDefaultValue(), Description: p.GetDescription()})
	}
	return out
}

// Params is the statement parameters want (tenant, sequence, expiry,
// rollback) of version v, with the custom actions the statement covers:
// cur's, when cur holds signatures of a statement with want's parameters
// (another signer signs the same statement), else the version's own and
// those of its application app now (the version's win by name).
func Params(v *pb.GalleryApplicationVersion, app *pb.GalleryApplication, cur, want *pb.VersionSignatures) *pb.VersionSignatures {
	out := &pb.VersionSignatures{Tenant: want.GetTenant(), Sequence: want.GetSequence(), ExpireTime: want.GetExpireTime(), Rollback: want.GetRollback()}
	if len(cur.GetSignatures()) > 0 && cur.SameStatement(want) {
		out.CustomActions = cur.CustomActions
	} else {
		out.CustomActions = pb.MergeActions(v.GetPublishingProfile().GetCustomActions(), app.GetCustomActions())
	}
	return out
}

func artifact(a *pb.Artifact) sign.Artifact {
	if a == nil {
		return sign.Artifact{}
	}
	return sign.Artifact{SHA256: a.Sha256, Size: a.SizeBytes}
}

// Signatures parses the signature files of sigs; a malformed one is an
// errs.InvalidArgument naming its key id.
func Signatures(sigs []*pb.VersionSignature) ([]minisign.Signature, error) {
	out := make([]minisign.Signature, 0, len(sigs))
	for _, s := range sigs {
		m, err := minisign.DecodeSignature([]byte(s.GetSignature()))
		if err != nil {
			return nil, errs.Wrap(errs.InvalidArgument, err, "the signature by key %s", s.GetKeyId())
		}
		out = append(out, m)
	}
	return out, nil
}

// ParseSignatures parses signature files.
func ParseSignatures(files []string) ([]minisign.Signature, error) {
	out := make([]minisign.Signature, 0, len(files))
	for i, f := range files {
		m, err := minisign.DecodeSignature([]byte(f))
		if err != nil {
			return nil, errs.Wrap(errs.InvalidArgument, err, "signatures[%d]", i)
		}
		out = append(out, m)
	}
	return out, nil
}

// PublicKey parses a key's one-line form; field names it in the error.
func PublicKey(field, s string) (minisign.PublicKey, error) {
	k, err := minisign.ParsePublicKey(s)
	if err != nil {
		return minisign.PublicKey{}, &errs.Error{Class: errs.InvalidArgument, Field: field, Msg: fmt.Sprintf("%s %q is not a minisign public key", field, s), Err: err}
	}
	return k, nil
}

// GalleryPolicy is the policy of a gallery's trust: its keys, its
// required signatures as the threshold (at least 1), the keys its
// rotations retired and its revocations revoked.
func GalleryPolicy(tp *pb.TrustPolicy) (sign.Policy, error) {
	p := sign.Policy{Threshold: max(int(tp.GetRequiredSignatures()), 1)}
	for _, k := range tp.GetKeys() {
		pk, err := PublicKey("publicKey", k.GetPublicKey())
		if err != nil {
			return sign.Policy{}, err
		}
		p.Keys = append(p.Keys, pk)
	}
	for _, kc := range tp.GetKeyChanges() {
		st, _, err := KeyChange(kc)
		if err != nil {
			return sign.Policy{}, err
		}
		switch st := st.(type) {
		case *sign.Rotation:
			p.Retired = append(p.Retired, *st)
		case *sign.Revocation:
			p.Revoked = append(p.Revoked, st.Key)
		}
	}
	return p, nil
}

// KeyChange is the statement of a key change (a *sign.Rotation or a
// *sign.Revocation) and its signatures.
func KeyChange(kc *pb.KeyChange) (sign.Statement, []minisign.Signature, error) {
	sigs, err := ParseSignatures(kc.GetSignatures())
	if err != nil {
		return nil, nil, err
	}
	switch c := kc.GetChange().(type) {
	case *pb.KeyChange_Rotation:
		old, err := PublicKey("oldPublicKey", c.Rotation.GetOldPublicKey())
		if err != nil {
			return nil, nil, err
		}
		next, err := PublicKey("newPublicKey", c.Rotation.GetNewPublicKey())
		if err != nil {
			return nil, nil, err
		}
		return &sign.Rotation{Old: old, New: next}, sigs, nil
	case *pb.KeyChange_Revocation:
		k, err := PublicKey("publicKey", c.Revocation.GetPublicKey())
		if err != nil {
			return nil, nil, err
		}
		return &sign.Revocation{Key: k, Reason: c.Revocation.GetReason()}, sigs, nil
	}
	return nil, nil, errs.New(errs.InvalidArgument, "change", "a key change is a rotation or a revocation")
}

// Apply applies a signed key change to p (sign.Policy's Rotate or
// Revoke): p is unchanged when it is refused.
func Apply(p sign.Policy, kc *pb.KeyChange) (sign.Policy, error) {
	st, sigs, err := KeyChange(kc)
	if err != nil {
		return p, err
	}
	switch st := st.(type) {
	case *sign.Rotation:
		return p.Rotate(st, sigs)
	case *sign.Revocation:
		return p.Revoke(st, sigs)
	}
	return p, nil
}
