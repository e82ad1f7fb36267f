package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/vmapp/vmapp/server/console"
	"github.com/vmapp/vmapp/server/rest"
)

// listenHTTP listens on Config.HTTPListen and builds the REST gateway on
// an in-memory connection to the gRPC server (served by Serve).
func (d *Daemon) listenHTTP() error {
	if d.Config.HTTPListen == "" {
		return nil
	}
	lis, err := net.Listen("tcp", d.Config.HTTPListen)
	if err != nil {
		return fmt.Errorf("listen on %s for HTTP (--http-listen): %w", d.Config.HTTPListen, err)
	}
	d.local = rest.NewLocal()
	conn, err := d.local.Dial()
	if err == nil {
		d.HTTP, err = rest.New(conn, rest.Options{Logger: d.log})
	}
	if err != nil {
		lis.Close()
		d.local.Close()
		return err
	}
	d.httpLis = lis
	d.mountConsole()
	return nil
}

// mountConsole serves the web console at /ui/ (and / sends there), and
// /healthz and /readyz, beside the REST API. The console's pages call the
// API through the gateway's in-process connection: every call passes the
// same interceptors (tenant, authentication, authorization) as a gRPC
// client's.
func (d *Daemon) mountConsole() {
	d.HTTP.Mount("/ui/", console.New(console.Options{Conn: d.HTTP.Conn(), Logger: d.log, Secure: d.tls != nil}))
	d.HTTP.Mount("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	health := http.NewServeMux()
	d.healthHandlers(health)
	d.HTTP.Mount("/healthz", health)
	d.HTTP.Mount("/readyz", health)
}

// httpTLS is the HTTP listener's TLS: vmappd's certificate; a client
// certificate is verified when one is given but not required, as browsers
// sign in to the console with a token, which every call checks (a
// machine's credential bound to its certificate, --tls-bind-machines, is
// refused over HTTP).
func httpTLS(api *tls.Config) *tls.Config {
	c := api.Clone()
	if c.ClientAuth == tls.RequireAndVerifyClientCert {
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

// HTTPAddr is the address the REST API listens on; nil without one.
func (d *Daemon) HTTPAddr() net.Addr {
	if d.httpLis == nil {
		return nil
	}
	return d.httpLis.Addr()
}

// serveHTTP serves the REST API and the console on their listener, over
// TLS when vmappd has it (see httpTLS); nil without one.
func (d *Daemon) serveHTTP() *http.Server {
	if d.httpLis == nil {
		return nil
	}
	srv := &http.Server{Handler: d.HTTP, ReadHeaderTimeout: 10 * time.Second}
	lis := d.httpLis
	if d.tls != nil {
		srv.TLSConfig = httpTLS(d.tls)
		lis = tls.NewListener(lis, srv.TLSConfig)
	}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("HTTP server", "err", err)
		}
	}()
	d.log.Info("HTTP listening: the REST API, and the web console at /ui/", "addr", d.httpLis.Addr().String(), "openapi", "/openapi.json")
	return srv
}
