package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/daemon"
)

const regionsYAML = `regions:
  - name: eastus
    endpoints:
      - {url: "http://127.0.0.1:9", bucket: vmapp-eastus}
  - name: westus
    endpoints:
      - {url: "http://127.0.0.1:9", bucket: vmapp-westus}
`

// build compiles vmappd once per test.
const accessKey, secretKey = "test-access", "test-secret"

// TestMain gives the vmappd processes the tests start store credentials: the
// regions file's endpoints are never dialled by these tests, but vmappd
// refuses to start without credentials for them.
func TestMain(m *testing.M) {
	os.Setenv("VMAPP_S3_ACCESS_KEY", accessKey)
	os.Setenv("VMAPP_S3_SECRET_KEY", secretKey)
	os.Exit(m.Run())
}

func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vmappd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type proc struct {
	cmd  *exec.Cmd
	addr string
	log  *strings.Builder
	mu   *sync.Mutex
	done chan struct{}
	// token is the bootstrap operator token from the data directory.
	token string
}

var servingRE = regexp.MustCompile(`msg="vmappd serving" addr=(\S+)`)

// start runs vmappd on a free loopback port and waits until it serves.
// Extra flags follow the defaults and override them.
func start(t *testing.T, bin, data, regions string, extra ...string) *proc {
	t.Helper()
	p := launch(t, bin, data, regions, extra...)
	var err error
	if p.token, err = client.ReadTokenFile(filepath.Join(data, daemon.AdminTokenFile)); err != nil {
		t.Fatal(err)
	}
	return p
}

// launch is start without the operator token: a cluster node that joins
// has none in its data directory.
func launch(t *testing.T, bin, data, regions string, extra ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--data", data, "--regions", regions, "--listen", "127.0.0.1:0"}, extra...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: &strings.Builder{}, mu: &sync.Mutex{}, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); <-p.done })
	select {
	case p.addr = <-addr:
	case <-p.done:
		select {
		case p.addr = <-addr: // it served, then exited (a node refused at --join)
			return p
		default:
		}
		t.Fatalf("vmappd exited before serving:\n%s", p.output())
	case <-time.After(30 * time.Second):
		t.Fatalf("vmappd did not start:\n%s", p.output())
	}
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	<-p.done
}

type acked struct {
	tenant, kind, gallery, app, version string
}

// load creates resources from several clients until the server dies,
// returning every create the server acknowledged.
func load(addr, token string, round int) ([]acked, error) {
	c, err := client.New(addr, client.Options{Token: token})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	var mu sync.Mutex
	var out []acked
	var failure error
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				tenant := tenantOf(round, w, i)
				ctx = metadata.AppendToOutgoingContext(ctx, pb.TenantMetadataKey, tenant)
				g := fmt.Sprintf("r%d-w%d-%d", round, w, i)
				_, err := c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: g, Location: "eastus"}})
				if err == nil {
					mu.Lock()
					out = append(out, acked{tenant: tenant, kind: "gallery", gallery: g})
					mu.Unlock()
					_, err = c.Catalog.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: g, Name: "app", Location: "eastus", SupportedOsType: "Linux"}})
				}
				if err == nil {
					mu.Lock()
					out = append(out, acked{tenant: tenant, kind: "app", gallery: g, app: "app"})
					mu.Unlock()
					_, err = c.Catalog.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
						Gallery: g, Application: "app", Name: "1.0.0", Location: "eastus",
						PublishingProfile: &pb.PublishingProfile{
							ManageActions: &pb.UserArtifactManage{Install: "install", Remove: "remove"},
							TargetRegions: []*pb.TargetRegion{{Name: "eastus"}, {Name: "westus"}},
						},
					}})
				}
				cancel()
				if err != nil {
					if !errs.Is(err, errs.Unavailable) {
						mu.Lock()
						failure = err
						mu.Unlock()
					}
					return // the server is gone
				}
				mu.Lock()
				out = append(out, acked{tenant: tenant, kind: "version", gallery: g, app: "app", version: "1.0.0"})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out, failure
}

// tenantOf spreads the load over tenants, so that none runs into the 300
// versions per region quota.
func tenantOf(round, worker, i int) string {
	return fmt.Sprintf("crash-%d-%d-%d", round, worker, i/200)
}

