// Package minisign reads and writes keys and signatures in minisign's
// formats (https://jedisct1.github.io/minisign/), on crypto/ed25519, so
// that `minisign -V` verifies what vmapp signs and vmapp verifies what
// minisign signs.
//
// Every file is text: an "untrusted comment: " line, then a line of
// standard base64 (with padding) of a binary structure; integers in it are
// little-endian.
//
// A public key is "Ed" || key id (8 bytes) || Ed25519 public key (32).
// The key id is random, chosen when the key is made; minisign prints it as
// the 16 upper-case hex digits of the little-endian integer.
//
// A secret key is "Ed" || KDF ("Sc": scrypt, or two zero bytes: not
// encrypted) || checksum algorithm ("B2") || salt (32) || opslimit (8) ||
// memlimit (8) || key id (8) || Ed25519 secret key (64: seed, then public
// key) || checksum (32: BLAKE2b-256 of "Ed" || key id || secret key). An
// encrypted key XORs the last 104 bytes (key id, secret key, checksum) with
// as many bytes of scrypt(passphrase, salt), its N, r and p derived from
// opslimit and memlimit as libsodium's crypto_pwhash_scryptsalsa208sha256
// derives them; a checksum mismatch after decryption means a wrong
// passphrase. minisign -W writes unencrypted keys with zero KDF fields and
// a zero checksum, which is then not checked.
//
// A signature file has four lines: the untrusted comment; base64 of the
// algorithm ("ED": Ed25519 over the BLAKE2b-512 of the message, minisign's
// default since 0.8; "Ed": over the message itself, the legacy form) ||
// key id || signature (64); "trusted comment: " and a comment; base64 of
// the global signature, Ed25519 over signature || trusted comment, which
// makes the trusted comment as authentic as the message.
//
// Every error is errs.InvalidArgument and says what is wrong; the ones a
// caller acts on wrap ErrEncrypted, ErrWrongPassphrase, ErrKeyIDMismatch,
// ErrBadSignature or ErrBadTrustedComment.
package minisign

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/vmapp/vmapp/errs"
)

const (
	commentPrefix        = "untrusted comment: "
	trustedCommentPrefix = "trusted comment: "
	// minisign reads a comment line into 1,024 bytes and a trusted
	// comment line into 8,192, the prefix and the newline included.
	maxComment        = 1024 - 1 - len(commentPrefix) - 1
	maxTrustedComment = 8192 - 1 - len(trustedCommentPrefix) - 1
	// maxFile bounds what readFile reads: a signature file with both
	// comments at their longest is under 10 KiB.
	maxFile = 16 << 10
)

var (
	algEd      = [2]byte{'E', 'd'} // Ed25519; for signatures, over the message itself
	algPrehash = [2]byte{'E', 'D'} // Ed25519 over the BLAKE2b-512 of the message
	kdfScrypt  = [2]byte{'S', 'c'}
	kdfNone    = [2]byte{0, 0}
	chkBlake2b = [2]byte{'B', '2'}
	b64        = base64.StdEncoding.Strict()
)

// Errors a caller may test with errors.Is.
var (
	ErrEncrypted         = errors.New("the secret key is encrypted: a passphrase is needed")
	ErrWrongPassphrase   = errors.New("checksum mismatch: wrong passphrase")
	ErrKeyIDMismatch     = errors.New("key id mismatch")
	ErrBadSignature      = errors.New("bad signature")
	ErrBadTrustedComment = errors.New("bad trusted-comment signature")
)

// KeyID identifies a key: 8 random bytes, as stored.
type KeyID [8]byte

// String is the id as minisign prints it: 16 upper-case hex digits of the
// little-endian integer.
func (id KeyID) String() string {
	return fmt.Sprintf("%016X", binary.LittleEndian.Uint64(id[:]))
}

// detail is the message of an error with an optional kind to test for.
type detail struct {
	kind error
	msg  string
}

func (d *detail) Error() string {
	if d.kind == nil {
		return d.msg
	}
	return d.kind.Error() + ": " + d.msg
}

func (d *detail) Unwrap() error { return d.kind }

// fail is an error about what (a public key, a signature...): kind, when
// not nil, is one of the Err values.
func fail(what string, kind error, format string, args ...any) error {
	return &errs.Error{Class: errs.InvalidArgument, Msg: what, Err: &detail{kind, fmt.Sprintf(format, args...)}}
}

// inFile prefixes an error of this package with the file it is about.
func inFile(path string, err error) error {
	var e *errs.Error
	if errors.As(err, &e) {
		return &errs.Error{Class: e.Class, Field: e.Field, Msg: path + ": " + e.Msg, Err: e.Err}
	}
	return fmt.Errorf("%s: %w", path, err)
}

// readFile reads a key or signature file, refusing one too large to be one.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, inFile(path, fail("file", nil, "larger than %d bytes: not a minisign key or signature", maxFile))
	}
	return data, nil
}

// lines splits a file into its lines, each without "\n" or "\r\n"; a line
// holding another "\r" is refused, as minisign refuses it. Empty lines at
// the end are dropped.
func lines(what string, data []byte) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxFile)
	for sc.Scan() {
		l := strings.TrimSuffix(sc.Text(), "\r")
		if strings.ContainsRune(l, '\r') {
			return nil, fail(what, nil, "line %d holds a carriage return", len(out)+1)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fail(what, nil, "%v", err)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out, nil
}

// comment returns the text after prefix on line n (1-based) of ls.
func comment(what string, ls []string, n int, prefix string, max int) (string, error) {
	if len(ls) < n {
		return "", fail(what, nil, "line %d is missing: want %q and a comment", n, prefix)
	}
	c, ok := strings.CutPrefix(ls[n-1], prefix)
	if !ok {
		return "", fail(what, nil, "line %d must start with %q", n, prefix)
	}
	if len(c) > max {
		return "", fail(what, nil, "line %d: comment of %d bytes, at most %d", n, len(c), max)
	}
	return c, nil
}

// decodeLine decodes line n of ls: base64 of exactly size bytes.
func decodeLine(what string, ls []string, n, size int) ([]byte, error) {
	if len(ls) < n {
		return nil, fail(what, nil, "line %d is missing: want base64 of %d bytes", n, size)
	}
	b, err := b64.DecodeString(ls[n-1])
	if err != nil {
		return nil, fail(what, nil, "line %d is not base64: %v", n, err)
	}
	if len(b) != size {
		return nil, fail(what, nil, "line %d: wrong length: %d bytes, want %d", n, len(b), size)
	}
	return b, nil
}

// noMore refuses lines after the n a file has.
func noMore(what string, ls []string, n int) error {
	if len(ls) > n {
		return fail(what, nil, "unexpected line %d: a file holds one %s", n+1, what)
	}
	return nil
}

// checkComment refuses a comment minisign could not read back.
func checkComment(what, c string, max int) error {
	switch {
	case strings.ContainsAny(c, "\r\n"):
		return fail(what, nil, "a comment is one line: no line breaks")
	case len(c) > max:
		return fail(what, nil, "comment of %d bytes, at most %d", len(c), max)
	}
	return nil
}
