package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vmapp/vmapp/internal/wire"
	"github.com/vmapp/vmapp/server/console"
)

// The HTTP listener (--http-listen) serves the web console at /ui/. Its
// pages call the gRPC API in-process: a second gRPC server built by
// server.New with the same services and the same interceptors (tenant,
// authentication, authorization, errors, logs) listens on a Unix socket in
// a directory of its own (mode 0700), and the console dials it with the
// signed-in user's token. Nothing the console does skips a check a gRPC
// client goes through.

// httpServer is what Serve runs for the HTTP listener.
type httpServer struct {
	srv      *http.Server
	cancel   context.CancelFunc // ends the requests' contexts: event streams
	internal *grpc.Server
	conn     *grpc.ClientConn
	dir      string
}

// HTTPAddr is the address the HTTP listener (--http-listen) is bound to;
// nil without one.
func (d *Daemon) HTTPAddr() net.Addr {
	if d.httpLis == nil {
		return nil
	}
	return d.httpLis.Addr()
}

// listenHTTP binds Config.HTTPListen, when set.
func (d *Daemon) listenHTTP() error {
	if d.Config.HTTPListen == "" {
		return nil
	}
	lis, err := net.Listen("tcp", d.Config.HTTPListen)
	if err != nil {
		return fmt.Errorf("listen on %s for HTTP (--http-listen): %w", d.Config.HTTPListen, err)
	}
	if d.tls != nil {
		lis = tls.NewListener(lis, httpTLS(d.tls))
	}
	d.httpLis = lis
	return nil
}

// httpTLS is the HTTP listener's TLS: vmappd's certificate; a client
// certificate is verified when one is given but not required (browsers
// sign in with a token, which every call checks).
func httpTLS(api *tls.Config) *tls.Config {
	c := api.Clone()
	if c.ClientAuth == tls.RequireAndVerifyClientCert {
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	c.NextProtos = []string{"h2", "http/1.1"}
	return c
}

// startHTTP starts the in-process gRPC server and the HTTP server.
func (d *Daemon) startHTTP() (*httpServer, error) {
	if d.httpLis == nil {
		return nil, nil
	}
	h := &httpServer{}
	var err error
	if h.dir, err = os.MkdirTemp("", "vmappd-"); err != nil {
		return nil, fmt.Errorf("the console's in-process gRPC socket: %w", err)
	}
	sock := filepath.Join(h.dir, "grpc.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(h.dir)
		return nil, fmt.Errorf("the console's in-process gRPC socket: %w", err)
	}
	h.internal = d.grpcServer(false)
	go h.internal.Serve(lis)
	h.conn, err = grpc.NewClient("unix://"+sock, append(wire.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		h.stop()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/ui/", console.New(console.Options{Conn: h.conn, Logger: d.log, Secure: d.tls != nil}))
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	d.healthHandlers(mux)
	base, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return base }}
	go func() {
		if err := h.srv.Serve(d.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("HTTP server", "err", err)
		}
	}()
	d.log.Info("HTTP listening: the console is at /ui/", "addr", d.httpLis.Addr().String())
	return h, nil
}

// stop closes the HTTP server (its event streams end), the connection and
// the in-process gRPC server, and removes the socket's directory.
func (h *httpServer) stop() {
	if h == nil {
		return
	}
	if h.srv != nil {
		h.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h.srv.Shutdown(ctx)
		cancel()
		h.srv.Close()
	}
	if h.conn != nil {
		h.conn.Close()
	}
	if h.internal != nil {
		h.internal.Stop()
	}
	os.RemoveAll(h.dir)
}
