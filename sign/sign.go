package sign

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vmapp/vmapp/sign/minisign"
)

const subjectTag = "statement:"

// Sign signs the statement with k at now (the trusted comment's
// timestamp).
func Sign(k minisign.PrivateKey, st Statement, now time.Time) (minisign.Signature, error) {
	msg, err := st.Encode()
	if err != nil {
		return minisign.Signature{}, err
	}
	comment := fmt.Sprintf("timestamp:%d\t%s%s", now.Unix(), subjectTag, st.Subject())
	return minisign.Sign(k, bytes.NewReader(msg), comment, "vmapp signature by key "+k.ID.String())
}

// subjectOf is the subject a trusted comment names, or "".
func subjectOf(trustedComment string) string {
	for f := range strings.SplitSeq(trustedComment, "\t") {
		if s, ok := strings.CutPrefix(f, subjectTag); ok {
			return s
		}
	}
	return ""
}

// verify checks that k signed msg, the statement named subject, with s.
// A signature over another message whose trusted comment k did sign, and
// names a subject, is told apart: over another statement, or over this
// one with other contents.
func verify(k minisign.PublicKey, msg []byte, subject string, s minisign.Signature) error {
	err := k.Verify(bytes.NewReader(msg), s)
	if !errors.Is(err, minisign.ErrBadSignature) || k.VerifyTrustedComment(s) != nil {
		return err
	}
	switch other := subjectOf(s.TrustedComment); {
	case other == "":
		return err
	case other != subject:
		return fmt.Errorf("key %s signed another statement: %s", k.ID, other)
	default:
		return fmt.Errorf("key %s signed %s with other contents: the statement changed since", k.ID, subject)
	}
}
