package sign

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/sign/minisign"
)

// Reason is why a statement is refused.
type Reason int

// The reasons, from the most to the least alarming where several apply to
// the signatures of one statement (Rollback and Expired are judged only
// once the signatures are accepted).
const (
	Revoked          Reason = iota + 1 // signed by a revoked key
	SignatureInvalid                   // a trusted key's signature is not over this statement
	UntrustedKey                       // signed by a key the policy doesn't trust (any more)
	Unsigned                           // no signature, or fewer trusted signers than the threshold
	Rollback                           // sequence below the highest installed, and no intended rollback
	Expired                            // past its expiry
)

var reasonNames = [...]string{
	Revoked: "Revoked", SignatureInvalid: "SignatureInvalid", UntrustedKey: "UntrustedKey",
	Unsigned: "Unsigned", Rollback: "Rollback", Expired: "Expired",
}

func (r Reason) String() string {
	if r <= 0 || int(r) >= len(reasonNames) {
		return fmt.Sprintf("Reason(%d)", int(r))
	}
	return reasonNames[r]
}

// Refusal is why a statement was refused. Errors of this package that
// refuse a statement are errs.PermissionDenied wrapping a *Refusal.
type Refusal struct {
	Reason Reason
	Detail string
}

func (r *Refusal) Error() string { return r.Reason.String() + ": " + r.Detail }

func refuse(subject string, reason Reason, format string, args ...any) error {
	return &errs.Error{Class: errs.PermissionDenied, Msg: subject + " refused",
		Err: &Refusal{Reason: reason, Detail: fmt.Sprintf(format, args...)}}
}

// ReasonOf is the Reason of the refusal in err's chain, or 0.
func ReasonOf(err error) Reason {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason
	}
	return 0
}

// Policy is what a machine trusts: its keys, how many of them must sign a
// version, and the keys it no longer trusts. Methods never change a
// Policy; Rotate and Revoke return a new one.
type Policy struct {
	Keys []minisign.PublicKey
	// Threshold is how many distinct keys of Keys must sign a version;
	// 0 means 1.
	Threshold int
	// Retired are the rotations applied: each Old replaced by its New.
	Retired []Rotation
	Revoked []minisign.PublicKey
}

// NewPolicy trusts keys, threshold of which (1 for 0) must sign a version.
func NewPolicy(threshold int, keys ...minisign.PublicKey) (Policy, error) {
	p := Policy{Keys: keys, Threshold: threshold}
	switch {
	case len(keys) == 0:
		return Policy{}, errs.New(errs.InvalidArgument, "keys", "a policy trusts at least one key")
	case threshold > len(keys):
		return Policy{}, errs.New(errs.InvalidArgument, "threshold", "threshold %d with %d keys: nothing could be accepted", threshold, len(keys))
	}
	return p, p.Validate()
}

// Validate checks that no key id or public key is trusted twice (a
// signature's key id is not signed: one key under two ids would count
// twice) and that no trusted key is retired or revoked.
func (p Policy) Validate() error {
	if p.Threshold < 0 {
		return errs.New(errs.InvalidArgument, "threshold", "threshold %d: must not be negative", p.Threshold)
	}
	for i, k := range p.Keys {
		field := fmt.Sprintf("keys[%d]", i)
		if _, err := minisign.ParsePublicKey(k.String()); err != nil {
			return errs.New(errs.InvalidArgument, field, "%s: %v", field, err)
		}
		for _, o := range p.Keys[:i] {
			if o.ID == k.ID || o.Key.Equal(k.Key) {
				return errs.New(errs.InvalidArgument, field, "%s: key %s is trusted twice", field, k.ID)
			}
		}
		if st, _, _ := (Policy{Retired: p.Retired, Revoked: p.Revoked}).lookup(k.ID); st != unknown {
			return errs.New(errs.InvalidArgument, field, "%s: key %s is trusted and %s", field, k.ID, st)
		}
	}
	return nil
}

type keyState int

const (
	unknown keyState = iota
	trusted
	retired
	revoked
)

func (s keyState) String() string {
	return [...]string{"unknown", "trusted", "retired", "revoked"}[s]
}

// lookup is what p knows of key id: its state, its public key, and for a
// retired key the key that replaced it.
func (p Policy) lookup(id minisign.KeyID) (keyState, minisign.PublicKey, minisign.KeyID) {
	if i := slices.IndexFunc(p.Revoked, func(k minisign.PublicKey) bool { return k.ID == id }); i >= 0 {
		return revoked, p.Revoked[i], minisign.KeyID{}
	}
	if i := slices.IndexFunc(p.Keys, func(k minisign.PublicKey) bool { return k.ID == id }); i >= 0 {
		return trusted, p.Keys[i], minisign.KeyID{}
	}
	if i := slices.IndexFunc(p.Retired, func(r Rotation) bool { return r.Old.ID == id }); i >= 0 {
		return retired, p.Retired[i].Old, p.Retired[i].New.ID
	}
	return unknown, minisign.PublicKey{}, minisign.KeyID{}
}

