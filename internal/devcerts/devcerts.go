// Package devcerts writes development certificates for vmappd and its
// clients: a CA, a server certificate and client certificates, ECDSA P-256,
// in PEM files in one directory (`vmappd certs`).
//
//	ca.pem, ca-key.pem          the CA (10 years)
//	server.pem, server-key.pem  vmappd, valid for the hosts (1 year)
//	NAME.pem, NAME-key.pem      a client, CN=NAME, client auth only (1 year)
//
// Keys are written 0600, certificates 0644. Generate is idempotent: it keeps
// the CA it finds and every certificate that still chains to it, covers what
// was asked and has more than RenewBefore left; it replaces the others.
package devcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/vmapp/vmapp/internal/atomicfile"
	"github.com/vmapp/vmapp/internal/tlsfiles"
)

// Validity of what Generate makes.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 365 * 24 * time.Hour
	// RenewBefore: a certificate closer than this to its end is replaced.
	RenewBefore = 30 * 24 * time.Hour
)

// DefaultHosts are the server certificate's names when none are given.
var DefaultHosts = []string{"127.0.0.1", "localhost", "::1"}

// Names of the CA's and the server's files (without .pem / -key.pem).
const (
	CAName     = "ca"
	ServerName = "server"
)

// Result says what Generate did with one certificate.
type Result struct {
	Name    string // "ca", "server" or a client's name
	Cert    string // path of NAME.pem
	Key     string // path of NAME-key.pem
	Created bool   // written now (else kept as it was)
}

var clientName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Generate writes (or keeps) the CA, the server certificate for hosts (IP
// addresses or DNS names; DefaultHosts when empty) and a client certificate
// for each of clients in dir, which it makes (0700) if needed.
func Generate(dir string, hosts, clients []string) ([]Result, error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts
	}
	for _, h := range hosts {
		if h == "" || strings.ContainsAny(h, " /:") && net.ParseIP(h) == nil {
			return nil, fmt.Errorf("host %q: want an IP address or a DNS name", h)
		}
	}
	seen := map[string]bool{}
	for _, c := range clients {
		switch {
		case !clientName.MatchString(c):
			return nil, fmt.Errorf("client name %q: want letters, digits, '.', '_' or '-' (at most 64), starting with a letter or digit", c)
		case c == CAName || c == ServerName:
			return nil, fmt.Errorf("client name %q: taken by the CA's or the server's files", c)
		case seen[c]:
			return nil, fmt.Errorf("client name %q: given twice", c)
		}
		seen[c] = true
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, caKey, res, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	out := []Result{res}
	// vmappd's certificate is a client's too: the nodes of a cluster
	// present it to each other.
	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "vmappd", Organization: []string{"vmapp development"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			server.IPAddresses = append(server.IPAddresses, ip)
		} else {
			server.DNSNames = append(server.DNSNames, h)
		}
	}
	r, err := leaf(dir, ServerName, server, ca, caKey, func(c *x509.Certificate) error {
		for _, h := range hosts {
			if err := c.VerifyHostname(h); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out = append(out, r)
	for _, name := range clients {
		client := &x509.Certificate{
			Subject:     pkix.Name{CommonName: name, Organization: []string{"vmapp development"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		r, err := leaf(dir, name, client, ca, caKey, func(c *x509.Certificate) error {
			if c.Subject.CommonName != name {
				return fmt.Errorf("CN %q", c.Subject.CommonName)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func paths(dir, name string) (cert, key string) {
	return filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// loadOrCreateCA keeps an existing CA: certificates in use depend on it.
func loadOrCreateCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, Result, error) {
	certFile, keyFile := paths(dir, CAName)
	res := Result{Name: CAName, Cert: certFile, Key: keyFile}
	haveCert, err := exists(certFile)
	if err != nil {
		return nil, nil, res, err
	}
	haveKey, err := exists(keyFile)
	if err != nil {
		return nil, nil, res, err
	}
	switch {
	case haveCert && haveKey:
		pair, err := tlsfiles.KeyPair(certFile, keyFile)
		if err != nil {
			return nil, nil, res, fmt.Errorf("the CA in %s: %w", dir, err)
		}
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		switch {
		case !pair.Leaf.IsCA:
			return nil, nil, res, fmt.Errorf("%s is not a CA certificate", certFile)
		case !ok:
			return nil, nil, res, fmt.Errorf("%s: not an ECDSA key", keyFile)
		case time.Now().After(pair.Leaf.NotAfter):
			return nil, nil, res, fmt.Errorf("the CA %s expired on %s; remove %s and %s to make a new one (and new certificates)", certFile, pair.Leaf.NotAfter.Format(time.DateOnly), certFile, keyFile)
		}
		return pair.Leaf, key, res, nil
	case haveCert || haveKey:
		have, missing := certFile, keyFile
		if haveKey {
			have, missing = keyFile, certFile
		}
		return nil, nil, res, fmt.Errorf("%s is there but %s is not: restore it, or remove %s to make a new CA (and new certificates)", have, missing, have)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, res, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "vmapp development CA", Organization: []string{"vmapp development"}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := sign(tmpl, CAValidity, &key.PublicKey, nil, key)
	if err != nil {
		return nil, nil, res, err
	}
	if err := write(keyFile, certFile, key, der); err != nil {
		return nil, nil, res, err
	}
	ca, err := x509.ParseCertificate(der)
	res.Created = true
	return ca, key, res, err
}

// leaf keeps NAME.pem and NAME-key.pem when they chain to ca, hold a
// matching key, pass check and have RenewBefore left; else it writes a new
// pair from tmpl.
func leaf(dir, name string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey, check func(*x509.Certificate) error) (Result, error) {
	certFile, keyFile := paths(dir, name)
	res := Result{Name: name, Cert: certFile, Key: keyFile}
	if pair, err := tlsfiles.KeyPair(certFile, keyFile); err == nil {
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		_, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: tmpl.ExtKeyUsage, CurrentTime: time.Now().Add(RenewBefore)})
		if err == nil && check(pair.Leaf) == nil {
			return res, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return res, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := sign(tmpl, CertValidity, &key.PublicKey, ca, caKey)
	if err != nil {
		return res, err
	}
	res.Created = true
	return res, write(keyFile, certFile, key, der)
}

// sign makes a certificate from tmpl valid from an hour ago (clock skew)
// for validity; parent nil self-signs.
func sign(tmpl *x509.Certificate, validity time.Duration, pub *ecdsa.PublicKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(validity)
	if parent == nil {
		parent = tmpl
	}
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
}

// write writes the key (0600) then the certificate (0644), each atomically.
func write(keyFile, certFile string, key *ecdsa.PrivateKey, der []byte) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}
