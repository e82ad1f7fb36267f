//go:build unix

package agent_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/client/agent"
	"github.com/vmapp/vmapp/internal/testkit/signtest"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
	"github.com/vmapp/vmapp/state"
)

// signEnv is a cluster whose gallery "sg" trusts keys k1 and k2 without
// requiring signatures (so that vmappd deploys what the agents must
// refuse); agents trust k1 alone.
type signEnv struct {
	*env
	sg     pb.SigningServiceClient
	k1, k2 minisign.PrivateKey
}

// TestSigning: agents that verify signatures install what keys they
// trust signed, and refuse, installing nothing and saying why in the
// instance view, everything else: unsigned versions, a stranger's
// signatures, configuration overrides, and what a compromised vmappd
// serves — a changed install command, swapped package bytes, a stripped
// signature, an older version (a rollback), an expired statement, a
// forged key change, a changed custom action's script. The attacks edit vmappd's state file (vmappd
// stopped) and the store's objects directly.
func TestSigning(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	e := &signEnv{env: &env{c: c, fl: pb.NewFleetServiceClient(c.Client.Conn())}, sg: pb.NewSigningServiceClient(c.Client.Conn()),
		k1: signtest.Key(t), k2: signtest.Key(t)}
	if _, err := c.Client.Catalog.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "sg", Location: "eastus"}}); err != nil {
		t.Fatal(err)
	}
	signtest.Trust(t, c.Client, "sg", "k1", e.k1)
	signtest.Trust(t, c.Client, "sg", "k2", e.k2)
	// Subtests that restart vmappd run one after the other, so that no
	// agent's stream is open while vmappd stops.
	t.Run("TrustedAndNot", e.testTrustedAndNot)
	t.Run("ChangedInstallCommand", e.testChangedInstallCommand)
	t.Run("SwappedPackage", e.testSwappedPackage)
	t.Run("StrippedSignature", e.testStrippedSignature)
	t.Run("Rollback", e.testRollback)
	t.Run("Expired", e.testExpired)
	t.Run("KeyChanges", e.testKeyChanges)
	t.Run("CustomActions", e.testCustomActions)
}

