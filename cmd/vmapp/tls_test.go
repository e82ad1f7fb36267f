package main

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/credentials"

	"github.com/vmapp/vmapp/internal/devcerts"
	"github.com/vmapp/vmapp/server/daemon"
)

// newTLSEnv is newEnv with vmappd on TLS, requiring client certificates of
// the development CA it writes in certs (with the client "operator"); other
// holds the certificates of another CA.
func newTLSEnv(t *testing.T) (e *env, certs, other string) {
	t.Helper()
	dir := t.TempDir()
	certs, other = filepath.Join(dir, "certs"), filepath.Join(dir, "other")
	for _, d := range []string{certs, other} {
		if _, err := devcerts.Generate(d, nil, []string{"operator"}); err != nil {
			t.Fatal(err)
		}
	}
	tc, err := daemon.TLSConfig(filepath.Join(certs, "server.pem"), filepath.Join(certs, "server-key.pem"), filepath.Join(certs, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return newEnvWith(t, credentials.NewTLS(tc)), certs, other
}

// TestTLSFlags runs the CLI against a vmappd on mutual TLS.
func TestTLSFlags(t *testing.T) {
	e, certs, other := newTLSEnv(t)
	p := func(name string) string { return filepath.Join(certs, name) }
	good := []string{"--ca", p("ca.pem"), "--cert", p("operator.pem"), "--key", p("operator-key.pem")}
	if out := e.ok(append(good, "region", "list")...); !strings.Contains(out, "northeurope") {
		t.Fatalf("region list over mutual TLS:\n%s", out)
	}

	// Refused by the server, or the server refused: exit 1, Unavailable.
	e.fails(1, "error: Unavailable: ", "region", "list")                             // plaintext
	e.fails(1, "error: Unavailable: ", "--ca", p("ca.pem"), "region", "list")        // no client certificate
	e.fails(1, "certificate signed by unknown authority", "--tls", "region", "list") // the system's roots
	e.fails(1, "certificate signed by unknown authority", "--ca", filepath.Join(other, "ca.pem"), "region", "list")
	e.fails(1, "error: Unavailable: ", "--ca", p("ca.pem"), "--cert", filepath.Join(other, "operator.pem"), "--key", filepath.Join(other, "operator-key.pem"), "region", "list")

	// Bad flags.
	nope := filepath.Join(certs, "nope.pem")
	e.fails(2, "error: --cert and --key go together", "--cert", p("operator.pem"), "region", "list")
	e.fails(2, "error: --cert and --key go together", "--key", p("operator-key.pem"), "region", "list")
	e.fails(1, "error: InvalidArgument: --ca "+nope+": no such file or directory\n", "--ca", nope, "region", "list")
	e.fails(1, "error: InvalidArgument: --cert "+nope+": no such file or directory\n", "--ca", p("ca.pem"), "--cert", nope, "--key", p("operator-key.pem"), "region", "list")
	e.fails(1, "error: InvalidArgument: --key "+nope+": no such file or directory\n", "--cert", p("operator.pem"), "--key", nope, "region", "list")
	e.fails(1, "error: InvalidArgument: --ca "+p("operator-key.pem")+": no PEM certificate in it", "--ca", p("operator-key.pem"), "region", "list")
	e.fails(1, "error: InvalidArgument: --key "+filepath.Join(other, "operator-key.pem")+": the key does not match the certificate in "+p("operator.pem"),
		"--ca", p("ca.pem"), "--cert", p("operator.pem"), "--key", filepath.Join(other, "operator-key.pem"), "region", "list")

	// The environment.
	t.Setenv("VMAPP_CA", p("ca.pem"))
	t.Setenv("VMAPP_CERT", p("operator.pem"))
	e.fails(2, "error: --cert and --key go together (env VMAPP_CERT, VMAPP_KEY)", "region", "list")
	t.Setenv("VMAPP_KEY", p("operator-key.pem"))
	if out := e.ok("region", "list"); !strings.Contains(out, "northeurope") {
		t.Fatalf("region list with VMAPP_CA, VMAPP_CERT, VMAPP_KEY:\n%s", out)
	}
}
