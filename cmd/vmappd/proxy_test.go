package main

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// tcpProxy forwards the connections made to its loopback address to an
// upstream address, so that a test can act on a network path: hold new
// connections (they wait, as over a path not up yet), cut the connections
// of some sources and refuse theirs (a partition), and count the bytes
// sent upstream (what crossed the path).
type tcpProxy struct {
	ln       net.Listener
	upstream string
	sent     atomic.Int64 // bytes from the clients to upstream

	mu      sync.Mutex
	conns   map[net.Conn]string // both ends of every open pair, by the client's IP
	blocked map[string]bool     // client IPs refused
	held    chan struct{}       // non-nil: new connections wait until it is closed
}

// newProxy listens on listen (host:port, port 0 for any) and forwards to
// upstream until the test ends.
func newProxy(t *testing.T, listen, upstream string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, upstream: upstream, conns: map[net.Conn]string{}, blocked: map[string]bool{}}
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cut(func(string) bool { return true }) })
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *tcpProxy) forward(c net.Conn) {
	src, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	p.mu.Lock()
	held := p.held
	p.mu.Unlock()
	if held != nil {
		<-held
	}
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.blocked[src] {
		p.mu.Unlock()
		c.Close()
		up.Close()
		return
	}
	p.conns[c], p.conns[up] = src, src
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(countingWriter{up, &p.sent}, c); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// hold makes new connections wait until release; those open go on.
func (p *tcpProxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil {
		p.held = make(chan struct{})
	}
}

func (p *tcpProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held != nil {
		close(p.held)
		p.held = nil
	}
}

// block refuses the connections of the client IPs given, and cuts those
// open; unblock lets them through again.
func (p *tcpProxy) block(ips ...string) {
	set := map[string]bool{}
	p.mu.Lock()
	for _, ip := range ips {
		p.blocked[ip], set[ip] = true, true
	}
	p.mu.Unlock()
	p.cut(func(src string) bool { return set[src] })
}

func (p *tcpProxy) unblock() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.blocked)
}

// cut closes the open connections whose client IP matches.
func (p *tcpProxy) cut(match func(src string) bool) {
	p.mu.Lock()
	var open []net.Conn
	for c, src := range p.conns {
		if match(src) {
			open = append(open, c)
		}
	}
	p.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}
