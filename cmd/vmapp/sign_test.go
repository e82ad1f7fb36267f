package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	"github.com/vmapp/vmapp/sign/minisign"
)

// TestSigningCLI publishes signed versions through the CLI against a real
// vmappd, with keys the CLI made: the gallery's trust (a malformed key
// refused), version create --sign-key (a wrong passphrase, a malformed or
// untrusted key create nothing), a second signer, a file that isn't the
// version's refused, an unsigned version refused a deployment, a rotation
// and a revocation; and the statement and signatures as vmappd keeps them
// verified by the real minisign.
func TestSigningCLI(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	e := clusterEnv(t, c)
	saved := keyKDF
	keyKDF = minisign.KDF{OpsLimit: 32768, MemLimit: 16 << 20}
	t.Cleanup(func() { keyKDF = saved })
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	writeFile(t, p("pass"), "release passphrase\n")
	writeFile(t, p("wrong"), "not the passphrase\n")
	writeFile(t, p("pkg"), "the package\n")
	writeFile(t, p("other"), "another package\n")
	writeFile(t, p("bad.pub"), "untrusted comment: x\nRWQnot-a-key\n")
	writeFile(t, p("bad.key"), "untrusted comment: x\nnot a key\n")
	newKey := func(name string, args ...string) minisign.PublicKey {
		pub := createKey(e, append([]string{"--out", p(name + ".key")}, args...)...)
		writeFile(t, p(name+".pub"), string(pub.Encode()))
		return pub
	}
	rel := newKey("release", "--passphrase-file", p("pass"))
	ci := newKey("ci", "--no-passphrase")
	ci2 := newKey("ci2", "--no-passphrase")

	e.ok("gallery", "create", "sg", "--location", "eastus")
	e.ok("app", "create", "--gallery", "sg", "app", "--os", "linux", "--custom-action", "restart=systemctl restart app")
	e.fails(1, "error: InvalidArgument: "+p("bad.pub")+": public key: line 2", "gallery", "trust", "add", "sg", "--key", p("bad.pub"))
	out := e.ok("gallery", "trust", "add", "sg", "--key", p("release.pub"), "--name", "release", "--require-signatures")
	if fieldOf(t, out, "Required signatures") != "1" || !strings.Contains(out, "release  "+rel.ID.String()) {
		t.Fatalf("trust add:\n%s", out)
	}

	create := func(version string, extra ...string) []string {
		return append([]string{"version", "create", "--gallery", "sg", "--app", "app", version, "--install", "sh install.sh", "--remove", "sh remove.sh",
			"--target-region", "eastus", "--package", p("pkg")}, extra...)
	}
	e.fails(1, "error: InvalidArgument: "+p("release.key")+": secret key: checksum mismatch: wrong passphrase",
		create("1.0.0", "--sign-key", p("release.key"), "--passphrase-file", p("wrong"))...)
	e.fails(1, "error: InvalidArgument: "+p("bad.key")+": secret key: line 2", create("1.0.0", "--sign-key", p("bad.key"))...)
	e.fails(1, "error: FailedPrecondition: gallery 'sg' doesn't trust key "+ci.ID.String(), create("1.0.0", "--sign-key", p("ci.key"))...)
	e.fails(2, "--sign-key needs --package", "version", "create", "--gallery", "sg", "--app", "app", "1.0.0", "--install", "i", "--remove", "r",
		"--package-url", "http://127.0.0.1:9/x", "--sign-key", p("ci.key"))
	e.fails(2, "--sequence, --expires and --passphrase-file go with --sign-key", create("1.0.0", "--sequence", "3")...)
	e.fails(1, "error: NotFound: Gallery application version 'sg/app/1.0.0' doesn't exist.", "version", "show", "--gallery", "sg", "--app", "app", "1.0.0")

	e.ok(create("1.0.0", "--sign-key", p("release.key"), "--passphrase-file", p("pass"),
		"--custom-action", "lint=./lint.sh", "--custom-action-param", "lint.LEVEL=String,required,default=2")...)
	out = e.ok("version", "signatures", "--gallery", "sg", "--app", "app", "1.0.0", "--statement", p("statement"))
	if fieldOf(t, out, "Statement") != "sequence 1, expires never" || fieldOf(t, out, "Deployable") != "yes" || fieldOf(t, out, "Custom actions") != "lint, restart" {
		t.Fatalf("version signatures:\n%s", out)
	}
	lineMatching(t, out, rel.ID.String()+`\s+release\s+\S+\s+Trusted`)
	if _, err := exec.LookPath("minisign"); err != nil {
		t.Log("minisign is not on PATH (apt-get install minisign): the check of vmappd's signature by the real binary is skipped")
	} else if out, err := exec.Command("minisign", "-V", "-p", p("release.pub"), "-m", p("statement"), "-x", p("statement."+rel.ID.String()+".minisig")).CombinedOutput(); err != nil {
		t.Fatalf("minisign -V of the statement vmappd signed: %v\n%s", err, out)
	}

	// A second signer of the same statement, once the gallery trusts it;
	// a signer who checks another file than the version's signs nothing.
	e.ok("gallery", "trust", "add", "sg", "--key", p("ci.pub"), "--name", "ci")
	e.fails(1, "error: FailedPrecondition: vmappd holds a package of sg/app/1.0.0 with sha256", "version", "sign", "--gallery", "sg", "--app", "app", "1.0.0",
		"--sign-key", p("ci.key"), "--package", p("other"))
	js := e.okJSON("version", "sign", "--gallery", "sg", "--app", "app", "1.0.0", "--sign-key", p("ci.key"), "--package", p("pkg"))
	if sigs, _ := at(js, "signatures", "signatures").([]any); len(sigs) != 2 || at(js, "signatures", "sequence") != 1.0 || at(js, "nextSequence") != 2.0 {
		t.Fatalf("version sign -o json: %v", js)
	}
	e.fails(2, "--rollback needs --expires", "version", "sign", "--gallery", "sg", "--app", "app", "1.0.0", "--sign-key", p("ci.key"), "--rollback")

	// An unsigned version isn't deployed from a gallery that requires
	// signatures.
	e.ok(create("2.0.0")...)
	for _, v := range []string{"1.0.0", "2.0.0"} {
		deadline := time.Now().Add(60 * time.Second)
		for at(e.okJSON("version", "show", "--gallery", "sg", "--app", "app", v), "replicationStatus", "aggregatedState") != "Completed" {
			if time.Now().After(deadline) {
				t.Fatalf("%s never replicated", v)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	e.ok("vm", "create", "--name", "vm1", "--region", "eastus", "--os", "linux")
	e.fails(1, "error: FailedPrecondition: gallery 'sg' requires 1 signature(s) by the keys of its trust policy, and version sg/app/2.0.0 doesn't have them",
		"vm", "app", "set", "--vm", "vm1", "--app", "sg/app/2.0.0")
	// An action the application gains after the signature is not covered
	// by the statement, and doesn't make it another: 1.0.0 still deploys.
	e.ok("app", "update", "--gallery", "sg", "app", "--custom-action", "restart=systemctl restart app", "--custom-action", "later=true")
	e.ok("vm", "app", "set", "--vm", "vm1", "--app", "sg/app/1.0.0")

	// ci hands over to ci2, which is then revoked by itself.
	e.fails(1, "error: FailedPrecondition", "gallery", "trust", "rotate", "sg", "--old", p("ci.pub"), "--new", p("ci2.pub"), "--sign-key", p("ci2.key"))
	out = e.ok("gallery", "trust", "rotate", "sg", "--old", p("ci.pub"), "--new", p("ci2.pub"), "--sign-key", p("ci.key"))
	if !strings.Contains(out, "ci       "+ci2.ID.String()) || !strings.Contains(out, "rotation of key "+ci.ID.String()+" to key "+ci2.ID.String()+" (1 signature(s))") {
		t.Fatalf("trust rotate:\n%s", out)
	}
	out = e.ok("gallery", "trust", "revoke", "sg", "--key", p("ci2.pub"), "--sign-key", p("ci2.key"), "--reason", "lost")
	if strings.Contains(out, ci2.ID.String()+"  ") || !strings.Contains(out, "revocation of key "+ci2.ID.String()) {
		t.Fatalf("trust revoke:\n%s", out)
	}
	e.fails(1, "error: FailedPrecondition: key "+ci2.ID.String()+" was revoked in gallery 'sg' (lost): a revoked key is never trusted again", "gallery", "trust", "add", "sg", "--key", p("ci2.pub"))
	js = e.okJSON("gallery", "trust", "list", "sg")
	if keys, _ := js["keys"].([]any); len(keys) != 1 || at(js, "keys", 0, "name") != "release" || len(js["keyChanges"].([]any)) != 2 {
		t.Fatalf("trust list -o json: %v", js)
	}
	e.ok("gallery", "trust", "set", "sg", "--require-signatures", "0")
	e.ok("gallery", "trust", "remove", "sg", "release")
	// The statement covers the version's custom action and its
	// application's, by name.
	if b, err := os.ReadFile(p("statement")); err != nil || !strings.HasPrefix(string(b), "vmapp-statement v1\nkind 7:version\ntenant 7:default\n") ||
		!strings.Contains(string(b), "customActions 1:2\ncustomActions.0.name 4:lint\ncustomActions.0.script 9:./lint.sh\n") ||
		!strings.Contains(string(b), "customActions.0.parameters.0.name 5:LEVEL\ncustomActions.0.parameters.0.required 4:true\n") ||
		!strings.Contains(string(b), "customActions.1.name 7:restart\ncustomActions.1.script 21:systemctl restart app\n") {
		t.Fatalf("the statement file: %v\n%s", err, b)
	}
}
