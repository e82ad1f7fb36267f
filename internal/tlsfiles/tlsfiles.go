// Package tlsfiles loads the PEM files of TLS settings — a certificate and
// its key, a CA bundle — for vmappd and its clients, with errors that say
// which file is at fault, so that callers can name the flag that gave it.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// What a file is, in Error.
const (
	Cert = "cert" // a certificate (chain)
	Key  = "key"  // the certificate's private key
	CA   = "ca"   // a CA bundle
)

// Error is a file that could not be used. Its message holds the file's path
// and the cause, never the file's content.
type Error struct {
	What string // Cert, Key or CA
	File string
	Err  error
}

func (e *Error) Error() string { return e.File + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// ClientFlags are the flags of the CLI and the agent that name each kind
// of file.
var ClientFlags = map[string]string{Cert: "--cert", Key: "--key", CA: "--ca"}

// Flagged puts the flag that named the file (flags[What]) in front of an
// Error: "--ca /x: no such file or directory". Other errors pass as they
// are.
func Flagged(err error, flags map[string]string) error {
	var fe *Error
	if !errors.As(err, &fe) {
		return err
	}
	return fmt.Errorf("%s %w", flags[fe.What], fe)
}

func fileErr(what, file string, err error) *Error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == file {
		err = pe.Err // the path is in the message already
	}
	return &Error{What: what, File: file, Err: err}
}

// KeyPair loads a PEM certificate chain (leaf first) and its PEM private
// key. Leaf is set.
func KeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fileErr(Cert, certFile, err)
	}
	if _, err := parseCerts(certPEM); err != nil {
		return tls.Certificate{}, fileErr(Cert, certFile, err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fileErr(Key, keyFile, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return tls.Certificate{}, fileErr(Key, keyFile, errors.New("the key does not match the certificate in "+certFile))
		}
		return tls.Certificate{}, fileErr(Key, keyFile, errors.New(strings.TrimPrefix(err.Error(), "tls: ")))
	}
	return pair, nil
}

// CertPool loads a PEM CA bundle: one or more certificates.
func CertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fileErr(CA, file, err)
	}
	certs, err := parseCerts(b)
	if err != nil {
		return nil, fileErr(CA, file, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// parseCerts parses the CERTIFICATE blocks of PEM data; there must be one.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	var other []string
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			other = append(other, block.Type)
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	switch {
	case len(certs) > 0:
		return certs, nil
	case len(other) > 0:
		return nil, errors.New("no PEM certificate in it, only " + strings.Join(other, ", ") + " (a key given for a certificate?)")
	}
	return nil, errors.New("no PEM certificate in it")
}
