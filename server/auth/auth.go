// Package auth keeps vmappd's credentials and gallery shares in the bbolt
// file and decides what a caller may do.
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
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/atomicfile"
	"github.com/vmapp/vmapp/internal/boltpb"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

var (
	bucketTokens   = []byte("auth_tokens")   // id → statepb.Credential
	bucketMachines = []byte("auth_machines") // tenant \0 machine → id of its live agent token
	bucketShares   = []byte("auth_shares")   // tenant \0 gallery \0 grantee → pb.Share
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
	db  *bolt.DB
	now func() time.Time
	log *slog.Logger
	// known caches the stored credentials by id, so that a call costs a
	// map lookup and a sha256, not a read transaction. Every change of a
	// credential goes through this Service, in the one process that has
	// the bbolt file open, and refreshes its entry after it commits.
	known sync.Map // id -> *statepb.Credential, never modified once stored
}

// Options are what New needs.
type Options struct {
	DB     *bolt.DB
	Now    func() time.Time // default time.Now
	Logger *slog.Logger
}

// New creates the buckets if needed.
func New(o Options) (*Service, error) {
	s := &Service{db: o.DB, now: o.Now, log: o.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTokens, bucketMachines, bucketShares} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	return s, err
}

// Bootstrap creates the operator's token, Owner of every tenant, when no
// token exists yet, and writes its credential to path (mode 0600, written
// to a temporary file and renamed). It reports whether it created one.
func (s *Service) Bootstrap(path string) (bool, error) {
	var empty bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketTokens).Cursor().First()
		empty = k == nil
		return nil
	}); err != nil || !empty {
		return false, err
	}
	t, secret, err := s.IssueOperatorToken("bootstrap operator")
	if err != nil {
		return false, err
	}
	if err := atomicfile.Write(path, []byte(secret+"\n"), 0o600); err != nil {
		// Without the file nobody can use the token: take it back, so the
		// next start tries again.
		s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTokens).Delete([]byte(t.Id)) })
		s.known.Delete(t.Id)
		return false, fmt.Errorf("write the bootstrap token: %w", err)
	}
	s.log.Info("created the bootstrap operator token", "token", t.Id, "file", path)
	return true, nil
}

// IssueOperatorToken issues another token that is Owner of every tenant,
// as the bootstrap token is: for `vmappd operator-token`, when the
// operator's tokens are lost.
func (s *Service) IssueOperatorToken(name string) (*pb.Token, string, error) {
	if err := checkTokenName(name); err != nil {
		return nil, "", err
	}
	t := &pb.Token{Name: name, Tenant: AllTenants, Role: pb.Role_ROLE_OWNER}
	secret, err := s.issue(t)
	if err == nil {
		s.log.Info("created an operator token", "token", t.Id, "name", name)
	}
	return t, secret, err
}

// checkTokenName: a token's name is required, on one line, of at most
// MaxTokenNameLen bytes.
func checkTokenName(name string) error {
	if name == "" || len(name) > MaxTokenNameLen || strings.ContainsAny(name, "\x00\n\r") {
		return errs.New(errs.InvalidArgument, "name", "name is required: up to %d characters on one line", MaxTokenNameLen)
	}
	return nil
}

// issue stores t with a new id and secret and returns the credential.
func (s *Service) issue(t *pb.Token) (string, error) {
	var secret string
	err := s.db.Update(func(tx *bolt.Tx) (err error) {
		secret, err = s.put(tx, t)
		return err
	})
	return secret, err
}

// put gives t a new id and secret, stores it in tx and returns the
// credential; the cache learns it when tx commits.
func (s *Service) put(tx *bolt.Tx, t *pb.Token) (string, error) {
	id, secret := make([]byte, 12), make([]byte, 32)
	rand.Read(id) // crypto/rand never fails
	rand.Read(secret)
	t.Id = "tok_" + strings.ToLower(b32.EncodeToString(id))
	t.CreateTime = timestamppb.New(s.now())
	enc := base64.RawURLEncoding.EncodeToString(secret)
	sum := sha256.Sum256([]byte(enc))
	c := &statepb.Credential{Token: proto.Clone(t).(*pb.Token), SecretSha256: sum[:]}
	if err := boltpb.Put(tx.Bucket(bucketTokens), []byte(t.Id), c); err != nil {
		return "", err
	}
	tx.OnCommit(func() { s.known.Store(t.Id, c) })
	return t.Id + "." + enc, nil
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

// lookup returns credential id, from the cache or the file.
func (s *Service) lookup(id string) (*statepb.Credential, bool, error) {
	if c, ok := s.known.Load(id); ok {
		return c.(*statepb.Credential), true, nil
	}
	c := &statepb.Credential{}
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		found, err = boltpb.Get(tx.Bucket(bucketTokens), []byte(id), c)
		return err
	})
	if err != nil || !found {
		return nil, false, err
	}
	s.known.Store(id, c)
	return c, true, nil
}

