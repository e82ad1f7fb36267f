package main

import (
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/devcerts"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// tlsFiles are the development certificates of two unrelated CAs: the one
// vmappd uses, and another.
type tlsFiles struct{ dir, other string }

func genCerts(t *testing.T) tlsFiles {
	t.Helper()
	f := tlsFiles{dir: filepath.Join(t.TempDir(), "certs"), other: filepath.Join(t.TempDir(), "other")}
	if _, err := devcerts.Generate(f.dir, []string{"127.0.0.1", "localhost"}, []string{"vm1", "vm2", "operator"}); err != nil {
		t.Fatal(err)
	}
	if _, err := devcerts.Generate(f.other, []string{"127.0.0.1"}, []string{"operator"}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f tlsFiles) path(name string) string  { return filepath.Join(f.dir, name) }
func (f tlsFiles) opath(name string) string { return filepath.Join(f.other, name) }

func tlsConfig(t *testing.T, ca, cert, key string) *tls.Config {
	t.Helper()
	c, err := client.TLSConfig(ca, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// listRegions dials addr with tc (nil: plaintext) and the token, and lists
// the regions.
func listRegions(t *testing.T, addr, token string, tc *tls.Config) ([]string, error) {
	t.Helper()
	c, err := client.New(addr, client.Options{TLS: tc, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Catalog.ListRegions(ctx, &pb.ListRegionsRequest{})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, reg := range r.Regions {
		names = append(names, reg.Name)
	}
	return names, nil
}

// refused checks that a call failed with Unavailable saying want.
func refused(t *testing.T, what string, err error, want string) {
	t.Helper()
	if !errs.Is(err, errs.Unavailable) || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: err %v (class %v), want Unavailable with %q", what, err, errs.ClassOf(err), want)
	} else {
		t.Logf("%s: %v", what, err)
	}
}

// waitLog waits until a line of vmappd's log holds all of want.
func (p *proc) waitLog(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(p.output(), "\n") {
			n := 0
			for _, w := range want {
				if strings.Contains(line, w) {
					n++
				}
			}
			if n == len(want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line of vmappd's log holds %q:\n%s", want, p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tlsSetup builds vmappd, makes certificates and writes a regions file in
// a directory for the test's data.
func tlsSetup(t *testing.T) (bin string, f tlsFiles, dir, regions string) {
	t.Helper()
	bin, f, dir = build(t), genCerts(t), t.TempDir()
	regions = filepath.Join(dir, "regions.yaml")
	if err := os.WriteFile(regions, []byte(regionsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	return bin, f, dir, regions
}

// TestTLS runs the real vmappd with TLS, then with mutual TLS, and dials it
// with the certificates `vmappd certs` makes, and with wrong ones.
func TestTLS(t *testing.T) {
	bin, f, dir, regions := tlsSetup(t)
	serverFlags := []string{"--tls-cert", f.path("server.pem"), "--tls-key", f.path("server-key.pem")}

	t.Run("server auth", func(t *testing.T) {
		p := start(t, bin, filepath.Join(dir, "data-tls"), regions, serverFlags...)
		if out := p.output(); !strings.Contains(out, "transport=tls") || strings.Contains(out, "unencrypted") {
			t.Errorf("log:\n%s", out)
		}
		good := tlsConfig(t, f.path("ca.pem"), "", "")
		names, err := listRegions(t, p.addr, p.token, good)
		if err != nil || strings.Join(names, ",") != "eastus,westus" {
			t.Fatalf("TLS client with the CA: %v %v", names, err)
		}
		// The health check, over the same TLS.
		c, err := client.New("localhost:"+p.addr[strings.LastIndex(p.addr, ":")+1:], client.Options{TLS: good, Token: p.token})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h, err := healthpb.NewHealthClient(c.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || h.Status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health over TLS, by DNS name: %v %v", h, err)
		}
		// A client certificate is not asked for, and does no harm.
		if _, err := listRegions(t, p.addr, p.token, tlsConfig(t, f.path("ca.pem"), f.path("vm1.pem"), f.path("vm1-key.pem"))); err != nil {
			t.Errorf("TLS client with a client certificate: %v", err)
		}

		_, err = listRegions(t, p.addr, p.token, nil)
		refused(t, "plaintext client", err, "")
		_, err = listRegions(t, p.addr, p.token, tlsConfig(t, f.opath("ca.pem"), "", ""))
		refused(t, "TLS client trusting another CA", err, "certificate")
		_, err = listRegions(t, p.addr, p.token, tlsConfig(t, "", "", ""))
		refused(t, "TLS client trusting the system's CAs", err, "certificate")
		// A certificate for another name: the server's is for 127.0.0.1
		// and localhost only.
		sni := tlsConfig(t, f.path("ca.pem"), "", "")
		sni.ServerName = "vmappd.example"
		_, err = listRegions(t, p.addr, p.token, sni)
		refused(t, "TLS client expecting another name", err, "certificate")
	})

	t.Run("mutual", func(t *testing.T) {
		agentBin := filepath.Join(t.TempDir(), "vmapp-agent")
		if out, err := exec.Command("go", "build", "-o", agentBin, "../vmapp-agent").CombinedOutput(); err != nil {
			t.Fatalf("go build vmapp-agent: %v\n%s", err, out)
		}
		p := start(t, bin, filepath.Join(dir, "data-mtls"), regions, append(serverFlags, "--tls-client-ca", f.path("ca.pem"), "--tls-bind-machines")...)
		if out := p.output(); !strings.Contains(out, "transport=mtls") {
			t.Errorf("log:\n%s", out)
		}
		for _, name := range []string{"operator", "vm1"} {
			if _, err := listRegions(t, p.addr, p.token, tlsConfig(t, f.path("ca.pem"), f.path(name+".pem"), f.path(name+"-key.pem"))); err != nil {
				t.Errorf("client certificate %s of the CA: %v", name, err)
			}
		}
		// (vmappd's own certificate is a client certificate too: the nodes
		// of a cluster present it to each other.)
		// With TLS 1.3 a client finishes its side of the handshake before
		// vmappd checks its certificate: it reads why ("remote error: tls:
		// certificate required") or finds the connection gone ("broken
		// pipe"); vmappd's log says why in every case.
		for _, tc := range []struct{ what, cert, key, why string }{
			{"no client certificate", "", "", "tls: client didn't provide a certificate"},
			{"client certificate of another CA", f.opath("operator.pem"), f.opath("operator-key.pem"), "x509: certificate signed by unknown authority"},
		} {
			_, err := listRegions(t, p.addr, p.token, tlsConfig(t, f.path("ca.pem"), tc.cert, tc.key))
			refused(t, tc.what, err, "")
			p.waitLog(t, `msg="TLS handshake refused" remote=127.0.0.1:`, tc.why)
		}
		_, err := listRegions(t, p.addr, p.token, nil)
		refused(t, "plaintext client", err, "")
		p.waitLog(t, `msg="TLS handshake refused"`, "first record does not look like a TLS handshake")

		// The real agent, with its own client certificate, holds its
		// goal-state stream.
		op, err := client.New(p.addr, client.Options{Token: p.token, TLS: tlsConfig(t, f.path("ca.pem"), f.path("operator.pem"), f.path("operator-key.pem"))})
		if err != nil {
			t.Fatal(err)
		}
		defer op.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		fl := pb.NewFleetServiceClient(op.Conn())
		created, err := fl.CreateMachine(ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "vm1", Region: "eastus", OsType: "Linux"}})
		if err != nil {
			t.Fatal(err)
		}
		tokenFile := filepath.Join(t.TempDir(), "vm1.token")
		os.WriteFile(tokenFile, []byte(created.AgentToken), 0o600)
		agent := exec.Command(agentBin, "--server", p.addr, "--vm", "vm1", "--token-file", tokenFile, "--root", filepath.Join(t.TempDir(), "root"),
			"--ca", f.path("ca.pem"), "--cert", f.path("vm1.pem"), "--key", f.path("vm1-key.pem"))
		agentLog := &strings.Builder{}
		agent.Stderr = agentLog
		if err := agent.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { agent.Process.Kill(); agent.Wait() }()
		for {
			m, err := fl.GetMachine(ctx, &pb.GetMachineRequest{Name: "vm1"})
			if err != nil {
				t.Fatal(err)
			}
			if iv := m.Machine.InstanceView; iv.GetConnected() && iv.GetAgentVersion() != "" {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("the agent never connected; its log:\n%s\nvmappd's:\n%s", agentLog, p.output())
			}
			time.Sleep(50 * time.Millisecond)
		}
		// --tls-bind-machines: vm1's credential over another machine's (or
		// the operator's) certificate is refused.
		for _, name := range []string{"operator", "vm2"} {
			c, err := client.New(p.addr, client.Options{Token: created.AgentToken, TLS: tlsConfig(t, f.path("ca.pem"), f.path(name+".pem"), f.path(name+"-key.pem"))})
			if err != nil {
				t.Fatal(err)
			}
			s, err := pb.NewFleetServiceClient(c.Conn()).WatchGoalState(ctx, &pb.WatchGoalStateRequest{Machine: "vm1"})
			if err == nil {
				_, err = s.Recv()
			}
			c.Close()
			if errs.ClassOf(err) != errs.PermissionDenied || !strings.Contains(err.Error(), "client certificate names '"+name+"', not machine 'vm1'") {
				t.Errorf("vm1's credential with the certificate of %s: %v", name, err)
			}
		}
	})

	t.Run("plaintext warning", func(t *testing.T) {
		p := start(t, bin, filepath.Join(dir, "data-loopback"), regions)
		if out := p.output(); !strings.Contains(out, "transport=plaintext") || strings.Contains(out, "unencrypted") {
			t.Errorf("plaintext on loopback: log:\n%s", out)
		}
		p.kill9(t)
		p = start(t, bin, filepath.Join(dir, "data-any"), regions, "--listen", "0.0.0.0:0")
		if out := p.output(); !strings.Contains(out, "level=WARN msg=\"the gRPC API is unencrypted") {
			t.Errorf("plaintext beyond loopback: log:\n%s", out)
		}
	})
}

// TestCerts runs `vmappd certs`, twice, and with bad flags.
func TestCerts(t *testing.T) {
	bin := build(t)
	dir := filepath.Join(t.TempDir(), "certs")
	run := func(args ...string) (string, int) {
		out, err := exec.Command(bin, append([]string{"certs"}, args...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	out, code := run("--dir", dir, "--clients", "vm1, vm2")
	if code != 0 || strings.Count(out, "created") != 4 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	out, code = run("--dir", dir, "--hosts", "127.0.0.1,localhost,::1", "--clients", "vm1,vm2,operator")
	if code != 0 || strings.Count(out, "kept") != 4 || !strings.Contains(out, "created operator") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, name := range []string{"ca", "server", "vm1", "vm2", "operator"} {
		fi, err := os.Stat(filepath.Join(dir, name+"-key.pem"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s-key.pem: %v %v", name, fi.Mode(), err)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: vmappd certs --dir DIR"},
		{[]string{"--dir", dir, "extra"}, 2, "usage: vmappd certs"},
		{[]string{"--dir", dir, "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"--dir", dir, "--clients", "server"}, 1, `vmappd certs: client name "server"`},
		{[]string{"--dir", dir, "--hosts", "localhost:7443"}, 1, `vmappd certs: host "localhost:7443"`},
	} {
		out, code := run(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("vmappd certs %v: exit %d:\n%s\nwant exit %d and %q", tc.args, code, out, tc.code, tc.want)
		}
	}
}