// trust is the agent's trust file: keys and directives, one a line.
func trust(t *testing.T, lines ...string) *agent.Trust {
	t.Helper()
	tr, err := agent.ParseTrust([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func pubLine(k minisign.PrivateKey) string { return k.Public().String() }

// signed publishes sg/app/version with install, signed by k with
// sequence seq.
func (e *signEnv) signed(t *testing.T, app, version, install string, k minisign.PrivateKey, seq uint64) {
	t.Helper()
	e.publish(t, ver{gallery: "sg", app: app, version: version, install: install})
	signtest.Sign(t, e.c.Client, k, "sg", app, version, &pb.VersionSignatures{Sequence: seq}, false)
}

// refused waits until app is Failed at version with the refusal, and
// checks that its reason says so.
func (e *signEnv) refused(t *testing.T, machine, app, version, refusal, reason string) {
	t.Helper()
	m := e.states(t, machine, map[string]string{app: "Failed@" + version})
	s := status(m, app)
	if s.Refusal != refusal || !strings.HasPrefix(s.Reason, refusal+": ") || !strings.Contains(s.Reason, reason) {
		t.Fatalf("%s: refusal %q, reason %q; want %s and %q", app, s.Refusal, s.Reason, refusal, reason)
	}
}

// agentState reads the agent's state file.
func agentState(t *testing.T, p *agentProc) (st struct {
	Sequences  map[string]uint64
	KeyChanges [][]byte
}) {
	t.Helper()
	if err := json.Unmarshal([]byte(read(t, p.path(agent.StateDir, agent.StateFile))), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// editState stops vmappd, applies commands to its state file (as whoever
// holds the file could, past every check of vmappd's API), and starts it
// again.
func (e *signEnv) editState(t *testing.T, edit func(db *state.DB)) {
	t.Helper()
	e.c.Restart(t, func(path string) {
		db, err := state.Open(path, state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		edit(db)
	})
}

// editBolt stops vmappd, edits its state file with bbolt itself, and
// starts it again.
func (e *signEnv) editBolt(t *testing.T, edit func(tx *bolt.Tx) error) {
	t.Helper()
	e.c.Restart(t, func(path string) {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(edit); err != nil {
			t.Fatal(err)
		}
	})
}

// propose applies a command to db, past every check of vmappd's API, and
// returns it (its etag is that of what it wrote).
func propose(t *testing.T, db *state.DB, op any) *statepb.Command {
	t.Helper()
	c := state.NewCommand(time.Now())
	switch o := op.(type) {
	case *statepb.Command_UpdateVersion:
		c.Op = o
	case *statepb.Command_PutTrustPolicy:
		c.Op = o
	case *statepb.Command_SignVersion:
		c.Op = o
	}
	if err := db.Propose(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

// readVersion reads gallery/app/version from the state.
func readVersion(t *testing.T, db *state.DB, gallery, app, version string) *pb.GalleryApplicationVersion {
	t.Helper()
	var v *pb.GalleryApplicationVersion
	err := db.View(context.Background(), func(tx *state.Tx) (err error) {
		v, err = tx.Version("default", gallery, app, version)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// What keys the machine trusts, and what they signed, decide: a version
// k1 signed installs; an unsigned one, one only k2 signed (trusted by the
// gallery, not by the machine), and a signed one with a configuration
// override the trust file doesn't allow are refused without a download or
// a command. A signature added later is acted on at once.
func (e *signEnv) testTrustedAndNot(t *testing.T) {
	marks := t.TempDir()
	e.signed(t, "ok", "1.0.0", rec(marks, "ok"), e.k1, 1)
	e.publish(t, ver{gallery: "sg", app: "unsigned", version: "1.0.0", install: rec(marks, "unsigned")})
	e.signed(t, "other", "1.0.0", rec(marks, "other"), e.k2, 1)
	e.signed(t, "conf", "1.0.0", rec(marks, "conf"), e.k1, 1)
	e.machine(t, "s-vm")
	for _, app := range []string{"ok", "unsigned", "other"} {
		e.set(t, "s-vm", &pb.VMGalleryApplication{PackageReferenceId: "sg/" + app + "/1.0.0"})
	}
	e.set(t, "s-vm", &pb.VMGalleryApplication{PackageReferenceId: "sg/conf/1.0.0", Configuration: []byte("not signed by anyone")})
	p := e.startAgent(t, "s-vm", func(c *agent.Config) { c.Trust = trust(t, "# the release key", "required 1", pubLine(e.k1)) })
	e.states(t, "s-vm", map[string]string{"sg/ok": "Installed"})
	e.refused(t, "s-vm", "sg/unsigned", "1.0.0", "Unsigned", "version 1.0.0 carries no signature")
	e.refused(t, "s-vm", "sg/other", "1.0.0", "UntrustedKey", "key "+e.k2.ID.String()+" is not trusted")
	e.refused(t, "s-vm", "sg/conf", "1.0.0", "Unsigned", "configuration override")
	if got := labels(marksOf(t, marks)); len(got) != 1 || got[0] != "ok" {
		t.Fatalf("commands run: %v, want ok's install only", got)
	}
	for _, app := range []string{"unsigned", "other", "conf"} {
		if exists(p.path("sg", app)) {
			t.Fatalf("%s was downloaded: %s exists", app, p.path("sg", app))
		}
	}
	if st := agentState(t, p); st.Sequences["sg/ok"] != 1 || len(st.Sequences) != 1 {
		t.Fatalf("sequences in the state: %v", st.Sequences)
	}

	// The publisher signs: the agent tries again at once (its retries are
	// an hour apart here).
	signtest.Sign(t, e.c.Client, e.k1, "sg", "unsigned", "1.0.0", &pb.VersionSignatures{Sequence: 1}, false)
	e.states(t, "s-vm", map[string]string{"sg/unsigned": "Installed"})
	if s := status(e.get(t, "s-vm"), "sg/unsigned"); s.Refusal != "" {
		t.Fatalf("installed with refusal %q", s.Refusal)
	}
}

// A compromised vmappd changes the install command of a signed version:
// the statement the agent rebuilds doesn't match the signature.
func (e *signEnv) testChangedInstallCommand(t *testing.T) {
	marks := t.TempDir()
	e.signed(t, "cmd", "1.0.0", rec(marks, "genuine"), e.k1, 1)
	e.machine(t, "s-cmd")
	e.set(t, "s-cmd", &pb.VMGalleryApplication{PackageReferenceId: "sg/cmd/1.0.0"})
	e.editState(t, func(db *state.DB) {
		v := readVersion(t, db, "sg", "cmd", "1.0.0")
		expect := v.Etag
		v.PublishingProfile.ManageActions.Install = rec(marks, "evil")
		propose(t, db, &statepb.Command_UpdateVersion{UpdateVersion: &statepb.UpdateVersion{Version: v, ExpectEtag: expect}})
	})
	p := e.startAgent(t, "s-cmd", func(c *agent.Config) { c.Trust = trust(t, pubLine(e.k1)) })
	e.refused(t, "s-cmd", "sg/cmd", "1.0.0", "SignatureInvalid", "with other contents")
	if ms := marksOf(t, marks); len(ms) != 0 || exists(p.path("sg", "cmd")) {
		t.Fatalf("commands run %v; downloaded: %v", labels(ms), exists(p.path("sg", "cmd")))
	}
}

// A compromised vmappd swaps a signed version's package for other bytes,
// in the store and in the manifest downloads check against: with the
// version's sha256 changed too (consistent lies), the statement doesn't
// match before anything is downloaded; with the version's left alone,
// the download verifies against the lie, and the agent finds the file
// isn't the signed one, deletes it and runs nothing.
func (e *signEnv) testSwappedPackage(t *testing.T) {
	marks := t.TempDir()
	e.signed(t, "swap1", "1.0.0", rec(marks, "swap1"), e.k1, 1)
	e.signed(t, "swap2", "1.0.0", rec(marks, "swap2"), e.k1, 1)
	e.machine(t, "s-swap")
	e.set(t, "s-swap", &pb.VMGalleryApplication{PackageReferenceId: "sg/swap1/1.0.0"})
	e.set(t, "s-swap", &pb.VMGalleryApplication{PackageReferenceId: "sg/swap2/1.0.0"})
	evil := []byte("#!/bin/sh\necho owned\n")
	sum := sha256.Sum256(evil)
	for _, app := range []string{"swap1", "swap2"} {
		st, err := e.c.Stores.Get("eastus", 0) // replica 0 of eastus, the only one
		if err != nil {
			t.Fatal(err)
		}
		key := blob.ReplicaKey("default", "sg", app, "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, 0)
		if _, err := st.Put(ctx(t), key, bytes.NewReader(evil), int64(len(evil)), nil); err != nil {
			t.Fatal(err)
		}
	}
	e.editBolt(t, func(tx *bolt.Tx) error {
		for _, app := range []string{"swap1", "swap2"} {
			mk := state.ManifestKey("default", "sg", app, "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE)
			m := &statepb.Manifest{}
			if err := proto.Unmarshal(tx.Bucket([]byte("manifests")).Get(mk), m); err != nil {
				return err
			}
			m.SizeBytes, m.Sha256, m.PieceSha256, m.PieceChain = int64(len(evil)), hex.EncodeToString(sum[:]), [][]byte{sum[:]}, nil
			if err := putProto(tx, "manifests", mk, m); err != nil {
				return err
			}
		}
		vk := state.VersionKey("default", "sg", "swap1", "1.0.0")
		v := &pb.GalleryApplicationVersion{}
		if err := proto.Unmarshal(tx.Bucket([]byte("versions")).Get(vk), v); err != nil {
			return err
		}
		v.Package.Sha256, v.Package.SizeBytes = hex.EncodeToString(sum[:]), int64(len(evil))
		return putProto(tx, "versions", vk, v)
	})
	p := e.startAgent(t, "s-swap", func(c *agent.Config) { c.Trust = trust(t, pubLine(e.k1)) })
	e.refused(t, "s-swap", "sg/swap1", "1.0.0", "SignatureInvalid", "with other contents")
	e.refused(t, "s-swap", "sg/swap2", "1.0.0", "SignatureInvalid", "vmappd served sg/swap2/1.0.0 package with sha256 "+hex.EncodeToString(sum[:]))
	if ms := marksOf(t, marks); len(ms) != 0 {
		t.Fatalf("commands run: %v", labels(ms))
	}
	for _, app := range []string{"swap1", "swap2"} {
		if exists(p.path("sg", app, "1.0.0", app)) {
			t.Fatalf("the swapped package of %s is on the machine", app)
		}
	}
}

func putProto(tx *bolt.Tx, bucket string, k []byte, m proto.Message) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket([]byte(bucket)).Put(k, b)
}

// A compromised vmappd strips a version's signatures.
func (e *signEnv) testStrippedSignature(t *testing.T) {
	marks := t.TempDir()
	e.signed(t, "strip", "1.0.0", rec(marks, "strip"), e.k1, 1)
	e.machine(t, "s-strip")
	e.set(t, "s-strip", &pb.VMGalleryApplication{PackageReferenceId: "sg/strip/1.0.0"})
	e.editBolt(t, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("signatures")).Delete(state.VersionKey("default", "sg", "strip", "1.0.0"))
	})
	p := e.startAgent(t, "s-strip", func(c *agent.Config) { c.Trust = trust(t, pubLine(e.k1)) })
	e.refused(t, "s-strip", "sg/strip", "1.0.0", "Unsigned", "carries no signature")
	if ms := marksOf(t, marks); len(ms) != 0 || exists(p.path("sg", "strip")) {
		t.Fatalf("commands run %v; downloaded: %v", labels(ms), exists(p.path("sg", "strip")))
	}
}

// A compromised vmappd serves an older signed version as latest: the
// agent, which installed a higher sequence, refuses it as a rollback, and
// keeps what it has — across its own restart. A statement the publisher
// signs as an intended rollback is accepted.
func (e *signEnv) testRollback(t *testing.T) {
	marks := t.TempDir()
	e.signed(t, "roll", "1.0.0", rec(marks, "install-1.0.0"), e.k1, 1)
	e.signed(t, "roll", "2.0.0", rec(marks, "install-2.0.0"), e.k1, 2)
	e.machine(t, "s-roll")
	e.set(t, "s-roll", &pb.VMGalleryApplication{PackageReferenceId: "sg/roll/latest", EnableAutomaticUpgrade: true})
	p := e.startAgent(t, "s-roll", func(c *agent.Config) { c.Trust = trust(t, pubLine(e.k1)) })
	e.states(t, "s-roll", map[string]string{"sg/roll": "Installed@2.0.0"})
	p.stop()
	e.editState(t, func(db *state.DB) {
		v := readVersion(t, db, "sg", "roll", "2.0.0")
		expect := v.Etag
		v.PublishingProfile.ExcludeFromLatest = true
		propose(t, db, &statepb.Command_UpdateVersion{UpdateVersion: &statepb.UpdateVersion{Version: v, ExpectEtag: expect}})
	})
	p.start()
	e.refused(t, "s-roll", "sg/roll", "1.0.0", "Rollback", "sequence 1 is below 2")
	if got := labels(marksOf(t, marks)); len(got) != 1 || got[0] != "install-2.0.0" || !exists(p.path("sg", "roll", "2.0.0")) {
		t.Fatalf("commands run %v; 2.0.0 kept: %v", got, exists(p.path("sg", "roll", "2.0.0")))
	}

	// The publisher means it: 1.0.0 signed again as an intended rollback.
	expires := timestamppb.New(time.Now().Add(time.Hour).Truncate(time.Second))
	signtest.Sign(t, e.c.Client, e.k1, "sg", "roll", "1.0.0", &pb.VersionSignatures{Sequence: 1, Rollback: true, ExpireTime: expires}, true)
	e.states(t, "s-roll", map[string]string{"sg/roll": "Installed@1.0.0"})
	if st := agentState(t, p); st.Sequences["sg/roll"] != 2 {
		t.Fatalf("highest sequence after the rollback: %d, want 2 still", st.Sequences["sg/roll"])
	}
}

// A statement past its expiry (on the machine's clock) is refused: an
// attacker can't keep serving an old one forever.
func (e *signEnv) testExpired(t *testing.T) {
	marks := t.TempDir()
	e.publish(t, ver{gallery: "sg", app: "exp", version: "1.0.0", install: rec(marks, "exp")})
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	signtest.Sign(t, e.c.Client, e.k1, "sg", "exp", "1.0.0", &pb.VersionSignatures{Sequence: 1, ExpireTime: timestamppb.New(expires)}, false)
	e.machine(t, "s-exp")
	e.set(t, "s-exp", &pb.VMGalleryApplication{PackageReferenceId: "sg/exp/1.0.0"})
	p := e.startAgent(t, "s-exp", func(c *agent.Config) {
		c.Trust = trust(t, pubLine(e.k1))
		c.Clock = clockwork.NewFakeClockAt(expires.Add(time.Second))
	})
	e.refused(t, "s-exp", "sg/exp", "1.0.0", "Expired", "expired at "+expires.UTC().Format(time.RFC3339))
	if ms := marksOf(t, marks); len(ms) != 0 || exists(p.path("sg", "exp")) {
		t.Fatalf("commands run %v; downloaded: %v", labels(ms), exists(p.path("sg", "exp")))
	}
}

// Signed key changes of the gallery reach the agent in its goal state: a
// rotation signed by a key it trusts makes it trust the new key; a
// revocation makes it refuse the revoked key's signatures. A key change
// a compromised vmappd forges is not applied.
func (e *signEnv) testKeyChanges(t *testing.T) {
	marks := t.TempDir()
	k5, k6 := signtest.Key(t), signtest.Key(t)
	if _, err := e.c.Client.Catalog.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "rot", Location: "eastus"}}); err != nil {
		t.Fatal(err)
	}
	signtest.Trust(t, e.c.Client, "rot", "release", k5)
	publish := func(version string, k minisign.PrivateKey, seq uint64) {
		e.publish(t, ver{gallery: "rot", app: "app", version: version, install: rec(marks, version)})
		signtest.Sign(t, e.c.Client, k, "rot", "app", version, &pb.VersionSignatures{Sequence: seq}, false)
	}
	change := func(k minisign.PrivateKey, st sign.Statement) []string {
		s, err := sign.Sign(k, st, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return []string{string(s.Encode())}
	}
	publish("1.0.0", k5, 1)
	e.machine(t, "s-rot")
	e.set(t, "s-rot", &pb.VMGalleryApplication{PackageReferenceId: "rot/app/1.0.0"})
	p := e.startAgent(t, "s-rot", func(c *agent.Config) { c.Trust = trust(t, pubLine(k5)) })
	e.states(t, "s-rot", map[string]string{"rot/app": "Installed@1.0.0"})

	// k5 hands over to k6: 2.0.0, signed by k6 alone, installs.
	if _, err := e.sg.RotateTrustedKey(ctx(t), &pb.RotateTrustedKeyRequest{Gallery: "rot", Signatures: change(k5, &sign.Rotation{Old: k5.Public(), New: k6.Public()}),
		Rotation: &pb.KeyRotation{OldPublicKey: k5.Public().String(), NewPublicKey: k6.Public().String()}}); err != nil {
		t.Fatal(err)
	}
	publish("2.0.0", k6, 2)
	publish("3.0.0", k6, 3)
	e.set(t, "s-rot", &pb.VMGalleryApplication{PackageReferenceId: "rot/app/2.0.0"})
	e.states(t, "s-rot", map[string]string{"rot/app": "Installed@2.0.0"})

	// k6 is revoked (by itself): 3.0.0, which it signed before, is refused.
	if _, err := e.sg.RevokeTrustedKey(ctx(t), &pb.RevokeTrustedKeyRequest{Gallery: "rot", Signatures: change(k6, &sign.Revocation{Key: k6.Public(), Reason: "stolen"}),
		Revocation: &pb.KeyRevocation{PublicKey: k6.Public().String(), Reason: "stolen"}}); err != nil {
		t.Fatal(err)
	}
	e.set(t, "s-rot", &pb.VMGalleryApplication{PackageReferenceId: "rot/app/3.0.0"})
	e.refused(t, "s-rot", "rot/app", "3.0.0", "Revoked", "key "+k6.ID.String()+" is revoked")
	if st := agentState(t, p); len(st.KeyChanges) != 2 {
		t.Fatalf("key changes in the agent's state: %d, want the rotation and the revocation", len(st.KeyChanges))
	}

	// A compromised vmappd forges a rotation of the revoked key to a key of
	// its own, trusts that key, and signs 4.0.0 with it: the agent applies
	// the rotation no more than it accepts the signature.
	evil := signtest.Key(t)
	e.publish(t, ver{gallery: "rot", app: "app", version: "4.0.0", install: rec(marks, "4.0.0")})
	p.stop()
	e.editState(t, func(db *state.DB) {
		var policy *pb.TrustPolicy
		if err := db.View(context.Background(), func(tx *state.Tx) (err error) {
			policy, err = tx.TrustPolicy("default", "rot")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		next := proto.CloneOf(policy)
		next.Keys = []*pb.TrustedKey{{Name: "evil", KeyId: evil.ID.String(), PublicKey: evil.Public().String()}}
		next.KeyChanges = append(next.KeyChanges, &pb.KeyChange{Signatures: change(evil, &sign.Rotation{Old: k6.Public(), New: evil.Public()}),
			Change: &pb.KeyChange_Rotation{Rotation: &pb.KeyRotation{OldPublicKey: k6.Public().String(), NewPublicKey: evil.Public().String()}}})
		put := propose(t, db, &statepb.Command_PutTrustPolicy{PutTrustPolicy: &statepb.PutTrustPolicy{Tenant: "default", Policy: next, ExpectEtag: policy.Etag}})
		v := readVersion(t, db, "rot", "app", "4.0.0")
		params := &pb.VersionSignatures{Tenant: "default", Sequence: 4}
		propose(t, db, &statepb.Command_SignVersion{SignVersion: &statepb.SignVersion{
			Version:   &statepb.VersionRef{Tenant: "default", Gallery: "rot", Application: "app", Version: "4.0.0"},
			Statement: params, Signature: &pb.VersionSignature{KeyId: evil.ID.String(), Signature: signtest.Signature(t, evil, v, params)},
			VersionEtag: v.Etag, PolicyEtag: put.Etag,
		}})
	})
	e.set(t, "s-rot", &pb.VMGalleryApplication{PackageReferenceId: "rot/app/4.0.0"})
	p.start()
	e.refused(t, "s-rot", "rot/app", "4.0.0", "UntrustedKey", "key "+evil.ID.String()+" is not trusted")
	if got := labels(marksOf(t, marks)); strings.Join(got, " ") != "1.0.0 2.0.0" {
		t.Fatalf("commands run: %v, want the installs of 1.0.0 and 2.0.0 only", got)
	}
	if st := agentState(t, p); len(st.KeyChanges) != 2 {
		t.Fatalf("key changes in the agent's state: %d, want 2 (the forged one not applied)", len(st.KeyChanges))
	}
	if !exists(p.path("rot", "app", "2.0.0")) {
		t.Fatal("2.0.0 is no longer installed")
	}
}

// An agent that verifies signatures runs custom actions as the version's
// signed statement covers them: the health check, a version's action
// with a parameter and its application's (signed with the version) run;
// an action the application gained after the signature is refused as
// Unsigned; and when a compromised vmappd changes a version's action in
// its state file, the run is refused as SignatureInvalid. Nothing refused
// runs.
func (e *signEnv) testCustomActions(t *testing.T) {
	marks := t.TempDir()
	if _, err := e.c.Client.Catalog.CreateApplication(ctx(t), &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{
		Gallery: "sg", Name: "ca", Location: "eastus", SupportedOsType: "Linux",
		CustomActions: []*pb.GalleryApplicationCustomAction{{Name: "app-act", Script: rec(marks, "app-act")}}}}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, ver{gallery: "sg", app: "ca", version: "1.0.0", install: "true", profile: func(pp *pb.PublishingProfile) {
		pp.EnableHealthCheck = true
		pp.CustomActions = []*pb.GalleryApplicationCustomAction{{Name: "health", Script: rec(marks, "health")},
			{Name: "poke", Script: rec(marks, "poke-$WHO"), Parameters: []*pb.GalleryApplicationCustomActionParameter{{Name: "WHO", Required: true}}}}
	}})
	signtest.Sign(t, e.c.Client, e.k1, "sg", "ca", "1.0.0", &pb.VersionSignatures{Sequence: 1}, false)
	e.machine(t, "s-ca")
	e.set(t, "s-ca", &pb.VMGalleryApplication{PackageReferenceId: "sg/ca/1.0.0"})
	p := e.startAgent(t, "s-ca", func(c *agent.Config) { c.Trust = trust(t, pubLine(e.k1)) })
	if s := e.healthOf(t, "s-ca", "sg/ca"); s.State != pb.AppInstalled || s.Health != pb.HealthHealthy {
		t.Fatalf("health: %v", s)
	}
	run := func(action string, params ...*pb.ActionParameterValue) *pb.ActionRun {
		t.Helper()
		runs, err := e.runAction(t, onVM("s-ca"), "sg/ca", action, params...)
		if err != nil {
			t.Fatal(err)
		}
		return e.runsEnded(t, onVM("s-ca"), runs[0].Id)[0]
	}
	for _, r := range []*pb.ActionRun{run("poke", str("WHO", "ops")), run("app-act")} {
		if r.State != pb.ActionSucceeded {
			t.Fatalf("%s: %v", r.Action, r)
		}
	}

	if _, err := e.c.Client.Catalog.UpdateApplication(ctx(t), &pb.UpdateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "sg", Name: "ca",
		CustomActions: []*pb.GalleryApplicationCustomAction{{Name: "app-act", Script: rec(marks, "app-act")}, {Name: "later", Script: rec(marks, "later")}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"custom_actions"}}}); err != nil {
		t.Fatal(err)
	}
	if r := run("later"); r.State != pb.ActionFailed || r.ExitCode != -1 ||
		!strings.HasPrefix(r.Reason, "Unsigned: custom action 'later' is not one the signed statement of version 1.0.0 (sequence 1) covers") {
		t.Errorf("an action added after the signature: %v", r)
	}

	p.stop()
	e.editState(t, func(db *state.DB) {
		v := readVersion(t, db, "sg", "ca", "1.0.0")
		expect := v.Etag
		v.PublishingProfile.CustomActions[1].Script = rec(marks, "evil")
		propose(t, db, &statepb.Command_UpdateVersion{UpdateVersion: &statepb.UpdateVersion{Version: v, ExpectEtag: expect}})
	})
	p.start()
	if r := run("poke", str("WHO", "ops")); r.State != pb.ActionFailed ||
		r.Reason != "SignatureInvalid: custom action 'poke' of version 1.0.0: the script vmappd sent is not the one signed" {
		t.Errorf("a changed script: %v", r)
	}
	if got := strings.Join(labels(marksOf(t, marks)), " "); got != "health poke-ops app-act" {
		t.Errorf("scripts run: %s, want health poke-ops app-act", got)
	}
}
