package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

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
		return fmt.Errorf("--http-listen %s: %w", d.Config.HTTPListen, err)
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
	return nil
}

// HTTPAddr is the address the REST API listens on; nil without one.
func (d *Daemon) HTTPAddr() net.Addr {
	if d.httpLis == nil {
		return nil
	}
	return d.httpLis.Addr()
}

// serveHTTP serves the REST API on its listener, over TLS when vmappd has
// it (the same certificate and client CAs as gRPC); nil without one.
func (d *Daemon) serveHTTP() *http.Server {
	if d.httpLis == nil {
		return nil
	}
	srv := &http.Server{Handler: d.HTTP, ReadHeaderTimeout: 10 * time.Second}
	lis := d.httpLis
	if d.tls != nil {
		cfg := d.tls.Clone()
		cfg.NextProtos = []string{"h2", "http/1.1"}
		srv.TLSConfig = cfg
		lis = tls.NewListener(lis, cfg)
	}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("HTTP server", "err", err)
		}
	}()
	d.log.Info("REST API listening", "addr", d.httpLis.Addr().String(), "openapi", "/openapi.json")
	return srv
}
