package server_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/signtest"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
)

// wantField checks err's class, that its message holds subs, and the
// field at fault.
func wantField(t *testing.T, err error, code codes.Code, field string, subs ...string) {
	t.Helper()
	wantErr(t, err, code, subs...)
	if f := errs.FieldOf(err); f != field {
		t.Fatalf("field at fault %q, want %q (%v)", f, field, err)
	}
}

func sequence(n uint64) *pb.VersionSignatures { return &pb.VersionSignatures{Sequence: n} }

// TestSignVersion: a signature is added only by a key the gallery trusts,
// over the statement of the version as stored with the request's
// parameters; every bad request is refused with the field at fault, and
// stores nothing.
func TestSignVersion(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	c.Publish(t, "1.0.0", []byte("one"), testcluster.Target("eastus", 1))
	c.Publish(t, "2.0.0", []byte("two"), testcluster.Target("eastus", 1))
	_, err := c.Client.Catalog.CreateVersion(ctx(t), &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "3.0.0", Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}}}})
	mustOK(t, err)
	sg := pb.NewSigningServiceClient(c.Client.Conn())
	k1, k2, stranger := signtest.Key(t), signtest.Key(t), signtest.Key(t)
	sig := func(k minisign.PrivateKey, version string, p *pb.VersionSignatures) *pb.SignVersionRequest {
		return signtest.Request(t, c.Client, k, "g", "a", version, p)
	}
	send := func(r *pb.SignVersionRequest) error {
		_, err := sg.SignVersion(ctx(t), r)
		return err
	}
	stored := func(version string) string {
		r, err := sg.GetVersionSignatures(ctx(t), &pb.GetVersionSignaturesRequest{Gallery: "g", Application: "a", Version: version})
		mustOK(t, err)
		b, _ := protojson.Marshal(r)
		return string(b)
	}

	wantField(t, send(sig(k1, "1.0.0", sequence(1))), codes.FailedPrecondition, "signature", "gallery 'g' trusts no key")
	signtest.Trust(t, c.Client, "g", "release", k1)
	signtest.Trust(t, c.Client, "g", "second", k2)
	before := stored("1.0.0")

	r := sig(k1, "1.0.0", sequence(1))
	r.Signature = "untrusted comment: x\nnot base64\n"
	wantField(t, send(r), codes.InvalidArgument, "signature", "not a minisign signature file")
	wantField(t, send(sig(stranger, "1.0.0", sequence(1))), codes.FailedPrecondition, "signature", "UntrustedKey", "is not trusted")
	// A signature over another version, sent for this one.
	r = sig(k1, "2.0.0", sequence(1))
	r.Version = "1.0.0"
	wantField(t, send(r), codes.InvalidArgument, "signature", "SignatureInvalid", "signed another statement: version default/g/a/2.0.0 sequence 1")
	// Over this version with another sequence than the one sent.
	r = sig(k1, "1.0.0", sequence(1))
	r.Sequence = 2
	wantField(t, send(r), codes.InvalidArgument, "signature", "SignatureInvalid")
	r.Sequence = 0
	wantField(t, send(r), codes.InvalidArgument, "sequence", "sequence must be at least 1")
	past := timestamppb.New(time.Now().Add(-time.Hour).Truncate(time.Second))
	wantField(t, send(sig(k1, "1.0.0", &pb.VersionSignatures{Sequence: 1, ExpireTime: past})), codes.InvalidArgument, "expireTime", "not in the future")
	r = sig(k1, "1.0.0", sequence(1))
	r.Rollback = true
	wantField(t, send(r), codes.InvalidArgument, "expireTime", "expires is required with rollback")
	r = sig(k1, "1.0.0", sequence(1))
	r.Version = "3.0.0"
	wantField(t, send(r), codes.FailedPrecondition, "version", "has no package yet")
	r.Version = "9.9.9"
	wantErr(t, send(r), codes.NotFound, "doesn't exist")
	if after := stored("1.0.0"); after != before {
		t.Fatalf("refused signatures changed what is stored:\n%s\n%s", before, after)
	}

	// Two signers of one statement; a key signing again replaces its own.
	mustOK(t, send(sig(k1, "1.0.0", sequence(1))))
	mustOK(t, send(sig(k2, "1.0.0", sequence(1))))
	mustOK(t, send(sig(k1, "1.0.0", sequence(1))))
	got, err := sg.GetVersionSignatures(ctx(t), &pb.GetVersionSignaturesRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, err)
	if s := got.Signatures; s.Sequence != 1 || s.Tenant != "default" || len(s.Signatures) != 2 ||
		s.Signatures[0].KeyName != "second" || s.Signatures[1].KeyName != "release" || s.Signatures[1].Status != "Trusted" || got.NextSequence != 2 {
		t.Fatalf("signatures %v", got)
	}
	before = stored("1.0.0")
	wantField(t, send(sig(k1, "1.0.0", sequence(5))), codes.FailedPrecondition, "sequence", "is signed with sequence 1 already")
	wantField(t, send(sig(k1, "2.0.0", sequence(1))), codes.FailedPrecondition, "sequence", "sequence 1 is not above 1, the highest signed for 'g/a'")
	if after := stored("1.0.0"); after != before {
		t.Fatalf("refused signatures changed what is stored:\n%s\n%s", before, after)
	}
	mustOK(t, send(sig(k2, "2.0.0", sequence(2))))

	// A key the gallery stops trusting: its signature stays, and no longer
	// counts.
	_, err = sg.RemoveTrustedKey(ctx(t), &pb.RemoveTrustedKeyRequest{Gallery: "g", Key: "second"})
	mustOK(t, err)
	got, err = sg.GetVersionSignatures(ctx(t), &pb.GetVersionSignaturesRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, err)
	if st := got.Signatures.Signatures[0].Status; !strings.HasPrefix(st, "UntrustedKey: key "+k2.ID.String()+" is not trusted") {
		t.Fatalf("status of the removed key's signature: %q", st)
	}
	// A new statement replaces the old one, and its signatures.
	r = sig(k1, "1.0.0", sequence(3))
	r.Replace = true
	mustOK(t, send(r))
	got, err = sg.GetVersionSignatures(ctx(t), &pb.GetVersionSignaturesRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, err)
	if s := got.Signatures; s.Sequence != 3 || len(s.Signatures) != 1 || s.Signatures[0].KeyId != k1.ID.String() || got.NextSequence != 4 {
		t.Fatalf("after replacing the statement: %v", got)
	}
}