func check(t *testing.T, p *proc, all []acked) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.New(p.addr, client.Options{Token: p.token})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, a := range all {
		ctx := metadata.AppendToOutgoingContext(ctx, pb.TenantMetadataKey, a.tenant)
		switch a.kind {
		case "gallery":
			_, err = c.Catalog.GetGallery(ctx, &pb.GetGalleryRequest{Gallery: a.gallery})
		case "app":
			_, err = c.Catalog.GetApplication(ctx, &pb.GetApplicationRequest{Gallery: a.gallery, Application: a.app})
		case "version":
			var r *pb.GetVersionResponse
			r, err = c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: a.gallery, Application: a.app, Version: a.version})
			if err == nil && len(r.Version.PublishingProfile.TargetRegions) != 2 {
				err = fmt.Errorf("version read back damaged: %v", r.Version)
			}
		}
		if err != nil {
			t.Fatalf("acknowledged %s %s/%s/%s lost after kill -9: %v", a.kind, a.gallery, a.app, a.version, err)
		}
	}
}

// TestKill9LosesNothingAcknowledged runs the real vmappd binary, kills it with
// SIGKILL in the middle of a create load, restarts it on the same data, and
// reads back every resource whose create was acknowledged.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the vmappd binary")
	}
	bin := build(t)
	dir := t.TempDir()
	regions := filepath.Join(dir, "regions.yaml")
	if err := os.WriteFile(regions, []byte(regionsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	var all []acked
	for round := range 3 {
		p := start(t, bin, data, regions)
		check(t, p, all) // earlier rounds survived this restart too
		type result struct {
			acked []acked
			err   error
		}
		res := make(chan result, 1)
		go func() { a, err := load(p.addr, p.token, round); res <- result{a, err} }()
		time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond)
		p.kill9(t)
		r := <-res
		if r.err != nil {
			t.Fatalf("round %d: a create failed for a reason other than the kill: %v", round, r.err)
		}
		got := r.acked
		if len(got) == 0 {
			t.Fatalf("round %d: nothing was acknowledged before the kill:\n%s", round, p.output())
		}
		t.Logf("round %d: %d creates acknowledged before SIGKILL", round, len(got))
		all = append(all, got...)
	}
	p := start(t, bin, data, regions)
	check(t, p, all)
}

// TestSecondInstanceFailsFast starts two vmappd on one data directory: the
// second exits at once with a clear message instead of waiting for the lock.
func TestSecondInstanceFailsFast(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	regions := filepath.Join(dir, "regions.yaml")
	if err := os.WriteFile(regions, []byte(regionsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, bin, filepath.Join(dir, "data"), regions)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--data", filepath.Join(dir, "data"), "--regions", regions, "--listen", "127.0.0.1:0").CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("second vmappd: err %v, ctx %v\n%s", err, ctx.Err(), out)
	}
	if !strings.Contains(string(out), "is another vmappd running with the same --data directory?") {
		t.Fatalf("second vmappd said:\n%s", out)
	}
}

