package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/sign/minisign"
)

// keyEnv is an env for the key commands: its server address is a port
// nothing listens on, as they never call vmappd. New keys are encrypted
// with a cheap KDF (1 MiB) while it runs.
func keyEnv(t *testing.T) (*env, string) {
	saved := keyKDF
	keyKDF = minisign.KDF{OpsLimit: 32768, MemLimit: 16 << 20}
	t.Cleanup(func() { keyKDF = saved })
	return &env{t: t, addr: "127.0.0.1:9"}, t.TempDir()
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// createKey runs key create and returns the public key it printed.
func createKey(e *env, args ...string) minisign.PublicKey {
	e.t.Helper()
	r := e.vmapp(append([]string{"key", "create"}, args...)...)
	if r.code != 0 {
		e.t.Fatalf("key create: %v", r)
	}
	pub, err := minisign.DecodePublicKey([]byte(r.stdout))
	if err != nil {
		e.t.Fatalf("key create printed no public key file: %v\n%v", err, r)
	}
	if !strings.Contains(r.stderr, "secret key "+pub.ID.String()+" saved to ") {
		e.t.Errorf("key create: stderr %q", r.stderr)
	}
	return pub
}

// TestKeyCreate: a new secret key file, mode 0600, encrypted with the
// passphrase file's passphrase or not at all; its public key printed as a
// public key file (or JSON); an existing file is refused and kept, and
// so are contradicting or missing passphrase flags.
func TestKeyCreate(t *testing.T) {
	e, dir := keyEnv(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	writeFile(t, p("pass"), "correct horse battery\n")

	pub := createKey(e, "--out", p("enc.key"), "--passphrase-file", p("pass"))
	st, err := os.Stat(p("enc.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the secret key file: %v, %v", st, err)
	}
	f, err := minisign.ReadSecretKeyFile(p("enc.key"))
	if err != nil || !f.Encrypted() {
		t.Fatalf("the secret key file: encrypted %v, %v", f != nil && f.Encrypted(), err)
	}
	k, err := f.Decrypt([]byte("correct horse battery"))
	if err != nil || !k.Public().Equal(pub) {
		t.Fatalf("decrypted with the passphrase: %v, %v; printed %v", k.Public(), err, pub)
	}
	if out := e.ok("key", "public", "--key", p("enc.key"), "--passphrase-file", p("pass")); out != string(pub.Encode()) {
		t.Errorf("key public printed\n%s\nkey create\n%s", out, pub.Encode())
	}

	r := e.vmapp("-o", "json", "key", "create", "--out", p("plain.key"), "--no-passphrase")
	var js map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &js) != nil {
		t.Fatalf("-o json: %v", r)
	}
	plain, err := minisign.ReadSecretKeyFile(p("plain.key"))
	if err != nil || plain.Encrypted() {
		t.Fatalf("--no-passphrase: %v", err)
	}
	k, _ = plain.Decrypt(nil)
	if js["keyId"] != k.ID.String() || js["publicKey"] != k.Public().String() || js["encrypted"] != false || js["secretKeyFile"] != p("plain.key") {
		t.Errorf("-o json: %v", js)
	}
	if got := e.okJSON("key", "public", "--key", p("plain.key")); got["publicKey"] != k.Public().String() {
		t.Errorf("key public -o json: %v", got)
	}

	before, _ := os.ReadFile(p("enc.key"))
	e.fails(2, "error: --out "+p("enc.key")+": the file exists (a key is never overwritten)", "key", "create", "--out", p("enc.key"), "--no-passphrase")
	if after, _ := os.ReadFile(p("enc.key")); string(after) != string(before) {
		t.Error("an existing key file was changed")
	}
	writeFile(t, p("empty"), "\n")
	writeFile(t, p("two"), "one\ntwo\n")
	for _, c := range []struct {
		says string
		args []string
	}{
		{"--passphrase-file and --no-passphrase exclude each other", []string{"--passphrase-file", p("pass"), "--no-passphrase"}},
		{"no terminal to ask for the passphrase on: give --passphrase-file F, or --no-passphrase", nil},
		{"--passphrase-file " + p("empty") + ": empty", []string{"--passphrase-file", p("empty")}},
		{"--passphrase-file " + p("two") + ": holds more than one line", []string{"--passphrase-file", p("two")}},
		{"--passphrase-file: open " + p("none"), []string{"--passphrase-file", p("none")}},
	} {
		e.fails(2, c.says, append([]string{"key", "create", "--out", p("new.key")}, c.args...)...)
		if _, err := os.Stat(p("new.key")); err == nil {
			t.Fatalf("%s: a key file was written", c.says)
		}
	}
	e.fails(2, `required flag(s) "out" not set`, "key", "create", "--no-passphrase")
}

// TestKeySignVerify signs a file and verifies it, and checks each refusal:
// a changed file, another key, an edited trusted comment, a wrong
// passphrase, malformed files.
func TestKeySignVerify(t *testing.T) {
	e, dir := keyEnv(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	writeFile(t, p("pass"), "s3cret\n")
	writeFile(t, p("wrong"), "s3cret!\n")
	writeFile(t, p("pkg"), "package bytes\n")
	pub := createKey(e, "--out", p("a.key"), "--passphrase-file", p("pass"))
	writeFile(t, p("a.pub"), string(pub.Encode()))
	other := createKey(e, "--out", p("b.key"), "--no-passphrase")
	writeFile(t, p("b.pub"), string(other.Encode()))

	out := e.ok("key", "sign", "--key", p("a.key"), "--passphrase-file", p("pass"), p("pkg"))
	if out != "Signed "+p("pkg")+" with key "+pub.ID.String()+": "+p("pkg.minisig")+"\n" {
		t.Errorf("key sign: %q", out)
	}
	out = e.ok("key", "verify", "--pub", p("a.pub"), p("pkg"))
	if !strings.Contains(out, "Signature and trusted comment verified: "+p("pkg")+" by key "+pub.ID.String()) ||
		!strings.Contains(out, "Trusted comment: timestamp:") || !strings.Contains(out, "\tfile:pkg\thashed\n") {
		t.Errorf("key verify: %q", out)
	}
	e.ok("key", "sign", "--key", p("a.key"), "--passphrase-file", p("pass"), "--sig", p("custom.sig"), "--trusted-comment", "release 1.2.3", p("pkg"))
	js := e.okJSON("key", "verify", "--pub", p("a.pub"), "--sig", p("custom.sig"), p("pkg"))
	if js["verified"] != true || js["trustedComment"] != "release 1.2.3" || js["keyId"] != pub.ID.String() || js["prehashed"] != true {
		t.Errorf("key verify -o json: %v", js)
	}

	sig, _ := os.ReadFile(p("custom.sig"))
	writeFile(t, p("edited.sig"), strings.Replace(string(sig), "release 1.2.3", "release 1.2.4", 1))
	writeFile(t, p("changed"), "package bytes!\n")
	writeFile(t, p("changed.minisig"), string(sig))
	writeFile(t, p("bad.pub"), "untrusted comment: x\nRWQ\n")
	e.fails(1, "error: InvalidArgument: "+p("changed.minisig")+": signature: bad signature: key "+pub.ID.String()+" did not sign this message", "key", "verify", "--pub", p("a.pub"), p("changed"))
	e.fails(1, "key id mismatch: signed by key "+pub.ID.String()+", the public key is "+other.ID.String(), "key", "verify", "--pub", p("b.pub"), p("pkg"))
	e.fails(1, "bad trusted-comment signature", "key", "verify", "--pub", p("a.pub"), "--sig", p("edited.sig"), p("pkg"))
	e.fails(1, "error: InvalidArgument: "+p("bad.pub")+": public key: line 2 is not base64", "key", "verify", "--pub", p("bad.pub"), p("pkg"))
	e.fails(1, "error: InvalidArgument: "+p("a.key")+": secret key: checksum mismatch: wrong passphrase", "key", "sign", "--key", p("a.key"), "--passphrase-file", p("wrong"), p("pkg"))
	e.fails(1, p("a.pub")+": secret key: line 2: wrong length: 42 bytes, want 158", "key", "sign", "--key", p("a.pub"), p("pkg"))
	e.fails(1, "no such file or directory", "key", "verify", "--pub", p("a.pub"), p("nope"))
	e.fails(2, "no terminal to ask for the passphrase on: "+p("a.key")+" is encrypted: give --passphrase-file F", "key", "sign", "--key", p("a.key"), p("pkg"))
	e.fails(2, "missing argument IN", "key", "verify", "--pub", p("a.pub"))
	e.fails(1, "a comment is one line", "key", "sign", "--key", p("b.key"), "--trusted-comment", "two\nlines", p("pkg"))
}

// TestKeyWithMinisign: vmapp's keys and signatures in the real minisign,
// and minisign's in vmapp's commands.
func TestKeyWithMinisign(t *testing.T) {
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Skip("minisign is not on PATH (apt-get install minisign): the round trips with the real binary are skipped")
	}
	e, dir := keyEnv(t)
	p := func(name string) string { return filepath.Join(dir, name) }
	minisign := func(stdin string, args ...string) {
		t.Helper()
		cmd := exec.Command("minisign", args...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("minisign %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	writeFile(t, p("pass"), "vmapp passphrase\n")
	writeFile(t, p("pkg"), "a package\n")

	pub := createKey(e, "--out", p("v.key"), "--passphrase-file", p("pass"))
	writeFile(t, p("v.pub"), string(pub.Encode()))
	e.ok("key", "sign", "--key", p("v.key"), "--passphrase-file", p("pass"), p("pkg"))
	minisign("", "-V", "-p", p("v.pub"), "-m", p("pkg"))
	minisign("vmapp passphrase\n", "-S", "-s", p("v.key"), "-m", p("pkg"), "-x", p("by-minisign.sig"), "-t", "by minisign")
	if js := e.okJSON("key", "verify", "--pub", p("v.pub"), "--sig", p("by-minisign.sig"), p("pkg")); js["trustedComment"] != "by minisign" {
		t.Errorf("minisign's signature: %v", js)
	}

	minisign("", "-G", "-W", "-p", p("m.pub"), "-s", p("m.key"))
	mpub, err := os.ReadFile(p("m.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if out := e.ok("key", "public", "--key", p("m.key")); out != string(mpub) {
		t.Errorf("key public of minisign's key\n%s\nminisign's public key file\n%s", out, mpub)
	}
	e.ok("key", "sign", "--key", p("m.key"), "--sig", p("with-m.sig"), p("pkg"))
	minisign("", "-V", "-p", p("m.pub"), "-m", p("pkg"), "-x", p("with-m.sig"))
}
