package minisign

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"io"
	"unicode/utf8"

	"golang.org/x/crypto/blake2b"
)

// Signature is a parsed signature file.
type Signature struct {
	UntrustedComment string
	// Prehashed: the signature is over the BLAKE2b-512 of the message
	// ("ED"); else over the message itself ("Ed", the legacy form).
	Prehashed       bool
	KeyID           KeyID
	Signature       []byte
	TrustedComment  string
	GlobalSignature []byte
}

const sigSize = 2 + 8 + ed25519.SignatureSize

// maxLegacyMessage is the largest message a legacy signature is checked
// over, as in minisign: such a message is held in memory whole.
const maxLegacyMessage = 1 << 30

// DecodeSignature parses a signature file.
func DecodeSignature(data []byte) (Signature, error) {
	const what = "signature"
	ls, err := lines(what, data)
	if err != nil {
		return Signature{}, err
	}
	var s Signature
	if s.UntrustedComment, err = comment(what, ls, 1, commentPrefix, maxComment); err != nil {
		return Signature{}, err
	}
	b, err := decodeLine(what, ls, 2, sigSize)
	if err != nil {
		return Signature{}, err
	}
	switch [2]byte(b[:2]) {
	case algPrehash:
		s.Prehashed = true
	case algEd:
	default:
		return Signature{}, fail(what, nil, "unknown signature algorithm %q, want %q or %q", b[:2], algPrehash[:], algEd[:])
	}
	s.KeyID, s.Signature = KeyID(b[2:10]), b[10:]
	if s.TrustedComment, err = comment(what, ls, 3, trustedCommentPrefix, maxTrustedComment); err != nil {
		return Signature{}, err
	}
	if err := checkTrustedComment(s.TrustedComment); err != nil {
		return Signature{}, err
	}
	if s.GlobalSignature, err = decodeLine(what, ls, 4, ed25519.SignatureSize); err != nil {
		return Signature{}, err
	}
	return s, noMore(what, ls, 4)
}

// ReadSignatureFile reads a signature file; errors name the file.
func ReadSignatureFile(path string) (Signature, error) {
	data, err := readFile(path)
	if err != nil {
		return Signature{}, err
	}
	s, err := DecodeSignature(data)
	if err != nil {
		return Signature{}, inFile(path, err)
	}
	return s, nil
}

// checkTrustedComment refuses what minisign -V refuses: control
// characters other than tab, and bytes that are not UTF-8.
func checkTrustedComment(c string) error {
	if !utf8.ValidString(c) {
		return fail("signature", nil, "the trusted comment is not UTF-8")
	}
	for _, r := range c {
		if r != '\t' && (r < 0x20 || r == 0x7f) {
			return fail("signature", nil, "the trusted comment holds control character %U", r)
		}
	}
	return nil
}

// Encode is the signature file.
func (s Signature) Encode() []byte {
	alg := algEd
	if s.Prehashed {
		alg = algPrehash
	}
	b := make([]byte, 0, sigSize)
	b = append(append(append(b, alg[:]...), s.KeyID[:]...), s.Signature...)
	return fmt.Appendf(nil, "%s%s\n%s\n%s%s\n%s\n", commentPrefix, s.UntrustedComment, b64.EncodeToString(b),
		trustedCommentPrefix, s.TrustedComment, b64.EncodeToString(s.GlobalSignature))
}

// Sign signs the message read from r, prehashed ("ED", minisign's
// default), with the two comments.
func Sign(k PrivateKey, r io.Reader, trustedComment, untrustedComment string) (Signature, error) {
	if err := checkComment("untrusted comment", untrustedComment, maxComment); err != nil {
		return Signature{}, err
	}
	if err := checkComment("trusted comment", trustedComment, maxTrustedComment); err != nil {
		return Signature{}, err
	}
	if err := checkTrustedComment(trustedComment); err != nil {
		return Signature{}, err
	}
	digest, err := prehash(r)
	if err != nil {
		return Signature{}, err
	}
	s := Signature{
		UntrustedComment: untrustedComment,
		Prehashed:        true,
		KeyID:            k.ID,
		Signature:        ed25519.Sign(k.Key, digest),
		TrustedComment:   trustedComment,
	}
	s.GlobalSignature = ed25519.Sign(k.Key, s.global())
	return s, nil
}

// global is what the global signature signs: the signature, then the
// trusted comment.
func (s Signature) global() []byte {
	return append(bytes.Clone(s.Signature), s.TrustedComment...)
}

func prehash(r io.Reader) ([]byte, error) {
	h, _ := blake2b.New512(nil)
	if _, err := io.Copy(h, r); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// Verify checks s over the message read from r with k, and its trusted
// comment, as minisign -V does.
func (k PublicKey) Verify(r io.Reader, s Signature) error {
	if len(k.Key) != ed25519.PublicKeySize {
		return fail("public key", nil, "wrong length: %d bytes, want %d", len(k.Key), ed25519.PublicKeySize)
	}
	if s.KeyID != k.ID {
		return fail("signature", ErrKeyIDMismatch, "signed by key %s, the public key is %s", s.KeyID, k.ID)
	}
	var msg []byte
	var err error
	if s.Prehashed {
		msg, err = prehash(r)
	} else {
		msg, err = io.ReadAll(io.LimitReader(r, maxLegacyMessage+1))
		if err == nil && len(msg) > maxLegacyMessage {
			return fail("signature", nil, "a legacy (not prehashed) signature covers at most %d bytes", maxLegacyMessage)
		}
	}
	if err != nil {
		return err
	}
	if !ed25519.Verify(k.Key, msg, s.Signature) {
		return fail("signature", ErrBadSignature, "key %s did not sign this message", k.ID)
	}
	return k.VerifyTrustedComment(s)
}

// VerifyTrustedComment checks only that k signed s's trusted comment (and
// s's signature, whatever message that signs): it tells a signature over
// another message, whose comment still verifies, from a damaged one.
func (k PublicKey) VerifyTrustedComment(s Signature) error {
	if s.KeyID != k.ID || len(k.Key) != ed25519.PublicKeySize || !ed25519.Verify(k.Key, s.global(), s.GlobalSignature) {
		return fail("signature", ErrBadTrustedComment, "key %s did not sign the trusted comment %q", k.ID, s.TrustedComment)
	}
	return nil
}
