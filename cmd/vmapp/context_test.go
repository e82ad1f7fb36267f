package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain keeps the tests away from the user's configuration file: a
// context there would fill in what the tests leave unset.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vmapp-config-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// noEnv clears the environment variables that override contexts.
func noEnv(t *testing.T) {
	for _, v := range []string{"VMAPP_SERVER", "VMAPP_TENANT", "VMAPP_CA", "VMAPP_CERT", "VMAPP_KEY", "VMAPP_TOKEN", "VMAPP_TOKEN_FILE", "VMAPP_CONTEXT"} {
		t.Setenv(v, "")
	}
}

func mustRun(t *testing.T, code int, want string, args ...string) result {
	t.Helper()
	r := runCLI(args...)
	if r.code != code || !strings.Contains(r.stdout+r.stderr, want) {
		t.Fatalf("want exit %d and %q, got %v", code, want, r)
	}
	return r
}

// TestContexts: contexts in $XDG_CONFIG_HOME/vmapp/config.yaml give the
// connection; --context, the environment and flags override them; against
// real vmappds, one on plaintext and one on mutual TLS.
func TestContexts(t *testing.T) {
	noEnv(t)
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", home)
	file := filepath.Join(home, "vmapp", "config.yaml")
	e := newEnv(t)
	closed := closedAddr(t)

	mustRun(t, 1, "error: NotFound: "+file+" sets no current context", "config", "current-context")
	mustRun(t, 0, "Created context 'dev'. It is the current context.", "config", "set-context", "dev", "--server", e.addr, "--use")
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", st, err)
	}
	mustRun(t, 0, "Created context 'down'.", "config", "set-context", "down", "--server", closed)
	mustRun(t, 0, "dev\n", "config", "current-context")

	// The current context's server.
	mustRun(t, 0, "Succeeded", "gallery", "create", "g1", "--location", "eastus")
	// --context, VMAPP_CONTEXT, VMAPP_SERVER and --server, each over the last.
	mustRun(t, 1, "error: Unavailable: ", "--context", "down", "gallery", "list")
	t.Setenv("VMAPP_CONTEXT", "down")
	mustRun(t, 1, "error: Unavailable: ", "gallery", "list")
	t.Setenv("VMAPP_SERVER", e.addr)
	mustRun(t, 0, "g1", "gallery", "list")
	t.Setenv("VMAPP_CONTEXT", "")
	t.Setenv("VMAPP_SERVER", closed)
	mustRun(t, 1, "error: Unavailable: ", "gallery", "list")
	mustRun(t, 0, "g1", "--server", e.addr, "gallery", "list")
	t.Setenv("VMAPP_SERVER", "")
	mustRun(t, 1, `error: NotFound: `+file+`: no context "nope" (contexts: [dev down])`, "--context", "nope", "gallery", "list")

	// Listing, switching.
	r := mustRun(t, 0, "CURRENT", "config", "get-contexts")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "*") || !strings.Contains(lines[1], e.addr) || !strings.HasPrefix(lines[2], "-") {
		t.Errorf("get-contexts:\n%s", r.stdout)
	}
	var cfg struct {
		CurrentContext string
		Contexts       map[string]struct{ Server string }
	}
	r = mustRun(t, 0, "", "config", "get-contexts", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &cfg); err != nil || cfg.CurrentContext != "dev" || cfg.Contexts["down"].Server != closed {
		t.Errorf("get-contexts -o json: %v %+v", err, cfg)
	}
	mustRun(t, 0, "Switched to context 'down'.", "config", "use-context", "down")
	mustRun(t, 1, "error: Unavailable: ", "gallery", "list")
	mustRun(t, 1, `error: NotFound: no context "nope"`, "config", "use-context", "nope")
	mustRun(t, 2, "give at least one of", "config", "set-context", "x")
	mustRun(t, 2, `--server: server "nohost": want host:port`, "config", "set-context", "x", "--server", "nohost")

	// A context on mutual TLS, its files given relative: stored absolute.
	tls, certs, _ := newTLSEnv(t)
	t.Chdir(certs)
	mustRun(t, 2, "--ca: stat "+filepath.Join(certs, "nope.pem")+": no such file or directory", "config", "set-context", "secure", "--ca", "nope.pem")
	mustRun(t, 0, "Created context 'secure'. It is the current context.", "config", "set-context", "secure", "--server", tls.addr,
		"--ca", "ca.pem", "--cert", "operator.pem", "--key", "operator-key.pem", "--tenant", "t1", "--use")
	b, _ := os.ReadFile(file)
	if !strings.Contains(string(b), "ca: "+filepath.Join(certs, "ca.pem")) {
		t.Errorf("config file:\n%s", b)
	}
	t.Chdir(t.TempDir())
	mustRun(t, 0, "northeurope", "region", "list")
	mustRun(t, 0, "Modified context 'secure'.", "config", "set-context", "secure", "--tenant", "t2")
	r = mustRun(t, 0, "mutual", "config", "get-contexts")
	if !strings.Contains(r.stdout, " t2 ") {
		t.Errorf("get-contexts after set-context --tenant:\n%s", r.stdout)
	}
	mustRun(t, 0, "Deleted context 'secure'.", "config", "delete-context", "secure")
	mustRun(t, 1, "sets no current context", "config", "current-context")

	// A broken file is refused, naming it; config commands still work on
	// a file whose current context is gone.
	if err := os.WriteFile(file, []byte("current-context: dev\ncontexts:\n  dev:\n    sever: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, 1, "error: InvalidArgument: "+file+": ", "gallery", "list")
	if err := os.WriteFile(file, []byte("current-context: gone\ncontexts:\n  dev:\n    server: "+e.addr+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, 1, `no context "gone"`, "gallery", "list")
	mustRun(t, 0, "Switched to context 'dev'.", "config", "use-context", "dev")
	mustRun(t, 0, "g1", "gallery", "list")
}
