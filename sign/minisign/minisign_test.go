package minisign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/errs"
)

// cheapKDF makes encrypted test keys fast: scrypt N = 2^10, 1 MiB.
var cheapKDF = KDF{OpsLimit: 32768, MemLimit: 16 << 20}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustDecrypt(t *testing.T, name, passphrase string) PrivateKey {
	t.Helper()
	f, err := ReadSecretKeyFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	k, err := f.Decrypt([]byte(passphrase))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustPublic(t *testing.T, name string) PublicKey {
	t.Helper()
	k, err := ReadPublicKeyFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestMinisignFiles reads the keys and signatures minisign made
// (testdata/README.md): each secret key's public half is its public key
// file, the public key file and the signatures encode back to the same
// bytes, and every signature verifies over the message.
func TestMinisignFiles(t *testing.T) {
	for _, c := range []struct{ key, pub, passphrase, id string }{
		{"minisign-unencrypted.key", "minisign-unencrypted.pub", "", "25E3F226550377E8"},
		{"minisign-encrypted.key", "minisign-encrypted.pub", "correct horse", "7A68BDE574852AF7"},
	} {
		pub := mustPublic(t, c.pub)
		if got := pub.ID.String(); got != c.id {
			t.Errorf("%s: key id %s, minisign says %s", c.pub, got, c.id)
		}
		if got := pub.Encode(); !bytes.Equal(got, testdata(t, c.pub)) {
			t.Errorf("%s encodes as\n%s", c.pub, got)
		}
		if got := mustDecrypt(t, c.key, c.passphrase).Public(); !got.Equal(pub) {
			t.Errorf("%s: public half %s, want %s", c.key, got, pub)
		}
	}
	msg := testdata(t, "message.txt")
	for _, c := range []struct {
		sig, pub, trusted string
		prehashed         bool
	}{
		{"message.txt.minisig", "minisign-unencrypted.pub", "vmapp test vector: prehashed", true},
		{"message.txt.legacy.minisig", "minisign-unencrypted.pub", "vmapp test vector: legacy", false},
		{"message.txt.encrypted-key.minisig", "minisign-encrypted.pub", "vmapp test vector: encrypted key", true},
	} {
		s, err := ReadSignatureFile(filepath.Join("testdata", c.sig))
		if err != nil {
			t.Fatal(err)
		}
		if s.TrustedComment != c.trusted || s.Prehashed != c.prehashed {
			t.Errorf("%s: trusted comment %q, prehashed %v", c.sig, s.TrustedComment, s.Prehashed)
		}
		if err := mustPublic(t, c.pub).Verify(bytes.NewReader(msg), s); err != nil {
			t.Errorf("%s: %v", c.sig, err)
		}
		if got := s.Encode(); !bytes.Equal(got, testdata(t, c.sig)) {
			t.Errorf("%s encodes as\n%s", c.sig, got)
		}
	}
}

// TestSignLikeMinisign: Ed25519 is deterministic, so vmapp signing the
// message with minisign's key and the same comments must write minisign's
// signature file byte for byte.
func TestSignLikeMinisign(t *testing.T) {
	k := mustDecrypt(t, "minisign-unencrypted.key", "")
	s, err := Sign(k, bytes.NewReader(testdata(t, "message.txt")), "vmapp test vector: prehashed", "signature from minisign secret key")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Encode(), testdata(t, "message.txt.minisig"); !bytes.Equal(got, want) {
		t.Fatalf("vmapp's signature\n%s\nminisign's\n%s", got, want)
	}
}

// TestSecretKeyRoundTrip writes keys encrypted and not, and reads them
// back; a wrong passphrase is a checksum mismatch, a missing one says the
// key is encrypted.
func TestSecretKeyRoundTrip(t *testing.T) {
	k, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, pass := range []string{"", "s3cret passphrase"} {
		var p []byte
		if pass != "" {
			p = []byte(pass)
		}
		file, err := k.Encode(p, cheapKDF, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		f, err := DecodeSecretKey(file)
		if err != nil {
			t.Fatal(err)
		}
		if f.Encrypted() != (pass != "") {
			t.Fatalf("passphrase %q: Encrypted() = %v", pass, f.Encrypted())
		}
		got, err := f.Decrypt(p)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != k.ID || !got.Key.Equal(k.Key) {
			t.Fatalf("passphrase %q: the key read back differs", pass)
		}
		if pass == "" {
			continue
		}
		if got := f.KDF(); got != cheapKDF {
			t.Errorf("KDF %+v, want %+v", got, cheapKDF)
		}
		_, err = f.Decrypt([]byte("s3cret passphrasE"))
		if !errors.Is(err, ErrWrongPassphrase) || !errs.Is(err, errs.InvalidArgument) {
			t.Errorf("wrong passphrase: %v", err)
		}
		if _, err := f.Decrypt(nil); !errors.Is(err, ErrEncrypted) {
			t.Errorf("no passphrase: %v", err)
		}
	}
	if _, err := k.Encode([]byte{}, cheapKDF, rand.Reader); err == nil || !strings.Contains(err.Error(), "empty passphrase") {
		t.Errorf("empty passphrase: %v", err)
	}
}

// TestKDFParams checks the N, r, p libsodium derives from opslimit and
// memlimit, for the limits minisign writes, and that larger ones are
// refused before any memory is spent.
func TestKDFParams(t *testing.T) {
	for _, c := range []struct {
		kdf     KDF
		n, r, p int
	}{
		{DefaultKDF, 1 << 20, 8, 1},             // minisign -G: 1 GiB
		{KDF{1 << 21, 64 << 20}, 1 << 16, 8, 1}, // minisign -G halved twice (testdata)
		{KDF{524288, 16 << 20}, 1 << 14, 8, 1},  // libsodium's _INTERACTIVE
		{cheapKDF, 1 << 10, 8, 1},               // opslimit < memlimit/32
		{KDF{1 << 25, 1 << 29}, 1 << 19, 8, 2},  // p from opslimit
	} {
		n, r, p, err := c.kdf.params()
		if err != nil || n != c.n || r != c.r || p != c.p {
			t.Errorf("%+v: N=%d r=%d p=%d, %v; want N=%d r=%d p=%d", c.kdf, n, r, p, err, c.n, c.r, c.p)
		}
	}
	for _, k := range []KDF{{DefaultKDF.OpsLimit + 1, DefaultKDF.MemLimit}, {DefaultKDF.OpsLimit, DefaultKDF.MemLimit * 2}} {
		if _, _, _, err := k.params(); err == nil {
			t.Errorf("%+v: accepted", k)
		}
	}
}

// TestVerifyRefusals: a signature by another key, over another message,
// or with an edited trusted comment is refused with the matching error.
func TestVerifyRefusals(t *testing.T) {
	msg := testdata(t, "message.txt")
	s, err := DecodeSignature(testdata(t, "message.txt.minisig"))
	if err != nil {
		t.Fatal(err)
	}
	pub := mustPublic(t, "minisign-unencrypted.pub")
	other := mustPublic(t, "minisign-encrypted.pub")
	edited := s
	edited.TrustedComment = "vmapp test vector: edited"
	legacy, err := DecodeSignature(testdata(t, "message.txt.legacy.minisig"))
	if err != nil {
		t.Fatal(err)
	}
	sameID := other
	sameID.ID = pub.ID // a key that claims another's id
	for _, c := range []struct {
		name string
		pub  PublicKey
		msg  []byte
		sig  Signature
		want error
		says string
	}{
		{"another key", other, msg, s, ErrKeyIDMismatch, "signed by key 25E3F226550377E8, the public key is 7A68BDE574852AF7"},
		{"another key with the same id", sameID, msg, s, ErrBadSignature, "did not sign this message"},
		{"another message", pub, append(msg, '!'), s, ErrBadSignature, "did not sign this message"},
		{"legacy, another message", pub, msg[1:], legacy, ErrBadSignature, "did not sign this message"},
		{"edited trusted comment", pub, msg, edited, ErrBadTrustedComment, `"vmapp test vector: edited"`},
	} {
		err := c.pub.Verify(bytes.NewReader(c.msg), c.sig)
		if !errors.Is(err, c.want) || !errs.Is(err, errs.InvalidArgument) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v; want %v saying %q", c.name, err, c.want, c.says)
		}
	}
}

// damage replaces old with new in a testdata file, once.
func damage(t *testing.T, name, old, new string) []byte {
	t.Helper()
	s := string(testdata(t, name))
	if !strings.Contains(s, old) {
		t.Fatalf("%s does not hold %q", name, old)
	}
	return []byte(strings.Replace(s, old, new, 1))
}

// rebase64 replaces line 2 of a testdata file with the base64 of its
// bytes changed by edit.
func rebase64(t *testing.T, name string, edit func([]byte) []byte) []byte {
	t.Helper()
	ls := strings.Split(string(testdata(t, name)), "\n")
	b, err := b64.DecodeString(ls[1])
	if err != nil {
		t.Fatal(err)
	}
	ls[1] = b64.EncodeToString(edit(b))
	return []byte(strings.Join(ls, "\n"))
}

func set(at int, v string) func([]byte) []byte {
	return func(b []byte) []byte { copy(b[at:], v); return b }
}

// TestMalformed damages each kind of file in each way and checks that the
// error says what is wrong.
func TestMalformed(t *testing.T) {
	const pub, sec, sig = "minisign-unencrypted.pub", "minisign-unencrypted.key", "message.txt.minisig"
	pubLine := strings.Split(string(testdata(t, pub)), "\n")[1]
	cases := []struct {
		name   string
		decode func([]byte) error
		data   []byte
		says   string
	}{
		{"public: empty", decodePub, nil, "line 1 is missing"},
		{"public: no comment", decodePub, damage(t, pub, "untrusted comment: ", ""), `line 1 must start with "untrusted comment: "`},
		{"public: one line", decodePub, []byte(pubLine + "\n"), `line 1 must start with "untrusted comment: "`},
		{"public: no key", decodePub, []byte("untrusted comment: x\n"), "line 2 is missing"},
		{"public: not base64", decodePub, damage(t, pub, "RWTo", "RW$o"), "line 2 is not base64"},
		{"public: short", decodePub, damage(t, pub, pubLine, pubLine[:40]+"=="), "line 2 is not base64"},
		{"public: wrong length", decodePub, rebase64(t, pub, func(b []byte) []byte { return b[:41] }), "wrong length: 41 bytes, want 42"},
		{"public: algorithm", decodePub, rebase64(t, pub, set(0, "ED")), `unknown signature algorithm "ED"`},
		{"public: two keys", decodePub, append(testdata(t, pub), testdata(t, pub)...), "unexpected line 3"},
		{"public: carriage return", decodePub, damage(t, pub, "public key", "public\rkey"), "line 1 holds a carriage return"},
		{"secret: algorithm", decodeSec, rebase64(t, sec, set(0, "Xx")), `unknown signature algorithm "Xx"`},
		{"secret: kdf", decodeSec, rebase64(t, sec, set(2, "Ar")), `unknown key derivation function "Ar"`},
		{"secret: checksum algorithm", decodeSec, rebase64(t, sec, set(4, "B3")), `unknown checksum algorithm "B3"`},
		{"secret: wrong length", decodeSec, rebase64(t, sec, func(b []byte) []byte { return append(b, 0) }), "wrong length: 159 bytes, want 158"},
		{"secret: damaged public half", decodeSec, rebase64(t, sec, func(b []byte) []byte { b[skChecksum-1] ^= 1; return b }), "its public half is not its seed's"},
		{"secret: damaged seed", decodeSec, rebase64(t, sec, func(b []byte) []byte { b[skKey] ^= 1; return b }), "its public half is not its seed's"},
		{"secret: kdf too costly", decodeSec, encryptedWith(t, KDF{DefaultKDF.OpsLimit, DefaultKDF.MemLimit << 1}), "exceed minisign's"},
		{"signature: empty", decodeSig, []byte("\n\n"), "line 1 is missing"},
		{"signature: no trusted comment", decodeSig, firstLines(t, sig, 2), "line 3 is missing"},
		{"signature: no global signature", decodeSig, firstLines(t, sig, 3), "line 4 is missing"},
		{"signature: trusted comment prefix", decodeSig, damage(t, sig, "trusted comment: vmapp", "trusted: vmapp"), `line 3 must start with "trusted comment: "`},
		{"signature: algorithm", decodeSig, rebase64(t, sig, set(0, "EE")), `unknown signature algorithm "EE"`},
		{"signature: wrong length", decodeSig, rebase64(t, sig, func(b []byte) []byte { return b[:73] }), "line 2: wrong length: 73 bytes, want 74"},
		{"signature: global not base64", decodeSig, damage(t, sig, "91r0", "91r_"), "line 4 is not base64"},
		{"signature: control character", decodeSig, damage(t, sig, "test vector", "test\x1bvector"), "control character U+001B"},
		{"signature: not UTF-8", decodeSig, damage(t, sig, "test vector", "test\xffvector"), "not UTF-8"},
		{"signature: comment too long", decodeSig, damage(t, sig, "test vector", strings.Repeat("x", maxTrustedComment)), "at most 8173"},
		{"signature: extra line", decodeSig, append(testdata(t, sig), "more\n"...), "unexpected line 5"},
	}
	for _, c := range cases {
		err := c.decode(c.data)
		if !errs.Is(err, errs.InvalidArgument) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v; want InvalidArgument saying %q", c.name, err, c.says)
		}
	}
	// An unencrypted key with a checksum (vmapp writes one) is checked.
	k := mustDecrypt(t, sec, "")
	file, err := k.Encode(nil, KDF{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeSec(file); err != nil {
		t.Fatal(err)
	}
	ls := strings.Split(string(file), "\n")
	b, _ := b64.DecodeString(ls[1])
	b[skSize-1] ^= 1
	ls[1] = b64.EncodeToString(b)
	if err := decodeSec([]byte(strings.Join(ls, "\n"))); err == nil || !strings.Contains(err.Error(), "checksum mismatch: the key is damaged") {
		t.Errorf("damaged checksum: %v", err)
	}
}

func decodePub(b []byte) error { _, err := DecodePublicKey(b); return err }
func decodeSig(b []byte) error { _, err := DecodeSignature(b); return err }

// decodeSec decodes and decrypts a secret key file with "pass".
func decodeSec(b []byte) error {
	f, err := DecodeSecretKey(b)
	if err == nil {
		_, err = f.Decrypt([]byte("pass"))
	}
	return err
}

func firstLines(t *testing.T, name string, n int) []byte {
	ls := strings.SplitAfter(string(testdata(t, name)), "\n")
	return []byte(strings.Join(ls[:n], ""))
}

// encryptedWith is a key file encrypted with passphrase "pass" whose
// limits say kdf, without running that KDF.
func encryptedWith(t *testing.T, kdf KDF) []byte {
	file, err := mustDecrypt(t, "minisign-unencrypted.key", "").Encode([]byte("pass"), cheapKDF, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ls := strings.Split(string(file), "\n")
	b, _ := b64.DecodeString(ls[1])
	binary.LittleEndian.PutUint64(b[skOps:], kdf.OpsLimit)
	binary.LittleEndian.PutUint64(b[skMem:], kdf.MemLimit)
	ls[1] = b64.EncodeToString(b)
	return []byte(strings.Join(ls, "\n"))
}

// TestReadFileNamesFile: a damaged file's error starts with its path.
func TestReadFileNamesFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "publisher.pub")
	if err := os.WriteFile(path, []byte("untrusted comment: x\nnot a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadPublicKeyFile(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+": public key: line 2 is not base64") {
		t.Errorf("ReadPublicKeyFile: %v", err)
	}
	big := filepath.Join(dir, "big.minisig")
	if err := os.WriteFile(big, make([]byte, maxFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSignatureFile(big); err == nil || !strings.Contains(err.Error(), "not a minisign key or signature") {
		t.Errorf("a large file: %v", err)
	}
}

// TestPublicKeyCommentLikeMinisign: the public key file's comment names the
// key id as minisign does, without leading zeros (one key in sixteen has
// one), so the file is minisign's byte for byte.
func TestPublicKeyCommentLikeMinisign(t *testing.T) {
	k := PublicKey{ID: KeyID{0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed, 0x0f}, Key: make(ed25519.PublicKey, ed25519.PublicKeySize)}
	first, _, _ := strings.Cut(string(k.Encode()), "\n")
	if want := "untrusted comment: minisign public key FEDCBA987654321"; first != want {
		t.Errorf("comment %q, want %q", first, want)
	}
	if got := k.ID.String(); got != "0FEDCBA987654321" {
		t.Errorf("KeyID.String %q", got)
	}
}
