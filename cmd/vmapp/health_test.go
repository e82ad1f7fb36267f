package main

import (
	"bytes"
	"encoding/json"
	"net"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vmapp/vmapp/server"
)

// healthServer serves vmappd's gRPC services on a loopback port with a
// health service the test sets; it returns the address.
func healthServer(t *testing.T, status healthpb.HealthCheckResponse_ServingStatus) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	gs := server.New(server.Options{Health: hs})
	hs.SetServingStatus("", status) // server.New starts it SERVING
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func runCLI(args ...string) result {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{args: args, code: code, stdout: out.String(), stderr: errb.String()}
}

// TestHealth checks vmapp health: exit 0 when every node of --server
// serves, 1 naming the nodes that don't (NOT_SERVING, or not answering),
// with a line per node; no token needed.
func TestHealth(t *testing.T) {
	up := healthServer(t, healthpb.HealthCheckResponse_SERVING)
	up2 := healthServer(t, healthpb.HealthCheckResponse_SERVING)
	leaderless := healthServer(t, healthpb.HealthCheckResponse_NOT_SERVING)
	closed := closedAddr(t)

	r := runCLI("--server", up+","+up2, "health")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("want success, got %v", r)
	}
	if !regexp.MustCompile(`^SERVER\s+STATUS\n` + regexp.QuoteMeta(up) + `\s+SERVING\n` + regexp.QuoteMeta(up2) + `\s+SERVING\n$`).MatchString(r.stdout) {
		t.Errorf("health of two serving nodes:\n%s", r.stdout)
	}

	r = runCLI("--server", up+","+leaderless+","+closed, "health")
	if r.code != 1 || !strings.Contains(r.stderr, "error: Unavailable: not serving: "+leaderless+", "+closed) {
		t.Fatalf("want exit 1 naming %s and %s, got %v", leaderless, closed, r)
	}
	for _, want := range []string{up + `\s+SERVING\n`, leaderless + `\s+NOT_SERVING\n`, closed + `\s+.*Unavailable.*\n`} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("health output has no line %q:\n%s", want, r.stdout)
		}
	}

	r = runCLI("--server", up+","+leaderless, "-o", "json", "health")
	var nodes []struct{ Server, Status string }
	if err := json.Unmarshal([]byte(r.stdout), &nodes); err != nil || r.code != 1 {
		t.Fatalf("health -o json: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if len(nodes) != 2 || nodes[0].Server != up || nodes[0].Status != "SERVING" || nodes[1].Server != leaderless || nodes[1].Status != "NOT_SERVING" {
		t.Errorf("health -o json: %+v", nodes)
	}

	r = runCLI("--server", "no-port", "health")
	if r.code != 2 || !strings.Contains(r.stderr, `--server: server "no-port": want host:port`) {
		t.Errorf("want a usage error for --server, got %v", r)
	}
}