// TestBadFlagsAndRegions checks vmappd's start-up errors.
func TestBadFlagsAndRegions(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	f := genCerts(t)
	cert, key, ca, nope := f.path("server.pem"), f.path("server-key.pem"), f.path("ca.pem"), f.path("nope.pem")
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("not PEM"), 0o600)
	for _, tc := range []struct {
		name, yaml string
		args       []string
		want       string
	}{
		{"no flags", "", nil, "usage: vmappd"},
		{"missing file", "", []string{"--regions", filepath.Join(dir, "nope.yaml")}, "no such file"},
		{"secret in file", "regions:\n  - name: eastus\n    endpoints:\n      - {url: 'http://127.0.0.1:9', bucket: b-east, secretKey: hunter2}\n", nil, "field secretKey not found"},
		{"bad region", "regions:\n  - name: East_US\n    endpoints:\n      - {url: 'http://127.0.0.1:9', bucket: b-east}\n", nil, `East_US`},
		{"duplicate region", "regions:\n  - name: eastus\n    endpoints: [{url: 'http://127.0.0.1:9', bucket: b-one}]\n  - name: eastus\n    endpoints: [{url: 'http://127.0.0.1:9', bucket: b-two}]\n", nil, "listed twice"},
		{"no endpoints", "regions:\n  - name: eastus\n", nil, "at least one endpoint"},
		{"bad url", "regions:\n  - name: eastus\n    endpoints: [{url: 'ftp://x', bucket: b-east}]\n", nil, "want http(s)://host:port"},
		{"other credentials missing", "regions:\n  - name: eastus\n    endpoints: [{url: 'http://127.0.0.1:9', bucket: b-east, credentialsEnv: NOPE_S3}]\n", nil, "set NOPE_S3_ACCESS_KEY and NOPE_S3_SECRET_KEY"},
		{"negative url expiry", regionsYAML, []string{"--url-expiry", "-1m"}, "--url-expiry -1m0s: want between 1s and 168h0m0s"},
		{"url expiry past S3's limit", regionsYAML, []string{"--url-expiry", "200h"}, "--url-expiry 200h0m0s: want between"},
		{"bad log format", regionsYAML, []string{"--log-format", "xml"}, `invalid argument "xml" for "--log-format" flag: "xml" is not a log format: want text or json`},
		{"zero health interval", regionsYAML, []string{"--health-interval", "0s"}, "--health-interval 0s: must be positive"},
		{"negative drain delay", regionsYAML, []string{"--drain-delay", "-1s"}, "--drain-delay -1s: must not be negative"},
		{"pprof without metrics", regionsYAML, []string{"--pprof"}, "--pprof serves on the --metrics listener: give --metrics ADDR too"},
		{"port taken", regionsYAML, []string{"--listen", taken.Addr().String()}, "listen on " + taken.Addr().String()},
		{"http port taken", regionsYAML, []string{"--listen", "127.0.0.1:0", "--http-listen", taken.Addr().String()}, "listen on " + taken.Addr().String() + " for HTTP (--http-listen)"},
		{"http address not an address", regionsYAML, []string{"--listen", "127.0.0.1:0", "--http-listen", "nowhere"}, "listen on nowhere for HTTP (--http-listen)"},
		{"tls cert without key", regionsYAML, []string{"--tls-cert", cert}, "--tls-cert and --tls-key go together"},
		{"tls key without cert", regionsYAML, []string{"--tls-key", key}, "--tls-cert and --tls-key go together"},
		{"client ca without tls", regionsYAML, []string{"--tls-client-ca", ca}, "--tls-client-ca needs --tls-cert and --tls-key"},
		{"bound machines without client ca", regionsYAML, []string{"--tls-cert", cert, "--tls-key", key, "--tls-bind-machines"}, "--tls-bind-machines needs --tls-client-ca"},
		{"tls cert missing", regionsYAML, []string{"--tls-cert", nope, "--tls-key", key}, "--tls-cert " + nope + ": no such file or directory"},
		{"tls key missing", regionsYAML, []string{"--tls-cert", cert, "--tls-key", nope}, "--tls-key " + nope + ": no such file or directory"},
		{"tls cert not PEM", regionsYAML, []string{"--tls-cert", notPEM, "--tls-key", key}, "--tls-cert " + notPEM + ": no PEM certificate in it"},
		{"tls key is a cert", regionsYAML, []string{"--tls-cert", cert, "--tls-key", cert}, "--tls-key " + cert + ": found a certificate rather than a key"},
		{"tls key of another cert", regionsYAML, []string{"--tls-cert", cert, "--tls-key", f.opath("server-key.pem")}, "--tls-key " + f.opath("server-key.pem") + ": the key does not match the certificate in " + cert},
		{"client ca missing", regionsYAML, []string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", nope}, "--tls-client-ca " + nope + ": no such file or directory"},
		{"client ca not PEM", regionsYAML, []string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", notPEM}, "--tls-client-ca " + notPEM + ": no PEM certificate in it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"--data", filepath.Join(t.TempDir(), "data")}
			if tc.yaml != "" {
				f := filepath.Join(t.TempDir(), "regions.yaml")
				os.WriteFile(f, []byte(tc.yaml), 0o600)
				args = append(args, "--regions", f)
			}
			if tc.name == "no flags" {
				args = nil
			}
			out, err := exec.Command(bin, append(args, tc.args...)...).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("err %v, output:\n%s\nwant %q", err, out, tc.want)
			}
		})
	}
}

// fixed is a vmappd binary on a fixed loopback address, so that it can be
// killed and started again where its clients expect it.
type fixed struct {
	*proc
	bin, data, regions, addr string
	c                        *client.Client
}

