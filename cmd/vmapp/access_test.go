package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
)

// TestTokensAndShares runs the access commands against a whole cluster:
// the operator creates tokens, a Reader reads but can't publish, a
// revoked token stops working, a gallery is shared with another tenant.
func TestTokensAndShares(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO processes")
	}
	c := testcluster.Start(t, testcluster.Options{})
	c.Publish(t, "1.0.0", []byte("package"), testcluster.Target("eastus", 1))
	e := clusterEnv(t, c)
	dir := t.TempDir()

	who := e.ok("whoami")
	if !strings.Contains(who, "bootstrap operator") || !strings.Contains(who, "every tenant") || !strings.Contains(who, "Owner") {
		t.Fatalf("whoami:\n%s", who)
	}

	// Created with its secret shown once, in table output only.
	out := e.ok("token", "create", "--name", "auditor", "--role", "reader")
	m := regexp.MustCompile(`token \(shown once, keep it secret\):\n(tok_[a-z2-7]{20}\.\S+)\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("token create:\n%s", out)
	}
	readerFile := filepath.Join(dir, "reader.token")
	os.WriteFile(readerFile, []byte(m[1]+"\n"), 0o600)
	id, _, _ := strings.Cut(m[1], ".")

	// In JSON, the secret goes to a file.
	ciFile := filepath.Join(dir, "ci.token")
	js := e.okJSON("token", "create", "--name", "ci", "--role", "Contributor", "--gallery", "g", "--secret-file", ciFile, "--ttl", "1h")
	if js["role"] != "ROLE_CONTRIBUTOR" || js["gallery"] != "g" || js["expireTime"] == nil {
		t.Fatalf("token create -o json: %v", js)
	}
	if b, err := os.ReadFile(ciFile); err != nil || !strings.HasPrefix(string(b), "tok_") {
		t.Fatalf("secret file: %q %v", b, err)
	}
	// A taken secret file fails before any token is made.
	// A taken secret file is a usage error naming it, before any token is
	// made, and the file keeps its secret.
	r := e.fails(2, "error: --secret-file "+ciFile+": the file exists; a secret is never written over a file: name a new one", "token", "create", "--name", "again", "--role", "reader", "--secret-file", ciFile)
	if strings.Contains(r.stderr, "Internal") {
		t.Errorf("a taken file reported as an internal error: %v", r)
	}
	if b, err := os.ReadFile(ciFile); err != nil || !strings.HasPrefix(string(b), "tok_") {
		t.Fatalf("secret file after the refusal: %q %v", b, err)
	}
	e.fails(2, "error: --secret-file: open "+filepath.Join(dir, "no", "such.token")+": no such file or directory", "token", "create", "--name", "again", "--role", "reader", "--secret-file", filepath.Join(dir, "no", "such.token"))
	e.fails(2, `--role "admin": must be reader, contributor or owner`, "token", "create", "--name", "x", "--role", "admin")
	e.fails(2, `--ttl 10ms`, "token", "create", "--name", "x", "--role", "reader", "--ttl", "10ms")
	e.fails(1, "error: NotFound: ", "token", "create", "--name", "x", "--role", "reader", "--gallery", "nope")

	list := e.ok("token", "list")
	if strings.Contains(list, "again") {
		t.Fatalf("a token was made despite the taken secret file:\n%s", list)
	}
	if !strings.Contains(list, id) || !strings.Contains(list, "auditor") || !strings.Contains(list, "gallery g") || strings.Contains(list, "bootstrap") == false {
		t.Fatalf("token list:\n%s", list)
	}
	if strings.Contains(list, strings.TrimPrefix(m[1], id)) {
		t.Fatalf("token list shows a secret:\n%s", list)
	}

	// The Reader reads and can't publish; with no credential, nothing.
	reader := &env{t: t, addr: c.Addr, store: c.Catalog, tokenFile: readerFile}
	reader.ok("version", "show", "--gallery", "g", "--app", "a", "1.0.0")
	reader.fails(1, "error: PermissionDenied: token "+id+" (auditor: Reader of tenant default) may not DeleteVersion", "version", "delete", "--gallery", "g", "--app", "a", "1.0.0")
	reader.fails(1, "needs the Owner role", "token", "list")
	anon := &env{t: t, addr: c.Addr, store: c.Catalog}
	anon.fails(1, "error: Unauthenticated: no credential", "gallery", "list")
	missing := &env{t: t, addr: c.Addr, store: c.Catalog, tokenFile: filepath.Join(dir, "nope")}
	missing.fails(2, "--token-file: token file "+filepath.Join(dir, "nope")+": no such file or directory\n", "gallery", "list")

	// Shared with another tenant: readable there, and no more once unshared.
	otherFile := filepath.Join(dir, "other.token")
	e.ok("--tenant", "other", "token", "create", "--name", "neighbour", "--role", "owner", "--secret-file", otherFile)
	other := &env{t: t, addr: c.Addr, store: c.Catalog, tokenFile: otherFile}
	// Its calls run in its own tenant unless they name another.
	other.fails(1, "error: NotFound: Gallery 'g' doesn't exist.", "version", "show", "--gallery", "g", "--app", "a", "1.0.0")
	other.fails(1, "not shared with it", "--tenant", "default", "version", "show", "--gallery", "g", "--app", "a", "1.0.0")
	out = e.ok("gallery", "share", "g", "--with", "other")
	if !strings.Contains(out, "other") {
		t.Fatalf("gallery share:\n%s", out)
	}
	if out := e.ok("gallery", "shares"); !strings.Contains(out, "g") || !strings.Contains(out, "other") {
		t.Fatalf("gallery shares:\n%s", out)
	}
	other.ok("--tenant", "default", "version", "show", "--gallery", "g", "--app", "a", "1.0.0")
	other.fails(1, "PermissionDenied", "--tenant", "default", "version", "delete", "--gallery", "g", "--app", "a", "1.0.0")
	e.ok("gallery", "unshare", "g", "--with", "other")
	other.fails(1, "not shared with it", "--tenant", "default", "version", "show", "--gallery", "g", "--app", "a", "1.0.0")
	e.fails(2, "--with TENANT or --public is required", "gallery", "share", "g")
	e.fails(2, "--with and --public: give one", "gallery", "share", "g", "--with", "x", "--public")
	e.ok("gallery", "share", "g", "--public")
	if out := e.ok("gallery", "shares", "g"); !strings.Contains(out, "everyone (public)") {
		t.Fatalf("public share:\n%s", out)
	}

	// Revoked: the next call fails.
	e.ok("token", "revoke", id)
	reader.fails(1, "error: Unauthenticated: token "+id+" (auditor) was revoked at", "version", "show", "--gallery", "g", "--app", "a", "1.0.0")
	if out := e.ok("token", "list"); strings.Contains(out, id) {
		t.Fatalf("a revoked token is listed without --all:\n%s", out)
	}
	if out := e.ok("token", "list", "--all"); !strings.Contains(out, id) {
		t.Fatalf("token list --all misses the revoked token:\n%s", out)
	}
	out = e.ok("token", "list", "--all", "--top", "1")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[3], "More: continue with --skip-token ") {
		t.Fatalf("token list --top 1:\n%s", out)
	}
	rest := e.okJSON("token", "list", "--all", "--skip-token", strings.TrimPrefix(strings.Split(strings.TrimSpace(out), "\n")[3], "More: continue with --skip-token "))
	if v, _ := rest["value"].([]any); len(v) == 0 || rest["nextPageToken"] != nil {
		t.Fatalf("token list --skip-token: %v", rest)
	}
	e.fails(1, "error: NotFound: Token 'tok_aaaaaaaaaaaaaaaaaaaa' doesn't exist", "token", "revoke", "tok_aaaaaaaaaaaaaaaaaaaa")

	// A machine's agent credential, issued again to a file.
	e.ok("vm", "create", "--name", "vm1", "--region", "eastus", "--os", "linux", "--agent-token-file", filepath.Join(dir, "vm1.token"))
	out = e.ok("vm", "credential", "vm1", "--agent-token-file", filepath.Join(dir, "vm1-new.token"))
	if !strings.Contains(out, "agent token saved to") {
		t.Fatalf("vm credential:\n%s", out)
	}
	old := &env{t: t, addr: c.Addr, store: c.Catalog, tokenFile: filepath.Join(dir, "vm1.token")}
	old.fails(1, "was revoked", "whoami")
	fresh := &env{t: t, addr: c.Addr, store: c.Catalog, tokenFile: filepath.Join(dir, "vm1-new.token")}
	if out := fresh.ok("whoami"); !strings.Contains(out, "machine vm1") || !strings.Contains(out, "Machine") {
		t.Fatalf("whoami as vm1:\n%s", out)
	}
	e.fails(1, "error: NotFound: Machine 'nope' doesn't exist.", "vm", "credential", "nope")

	// An agent token file that exists: a usage error, nothing issued (no
	// machine vm2; vm1's credential not revoked).
	taken := filepath.Join(dir, "vm1-new.token")
	e.fails(2, "error: --agent-token-file "+taken+": the file exists", "vm", "create", "--name", "vm2", "--region", "eastus", "--os", "linux", "--agent-token-file", taken)
	e.fails(1, "error: NotFound: Machine 'vm2' doesn't exist.", "vm", "show", "vm2")
	e.fails(2, "error: --agent-token-file "+taken+": the file exists", "vm", "credential", "vm1", "--agent-token-file", taken)
	fresh.ok("whoami")
}
