// Package console is vmappd's web console, served at /ui/ on the HTTP
// listener: server-rendered pages (html/template) with a little plain
// JavaScript, every file embedded in the binary (no CDN: it works on an
// air-gapped network).
//
// A person signs in with an API token; the console keeps it in a cookie
// (HttpOnly, SameSite=Strict, Secure over TLS) and makes every call of
// every page through the gRPC API with it, on a connection to vmappd's
// in-process gRPC server: the same authentication and authorization as
// any client. Pages show the actions the token's role allows (auth.Allows);
// the API refuses the others all the same. POSTs from another origin are
// refused (http.CrossOriginProtection).
package console

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"

	"google.golang.org/grpc"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

//go:embed templates/*.html static/*
var files embed.FS

// Options are what New needs.
type Options struct {
	// Conn reaches the gRPC API (vmappd's in-process server).
	Conn   grpc.ClientConnInterface
	Logger *slog.Logger
	// Secure marks the cookies Secure (the listener serves TLS).
	Secure bool
}

// Console serves the pages.
type Console struct {
	catalog pb.CatalogServiceClient
	repl    pb.ReplicationServiceClient
	fleet   pb.FleetServiceClient
	access  pb.AccessServiceClient
	rollout pb.RolloutServiceClient
	log     *slog.Logger
	secure  bool
	pages   map[string]*template.Template
}

// New returns the console's handler, for the paths under /ui/.
func New(o Options) http.Handler {
	c := &Console{
		catalog: pb.NewCatalogServiceClient(o.Conn),
		repl:    pb.NewReplicationServiceClient(o.Conn),
		fleet:   pb.NewFleetServiceClient(o.Conn),
		access:  pb.NewAccessServiceClient(o.Conn),
		rollout: pb.NewRolloutServiceClient(o.Conn),
		log:     o.Logger,
		secure:  o.Secure,
		pages:   parsePages(),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /ui/signin", c.signInPage)
	mux.HandleFunc("POST /ui/signin", c.signIn)
	mux.HandleFunc("POST /ui/signout", c.signOut)
	c.routes(mux)
	cop := http.NewCrossOriginProtection()
	return headers(cop.Handler(mux))
}

// routes are the pages that need a signed-in person.
func (c *Console) routes(mux *http.ServeMux) {
	const v = "/ui/galleries/{gallery}/applications/{application}/versions/{version}"
	for pattern, h := range map[string]pageFunc{
		"GET /ui/{$}":                 c.galleries,
		"GET /ui/galleries/{gallery}": c.applications,
		"GET /ui/galleries/{gallery}/applications/{application}": c.versions,
		"GET " + v:                           c.version,
		"POST " + v + "/repair":              c.repair,
		"GET /ui/inventory":                  c.inventory,
		"GET /ui/machines":                   c.machines,
		"GET /ui/machines/{machine}":         c.machine,
		"GET /ui/scalesets":                  c.scaleSets,
		"GET /ui/scalesets/{scaleset}":       c.scaleSet,
		"POST /ui/retry":                     c.retry,
		"GET /ui/rollouts":                   c.rollouts,
		"GET /ui/rollouts/{rollout}":         c.rolloutPage,
		"POST /ui/rollouts/{rollout}/{verb}": c.rolloutAction,
		"GET /ui/peers":                      c.peers,
	} {
		mux.Handle(pattern, c.signedIn(h))
	}
	mux.Handle("GET "+v+"/replication", c.signedInStream(c.watchReplication))
	mux.Handle("GET /ui/rollouts/{rollout}/watch", c.signedInStream(c.watchRollout))
}

// headers sets what every answer carries: no framing, no sniffing, no
// resource from elsewhere.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

// session is the signed-in person: their token's credential and what
// WhoAmI says of it.
type session struct {
	credential string
	tenant     string // the tenant calls run in ("" : the token's)
	token      *pb.Token
}

// ctx is r's context with the session's credential and tenant as the
// gRPC metadata the API reads.
func (s *session) ctx(ctx context.Context) context.Context {
	return outgoing(ctx, s.credential, s.tenant)
}
