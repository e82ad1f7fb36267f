package rest

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/vmapp/vmapp/internal/wire"
)

// Local is an in-memory listener that vmappd's gRPC server serves besides
// its TCP one: the REST gateway's calls reach the same server, through
// the same interceptors (tenant, authentication, authorization, errors,
// metrics, logs), without a socket or a second TLS handshake (the HTTP
// listener did it). Only this process can dial it.
type Local struct {
	l *bufconn.Listener
}

// localBuffer is the in-memory pipe's buffer each way.
const localBuffer = 1 << 20

// NewLocal returns a Local listener.
func NewLocal() *Local { return &Local{l: bufconn.Listen(localBuffer)} }

// Accept waits for the next connection.
func (l *Local) Accept() (net.Conn, error) {
	c, err := l.l.Accept()
	if err != nil {
		return nil, err
	}
	return localConn{c}, nil
}

// Close closes the listener.
func (l *Local) Close() error { return l.l.Close() }

// Addr is the listener's (in-memory) address.
func (l *Local) Addr() net.Addr { return l.l.Addr() }

// Dial returns a client connection to the server serving l.
func (l *Local) Dial() (*grpc.ClientConn, error) {
	dial := func(ctx context.Context, _ string) (net.Conn, error) { return l.l.DialContext(ctx) }
	return grpc.NewClient("passthrough:///vmappd-local", append(wire.DialOptions(),
		grpc.WithContextDialer(dial), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
}

// localConn marks the connections a Local listener accepted.
type localConn struct{ net.Conn }

// IsLocal reports whether c came from a Local listener: vmappd's TLS
// credentials let such a connection through without a handshake.
func IsLocal(c net.Conn) bool {
	_, ok := c.(localConn)
	return ok
}

// LocalAuthInfo is the credentials.AuthInfo of a Local connection. It
// carries no client certificate: a machine token that must come with its
// machine's certificate (--tls-bind-machines) is refused over REST.
type LocalAuthInfo struct{}

// AuthType names it.
func (LocalAuthInfo) AuthType() string { return "local" }
