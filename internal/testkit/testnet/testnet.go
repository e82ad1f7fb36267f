// Package testnet shapes test connections: a dialer whose connections send
// at a fixed rate, so that a test can act in the middle of a transfer; a
// proxy that counts what a server sends, and may cap its rate.
package testnet

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/vmapp/vmapp/internal/ratecap"
)

// SlowDialer dials TCP connections whose writes are paced at bytesPerSec.
// Use it with grpc.WithContextDialer.
func SlowDialer(bytesPerSec int) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &slowConn{Conn: c, rate: bytesPerSec}, nil
	}
}

type slowConn struct {
	net.Conn
	rate int
}

// Write sends p in slices of at most 64 KiB, sleeping after each for the
// time the rate allows it.
func (c *slowConn) Write(p []byte) (int, error) {
	var done int
	for len(p) > 0 {
		n := min(len(p), 64<<10)
		w, err := c.Conn.Write(p[:n])
		done += w
		if err != nil {
			return done, err
		}
		time.Sleep(time.Duration(n) * time.Second / time.Duration(c.rate))
		p = p[n:]
	}
	return done, nil
}

// Proxy forwards TCP connections to a target and counts the bytes the
// target sent through it: a store's egress, seen from its clients.
type Proxy struct {
	l      net.Listener
	target string
	egress atomic.Int64
	cap    *ratecap.Cap
}

// NewProxy listens on a loopback port and forwards to target (host:port)
// until Close.
func NewProxy(target string) (*Proxy, error) { return NewCappedProxy(target, 0) }

// NewCappedProxy is NewProxy whose target sends at most bytesPerSec
// through it, all connections together (0: no cap).
func NewCappedProxy(target string, bytesPerSec int64) (*Proxy, error) {
	return NewProxyOn("127.0.0.1:0", target, bytesPerSec)
}

// NewProxyOn is NewCappedProxy listening on addr (host:port; port 0 picks
// a free one): on a test network's address (Net.RootIP), say.
func NewProxyOn(addr, target string, bytesPerSec int64) (*Proxy, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{l: l, target: target, cap: ratecap.New(bytesPerSec)}
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Egress is the bytes the target sent so far.
func (p *Proxy) Egress() int64 { return p.egress.Load() }

// Close stops accepting connections.
func (p *Proxy) Close() error { return p.l.Close() }

func (p *Proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *Proxy) forward(c net.Conn) {
	defer c.Close()
	t, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer t.Close()
	go func() {
		io.Copy(t, c)
		t.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(&counter{w: p.cap.Writer(context.Background(), c), n: &p.egress}, t) // counted as it goes: connections are kept open
}

type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *counter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}
