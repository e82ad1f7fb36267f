// Package rest is vmappd's REST/JSON API (--http-listen): grpc-gateway v2's
// handlers, generated from the google.api.http annotations of the protos
// (paths shaped like Azure's resource paths), calling vmappd's own gRPC
// server over an in-memory connection (Local), so that every call goes
// through the same authentication, authorization, tenant and error
// interceptors as a gRPC client's. It also serves the OpenAPI document
// (/openapi.json) and lets other handlers share its listener (Mount: the
// web console).
//
// Requests carry the same tokens as gRPC (Authorization: Bearer ...) and,
// optionally, the tenant (Vmapp-Tenant). Bodies are protojson with
// Azure's camelCase names; unknown fields are refused. Answers are the
// CLI's -o json (package pbjson: 64-bit integers as numbers); errors are
// {"error":{"code","message","target"}} with the HTTP status of the gRPC
// code; streams (replication status, goal state, a rollout's watch) are newline-delimited
// JSON, one {"result": ...} a line, flushed as they come.
package rest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/textproto"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// DefaultMaxBody is the largest request body accepted (Options.MaxBody).
const DefaultMaxBody = 1 << 20

// TenantHeader names the tenant of a call, as gRPC's vmapp-tenant
// metadata does.
const TenantHeader = "Vmapp-Tenant"

// Options tune the gateway.
type Options struct {
	// MaxBody is the largest request body, in bytes (0: DefaultMaxBody);
	// larger ones are refused with 413.
	MaxBody int64
	Logger  *slog.Logger
}

// Gateway is the REST API's http.Handler.
type Gateway struct {
	mux  *http.ServeMux
	conn *grpc.ClientConn
}

// registrations are the services that have paths.
var registrations = []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
	pb.RegisterCatalogServiceHandler,
	pb.RegisterAccessServiceHandler,
	pb.RegisterFleetServiceHandler,
	pb.RegisterReplicationServiceHandler,
	pb.RegisterSigningServiceHandler,
	pb.RegisterTransferServiceHandler,
	pb.RegisterClusterServiceHandler,
	pb.RegisterRolloutServiceHandler,
	pb.RegisterDownloadServiceHandler, // Preheat only: the rest is the agents'
}

// New returns the gateway calling the gRPC server at the other end of
// conn (Local.Dial's).
func New(conn *grpc.ClientConn, o Options) (*Gateway, error) {
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	gw := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, newMarshaler()),
		runtime.WithErrorHandler(handleError),
		runtime.WithRoutingErrorHandler(handleRouting),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingTrailerMatcher(func(string) (string, bool) { return "", false }),
	)
	for _, register := range registrations {
		if err := register(context.Background(), gw, conn); err != nil {
			return nil, fmt.Errorf("rest: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/", limitBody(gw, o.MaxBody))
	mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	return &Gateway{mux: mux, conn: conn}, nil
}

// ServeHTTP serves the API.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// Mount serves h on the gateway's listener for pattern (http.ServeMux's
// patterns, e.g. "/ui/"): what the API's paths don't take.
func (g *Gateway) Mount(pattern string, h http.Handler) { g.mux.Handle(pattern, h) }

// Conn is the in-process connection to vmappd's gRPC server, for handlers
// mounted beside the API: their calls pass the same checks (send the
// user's token as the authorization metadata).
func (g *Gateway) Conn() *grpc.ClientConn { return g.conn }

// incomingHeader forwards the tenant header as gRPC metadata, and nothing
// else (grpc-gateway forwards Authorization itself): no client sets other
// metadata through HTTP headers.
func incomingHeader(key string) (string, bool) {
	if textproto.CanonicalMIMEHeaderKey(key) == TenantHeader {
		return pb.TenantMetadataKey, true
	}
	return "", false
}

// limitBody refuses bodies larger than max with 413 before the gateway
// reads them.
func limitBody(h http.Handler, max int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			tooLarge(w, max)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
			if int64(len(b)) > max {
				tooLarge(w, max)
				return
			}
			if err != nil {
				writeStatus(w, http.StatusBadRequest, ErrorDetail{Code: codes.InvalidArgument.String(), Message: "reading the request body: " + err.Error()})
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		h.ServeHTTP(w, r)
	})
}

func tooLarge(w http.ResponseWriter, max int64) {
	writeStatus(w, http.StatusRequestEntityTooLarge, ErrorDetail{Code: codes.InvalidArgument.String(),
		Message: fmt.Sprintf("the request body is larger than %d bytes", max)})
}
