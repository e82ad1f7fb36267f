package client

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/vmapp/vmapp/internal/tlsfiles"
)

// TLSConfig is the TLS setting of Options for a vmappd that serves TLS: it
// trusts the PEM CA bundle caFile ("": the system's roots) and, when
// certFile and keyFile are set, presents that client certificate (for a
// vmappd that requires one). Errors name the file at fault.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs its key, and a key its certificate")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := tlsfiles.CertPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA bundle %w", err)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		pair, err := tlsfiles.KeyPair(certFile, keyFile)
		if err != nil {
			what := "client certificate"
			if fe := (*tlsfiles.Error)(nil); errors.As(err, &fe) && fe.What == tlsfiles.Key {
				what = "client key"
			}
			return nil, fmt.Errorf("%s %w", what, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