// CreateToken issues a token in tenant on behalf of by, an Owner of the
// tenant or of the token's gallery (the caller checks which).
func (s *Service) CreateToken(by *pb.Token, tenant string, r *pb.CreateTokenRequest) (*pb.Token, string, error) {
	nameErr := checkTokenName(r.Name)
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
	secret, err := s.issue(t)
	if err != nil {
		return nil, "", err
	}
	s.log.Info("token created", "token", t.Id, "name", t.Name, "tenant", tenant, "role", t.Role.Label(), "gallery", t.Gallery, "by", by.Id)
	return t, secret, nil
}

// IssueMachineToken revokes the machine's earlier token and issues one
// bound to it.
func (s *Service) IssueMachineToken(by *pb.Token, tenant, machine string) (string, error) {
	t := &pb.Token{Name: "agent of " + machine, Tenant: tenant, Role: pb.Role_ROLE_MACHINE, Machine: machine}
	if by != nil {
		t.CreatedBy = by.Id
	}
	var secret string
	err := s.db.Update(func(tx *bolt.Tx) (err error) {
		if err = s.revokeMachine(tx, tenant, machine); err != nil {
			return err
		}
		if secret, err = s.put(tx, t); err != nil {
			return err
		}
		return tx.Bucket(bucketMachines).Put(machineKey(tenant, machine), []byte(t.Id))
	})
	return secret, err
}

// RevokeMachine revokes the token bound to the machine, if any.
func (s *Service) RevokeMachine(tenant, machine string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return s.revokeMachine(tx, tenant, machine) })
}

func machineKey(tenant, machine string) []byte { return []byte(tenant + "\x00" + machine) }

// revokeMachine revokes, in tx, the token the machine index names.
func (s *Service) revokeMachine(tx *bolt.Tx, tenant, machine string) error {
	idx := tx.Bucket(bucketMachines)
	id := string(idx.Get(machineKey(tenant, machine))) // a copy: the bucket changes below
	if id == "" {
		return nil
	}
	c := &statepb.Credential{}
	if ok, err := boltpb.Get(tx.Bucket(bucketTokens), []byte(id), c); err != nil {
		return err
	} else if ok {
		if err := s.revoke(tx, id, c); err != nil {
			return err
		}
	}
	return idx.Delete(machineKey(tenant, machine))
}

// revoke marks credential c (token id) revoked in tx, unless it is already.
func (s *Service) revoke(tx *bolt.Tx, id string, c *statepb.Credential) error {
	if c.Token.RevokeTime != nil {
		return nil
	}
	c.Token.RevokeTime = timestamppb.New(s.now())
	tx.OnCommit(func() { s.known.Store(id, c) })
	return boltpb.Put(tx.Bucket(bucketTokens), []byte(id), c)
}

// ListTokens lists the tenant's tokens, and the operator's when by is one.
// Machine, revoked and expired tokens are left out unless all.
func (s *Service) ListTokens(by *pb.Token, tenant string, all bool) ([]*pb.Token, error) {
	var out []*pb.Token
	now := s.now()
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			c := &statepb.Credential{}
			if err := proto.Unmarshal(v, c); err != nil {
				return fmt.Errorf("decode token %q: %w", k, err)
			}
			t := c.Token
			dead := t.RevokeTime != nil || t.ExpireTime != nil && !now.Before(t.ExpireTime.AsTime())
			mine := t.Tenant == tenant || t.Tenant == AllTenants && by.GetTenant() == AllTenants
			if mine && (all || !dead && t.Role != pb.Role_ROLE_MACHINE) {
				out = append(out, t)
			}
			return nil
		})
	})
	return out, err
}

