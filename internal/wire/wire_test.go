package wire

import (
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) {
	// gRPC's floor for a client's keepalive time is 10 s.
	keepaliveTime, keepaliveTimeout = 10*time.Second, time.Second
	os.Exit(m.Run())
}

// guard bounds a wait that a failing test would make for ever: it guards
// against a hang, it is not what the tests check.
const guard = 3 * time.Minute

// HTTP/2 frame types.
const (
	framePing   = 0x6
	frameGoAway = 0x7
)

// frames counts the HTTP/2 frames going one way, by type (pings without
// their acks, which are counted apart).
type frames struct {
	mu   sync.Mutex
	skip int    // bytes of the preface or of a payload still to pass
	hdr  []byte // a frame header seen in part
	n    map[byte]int
	acks int
}

func (f *frames) scan(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(b) > 0 {
		if f.skip > 0 {
			k := min(f.skip, len(b))
			f.skip, b = f.skip-k, b[k:]
			continue
		}
		k := min(9-len(f.hdr), len(b))
		f.hdr, b = append(f.hdr, b[:k]...), b[k:]
		if len(f.hdr) == 9 {
			if typ, ack := f.hdr[3], f.hdr[4]&0x1 != 0; typ == framePing && ack {
				f.acks++
			} else {
				f.n[typ]++
			}
			f.skip = int(f.hdr[0])<<16 | int(f.hdr[1])<<8 | int(f.hdr[2])
			f.hdr = f.hdr[:0]
		}
	}
}

func (f *frames) count(typ byte) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[typ]
}

func (f *frames) pingAcks() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acks
}

// conn is a client's connection that counts its frames, and whose path
// can go silent: once frozen, what it writes is lost and it reads nothing
// more, and nothing is reset, as when a network is cut or a NAT forgets
// the connection.
type conn struct {
	net.Conn
	sent, received *frames
	frozen, closed chan struct{}
	freezeOnce     sync.Once
	closeOnce      sync.Once
}

func (c *conn) freeze() { c.freezeOnce.Do(func() { close(c.frozen) }) }

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	select {
	case <-c.frozen:
		<-c.closed
		return 0, net.ErrClosed
	default:
	}
	c.received.scan(p[:n])
	return n, err
}

func (c *conn) Write(p []byte) (int, error) {
	select {
	case <-c.frozen:
		return len(p), nil
	default:
	}
	c.sent.scan(p)
	return c.Conn.Write(p)
}

func (c *conn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// watch serves the health service with ServerOptions and opens a Watch
// stream to it with DialOptions and opts over a conn; the stream has said
// SERVING.
func watch(t *testing.T, opts ...grpc.DialOption) (*health.Server, healthpb.Health_WatchClient, *conn) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := health.NewServer()
	gs := grpc.NewServer(ServerOptions()...)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	c := make(chan *conn, 1)
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		// The client's preface (24 bytes) comes before its frames.
		cc := &conn{Conn: nc, sent: &frames{skip: 24, n: map[byte]int{}}, received: &frames{n: map[byte]int{}},
			frozen: make(chan struct{}), closed: make(chan struct{})}
		select {
		case c <- cc:
		default:
			t.Error("the client dialled a second connection")
		}
		return cc, nil
	}
	opts = append(append(DialOptions(), opts...), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))
	cc, err := grpc.NewClient(lis.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}
	return hs, stream, <-c
}

// recv is the stream's next message or error, or a failure after guard.
func recv(t *testing.T, stream healthpb.Health_WatchClient) (*healthpb.HealthCheckResponse, error) {
	type result struct {
		r   *healthpb.HealthCheckResponse
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := stream.Recv()
		done <- result{r, err}
	}()
	select {
	case res := <-done:
		return res.r, res.err
	case <-time.After(guard):
		t.Fatal("the stream still waits")
		return nil, nil
	}
}

// TestKeepaliveEndsStreamOnDeadPath: a quiet stream of a client dialled
// with Keepalive, whose connection's path goes silent, ends with
// Unavailable (the client's ping goes unanswered), so that its caller
// reconnects; without keepalive it waits for ever.
func TestKeepaliveEndsStreamOnDeadPath(t *testing.T) {
	t.Parallel()
	_, stream, c := watch(t, Keepalive())
	c.freeze()
	_, err := recv(t, stream)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("the stream over a dead path ended with %v, want Unavailable", err)
	}
}

// TestKeepalivePingsAllowed: vmappd lets clients ping as often as they do:
// a quiet stream lives through more of the client's pings than a gRPC
// server tolerates by default (it answers the fourth within 5 minutes, then
// closes the connection with GOAWAY "too_many_pings"), and still carries
// news.
func TestKeepalivePingsAllowed(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: four keepalive pings take 40 s")
	}
	t.Parallel()
	hs, stream, c := watch(t, Keepalive())
	deadline := time.Now().Add(guard)
	for c.received.pingAcks() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("the client sent %d pings, %d answered", c.sent.count(framePing), c.received.pingAcks())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A GOAWAY for the fourth would come before this news.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if r, err := recv(t, stream); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("after 4 pings the stream gave %v %v, want NOT_SERVING", r, err)
	}
	if n := c.received.count(frameGoAway); n != 0 {
		t.Fatalf("vmappd sent %d GOAWAY frames", n)
	}
}