// TestTrustPolicy: keys added, named, removed, rotated and revoked by
// signed statements; bad keys and bad statements refused with the field
// at fault; a replaced or revoked key is never trusted again.
func TestTrustPolicy(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	c.Publish(t, "1.0.0", []byte("one"), testcluster.Target("eastus", 1))
	sg := pb.NewSigningServiceClient(c.Client.Conn())
	k1, k2, k3 := signtest.Key(t), signtest.Key(t), signtest.Key(t)
	policy := func() *pb.TrustPolicy {
		r, err := sg.GetTrustPolicy(ctx(t), &pb.GetTrustPolicyRequest{Gallery: "g"})
		mustOK(t, err)
		return r.Policy
	}
	add := func(k minisign.PrivateKey, name string, required *int32) error {
		_, err := sg.AddTrustedKey(ctx(t), &pb.AddTrustedKeyRequest{Gallery: "g", PublicKey: k.Public().String(), Name: name, RequiredSignatures: required})
		return err
	}
	empty := policy()
	if len(empty.Keys) != 0 || empty.RequiredSignatures != 0 || empty.Etag != "" {
		t.Fatalf("a gallery's policy before any change: %v", empty)
	}

	_, err := sg.AddTrustedKey(ctx(t), &pb.AddTrustedKeyRequest{Gallery: "g", PublicKey: "RWQnot-a-key"})
	wantField(t, err, codes.InvalidArgument, "publicKey", "is not a minisign public key")
	_, err = sg.AddTrustedKey(ctx(t), &pb.AddTrustedKeyRequest{Gallery: "nope", PublicKey: k1.Public().String()})
	wantErr(t, err, codes.NotFound, "Gallery 'nope' doesn't exist.")
	wantField(t, add(k1, "a b", nil), codes.InvalidArgument, "name", "name 'a b' is invalid")
	wantField(t, add(k1, "release", proto.Int32(2)), codes.InvalidArgument, "requiredSignatures", "want 0 (not required) to 1")
	if p := policy(); !proto.Equal(p, empty) {
		t.Fatalf("refused changes stored a policy: %v", p)
	}
	mustOK(t, add(k1, "release", nil))
	wantField(t, add(k1, "again", nil), codes.AlreadyExists, "publicKey", "trusts key "+k1.ID.String()+" already, as 'release'")
	wantField(t, add(k2, "release", nil), codes.AlreadyExists, "name", "trusts another key as 'release'")
	mustOK(t, add(k2, "", proto.Int32(2)))
	if p := policy(); len(p.Keys) != 2 || p.Keys[1].Name != k2.ID.String() || p.RequiredSignatures != 2 {
		t.Fatalf("policy %v", p)
	}
	_, err = sg.RemoveTrustedKey(ctx(t), &pb.RemoveTrustedKeyRequest{Gallery: "g", Key: "release"})
	wantField(t, err, codes.FailedPrecondition, "key", "lower requiredSignatures first")
	_, err = sg.RemoveTrustedKey(ctx(t), &pb.RemoveTrustedKeyRequest{Gallery: "g", Key: "nope"})
	wantField(t, err, codes.NotFound, "key", "trusts no key named or with the id 'nope'")
	for _, n := range []int32{3, -1} {
		_, err = sg.SetRequiredSignatures(ctx(t), &pb.SetRequiredSignaturesRequest{Gallery: "g", RequiredSignatures: n})
		wantField(t, err, codes.InvalidArgument, "requiredSignatures")
	}
	_, err = sg.SetRequiredSignatures(ctx(t), &pb.SetRequiredSignaturesRequest{Gallery: "g", RequiredSignatures: 1})
	mustOK(t, err)

	// Rotations: signed by the old key, over exactly this rotation.
	rotate := func(old, next minisign.PrivateKey, signers ...minisign.PrivateKey) error {
		rot := &sign.Rotation{Old: old.Public(), New: next.Public()}
		var sigs []string
		for _, k := range signers {
			s, err := sign.Sign(k, rot, time.Now())
			mustOK(t, err)
			sigs = append(sigs, string(s.Encode()))
		}
		_, err := sg.RotateTrustedKey(ctx(t), &pb.RotateTrustedKeyRequest{Gallery: "g",
			Rotation: &pb.KeyRotation{OldPublicKey: old.Public().String(), NewPublicKey: next.Public().String()}, Signatures: sigs})
		return err
	}
	wantField(t, rotate(k1, k3), codes.InvalidArgument, "signatures", "Unsigned", "no signature")
	wantField(t, rotate(k1, k3, k3), codes.FailedPrecondition, "rotation.oldPublicKey", "UntrustedKey")
	s, err := sign.Sign(k1, &sign.Rotation{Old: k1.Public(), New: k2.Public()}, time.Now())
	mustOK(t, err)
	_, err = sg.RotateTrustedKey(ctx(t), &pb.RotateTrustedKeyRequest{Gallery: "g",
		Rotation: &pb.KeyRotation{OldPublicKey: k1.Public().String(), NewPublicKey: k3.Public().String()}, Signatures: []string{string(s.Encode())}})
	wantField(t, err, codes.InvalidArgument, "signatures", "SignatureInvalid", "signed another statement")
	_, err = sg.RotateTrustedKey(ctx(t), &pb.RotateTrustedKeyRequest{Gallery: "g",
		Rotation: &pb.KeyRotation{OldPublicKey: "garbage", NewPublicKey: k3.Public().String()}})
	wantField(t, err, codes.InvalidArgument, "oldPublicKey", "is not a minisign public key")
	mustOK(t, rotate(k1, k3, k1))
	if p := policy(); len(p.Keys) != 2 || p.Keys[0].Name != "release" || p.Keys[0].KeyId != k3.ID.String() || len(p.KeyChanges) != 1 {
		t.Fatalf("after the rotation: %v", p)
	}
	wantField(t, rotate(k1, k3, k1), codes.AlreadyExists, "rotation.oldPublicKey", "applied this rotation of key")
	wantField(t, add(k1, "back", nil), codes.FailedPrecondition, "publicKey", "was replaced by key "+k3.ID.String())

	// A revocation, by the revoked key itself.
	rev := &sign.Revocation{Key: k2.Public(), Reason: "laptop stolen"}
	s, err = sign.Sign(k2, rev, time.Now())
	mustOK(t, err)
	_, err = sg.RevokeTrustedKey(ctx(t), &pb.RevokeTrustedKeyRequest{Gallery: "g",
		Revocation: &pb.KeyRevocation{PublicKey: k2.Public().String(), Reason: "laptop stolen"}, Signatures: []string{string(s.Encode())}})
	mustOK(t, err)
	if p := policy(); len(p.Keys) != 1 || p.Keys[0].KeyId != k3.ID.String() || len(p.KeyChanges) != 2 {
		t.Fatalf("after the revocation: %v", p)
	}
	wantField(t, add(k2, "back", nil), codes.FailedPrecondition, "publicKey", "was revoked in gallery 'g' (laptop stolen)")
}

