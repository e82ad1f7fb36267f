// Package client is the Go SDK for vmappd: dialing, the tenant, and errors
// mapped back to errs classes.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/wire"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Options configure a Client.
type Options struct {
	// Tenant every call runs in; "" lets the server use its default.
	Tenant string
	// Compressor names the wire compression for requests: "" (none), "zstd"
	// or "s2".
	Compressor string
	// DialOptions are appended to the client's own.
	DialOptions []grpc.DialOption
	// Token is the credential sent with every call ("tok_<id>.<secret>",
	// from vmapp token create, CreateMachine or vmappd's admin.token).
	Token string
	// TLS, when set, secures the connection (see TLSConfig); nil dials
	// plaintext.
	TLS *tls.Config
	// Keepalive pings vmappd when a call in flight has had no news for a
	// while, so that a connection whose path died is found out (see
	// wire.Keepalive): for clients that hold quiet streams.
	Keepalive bool
	// WaitForReady makes a call wait, up to its deadline, for a node to
	// take it when none can at the moment (every node down, restarting or
	// in reconnect backoff), instead of failing once the retries above are
	// spent (about a second): for agents, whose calls have deadlines and
	// must ride out a rolling restart of the cluster. A CLI user wants to
	// hear at once that vmappd is down, so the CLI leaves it off.
	WaitForReady bool
}

// Client is a connection to vmappd.
type Client struct {
	conn     *grpc.ClientConn
	Catalog  pb.CatalogServiceClient
	Transfer pb.TransferServiceClient
}

// New connects to vmappd at addr: host:port, or the nodes of a cluster as
// host:port,host:port,... (see Servers), or a gRPC target such as
// dns:///name:port. The connection is made lazily; errors of calls are
// *errs.Error values of the server's class.
func New(addr string, o Options) (*Client, error) {
	tgt, topts, err := target(addr)
	if err != nil {
		return nil, errs.New(errs.InvalidArgument, "server", "%v", err)
	}
	creds := insecure.NewCredentials()
	if o.TLS != nil {
		creds = credentials.NewTLS(o.TLS)
	}
	opts := append(append(wire.DialOptions(), topts...),
		grpc.WithTransportCredentials(creds),
		grpc.WithChainUnaryInterceptor(unary(o.Tenant)),
		grpc.WithChainStreamInterceptor(stream(o.Tenant)),
	)
	if o.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(o.Token)))
	}
	if o.Keepalive {
		opts = append(opts, wire.Keepalive())
	}
	if o.WaitForReady {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.WaitForReady(true)))
	}
	if o.Compressor != "" {
		if !wire.Registered(o.Compressor) {
			return nil, errs.New(errs.InvalidArgument, "compressor", "compressor %q is not one of %v", o.Compressor, wire.Compressors)
		}
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.UseCompressor(o.Compressor)))
	}
	conn, err := grpc.NewClient(tgt, append(opts, o.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("vmappd at %q: %w", addr, err)
	}
	return &Client{conn: conn, Catalog: pb.NewCatalogServiceClient(conn), Transfer: pb.NewTransferServiceClient(conn)}, nil
}

// bearer sends the token as "authorization: Bearer <token>".
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is false so that loopback and private networks
// work without TLS; use TLS anywhere else.
func (bearer) RequireTransportSecurity() bool { return false }

// ReadTokenFile reads a credential from a file (vmappd's admin.token, or
// one saved from vmapp token create), trimming surrounding space.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path once: "token file F: no such file or directory"
	}
	if err != nil {
		return "", fmt.Errorf("token file %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\n") {
		return "", fmt.Errorf("token file %s: want one token, tok_<id>.<secret>", path)
	}
	return tok, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying connection, for services the Client doesn't wrap.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// withTenant names the client's tenant on a call, unless the call names
// one itself (InTenant).
func withTenant(ctx context.Context, tenant string) context.Context {
	if tenant == "" || len(metadata.ValueFromOutgoingContext(ctx, pb.TenantMetadataKey)) > 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, pb.TenantMetadataKey, tenant)
}

// InTenant returns ctx for calls in another tenant than the client's: to
// read, or download from, a gallery that tenant shares.
func InTenant(ctx context.Context, tenant string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, pb.TenantMetadataKey, tenant)
}

func unary(tenant string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return errs.FromStatus(invoker(withTenant(ctx, tenant), method, req, reply, cc, opts...))
	}
}

func stream(tenant string) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		s, err := streamer(withTenant(ctx, tenant), desc, cc, method, opts...)
		if err != nil {
			return nil, errs.FromStatus(err)
		}
		return classified{s}, nil
	}
}

// classified turns a stream's gRPC status errors into errs classes, like
// the unary calls'. io.EOF, the stream's normal end, passes as it is.
type classified struct{ grpc.ClientStream }

func (s classified) RecvMsg(m any) error { return errs.FromStatus(s.ClientStream.RecvMsg(m)) }
func (s classified) SendMsg(m any) error { return errs.FromStatus(s.ClientStream.SendMsg(m)) }
