package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestConnectionErrors: each way of failing to connect, against real
// servers, says what went wrong and the fix.
func TestConnectionErrors(t *testing.T) {
	noEnv(t)
	tls, certs, other := newTLSEnv(t)
	plainEnv := newEnv(t)
	p := func(name string) string { return filepath.Join(certs, name) }
	for _, tc := range []struct {
		name      string
		args      []string
		what, fix string
	}{
		{"unreachable", []string{"--server", closedAddr(t)}, "nothing answers there", "check that vmappd runs and that --server"},
		{"unknown host", []string{"--server", "nosuchhost.invalid:7443"}, "nothing answers there", "check that vmappd runs"},
		{"plaintext against TLS", []string{"--server", tls.addr}, "it serves TLS and closed a plaintext connection", "give --ca FILE"},
		{"TLS against plaintext", []string{"--server", plainEnv.addr, "--ca", p("ca.pem")}, "it serves plaintext, not TLS", "drop --tls, --ca"},
		{"no client certificate", []string{"--server", tls.addr, "--ca", p("ca.pem")}, "it requires a client certificate", "give --cert FILE --key FILE"},
		{"wrong CA", []string{"--server", tls.addr, "--ca", filepath.Join(other, "ca.pem"), "--cert", p("operator.pem"), "--key", p("operator-key.pem")},
			"its certificate isn't signed by the CA of --ca", "give --ca the CA that signed vmappd's certificate"},
		{"system CAs", []string{"--server", tls.addr, "--tls"}, "isn't signed by a CA this system trusts", "give --ca FILE"},
		{"client certificate of another CA", []string{"--server", tls.addr, "--ca", p("ca.pem"), "--cert", filepath.Join(other, "operator.pem"), "--key", filepath.Join(other, "operator-key.pem")},
			"it refused the client certificate of --cert", "signed by the CA vmappd trusts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(append(tc.args, "region", "list")...)
			want := "error: Unavailable: can't connect to vmappd at "
			if r.code != 1 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, tc.what+".\n  Fix: ") || !strings.Contains(r.stderr, tc.fix) || !strings.Contains(r.stderr, "\n  gRPC said: ") {
				t.Errorf("want %q, %q and %q, got %v", want, tc.what, tc.fix, r)
			}
		})
	}
}

// TestErrorWording: vmappd's refusal to delete a resource with children
// names --cascade; a missing file is named once, as the user's error.
func TestErrorWording(t *testing.T) {
	e := newEnv(t)
	e.ok("gallery", "create", "g", "--location", "eastus")
	e.ok("app", "create", "-g", "g", "a", "--os", "linux")
	e.ok("version", "create", "-g", "g", "-a", "a", "1.0.0", "--install", "i", "--remove", "r")
	e.fails(1, "error: FailedPrecondition: Gallery 'g' has 1 application(s): delete them first, or delete with --cascade: vmapp gallery delete g --cascade.\n", "gallery", "delete", "g")
	e.fails(1, "delete with --cascade: vmapp app delete --gallery g a --cascade.\n", "app", "delete", "-g", "g", "a")
	e.ok("app", "delete", "-g", "g", "a", "--cascade")

	nope := filepath.Join(t.TempDir(), "nope")
	for _, args := range [][]string{
		{"key", "public", "--key", nope},
		{"key", "verify", "--pub", nope, nope},
		{"version", "sign", "-g", "g", "-a", "a", "1.0.0", "--sign-key", nope},
	} {
		r := e.fails(1, "error: InvalidArgument: "+nope+": no such file or directory\n", args...)
		if strings.Count(r.stderr, nope) != 1 {
			t.Errorf("the path twice: %v", r)
		}
	}
	e.fails(2, "error: --token-file: token file "+nope+": no such file or directory\n", "--token-file", nope, "gallery", "list")
}

// TestInterruptExits130 interrupts a real vmapp process waiting on a
// server that never answers: it exits 130, the shell's status for SIGINT.
func TestInterruptExits130(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "vmapp")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// A listener that accepts and then says nothing: the call waits.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	cmd := exec.Command(bin, "--server", lis.Addr().String(), "gallery", "list")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	conn, err := lis.Accept() // vmapp's call is in flight
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "interrupted") {
		t.Fatalf("want exit 130 saying interrupted, got %v: %s", err, stderr.String())
	}
}

// TestTransportFailure: gRPC's own connection errors are explained, a
// call vmappd answered Unavailable is not.
func TestTransportFailure(t *testing.T) {
	for msg, want := range map[string]bool{
		`max retries exhausted: failed after 5 attempts: rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`: true,
		`rpc error: code = Unavailable desc = write tcp 127.0.0.1:45648->127.0.0.1:7443: write: broken pipe`:                                                                                                true,
		`rpc error: code = Unavailable desc = connection error: desc = "error reading server preface: EOF"`:                                                                                                 true,
		`rpc error: code = Unavailable desc = no children to pick from`:                                                                                                                                     true,
		`The gallery application version url http://127.0.0.1:1/app.tgz can't be accessed due to the following error: dial tcp 127.0.0.1:1: connect: connection refused.`:                                   false,
		`this node knows no leader: it can't reach a majority of the cluster`:                                                                                                                               false,
	} {
		if got := transportFailure(msg); got != want {
			t.Errorf("transportFailure(%q) = %v, want %v", msg, got, want)
		}
	}
}
