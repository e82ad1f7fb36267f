// Package auth keeps vmappd's credentials and gallery shares (in the
// state) and decides what a caller may do.
//
// A credential is "<id>.<secret>": the id names a record, the secret is 32
// random bytes of which only the sha256 is stored, compared in constant
// time. Tokens carry one role (Reader, Contributor, Owner) on a tenant or
// on one gallery of it; machine tokens are bound to one machine. The
// operator's bootstrap token is Owner of every tenant ("*").
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/atomicfile"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// AllTenants is the tenant of the operator's tokens, and the grantee of a
// public share.
const AllTenants = pb.AllTenants

// MaxTokenNameLen bounds a token's name.
const MaxTokenNameLen = 256

// MaxTokenTTLSeconds bounds a token's lifetime: 10 years.
const MaxTokenTTLSeconds = 10 * 365 * 24 * 3600

var (
	tokenID = regexp.MustCompile(`^tok_[a-z2-7]{20}$`)
	b32     = base32.StdEncoding.WithPadding(base32.NoPadding)
)

// Service is the credential and share store.
type Service struct {
	db  *state.DB
	now func() time.Time
	log *slog.Logger
	// known caches the stored credentials by id, so that a call costs a
	// map lookup and a sha256, not a read transaction. Every command that
	// changes credentials clears it, on whichever node it was proposed.
	known sync.Map // id -> *statepb.Credential, never modified once stored
}

// Options are what New needs.
type Options struct {
	Now    func() time.Time // default time.Now
	Logger *slog.Logger
}

// New returns the credential store on db.
func New(db *state.DB, o Options) *Service {
	s := &Service{db: db, now: o.Now, log: o.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	db.Watch(func(c *statepb.Command) {
		switch c.GetOp().(type) {
		case *statepb.Command_IssueToken, *statepb.Command_RevokeToken, *statepb.Command_CreateMachine,
			*statepb.Command_DeleteMachine, *statepb.Command_DeleteScaleSet, nil:
			s.known.Clear()
		}
	})
	return s
}

// Bootstrap creates the operator's token, Owner of every tenant, when no
// token exists yet, and writes its credential to path (mode 0600). It
// reports whether it created one.
//
// The credential goes to path+".pending" first and is renamed to path once
// the token is applied: path never holds a token that doesn't work yet, and
// a crash in between leaves the pending file, which the next start
// finishes (or removes, when its token never made it).
func (s *Service) Bootstrap(ctx context.Context, path string) (bool, error) {
	pending := path + ".pending"
	var exists bool
	if err := s.db.View(ctx, func(tx *state.Tx) error { exists = tx.AnyToken(); return nil }); err != nil {
		return false, err
	}
	if exists {
		return false, s.finishPending(pending, path)
	}
	t := &pb.Token{Name: "bootstrap operator", Tenant: AllTenants, Role: pb.Role_ROLE_OWNER}
	cred, secret := NewCredential(t, s.now())
	if err := atomicfile.Write(pending, []byte(secret+"\n"), 0o600); err != nil {
		return false, fmt.Errorf("write the bootstrap token: %w", err)
	}
	err := s.propose(ctx, &statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: cred, OnlyIfNone: true}})
	if err != nil {
		// Without the token the file is no use (another node's bootstrap
		// won, or the state refused it): the next start tries again.
		os.Remove(pending)
		if errs.Is(err, errs.AlreadyExists) {
			return false, nil
		}
		return false, err
	}
	if err := os.Rename(pending, path); err != nil {
		return false, fmt.Errorf("write the bootstrap token: %w", err)
	}
	s.log.Info("created the bootstrap operator token", "token", t.Id, "file", path)
	return true, nil
}

// finishPending renames a bootstrap token left pending by a crash to path
// when its token works, and removes it when not.
func (s *Service) finishPending(pending, path string) error {
	b, err := os.ReadFile(pending)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := s.Authenticate(strings.TrimSpace(string(b))); err != nil {
		return os.Remove(pending)
	}
	s.log.Info("the bootstrap operator token of an interrupted start is written now", "file", path)
	return os.Rename(pending, path)
}

