package client

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vmapp/vmapp/errs"
)

func TestServers(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "127.0.0.1:7443", want: "127.0.0.1:7443"},
		{in: "a:1,b:2, c:3", want: "a:1 b:2 c:3"},
		{in: "dns:///vmappd.internal:7443", want: "dns:///vmappd.internal:7443"},
		{in: "a:1,,b:2", want: "a:1 b:2"},
		{in: "", err: "no server address"},
		{in: "a", err: `server "a": want host:port`},
		{in: "a:1,b", err: `server "b": want host:port`},
		{in: "a:1,dns:///b:2", err: "can't be listed with others"},
	} {
		got, err := Servers(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Servers(%q): %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("Servers(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

// TestFailover: with one of two servers down (its port closed), every call
// succeeds through the other.
func TestFailover(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()
	for _, list := range []string{deadAddr + "," + lis.Addr().String(), lis.Addr().String() + "," + deadAddr} {
		c, err := New(list, Options{})
		if err != nil {
			t.Fatal(err)
		}
		h := healthpb.NewHealthClient(c.Conn())
		for i := range 10 {
			if _, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("%s: call %d: %v", list, i, err)
			}
		}
		c.Close()
	}
	if _, err := New("nohost", Options{}); err == nil {
		t.Fatal("a server without a port was accepted")
	}
}

// TestWaitForReady: with every server down, a call of a WaitForReady
// client waits for one to come up instead of failing, while the same call
// without it, made meanwhile, fails as Unavailable once its retries are
// spent; the server comes up only then.
func TestWaitForReady(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	down := func(o Options) (*Client, healthpb.HealthClient) {
		c, err := New(addr+","+addr, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c.Conn().Connect()
		for s := c.Conn().GetState(); s != connectivity.TransientFailure; s = c.Conn().GetState() {
			if !c.Conn().WaitForStateChange(ctx, s) {
				t.Fatalf("the connection to a closed port never failed: %v", s)
			}
		}
		return c, healthpb.NewHealthClient(c.Conn())
	}
	_, failFast := down(Options{})
	_, waits := down(Options{WaitForReady: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := waits.Check(ctx, &healthpb.HealthCheckRequest{})
		done <- err
	}()
	// The same call without WaitForReady, made meanwhile, fails (after its
	// retries): the server comes up only after that.
	if _, err := failFast.Check(ctx, &healthpb.HealthCheckRequest{}); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("a call with every server down: %v, want Unavailable", err)
	}
	if lis, err = net.Listen("tcp", addr); err != nil {
		t.Skipf("the port was taken meanwhile: %v", err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()
	if err := <-done; err != nil {
		t.Fatalf("a WaitForReady call while the server came up: %v", err)
	}
}
