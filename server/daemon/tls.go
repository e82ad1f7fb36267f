package daemon

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/vmapp/vmapp/internal/tlsfiles"
	"github.com/vmapp/vmapp/server/rest"
)

// TLSConfig loads vmappd's TLS settings: its certificate chain and key
// (--tls-cert, --tls-key) and, when clientCAFile (--tls-client-ca) is set,
// the CAs whose client certificates it requires of every connection
// (mutual TLS). Errors name the flag and the file at fault.
//
// TLS 1.2 is the minimum; everything else (TLS 1.3 when both ends have it,
// cipher suites, curves) is crypto/tls's defaults.
func TLSConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "" && clientCAFile == "":
		return nil, nil
	case certFile == "" && keyFile == "":
		return nil, fmt.Errorf("--tls-client-ca needs --tls-cert and --tls-key: client certificates are only asked for over TLS")
	case certFile == "" || keyFile == "":
		return nil, fmt.Errorf("--tls-cert and --tls-key go together: give both or neither")
	}
	pair, err := tlsfiles.KeyPair(certFile, keyFile)
	if err != nil {
		return nil, flagErr(err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	if clientCAFile != "" {
		if cfg.ClientCAs, err = tlsfiles.CertPool(clientCAFile); err != nil {
			return nil, flagErr(err)
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// flagErr names the flag of a tlsfiles error.
func flagErr(err error) error {
	return tlsfiles.Flagged(err, map[string]string{tlsfiles.Cert: "--tls-cert", tlsfiles.Key: "--tls-key", tlsfiles.CA: "--tls-client-ca"})
}

// logTransport logs what the gRPC listener's security is — a warning when
// it is plaintext beyond loopback — and returns it in a word for the
// serving log line. It logs certificates' names and dates only.
func logTransport(log *slog.Logger, addr net.Addr, cfg *tls.Config) string {
	if cfg == nil {
		if ta, ok := addr.(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			log.Warn("the gRPC API is unencrypted and listens beyond loopback: start vmappd with --tls-cert and --tls-key (and --tls-client-ca for agents), or --listen on 127.0.0.1", "addr", addr.String())
		}
		return "plaintext"
	}
	mode := "tls"
	if cfg.ClientAuth == tls.RequireAndVerifyClientCert {
		mode = "mtls"
	}
	leaf := cfg.Certificates[0].Leaf
	if leaf == nil {
		return mode
	}
	attrs := []any{"subject", leaf.Subject.String(), "dns", leaf.DNSNames, "ips", leaf.IPAddresses, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339)}
	if time.Now().After(leaf.NotAfter) {
		log.Warn("the TLS certificate has expired: clients will refuse it", attrs...)
	} else {
		log.Info("TLS certificate", attrs...)
	}
	return mode
}

// serverCreds are the gRPC credentials of cfg (nil: none, plaintext).
func serverCreds(cfg *tls.Config, log *slog.Logger) credentials.TransportCredentials {
	if cfg == nil {
		return nil
	}
	return loggedCreds{credentials.NewTLS(cfg), log}
}

// loggedCreds logs the TLS handshakes vmappd refuses, with the reason —
// which the client may never read: with TLS 1.3 a client finishes its side
// of the handshake before vmappd checks its certificate. Connections closed
// without a word (port probes, TCP health checks) are not logged.
type loggedCreds struct {
	credentials.TransportCredentials
	log *slog.Logger
}

func (c loggedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if rest.IsLocal(raw) {
		return raw, rest.LocalAuthInfo{}, nil // the REST gateway's: its HTTP listener does TLS
	}
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil && !errors.Is(err, io.EOF) {
		c.log.Info("TLS handshake refused", "remote", raw.RemoteAddr().String(), "err", err)
	}
	return conn, info, err
}

func (c loggedCreds) Clone() credentials.TransportCredentials {
	return loggedCreds{c.TransportCredentials.Clone(), c.log}
}

// nodeTLS derives the TLS settings of traffic between nodes (raft, and
// writes forwarded to the leader) from vmappd's own: a node serves raft
// with its certificate, and dials other nodes presenting it, trusting the
// CA of --tls-client-ca (the nodes' certificates must be issued by it and
// allow client authentication as well) or else the system's CAs.
func nodeTLS(api *tls.Config) (server, client *tls.Config) {
	server = api.Clone()
	client = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: api.Certificates, RootCAs: api.ClientCAs}
	return server, client
}