// IssueOperatorToken issues another token that is Owner of every tenant,
// as the bootstrap token is: for `vmappd operator-token`, when the
// operator's tokens are lost.
func (s *Service) IssueOperatorToken(ctx context.Context, name string) (*pb.Token, string, error) {
	if err := CheckTokenName(name); err != nil {
		return nil, "", err
	}
	t := &pb.Token{Name: name, Tenant: AllTenants, Role: pb.Role_ROLE_OWNER}
	secret, err := s.issue(ctx, t)
	if err == nil {
		s.log.Info("created an operator token", "token", t.Id, "name", name)
	}
	return t, secret, err
}

// CheckTokenName: a token's name is required, on one line, of at most
// MaxTokenNameLen bytes.
func CheckTokenName(name string) error {
	if name == "" || len(name) > MaxTokenNameLen || strings.ContainsAny(name, "\x00\n\r") {
		return errs.New(errs.InvalidArgument, "name", "name is required: up to %d characters on one line", MaxTokenNameLen)
	}
	return nil
}

func (s *Service) propose(ctx context.Context, op *statepb.Command_IssueToken) error {
	c := state.NewCommand(s.now())
	c.Op = op
	return s.db.Propose(ctx, c)
}

// issue stores t with a new id and secret and returns the credential.
func (s *Service) issue(ctx context.Context, t *pb.Token) (string, error) {
	cred, secret := NewCredential(t, s.now())
	return secret, s.propose(ctx, &statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: cred}})
}

// NewCredential gives t a new id and creation time and returns what the
// state keeps of it (the sha256 of the secret, never the secret) and the
// credential to hand out, "<id>.<secret>".
func NewCredential(t *pb.Token, now time.Time) (*statepb.Credential, string) {
	id, secret := make([]byte, 12), make([]byte, 32)
	rand.Read(id) // crypto/rand never fails
	rand.Read(secret)
	t.Id = "tok_" + strings.ToLower(b32.EncodeToString(id))
	t.CreateTime = timestamppb.New(now)
	enc := base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(enc))
	return &statepb.Credential{Token: proto.Clone(t).(*pb.Token), SecretSha256: sum[:]}, t.Id + "." + enc
}

// MachineCredential returns a new agent credential bound to the machine.
func MachineCredential(by *pb.Token, tenant, machine string, now time.Time) (*statepb.Credential, string) {
	t := &pb.Token{Name: "agent of " + machine, Tenant: tenant, Role: pb.Role_ROLE_MACHINE, Machine: machine}
	if by != nil {
		t.CreatedBy = by.Id
	}
	return NewCredential(t, now)
}

// Authenticate returns the token of a credential, or Unauthenticated.
func (s *Service) Authenticate(credential string) (*pb.Token, error) {
	id, secret, ok := strings.Cut(credential, ".")
	if !ok || !tokenID.MatchString(id) || secret == "" {
		return nil, errs.New(errs.Unauthenticated, "authorization", "the credential is malformed: want \"Bearer tok_<id>.<secret>\" as vmapp token create printed it")
	}
	c, found, err := s.lookup(id)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(secret))
	if !found || subtle.ConstantTimeCompare(sum[:], c.SecretSha256) != 1 {
		return nil, errs.New(errs.Unauthenticated, "authorization", "token %s is not known, or its secret is wrong", id)
	}
	t := c.Token
	if t.RevokeTime != nil {
		return nil, errs.New(errs.Unauthenticated, "authorization", "token %s (%s) was revoked at %s", id, t.Name, t.RevokeTime.AsTime().UTC().Format(time.RFC3339))
	}
	if t.ExpireTime != nil && !s.now().Before(t.ExpireTime.AsTime()) {
		return nil, errs.New(errs.Unauthenticated, "authorization", "token %s (%s) expired at %s", id, t.Name, t.ExpireTime.AsTime().UTC().Format(time.RFC3339))
	}
	return t, nil
}

// lookup returns credential id, from the cache or the state. An id this
// node doesn't know may have been issued an instant ago through another
// node of a cluster: it waits for every change committed so far, and looks
// again.
func (s *Service) lookup(id string) (*statepb.Credential, bool, error) {
	if c, ok := s.known.Load(id); ok {
		return c.(*statepb.Credential), true, nil
	}
	c, found, err := s.read(id)
	if err == nil && !found {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if s.db.Sync(ctx) == nil {
			c, found, err = s.read(id)
		}
	}
	if err != nil || !found {
		return nil, false, err
	}
	s.known.Store(id, c)
	return c, true, nil
}

