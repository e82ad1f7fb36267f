package cliconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", "/x/conf")
	if p, err := Path(); err != nil || p != "/x/conf/vmapp/config.yaml" {
		t.Errorf("with XDG_CONFIG_HOME: %q %v", p, err)
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "/home/u")
	if p, err := Path(); err != nil || p != "/home/u/.config/vmapp/config.yaml" {
		t.Errorf("with HOME: %q %v", p, err)
	}
}

// TestSaveLoad round-trips a file and checks what Load refuses.
func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "config.yaml")
	c, err := Load(path)
	if err != nil || c.CurrentContext != "" || len(c.Contexts) != 0 {
		t.Fatalf("absent file: %+v %v", c, err)
	}
	c.CurrentContext = "p"
	c.Contexts = map[string]*Context{"p": {Server: "a:1,b:2", CA: "/ca.pem", TokenFile: "/t", Tenant: "x", TLS: true}, "q": {}}
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Dir(path)); st.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v", st.Mode())
	}
	back, err := Load(path)
	if err != nil || *back.Contexts["p"] != *c.Contexts["p"] || back.Contexts["q"] == nil {
		t.Fatalf("loaded %+v %v", back, err)
	}
	if ctx, name, err := back.Current(""); err != nil || name != "p" || ctx.Server != "a:1,b:2" {
		t.Errorf("current: %v %q %v", ctx, name, err)
	}
	if _, _, err := back.Current("r"); err == nil || !strings.Contains(err.Error(), `no context "r" (contexts: [p q])`) {
		t.Errorf("unknown context: %v", err)
	}
	for _, bad := range []string{"contexts: [", "current: p\n", "contexts:\n  p:\n    token: x\n"} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
