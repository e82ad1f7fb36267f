package minisign

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// needMinisign skips a test when the minisign binary (Debian's package
// minisign) is not installed.
func needMinisign(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Skip("minisign is not on PATH (apt-get install minisign): the round trips with the real binary are skipped")
	}
}

// minisign runs the binary in dir with stdin (passphrases) and returns
// its output; it fails the test unless the exit status is wantOK's.
func minisign(t *testing.T, dir, stdin string, wantOK bool, args ...string) string {
	t.Helper()
	cmd := exec.Command("minisign", args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if (err == nil) != wantOK {
		t.Fatalf("minisign %s: %v (want success %v)\n%s", strings.Join(args, " "), err, wantOK, out)
	}
	return string(out)
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestMinisignSignsWithVmappKeys: keys vmapp writes, encrypted and not,
// work in minisign: -R recreates the public key vmapp wrote, -S signs and
// vmapp verifies; -V verifies what vmapp signs and refuses it over
// another message.
func TestMinisignSignsWithVmappKeys(t *testing.T) {
	needMinisign(t)
	dir := t.TempDir()
	msg := []byte("a package minisign and vmapp both sign\n")
	write(t, filepath.Join(dir, "msg"), msg)
	write(t, filepath.Join(dir, "other"), append(msg, '!'))
	for _, pass := range []string{"", "vmapp passphrase"} {
		k, err := GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var p []byte
		flags := []string{"-W"}
		if pass != "" {
			p, flags = []byte(pass), nil
		}
		file, err := k.Encode(p, cheapKDF, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, "vmapp.key"), file)
		write(t, filepath.Join(dir, "vmapp.pub"), k.Public().Encode())

		minisign(t, dir, pass+"\n", true, append([]string{"-R", "-f", "-s", "vmapp.key", "-p", "recreated.pub"}, flags...)...)
		rec, err := ReadPublicKeyFile(filepath.Join(dir, "recreated.pub"))
		if err != nil || !rec.Equal(k.Public()) {
			t.Fatalf("minisign -R: %v, %v; want %v", rec, err, k.Public())
		}

		minisign(t, dir, pass+"\n", true, append([]string{"-S", "-s", "vmapp.key", "-m", "msg", "-x", "by-minisign.sig", "-t", "signed by minisign"}, flags...)...)
		s, err := ReadSignatureFile(filepath.Join(dir, "by-minisign.sig"))
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Public().Verify(bytes.NewReader(msg), s); err != nil {
			t.Errorf("passphrase %q: minisign's signature: %v", pass, err)
		}

		v, err := Sign(k, bytes.NewReader(msg), "signed by vmapp", "vmapp test")
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, "by-vmapp.sig"), v.Encode())
		out := minisign(t, dir, "", true, "-V", "-p", "vmapp.pub", "-m", "msg", "-x", "by-vmapp.sig")
		if !strings.Contains(out, "Trusted comment: signed by vmapp") {
			t.Errorf("minisign -V says %q", out)
		}
		minisign(t, dir, "", false, "-V", "-p", "vmapp.pub", "-m", "other", "-x", "by-vmapp.sig")
	}
}

// TestVmappSignsWithMinisignKeys: keys minisign makes, unencrypted (-W)
// and encrypted with its full-cost KDF (1 GiB of memory: skipped with
// -short), sign in vmapp, and minisign -V verifies.
func TestVmappSignsWithMinisignKeys(t *testing.T) {
	needMinisign(t)
	dir := t.TempDir()
	msg := []byte("signed with a key minisign made\n")
	write(t, filepath.Join(dir, "msg"), msg)
	for _, pass := range []string{"", "minisign passphrase"} {
		args := []string{"-G", "-f", "-p", "m.pub", "-s", "m.key"}
		if pass == "" {
			args = append(args, "-W")
		} else if testing.Short() {
			t.Log("-short: the encrypted minisign key (scrypt with 1 GiB) is skipped")
			continue
		}
		minisign(t, dir, pass+"\n"+pass+"\n", true, args...)
		f, err := ReadSecretKeyFile(filepath.Join(dir, "m.key"))
		if err != nil {
			t.Fatal(err)
		}
		if pass != "" {
			if f.KDF() != DefaultKDF {
				t.Errorf("minisign's KDF limits %+v, DefaultKDF %+v", f.KDF(), DefaultKDF)
			}
		}
		k, err := f.Decrypt([]byte(pass))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := ReadPublicKeyFile(filepath.Join(dir, "m.pub"))
		if err != nil || !pub.Equal(k.Public()) {
			t.Fatalf("public key %v, %v; the secret key's is %v", pub, err, k.Public())
		}
		s, err := Sign(k, bytes.NewReader(msg), "vmapp with a minisign key", "vmapp")
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, "msg.minisig"), s.Encode())
		minisign(t, dir, "", true, "-V", "-p", "m.pub", "-m", "msg")
	}
}
