package sign

import (
	"slices"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/sign/minisign"
)

func ids(keys []minisign.PublicKey) []string {
	var s []string
	for _, k := range keys {
		s = append(s, k.ID.String())
	}
	return s
}

func wantKeys(t *testing.T, what string, p Policy, trusted, revoked []minisign.PrivateKey) {
	t.Helper()
	var tr, rv []minisign.PublicKey
	for _, k := range trusted {
		tr = append(tr, k.Public())
	}
	for _, k := range revoked {
		rv = append(rv, k.Public())
	}
	if !slices.Equal(ids(p.Keys), ids(tr)) || !slices.Equal(ids(p.Revoked), ids(rv)) {
		t.Errorf("%s: trusted %v revoked %v; want %v and %v", what, ids(p.Keys), ids(p.Revoked), ids(tr), ids(rv))
	}
	if err := p.Validate(); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

func refused(t *testing.T, what string, err error, want Reason, says string) {
	t.Helper()
	if ReasonOf(err) != want || !errs.Is(err, errs.PermissionDenied) || !strings.Contains(err.Error(), says) {
		t.Errorf("%s: %v; want %v saying %q", what, err, want, says)
	}
}

// TestRotate: a key hands its place to a new one by signing the rotation;
// from then on its signatures are refused and the new key's accepted. No
// one else can rotate it, and it can't be rotated twice, or to a key the
// policy knows.
func TestRotate(t *testing.T) {
	keyD := testKey("D (A's successor)")
	p := testPolicy(1)
	aToD := &Rotation{Old: keyA.Public(), New: keyD.Public()}
	v := minimalVersion()
	sigs := func(k ...minisign.PrivateKey) []minisign.Signature {
		var s []minisign.Signature
		for _, k := range k {
			s = append(s, mustSign(t, k, aToD))
		}
		return s
	}

	_, err := p.Rotate(aToD, nil)
	refused(t, "unsigned", err, Unsigned, "no signature")
	_, err = p.Rotate(aToD, sigs(keyB))
	refused(t, "signed by another trusted key", err, UntrustedKey, "key "+keyB.ID.String()+" can't sign this statement")
	_, err = p.Rotate(aToD, sigs(keyD))
	refused(t, "signed by the new key", err, UntrustedKey, "is not trusted")
	_, err = p.Rotate(aToD, []minisign.Signature{mustSign(t, keyA, &Rotation{Old: keyA.Public(), New: keyX.Public()})})
	refused(t, "A's signature of another rotation", err, SignatureInvalid, "signed another statement: rotation of key "+keyA.ID.String()+" to key "+keyX.ID.String())

	q, err := p.Rotate(aToD, sigs(keyB, keyA))
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "rotated", q, []minisign.PrivateKey{keyD, keyB, keyC}, []minisign.PrivateKey{keyR})
	wantKeys(t, "the policy rotated from", p, []minisign.PrivateKey{keyA, keyB, keyC}, []minisign.PrivateKey{keyR})
	if err := q.Check(v, []minisign.Signature{mustSign(t, keyD, v)}, 0, vectorTime); err != nil {
		t.Errorf("the new key: %v", err)
	}
	err = q.Check(v, []minisign.Signature{mustSign(t, keyA, v)}, 0, vectorTime)
	refused(t, "the old key", err, UntrustedKey, "key "+keyA.ID.String()+" was replaced by key "+keyD.ID.String())

	again, err := q.Rotate(aToD, sigs(keyA))
	if err != nil || len(again.Retired) != len(q.Retired) {
		t.Errorf("applied again: %v, %d rotations (had %d)", err, len(again.Retired), len(q.Retired))
	}
	aToX := &Rotation{Old: keyA.Public(), New: keyX.Public()}
	_, err = q.Rotate(aToX, []minisign.Signature{mustSign(t, keyA, aToX)})
	refused(t, "the old key rotated again", err, UntrustedKey, "was already replaced by key "+keyD.ID.String())

	for _, c := range []struct {
		name string
		r    *Rotation
		want Reason
		says string
	}{
		{"an unknown key", &Rotation{Old: keyX.Public(), New: keyD.Public()}, UntrustedKey, "is not trusted"},
		{"a revoked key", &Rotation{Old: keyR.Public(), New: keyD.Public()}, Revoked, "is revoked"},
		{"another public key under A's id", &Rotation{Old: minisign.PublicKey{ID: keyA.ID, Key: keyX.Public().Key}, New: keyD.Public()}, UntrustedKey, "another public key"},
	} {
		_, err := p.Rotate(c.r, []minisign.Signature{mustSign(t, keyA, c.r)})
		refused(t, c.name, err, c.want, c.says)
	}
	for _, c := range []struct {
		name string
		to   minisign.PublicKey
	}{
		{"to a trusted key", keyB.Public()},
		{"to a revoked key", keyR.Public()},
		{"to a retired key", keyOld.Public()},
	} {
		r := &Rotation{Old: keyA.Public(), New: c.to}
		if _, err := p.Rotate(r, []minisign.Signature{mustSign(t, keyA, r)}); !errs.Is(err, errs.InvalidArgument) || errs.FieldOf(err) != "new" {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// TestRevoke: a key is revoked by itself or by Threshold other trusted
// keys; from then on its signatures are refused as revoked, and it can't
// come back.
func TestRevoke(t *testing.T) {
	v := minimalVersion()
	revokeB := &Revocation{Key: keyB.Public(), Reason: "laptop stolen"}
	sigs := func(st Statement, k ...minisign.PrivateKey) []minisign.Signature {
		var s []minisign.Signature
		for _, k := range k {
			s = append(s, mustSign(t, k, st))
		}
		return s
	}
	for _, c := range []struct {
		name      string
		threshold int
		signers   []minisign.PrivateKey
		want      Reason // 0: applied
		says      string
	}{
		{"by itself", 1, []minisign.PrivateKey{keyB}, 0, ""},
		{"by itself, threshold 3", 3, []minisign.PrivateKey{keyB}, 0, ""},
		{"by another trusted key", 1, []minisign.PrivateKey{keyA}, 0, ""},
		{"by two others, threshold 2", 2, []minisign.PrivateKey{keyC, keyA}, 0, ""},
		{"by one other, threshold 2", 2, []minisign.PrivateKey{keyA}, Unsigned, "1 of the 2"},
		{"by an untrusted key", 1, []minisign.PrivateKey{keyX}, UntrustedKey, "not trusted"},
		{"by a revoked key", 1, []minisign.PrivateKey{keyR}, Revoked, "is revoked"},
		{"unsigned", 1, nil, Unsigned, "no signature"},
	} {
		p := testPolicy(c.threshold)
		q, err := p.Revoke(revokeB, sigs(revokeB, c.signers...))
		if c.want != 0 {
			refused(t, c.name, err, c.want, c.says)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		wantKeys(t, c.name, q, []minisign.PrivateKey{keyA, keyC}, []minisign.PrivateKey{keyR, keyB})
		err = q.Check(v, sigs(v, keyB), 0, vectorTime)
		refused(t, c.name+": B's signature", err, Revoked, "key "+keyB.ID.String()+" is revoked")
		if again, err := q.Revoke(revokeB, nil); err != nil || len(again.Revoked) != 2 {
			t.Errorf("%s: applied again: %v, %v", c.name, err, ids(again.Revoked))
		}
		bBack := &Rotation{Old: keyA.Public(), New: keyB.Public()}
		if _, err := q.Rotate(bBack, sigs(bBack, keyA)); !errs.Is(err, errs.InvalidArgument) {
			t.Errorf("%s: B rotated back in: %v", c.name, err)
		}
	}

	// B's own signature over another revocation is a bad one, not an
	// untrusted key's.
	p := testPolicy(1)
	_, err := p.Revoke(revokeB, sigs(&Revocation{Key: keyB.Public()}, keyB))
	refused(t, "B's signature of another revocation", err, SignatureInvalid, "with other contents")

	// The last key may be revoked: then nothing is accepted.
	q, err := p.Revoke(&Revocation{Key: keyA.Public()}, sigs(&Revocation{Key: keyA.Public()}, keyA))
	if err == nil {
		q, err = q.Revoke(revokeB, sigs(revokeB, keyB))
	}
	if err == nil {
		revokeC := &Revocation{Key: keyC.Public()}
		q, err = q.Revoke(revokeC, sigs(revokeC, keyC))
	}
	if err != nil {
		t.Fatal(err)
	}
	wantKeys(t, "all revoked", q, nil, []minisign.PrivateKey{keyR, keyA, keyB, keyC})
	refused(t, "nothing trusted", q.Check(v, sigs(v, keyA, keyB, keyC), 0, vectorTime), Revoked, "is revoked")

	// A retired key is revoked as revoked, not as replaced.
	revokeOld := &Revocation{Key: keyOld.Public()}
	q, err = p.Revoke(revokeOld, sigs(revokeOld, keyOld))
	if err != nil {
		t.Fatal(err)
	}
	refused(t, "the revoked retired key", q.Check(v, sigs(v, keyOld), 0, vectorTime), Revoked, "is revoked")

	// A key the policy doesn't know, revoked by itself, can't be rotated in.
	revokeX := &Revocation{Key: keyX.Public()}
	q, err = p.Revoke(revokeX, sigs(revokeX, keyX))
	if err != nil {
		t.Fatal(err)
	}
	aToX := &Rotation{Old: keyA.Public(), New: keyX.Public()}
	if _, err := q.Rotate(aToX, sigs(aToX, keyA)); !errs.Is(err, errs.InvalidArgument) || !strings.Contains(err.Error(), "revoked already") {
		t.Errorf("rotated to a revoked key: %v", err)
	}

	// A revocation naming a known id with another public key is refused.
	fake := &Revocation{Key: minisign.PublicKey{ID: keyB.ID, Key: keyX.Public().Key}}
	if _, err := p.Revoke(fake, sigs(fake, keyA)); !errs.Is(err, errs.InvalidArgument) || errs.FieldOf(err) != "key" {
		t.Errorf("another public key under B's id: %v", err)
	}
}
