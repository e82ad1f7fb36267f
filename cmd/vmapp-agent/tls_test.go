package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/internal/devcerts"
)

// TestBadTLSFlags: a half key pair is a usage error (exit 2); a TLS file
// that can't be used exits 1 naming the flag and the file.
func TestBadTLSFlags(t *testing.T) {
	root, certs := t.TempDir(), t.TempDir()
	if _, err := devcerts.Generate(certs, nil, []string{"vm1"}); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(certs, name) }
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"cert without key", []string{"--ca", p("ca.pem"), "--cert", p("vm1.pem")}, 2, "vmapp-agent: --cert and --key go together"},
		{"key without cert", []string{"--key", p("vm1-key.pem")}, 2, "vmapp-agent: --cert and --key go together"},
		{"missing ca", []string{"--ca", p("nope.pem")}, 1, "vmapp-agent: --ca " + p("nope.pem") + ": no such file or directory"},
		{"missing cert", []string{"--ca", p("ca.pem"), "--cert", p("nope.pem"), "--key", p("vm1-key.pem")}, 1, "vmapp-agent: --cert " + p("nope.pem") + ": no such file or directory"},
		{"key given for the ca", []string{"--ca", p("vm1-key.pem")}, 1, "vmapp-agent: --ca " + p("vm1-key.pem") + ": no PEM certificate in it"},
		{"key of another cert", []string{"--tls", "--cert", p("vm1.pem"), "--key", p("server-key.pem")}, 1, "vmapp-agent: --key " + p("server-key.pem") + ": the key does not match the certificate in " + p("vm1.pem")},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], append([]string{"--vm", "vm1", "--root", root}, c.args...)...)
			cmd.Env = append(os.Environ(), "VMAPP_AGENT_RUN_MAIN=1")
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != c.code || !strings.Contains(string(out), c.want) {
				t.Fatalf("err %v, output:\n%s\nwant exit %d and %q", err, out, c.code, c.want)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Fatalf("the agent wrote under --root before refusing its flags: %v", entries)
			}
		})
	}
}