func (s *Service) read(id string) (c *statepb.Credential, found bool, err error) {
	err = s.db.View(context.Background(), func(tx *state.Tx) (err error) {
		c, found, err = state.Tokens.Get(tx, state.TokenKey(id))
		return err
	})
	return c, found, err
}

// CreateToken issues a token in tenant on behalf of by, an Owner of the
// tenant or of the token's gallery (the caller checks which).
func (s *Service) CreateToken(ctx context.Context, by *pb.Token, tenant string, r *pb.CreateTokenRequest) (*pb.Token, string, error) {
	nameErr := CheckTokenName(r.Name)
	switch {
	case nameErr != nil:
		return nil, "", nameErr
	case r.Role != pb.Role_ROLE_READER && r.Role != pb.Role_ROLE_CONTRIBUTOR && r.Role != pb.Role_ROLE_OWNER:
		return nil, "", errs.New(errs.InvalidArgument, "role", "role %s is not one of Reader, Contributor, Owner", r.Role)
	case r.TtlSeconds < 0 || r.TtlSeconds > MaxTokenTTLSeconds:
		return nil, "", errs.New(errs.InvalidArgument, "ttlSeconds", "ttlSeconds %d: want 0 (until revoked) up to %d (10 years)", r.TtlSeconds, MaxTokenTTLSeconds)
	case tenant == AllTenants:
		return nil, "", errs.New(errs.InvalidArgument, "tenant", "name the tenant the token works in")
	}
	t := &pb.Token{Name: r.Name, Tenant: tenant, Role: r.Role, Gallery: r.Gallery, CreatedBy: by.Id}
	if r.TtlSeconds > 0 {
		t.ExpireTime = timestamppb.New(s.now().Add(time.Duration(r.TtlSeconds) * time.Second))
	}
	secret, err := s.issue(ctx, t)
	if err != nil {
		return nil, "", err
	}
	s.log.Info("token created", "token", t.Id, "name", t.Name, "tenant", tenant, "role", t.Role.Label(), "gallery", t.Gallery, "by", by.Id)
	return t, secret, nil
}

// IssueMachineToken revokes the machine's earlier token and issues one
// bound to it.
func (s *Service) IssueMachineToken(ctx context.Context, by *pb.Token, tenant, machine string) (string, error) {
	cred, secret := MachineCredential(by, tenant, machine, s.now())
	return secret, s.propose(ctx, &statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: cred}})
}

// ListTokens lists one page of the tenant's tokens, then of the
// operator's when by is one: API tokens, then (with all) machine tokens,
// each in id order. Revoked and expired tokens are left out unless all.
func (s *Service) ListTokens(ctx context.Context, by *pb.Token, tenant string, all bool, size int32, token string) ([]*pb.Token, string, error) {
	n, err := state.PageSize(size)
	if err != nil {
		return nil, "", err
	}
	tenants := []string{tenant}
	if by.GetTenant() == AllTenants && tenant != AllTenants {
		tenants = append(tenants, AllTenants)
	}
	var prefixes [][]byte
	for _, t := range tenants {
		if all {
			prefixes = append(prefixes, state.Prefix(t))
		} else {
			prefixes = append(prefixes, state.Prefix(t, state.TokenClassAPI))
		}
	}
	now := s.now()
	keep := func(c *statepb.Credential) bool {
		t := c.Token
		return all || t.RevokeTime == nil && (t.ExpireTime == nil || now.Before(t.ExpireTime.AsTime()))
	}
	if err := s.db.Sync(ctx); err != nil {
		return nil, "", err
	}
	var creds []*statepb.Credential
	var next string
	err = s.db.View(ctx, func(tx *state.Tx) (err error) {
		creds, next, err = state.PageOver(tx, state.TokensByTenant, prefixes, token, n, keep)
		return err
	})
	out := make([]*pb.Token, len(creds))
	for i, c := range creds {
		out[i] = c.Token
	}
	return out, next, err
}

