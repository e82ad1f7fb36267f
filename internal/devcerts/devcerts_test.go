package devcerts

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmapp/vmapp/internal/tlsfiles"
)

func load(t *testing.T, dir, name string) tls.Certificate {
	t.Helper()
	pair, err := tlsfiles.KeyPair(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func roots(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	pool, err := tlsfiles.CertPool(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

func TestGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	res, err := Generate(dir, []string{"127.0.0.1", "localhost", "::1", "vmappd.internal"}, []string{"vm1", "operator"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range res {
		if !r.Created {
			t.Errorf("%s not created on the first run", r.Name)
		}
		names = append(names, r.Name)
	}
	if got := strings.Join(names, ","); got != "ca,server,vm1,operator" {
		t.Fatalf("results %s", got)
	}

	// Modes, exactly, and key types.
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir: %v %v, want 0700", fi.Mode(), err)
	}
	for _, name := range []string{"ca", "server", "vm1", "operator"} {
		for file, want := range map[string]os.FileMode{name + ".pem": 0o644, name + "-key.pem": 0o600} {
			fi, err := os.Stat(filepath.Join(dir, file))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", file, fi.Mode().Perm(), want)
			}
		}
		k, ok := load(t, dir, name).PrivateKey.(*ecdsa.PrivateKey)
		if !ok || k.Curve != elliptic.P256() {
			t.Errorf("%s: key is not ECDSA P-256", name)
		}
	}

	ca := load(t, dir, "ca").Leaf
	if !ca.IsCA || ca.Subject.CommonName != "vmapp development CA" {
		t.Errorf("CA: IsCA %v, subject %v", ca.IsCA, ca.Subject)
	}
	if d := time.Until(ca.NotAfter); d < CAValidity-time.Hour || d > CAValidity {
		t.Errorf("CA valid for %v more, want about %v", d, CAValidity)
	}
	pool := roots(t, dir)

	// The server certificate: valid for server auth under every host, and
	// for client auth (the nodes of a cluster present it to each other).
	server := load(t, dir, "server").Leaf
	for _, h := range []string{"127.0.0.1", "localhost", "::1", "vmappd.internal"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: pool, DNSName: h, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %s: %v", h, err)
		}
	}
	if err := server.VerifyHostname("10.0.0.1"); err == nil {
		t.Error("server certificate valid for a host not asked for")
	}
	if _, err := server.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("server certificate not valid for client auth: %v", err)
	}
	if d := time.Until(server.NotAfter); d < CertValidity-time.Hour || d > CertValidity {
		t.Errorf("server certificate valid for %v more, want about %v", d, CertValidity)
	}

	// The client certificates: CN=NAME, client auth only.
	for _, name := range []string{"vm1", "operator"} {
		c := load(t, dir, name).Leaf
		if c.Subject.CommonName != name {
			t.Errorf("%s: CN %q", name, c.Subject.CommonName)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Errorf("%s: valid for server auth", name)
		}
	}

	// A real handshake with client authentication over a pipe.
	sc, cc := net.Pipe()
	srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{load(t, dir, "server")}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	cli := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{load(t, dir, "vm1")}})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if got := srv.ConnectionState().PeerCertificates[0].Subject.CommonName; got != "vm1" {
		t.Errorf("server saw client %q", got)
	}
	cc.Close() // not the TLS conns: their close_notify would wait for a reader
	sc.Close()
}

func TestGenerateIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	if _, err := Generate(dir, nil, []string{"vm1"}); err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string][]byte {
		m := map[string][]byte{}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			m[e.Name()] = b
		}
		return m
	}
	before := snapshot()
	if len(before) != 6 {
		t.Fatalf("files: %v", len(before))
	}

	// Again, and with a client more: nothing that exists changes.
	res, err := Generate(dir, nil, []string{"vm1", "vm2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Created != (r.Name == "vm2") {
			t.Errorf("%s: created %v", r.Name, r.Created)
		}
	}
	after := snapshot()
	for name, b := range before {
		if !bytes.Equal(after[name], b) {
			t.Errorf("%s changed", name)
		}
	}

	// A host more: a new server certificate from the same CA.
	res, err = Generate(dir, []string{"127.0.0.1", "vmappd.internal"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res[1].Created || res[0].Created {
		t.Errorf("new host: %+v", res)
	}
	if _, err := load(t, dir, "server").Leaf.Verify(x509.VerifyOptions{Roots: roots(t, dir), DNSName: "vmappd.internal"}); err != nil {
		t.Error(err)
	}
	if !bytes.Equal(before["ca.pem"], snapshot()["ca.pem"]) {
		t.Error("the CA changed")
	}

	// A client certificate from another CA is replaced.
	other := t.TempDir()
	if _, err := Generate(other, nil, []string{"vm1"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vm1.pem", "vm1-key.pem"} {
		b, _ := os.ReadFile(filepath.Join(other, f))
		os.WriteFile(filepath.Join(dir, f), b, 0o600)
	}
	res, err = Generate(dir, nil, []string{"vm1"})
	if err != nil {
		t.Fatal(err)
	}
	if !res[2].Created {
		t.Error("a client certificate of another CA was kept")
	}
	if _, err := load(t, dir, "vm1").Leaf.Verify(x509.VerifyOptions{Roots: roots(t, dir), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Error(err)
	}
}

func TestGenerateRefuses(t *testing.T) {
	for _, tc := range []struct {
		name           string
		hosts, clients []string
		want           string
	}{
		{"client named ca", nil, []string{"ca"}, `client name "ca": taken`},
		{"client named server", nil, []string{"server"}, `client name "server": taken`},
		{"client with a slash", nil, []string{"../x"}, `client name "../x"`},
		{"client twice", nil, []string{"vm1", "vm1"}, "given twice"},
		{"empty host", []string{""}, nil, `host ""`},
		{"host with a port", []string{"localhost:7443"}, nil, `host "localhost:7443"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Generate(dir, tc.hosts, tc.clients)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}

	// The CA's key without its certificate: refuse rather than make a CA
	// that the certificates in use don't chain to.
	dir := t.TempDir()
	if _, err := Generate(dir, nil, nil); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "ca.pem"))
	if _, err := Generate(dir, nil, nil); err == nil || !strings.Contains(err.Error(), "ca-key.pem is there but") {
		t.Fatalf("err %v", err)
	}
}
