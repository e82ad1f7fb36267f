package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// handshakeTimeout bounds the key handshake of a raft connection.
const handshakeTimeout = 10 * time.Second

// streamLayer carries raft between nodes over TCP (TLS when configured).
// Every connection starts with a mutual proof of the cluster key (a
// challenge-response with HMAC-SHA256, the key never sent), so only nodes
// holding the key take part in the log.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	key       []byte
	serverTLS *tls.Config // nil: plaintext
	clientTLS *tls.Config
	dialer    net.Dialer // bound to the listen IP when it is a specific one
	log       *slog.Logger
	conns     chan net.Conn
	closed    chan struct{}
}

func newStreamLayer(ln net.Listener, advertise net.Addr, key []byte, serverTLS, clientTLS *tls.Config, log *slog.Logger) *streamLayer {
	s := &streamLayer{ln: ln, advertise: advertise, key: key, serverTLS: serverTLS, clientTLS: clientTLS, log: log,
		conns: make(chan net.Conn), closed: make(chan struct{})}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
		s.dialer.LocalAddr = &net.TCPAddr{IP: ta.IP}
	}
	go s.acceptLoop()
	return s
}

// acceptLoop accepts connections and hands those that pass the handshake
// to Accept; a slow or bad peer never holds up the others.
func (s *streamLayer) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			s.log.Warn("raft listener failed", "err", err)
			return
		}
		go func() {
			sc, err := s.serverHandshake(c)
			if err != nil {
				s.log.Warn("raft connection refused", "remote", c.RemoteAddr().String(), "err", err)
				c.Close()
				return
			}
			select {
			case s.conns <- sc:
			case <-s.closed:
				sc.Close()
			}
		}()
	}
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

func (s *streamLayer) Close() error {
	select {
	case <-s.closed:
		return nil
	default:
		close(s.closed)
	}
	return s.ln.Close()
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

// tcpAddr is a TCP address as host:port, the host a name or an IP.
type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := s.dialer
	d.Timeout = timeout
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, err
	}
	cc, err := s.clientHandshake(c, string(address))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("raft connection to %s: %w", address, err)
	}
	return cc, nil
}

func (s *streamLayer) serverHandshake(c net.Conn) (net.Conn, error) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	if s.serverTLS != nil {
		tc := tls.Server(c, s.serverTLS)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		c = tc
	}
	if err := proveKey(c, s.key, false); err != nil {
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func (s *streamLayer) clientHandshake(c net.Conn, address string) (net.Conn, error) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	if s.clientTLS != nil {
		conf := s.clientTLS.Clone()
		if host, _, err := net.SplitHostPort(address); err == nil {
			conf.ServerName = host // the other node's certificate must name it
		}
		tc := tls.Client(c, conf)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		c = tc
	}
	if err := proveKey(c, s.key, true); err != nil {
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

var errWrongKey = errors.New("the other end doesn't hold this cluster's key (another cluster, or a wrong --cluster-key)")

// proveKey runs the mutual challenge-response on c: each side sends a
// nonce and answers the other's with HMAC-SHA256(key, role, both nonces).
func proveKey(c net.Conn, key []byte, client bool) error {
	mine := make([]byte, 32)
	rand.Read(mine)
	if _, err := c.Write(mine); err != nil {
		return err
	}
	theirs := make([]byte, 32)
	if _, err := io.ReadFull(c, theirs); err != nil {
		return err
	}
	role, other := "client", "server"
	if !client {
		role, other = other, role
	}
	if _, err := c.Write(mac(key, role, theirs, mine)); err != nil {
		return err
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !hmac.Equal(got, mac(key, other, mine, theirs)) {
		return errWrongKey
	}
	return nil
}

// mac binds a proof to its role and to both nonces (the challenger's
// first), so that no answer can be replayed or reflected.
func mac(key []byte, role string, challenge, nonce []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("vmapp-raft-" + role))
	h.Write(challenge)
	h.Write(nonce)
	return h.Sum(nil)
}