// RevokeToken revokes token id of the tenant (of any tenant when by is the
// operator's).
func (s *Service) RevokeToken(ctx context.Context, by *pb.Token, tenant, id string) (*pb.Token, error) {
	if !tokenID.MatchString(id) {
		return nil, errs.New(errs.InvalidArgument, "id", "'%s' is not a token id (tok_ and 20 letters and digits)", id)
	}
	notFound := errs.New(errs.NotFound, "id", "Token '%s' doesn't exist in tenant '%s'.", id, tenant)
	c, found, err := s.lookup(id)
	switch {
	case err != nil:
		return nil, err
	case !found || c.Token.Tenant != tenant && by.Tenant != AllTenants:
		return nil, notFound
	}
	cmd := state.NewCommand(s.now())
	cmd.Op = &statepb.Command_RevokeToken{RevokeToken: &statepb.RevokeToken{Id: id}}
	if err := s.db.Propose(ctx, cmd); err != nil {
		return nil, err
	}
	s.log.Info("token revoked", "token", id, "by", by.Id)
	if c, _, err = s.lookup(id); err != nil {
		return nil, err
	}
	return c.Token, nil
}

// Share shares the tenant's gallery with grantee (a tenant, or AllTenants).
func (s *Service) Share(ctx context.Context, by *pb.Token, tenant, gallery, grantee string) (*pb.Share, error) {
	if grantee == tenant {
		return nil, errs.New(errs.InvalidArgument, "grantee", "gallery '%s' belongs to tenant '%s' already", gallery, tenant)
	}
	sh := &pb.Share{Gallery: gallery, Grantee: grantee, CreateTime: timestamppb.New(s.now()), CreatedBy: by.Id}
	c := state.NewCommand(s.now())
	c.Op = &statepb.Command_PutShare{PutShare: &statepb.PutShare{Tenant: tenant, Share: sh}}
	if err := s.db.Propose(ctx, c); err != nil {
		return nil, err
	}
	s.log.Info("gallery shared", "tenant", tenant, "gallery", gallery, "grantee", grantee, "by", by.Id)
	// An existing share is kept, with who made it and when.
	err := s.db.View(ctx, func(tx *state.Tx) error {
		if got, ok, err := state.Shares.Get(tx, state.ShareKey(tenant, gallery, grantee)); ok {
			sh = got
		} else {
			return err
		}
		return nil
	})
	return sh, err
}

// Unshare takes a share back.
func (s *Service) Unshare(ctx context.Context, by *pb.Token, tenant, gallery, grantee string) error {
	c := state.NewCommand(s.now())
	c.Op = &statepb.Command_DeleteShare{DeleteShare: &statepb.DeleteShare{Tenant: tenant, Gallery: gallery, Grantee: grantee}}
	err := s.db.Propose(ctx, c)
	if err == nil {
		s.log.Info("gallery unshared", "tenant", tenant, "gallery", gallery, "grantee", grantee, "by", by.Id)
	}
	return err
}

// Shares lists the tenant's shares, of one gallery when gallery is set.
func (s *Service) Shares(ctx context.Context, tenant, gallery string) ([]*pb.Share, error) {
	p := state.Prefix(tenant)
	if gallery != "" {
		p = state.Prefix(tenant, gallery)
	}
	var out []*pb.Share
	if err := s.db.Sync(ctx); err != nil {
		return nil, err
	}
	err := s.db.View(ctx, func(tx *state.Tx) (err error) {
		out, err = state.Shares.All(tx, p)
		return err
	})
	return out, err
}

// Shared reports whether the tenant's gallery is shared with tenant with,
// or public. A share this node doesn't know may have been made an instant
// ago through another node of a cluster: it waits for every change
// committed so far, and looks again.
func (s *Service) Shared(tenant, gallery, with string) (bool, error) {
	shared := func() (ok bool, err error) {
		err = s.db.View(context.Background(), func(tx *state.Tx) error {
			ok = tx.Shared(tenant, gallery, with)
			return nil
		})
		return ok, err
	}
	ok, err := shared()
	if err == nil && !ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if s.db.Sync(ctx) == nil {
			ok, err = shared()
		}
	}
	return ok, err
}

// ctxKey carries the caller's token.
type ctxKey struct{}

// WithToken returns ctx carrying the caller's token.
func WithToken(ctx context.Context, t *pb.Token) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// TokenOf returns the caller's token, nil when vmappd runs without
// authentication.
func TokenOf(ctx context.Context) *pb.Token {
	t, _ := ctx.Value(ctxKey{}).(*pb.Token)
	return t
}
