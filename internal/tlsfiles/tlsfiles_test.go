package tlsfiles_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/internal/devcerts"
	"github.com/vmapp/vmapp/internal/tlsfiles"
)

func TestErrorsNameTheFile(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, other} {
		if _, err := devcerts.Generate(d, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	os.WriteFile(p("garbage"), []byte("not PEM"), 0o600)
	if _, err := tlsfiles.KeyPair(p("server.pem"), p("server-key.pem")); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsfiles.CertPool(p("ca.pem")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, what, file, want string
		err                    func() error
	}{
		{"missing cert", tlsfiles.Cert, p("nope.pem"), "nope.pem: no such file or directory", func() error {
			_, err := tlsfiles.KeyPair(p("nope.pem"), p("server-key.pem"))
			return err
		}},
		{"missing key", tlsfiles.Key, p("nope.pem"), "nope.pem: no such file or directory", func() error {
			_, err := tlsfiles.KeyPair(p("server.pem"), p("nope.pem"))
			return err
		}},
		{"cert not PEM", tlsfiles.Cert, p("garbage"), "garbage: no PEM certificate in it", func() error {
			_, err := tlsfiles.KeyPair(p("garbage"), p("server-key.pem"))
			return err
		}},
		{"key for the cert", tlsfiles.Cert, p("server-key.pem"), "only PRIVATE KEY (a key given for a certificate?)", func() error {
			_, err := tlsfiles.KeyPair(p("server-key.pem"), p("server-key.pem"))
			return err
		}},
		{"cert for the key", tlsfiles.Key, p("server.pem"), "server.pem: found a certificate rather than a key", func() error {
			_, err := tlsfiles.KeyPair(p("server.pem"), p("server.pem"))
			return err
		}},
		{"mismatched key", tlsfiles.Key, filepath.Join(other, "server-key.pem"), "the key does not match the certificate in " + p("server.pem"), func() error {
			_, err := tlsfiles.KeyPair(p("server.pem"), filepath.Join(other, "server-key.pem"))
			return err
		}},
		{"missing CA", tlsfiles.CA, p("nope.pem"), "nope.pem: no such file or directory", func() error {
			_, err := tlsfiles.CertPool(p("nope.pem"))
			return err
		}},
		{"CA not PEM", tlsfiles.CA, p("garbage"), "no PEM certificate in it", func() error {
			_, err := tlsfiles.CertPool(p("garbage"))
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.err()
			var fe *tlsfiles.Error
			if !errors.As(err, &fe) || fe.What != tc.what || fe.File != tc.file || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v (%#v), want a %s error about %s saying %q", err, fe, tc.what, tc.file, tc.want)
			}
			if strings.Count(err.Error(), tc.file) != 1 {
				t.Errorf("the path appears other than once: %v", err)
			}
		})
	}
}