// TestDeployNeedsSignatures: a gallery that requires signatures gets no
// unsigned version deployed, by vm app set or by an automatic upgrade;
// goal states carry a version's signatures and its gallery's key changes.
func TestDeployNeedsSignatures(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	fl, sg := pb.NewFleetServiceClient(c.Client.Conn()), pb.NewSigningServiceClient(c.Client.Conn())
	c.Publish(t, "1.0.0", []byte("one"), testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	for _, vm := range []string{"vm1", "vm2"} {
		_, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: vm, Region: "eastus", OsType: "Linux"}})
		mustOK(t, err)
	}
	set := func(vm, ref string, auto bool) error {
		_, err := fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: vm}},
			Application: &pb.VMGalleryApplication{PackageReferenceId: ref, EnableAutomaticUpgrade: auto}})
		return err
	}
	k1 := signtest.Key(t)
	mustOK(t, set("vm1", "g/a/1.0.0", false)) // no policy: deployed unsigned
	signtest.Trust(t, c.Client, "g", "release", k1)
	_, err := sg.SetRequiredSignatures(ctx(t), &pb.SetRequiredSignaturesRequest{Gallery: "g", RequiredSignatures: 1})
	mustOK(t, err)
	wantField(t, set("vm2", "g/a/1.0.0", false), codes.FailedPrecondition, "packageReferenceId",
		"gallery 'g' requires 1 signature(s) by the keys of its trust policy, and version g/a/1.0.0 doesn't have them", "Unsigned")
	r, err := sg.GetVersionSignatures(ctx(t), &pb.GetVersionSignaturesRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, err)
	if !strings.Contains(r.DeployRefusal, "requires 1 signature(s)") {
		t.Fatalf("deploy refusal %q", r.DeployRefusal)
	}

	signtest.Sign(t, c.Client, k1, "g", "a", "1.0.0", sequence(1), false)
	mustOK(t, set("vm2", "g/a/latest", true))
	c.Publish(t, "2.0.0", []byte("two"), testcluster.Target("eastus", 1))
	c.WaitState(t, "2.0.0", "Completed")
	goal := func() *pb.GoalApplication {
		gs, err := c.Fleet.GoalState(ctx(t), "default", "vm2")
		mustOK(t, err)
		return gs.Applications[0]
	}
	if ga := goal(); ga.Version != "1.0.0" || ga.Signing.GetSequence() != 1 || ga.Signing.GetTenant() != "default" || len(ga.Signing.GetSignatures()) != 1 {
		t.Fatalf("with 2.0.0 unsigned, the automatic upgrade's goal: %v", ga)
	}
	signtest.Sign(t, c.Client, k1, "g", "a", "2.0.0", sequence(2), false)
	if ga := goal(); ga.Version != "2.0.0" || ga.Signing.GetSequence() != 2 {
		t.Fatalf("with 2.0.0 signed, the automatic upgrade's goal: %v", ga)
	}

	// A key change of the gallery reaches the goal states.
	k2 := signtest.Key(t)
	s, err := sign.Sign(k1, &sign.Rotation{Old: k1.Public(), New: k2.Public()}, time.Now())
	mustOK(t, err)
	_, err = sg.RotateTrustedKey(ctx(t), &pb.RotateTrustedKeyRequest{Gallery: "g",
		Rotation: &pb.KeyRotation{OldPublicKey: k1.Public().String(), NewPublicKey: k2.Public().String()}, Signatures: []string{string(s.Encode())}})
	mustOK(t, err)
	gs, err := c.Fleet.GoalState(ctx(t), "default", "vm1")
	mustOK(t, err)
	if len(gs.KeyChanges) != 1 || gs.KeyChanges[0].GetRotation().GetNewPublicKey() != k2.Public().String() {
		t.Fatalf("goal state's key changes: %v", gs.KeyChanges)
	}
	// k1's signatures no longer count: nothing new of g deploys until k2
	// signs it.
	wantField(t, set("vm1", "g/a/2.0.0", false), codes.FailedPrecondition, "packageReferenceId", "UntrustedKey", "was replaced by key "+k2.ID.String())
}