// Check decides whether a machine may act on version v: signed by
// Threshold trusted keys, not expired at now, and its sequence not below
// highest, the highest the machine installed for the application (0:
// none), unless v is an intended rollback. It returns nil or a refusal.
func (p Policy) Check(v *Version, sigs []minisign.Signature, highest uint64, now time.Time) error {
	subject := v.Subject()
	msg, err := v.Encode()
	if err != nil {
		return refuse(subject, SignatureInvalid, "no signature can be over an invalid statement: %v", err)
	}
	if err := p.signed(msg, subject, sigs, p.Keys, max(p.Threshold, 1)); err != nil {
		return err
	}
	switch {
	case !v.Expires.IsZero() && !now.Before(v.Expires):
		return refuse(subject, Expired, "expired at %s", v.Expires.UTC().Format(time.RFC3339))
	case v.Sequence < highest && !v.Rollback:
		return refuse(subject, Rollback, "sequence %d is below %d, the highest installed for the application, and the statement is no intended rollback", v.Sequence, highest)
	}
	return nil
}

// signed checks that at least need distinct keys of eligible signed msg,
// the statement named subject, among sigs. Refused, the reason is the most
// alarming among the signatures that don't count, Unsigned if none.
func (p Policy) signed(msg []byte, subject string, sigs []minisign.Signature, eligible []minisign.PublicKey, need int) error {
	if len(sigs) == 0 {
		return refuse(subject, Unsigned, "no signature")
	}
	good := map[string]bool{} // by public key: ids are not signed
	reason := Unsigned
	var problems []string
	problem := func(r Reason, format string, args ...any) {
		reason = min(reason, r)
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	for _, s := range sigs {
		st, _, next := p.lookup(s.KeyID)
		i := slices.IndexFunc(eligible, func(k minisign.PublicKey) bool { return k.ID == s.KeyID })
		switch {
		case st == revoked:
			problem(Revoked, "key %s is revoked", s.KeyID)
		case i >= 0:
			if err := verify(eligible[i], msg, subject, s); err != nil {
				problem(SignatureInvalid, "%v", err)
			} else {
				good[string(eligible[i].Key)] = true
			}
		case st == retired:
			problem(UntrustedKey, "key %s was replaced by key %s", s.KeyID, next)
		case st == trusted:
			problem(UntrustedKey, "key %s can't sign this statement", s.KeyID)
		default:
			problem(UntrustedKey, "key %s is not trusted", s.KeyID)
		}
	}
	if len(good) >= need {
		return nil
	}
	problems = append(problems, fmt.Sprintf("%d of the %d trusted signatures needed", len(good), need))
	return refuse(subject, reason, "%s", strings.Join(problems, "; "))
}

// Rotate applies rotation r, signed by r.Old, which must be trusted: r.New
// takes its place. Applying a rotation again changes nothing.
func (p Policy) Rotate(r *Rotation, sigs []minisign.Signature) (Policy, error) {
	subject := r.Subject()
	msg, err := r.Encode()
	if err != nil {
		return p, err
	}
	if slices.ContainsFunc(p.Retired, func(x Rotation) bool { return x.Old.Equal(r.Old) && x.New.Equal(r.New) }) {
		return p, nil
	}
	switch st, old, next := p.lookup(r.Old.ID); {
	case st == revoked:
		return p, refuse(subject, Revoked, "key %s is revoked", r.Old.ID)
	case st == retired:
		return p, refuse(subject, UntrustedKey, "key %s was already replaced by key %s", r.Old.ID, next)
	case st == unknown:
		return p, refuse(subject, UntrustedKey, "key %s is not trusted", r.Old.ID)
	case !old.Equal(r.Old):
		return p, refuse(subject, UntrustedKey, "key %s is trusted with another public key", r.Old.ID)
	}
	if st, _, _ := p.lookup(r.New.ID); st != unknown {
		return p, errs.New(errs.InvalidArgument, "new", "key %s is %s already", r.New.ID, st)
	}
	if err := p.signed(msg, subject, sigs, []minisign.PublicKey{r.Old}, 1); err != nil {
		return p, err
	}
	q := p.clone()
	q.Keys[slices.IndexFunc(q.Keys, func(k minisign.PublicKey) bool { return k.ID == r.Old.ID })] = r.New
	q.Retired = append(q.Retired, *r)
	return q, nil
}

// Revoke applies revocation r, signed by the revoked key itself or by
// Threshold trusted keys other than it. A key the policy doesn't know
// can be revoked (by itself), so that it can never be rotated in.
// Applying a revocation again changes nothing.
func (p Policy) Revoke(r *Revocation, sigs []minisign.Signature) (Policy, error) {
	subject := r.Subject()
	msg, err := r.Encode()
	if err != nil {
		return p, err
	}
	st, known, _ := p.lookup(r.Key.ID)
	switch {
	case st != unknown && !known.Equal(r.Key):
		return p, errs.New(errs.InvalidArgument, "key", "the policy knows key %s with another public key", r.Key.ID)
	case st == revoked:
		return p, nil
	}
	if err := p.signed(msg, subject, sigs, []minisign.PublicKey{r.Key}, 1); err != nil {
		others := slices.DeleteFunc(slices.Clone(p.Keys), func(k minisign.PublicKey) bool { return k.ID == r.Key.ID })
		errOthers := p.signed(msg, subject, sigs, others, max(p.Threshold, 1))
		if errOthers != nil {
			if slices.ContainsFunc(sigs, func(s minisign.Signature) bool { return s.KeyID == r.Key.ID }) {
				return p, err
			}
			return p, errOthers
		}
	}
	q := p.clone()
	q.Keys = slices.DeleteFunc(q.Keys, func(k minisign.PublicKey) bool { return k.ID == r.Key.ID })
	q.Revoked = append(q.Revoked, r.Key)
	return q, nil
}

func (p Policy) clone() Policy {
	p.Keys = slices.Clone(p.Keys)
	p.Retired = slices.Clone(p.Retired)
	p.Revoked = slices.Clone(p.Revoked)
	return p
}