// RevokeToken revokes token id of the tenant (of any tenant when by is the
// operator's).
func (s *Service) RevokeToken(by *pb.Token, tenant, id string) (*pb.Token, error) {
	if !tokenID.MatchString(id) {
		return nil, errs.New(errs.InvalidArgument, "id", "'%s' is not a token id (tok_ and 20 letters and digits)", id)
	}
	var out *pb.Token
	err := s.db.Update(func(tx *bolt.Tx) error {
		c := &statepb.Credential{}
		ok, err := boltpb.Get(tx.Bucket(bucketTokens), []byte(id), c)
		switch {
		case err != nil:
			return err
		case !ok || c.Token.Tenant != tenant && by.Tenant != AllTenants:
			return errs.New(errs.NotFound, "id", "Token '%s' doesn't exist in tenant '%s'.", id, tenant)
		}
		out = c.Token
		return s.revoke(tx, id, c)
	})
	if err == nil {
		s.log.Info("token revoked", "token", id, "by", by.Id)
	}
	return out, err
}

func shareKey(tenant, gallery, grantee string) []byte {
	return []byte(tenant + "\x00" + gallery + "\x00" + grantee)
}

// Share shares the tenant's gallery with grantee (a tenant, or AllTenants).
func (s *Service) Share(by *pb.Token, tenant, gallery, grantee string) (*pb.Share, error) {
	if grantee == tenant {
		return nil, errs.New(errs.InvalidArgument, "grantee", "gallery '%s' belongs to tenant '%s' already", gallery, tenant)
	}
	sh := &pb.Share{Gallery: gallery, Grantee: grantee, CreateTime: timestamppb.New(s.now()), CreatedBy: by.Id}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketShares)
		old := &pb.Share{}
		if ok, err := boltpb.Get(b, shareKey(tenant, gallery, grantee), old); err != nil || ok {
			sh = old // already shared: keep who and when
			return err
		}
		return boltpb.Put(b, shareKey(tenant, gallery, grantee), sh)
	})
	if err == nil {
		s.log.Info("gallery shared", "tenant", tenant, "gallery", gallery, "grantee", grantee, "by", by.Id)
	}
	return sh, err
}

// Unshare takes a share back.
func (s *Service) Unshare(by *pb.Token, tenant, gallery, grantee string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketShares)
		if b.Get(shareKey(tenant, gallery, grantee)) == nil {
			return errs.New(errs.NotFound, "grantee", "Gallery '%s' is not shared with '%s'.", gallery, grantee)
		}
		return b.Delete(shareKey(tenant, gallery, grantee))
	})
	if err == nil {
		s.log.Info("gallery unshared", "tenant", tenant, "gallery", gallery, "grantee", grantee, "by", by.Id)
	}
	return err
}

// Shares lists the tenant's shares, of one gallery when gallery is set.
func (s *Service) Shares(tenant, gallery string) ([]*pb.Share, error) {
	var out []*pb.Share
	p := []byte(tenant + "\x00")
	if gallery != "" {
		p = []byte(tenant + "\x00" + gallery + "\x00")
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketShares).Cursor()
		for k, v := c.Seek(p); k != nil && strings.HasPrefix(string(k), string(p)); k, v = c.Next() {
			sh := &pb.Share{}
			if err := proto.Unmarshal(v, sh); err != nil {
				return fmt.Errorf("decode share %q: %w", k, err)
			}
			out = append(out, sh)
		}
		return nil
	})
	return out, err
}

// DeleteGalleryShares removes a deleted gallery's shares, so that a new
// gallery of the same name starts private.
func (s *Service) DeleteGalleryShares(tenant, gallery string) error {
	p := tenant + "\x00" + gallery + "\x00"
	return s.db.Update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketShares).Cursor()
		for k, _ := c.Seek([]byte(p)); k != nil && strings.HasPrefix(string(k), p); k, _ = c.Seek([]byte(p)) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// Shared reports whether the tenant's gallery is shared with tenant with,
// or public.
func (s *Service) Shared(tenant, gallery, with string) (bool, error) {
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketShares)
		ok = b.Get(shareKey(tenant, gallery, with)) != nil || b.Get(shareKey(tenant, gallery, AllTenants)) != nil
		return nil
	})
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