// startFixed writes the regions file and starts vmappd with a client.
func startFixed(t *testing.T, regionsYAML string) *fixed {
	t.Helper()
	dir := t.TempDir()
	f := &fixed{bin: build(t), data: filepath.Join(dir, "data"), regions: filepath.Join(dir, "regions.yaml")}
	if err := os.WriteFile(f.regions, []byte(regionsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	lis.Close()
	f.restart(t)
	if f.c, err = client.New(f.addr, client.Options{Token: f.token}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.c.Close() })
	return f
}

// restart starts vmappd (again) on its data and address.
func (f *fixed) restart(t *testing.T) {
	t.Helper()
	f.proc = start(t, f.bin, f.data, f.regions, "--listen", f.addr, "--metrics", "127.0.0.1:0")
}

// must fails the test on a call's error.
func must(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestOperatorToken issues an operator token offline: refused while vmappd
// runs, then written, and it works once vmappd is back.
func TestOperatorToken(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	regions := filepath.Join(dir, "regions.yaml")
	if err := os.WriteFile(regions, []byte(regionsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	data, out := filepath.Join(dir, "data"), filepath.Join(dir, "op.token")
	tool := func(args ...string) (string, int) {
		b, err := exec.Command(bin, append([]string{"operator-token"}, args...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return string(b), code
	}
	if s, code := tool("--out", out); code != 2 || !strings.Contains(s, "usage: vmappd operator-token") {
		t.Fatalf("without --data: exit %d\n%s", code, s)
	}
	if s, code := tool("--data", filepath.Join(dir, "nope"), "--out", out); code != 1 || !strings.Contains(s, "no vmappd state here") {
		t.Fatalf("no state: exit %d\n%s", code, s)
	}
	p := start(t, bin, data, regions)
	if s, code := tool("--data", data, "--out", out); code != 1 || !strings.Contains(s, "is in use: stop vmappd first") {
		t.Fatalf("while vmappd runs: exit %d\n%s", code, s)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused run left %s: %v", out, err)
	}
	p.kill9(t)
	if s, code := tool("--data", data, "--out", out, "--name", ""); code != 1 || !strings.Contains(s, "name is required") {
		t.Fatalf("empty name: exit %d\n%s", code, s)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused run left %s: %v", out, err)
	}
	s, code := tool("--data", data, "--out", out, "--name", "recovery")
	if code != 0 || !strings.Contains(s, "(recovery: Owner of every tenant) written to "+out) {
		t.Fatalf("exit %d\n%s", code, s)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v %v", fi, err)
	}
	if s, code := tool("--data", data, "--out", out); code != 1 || !strings.Contains(s, "file exists") {
		t.Fatalf("over an existing file: exit %d\n%s", code, s)
	}
	tok, err := client.ReadTokenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	p = start(t, bin, data, regions)
	c, err := client.New(p.addr, client.Options{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	who, err := pb.NewAccessServiceClient(c.Conn()).WhoAmI(context.Background(), &pb.WhoAmIRequest{})
	if err != nil || who.Token.Name != "recovery" || who.Token.Tenant != "*" || strings.Contains(p.output(), strings.SplitN(tok, ".", 2)[1]) {
		t.Fatalf("whoami: %v %v", who, err)
	}
}

// TestPprof: --pprof serves Go's profiles beside /metrics; without it
// that listener serves /metrics alone.
func TestPprof(t *testing.T) {
	bin := build(t)
	regions := filepath.Join(t.TempDir(), "regions.yaml")
	os.WriteFile(regions, []byte(regionsYAML), 0o600)
	for _, on := range []bool{true, false} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		metrics := lis.Addr().String()
		lis.Close()
		args := []string{"--metrics", metrics}
		if on {
			args = append(args, "--pprof")
		}
		p := start(t, bin, filepath.Join(t.TempDir(), "data"), regions, args...)
		want := map[bool]int{true: http.StatusOK, false: http.StatusNotFound}[on]
		for _, path := range []string{"/debug/pprof/cmdline", "/debug/pprof/heap"} {
			resp, err := http.Get("http://" + metrics + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Fatalf("--pprof %v: GET %s: %s, want %d", on, path, resp.Status, want)
			}
			if on && path == "/debug/pprof/cmdline" && !strings.Contains(string(body), "--pprof") {
				t.Fatalf("GET %s: %q, want vmappd's command line", path, body)
			}
		}
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("--pprof %v: /metrics: %v %v", on, resp, err)
		}
		resp.Body.Close()
		p.cmd.Process.Kill()
		<-p.done
	}
}
