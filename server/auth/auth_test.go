package auth_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/state"
)

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// newService returns the credential store on a fresh state file, on a
// clock of its own.
func newService(t *testing.T) (*auth.Service, *clock) {
	t.Helper()
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := &clock{t: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	return auth.New(db, auth.Options{Now: clk.now}), clk
}

var ctx = context.Background()

var operator = &pb.Token{Id: "tok_operator", Tenant: auth.AllTenants, Role: pb.Role_ROLE_OWNER}

func mustCreate(t *testing.T, s *auth.Service, tenant string, r *pb.CreateTokenRequest) (*pb.Token, string) {
	t.Helper()
	tok, secret, err := s.CreateToken(ctx, operator, tenant, r)
	if err != nil {
		t.Fatal(err)
	}
	return tok, secret
}

func wantClass(t *testing.T, what string, err error, c errs.Class, field string) {
	t.Helper()
	if !errs.Is(err, c) || errs.FieldOf(err) != field {
		t.Fatalf("%s: %v (class %v, field %q), want class %v naming %q", what, err, errs.ClassOf(err), errs.FieldOf(err), c, field)
	}
}

// TestCheck is the rule table: every role of a tenant token, a gallery
// token, the operator's, another tenant's with and without a share, and a
// machine's, for every permission.
func TestCheck(t *testing.T) {
	s, _ := newService(t)
	for _, sh := range []struct{ gallery, grantee string }{{"shared", "u"}, {"public", auth.AllTenants}} {
		if _, err := s.Share(ctx, operator, "t", sh.gallery, sh.grantee); err != nil {
			t.Fatal(err)
		}
	}
	tok := func(tenant string, role pb.Role, gallery string) *pb.Token {
		return &pb.Token{Id: "tok_x", Name: "x", Tenant: tenant, Role: role, Gallery: gallery}
	}
	reader, contributor, owner := pb.Role_ROLE_READER, pb.Role_ROLE_CONTRIBUTOR, pb.Role_ROLE_OWNER
	machine := &pb.Token{Id: "tok_m", Name: "agent of vm1", Tenant: "t", Role: pb.Role_ROLE_MACHINE, Machine: "vm1"}
	all := []auth.Perm{auth.Read, auth.Deploy, auth.Publish, auth.Manage, auth.Agent}
	for _, c := range []struct {
		name            string
		tok             *pb.Token
		tenant, gallery string
		allowed         []auth.Perm
		why             string // in the refusals
	}{
		{"Reader", tok("t", reader, ""), "t", "g", []auth.Perm{auth.Read, auth.Deploy}, "that needs the"},
		{"Reader, tenant-wide", tok("t", reader, ""), "t", "", []auth.Perm{auth.Read, auth.Deploy}, "that needs the"},
		{"Contributor", tok("t", contributor, ""), "t", "g", []auth.Perm{auth.Read, auth.Deploy, auth.Publish, auth.Agent}, "that needs the Owner role"},
		{"Owner", tok("t", owner, ""), "t", "g", all, ""},
		{"operator", operator, "t", "g", all, ""},
		{"operator, tenant-wide", operator, "u", "", all, ""},
		{"gallery token on its gallery", tok("t", owner, "g"), "t", "g", all, ""},
		{"gallery Reader on its gallery", tok("t", reader, "g"), "t", "g", []auth.Perm{auth.Read, auth.Deploy}, "that needs the"},
		{"gallery token on another gallery", tok("t", owner, "g"), "t", "h", nil, "it is scoped to gallery 'g'"},
		{"gallery token tenant-wide", tok("t", owner, "g"), "t", "", nil, "it is scoped to gallery 'g'"},
		{"another tenant's Owner", tok("u", owner, ""), "t", "g", nil, "it works in tenant 'u'"},
		{"another tenant's Owner, tenant-wide", tok("u", owner, ""), "t", "", nil, "it works in tenant 'u'"},
		{"a gallery shared with the tenant", tok("u", reader, ""), "t", "shared", []auth.Perm{auth.Read}, "it works in tenant 'u'"},
		{"a gallery shared with the tenant, its Owner", tok("u", owner, ""), "t", "shared", []auth.Perm{auth.Read}, "it works in tenant 'u'"},
		{"a public gallery", tok("w", reader, ""), "t", "public", []auth.Perm{auth.Read}, "it works in tenant 'w'"},
		{"a shared gallery, a gallery token", tok("u", owner, "shared"), "t", "shared", nil, "it works in tenant 'u'"},
		{"a gallery shared with another tenant", tok("w", owner, ""), "t", "shared", nil, "it works in tenant 'w'"},
		{"a machine in its tenant", machine, "t", "", []auth.Perm{auth.Agent}, "a machine's credential serves its agent only"},
		{"a machine on a gallery", machine, "t", "g", []auth.Perm{auth.Agent}, "a machine's credential serves its agent only"},
		{"a machine in another tenant", machine, "u", "", nil, "a machine's credential serves its agent only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range all {
				err := s.Check(c.tok, p, "do "+p.String(), c.tenant, c.gallery)
				allowed := false
				for _, a := range c.allowed {
					allowed = allowed || a == p
				}
				if allowed {
					if err != nil {
						t.Errorf("%v: %v", p, err)
					}
					continue
				}
				if !errs.Is(err, errs.PermissionDenied) {
					t.Errorf("%v: %v, want PermissionDenied", p, err)
					continue
				}
				if msg := err.Error(); !strings.Contains(msg, c.why) || !strings.Contains(msg, auth.Describe(c.tok)) || !strings.Contains(msg, "may not do "+p.String()) {
					t.Errorf("%v: message %q, want the token, the action and %q", p, msg, c.why)
				}
			}
		})
	}
	// Reading a gallery of another tenant says it isn't shared.
	err := s.Check(tok("w", reader, ""), auth.Read, "read", "t", "shared")
	if !strings.Contains(fmt.Sprint(err), "it works in tenant 'w', and the gallery is not shared with it") {
		t.Errorf("Read of a gallery not shared: %v", err)
	}
	// A share taken back no longer lets the tenant read.
	if err := s.Unshare(ctx, operator, "t", "shared", "u"); err != nil {
		t.Fatal(err)
	}
	err = s.Check(tok("u", reader, ""), auth.Read, "read", "t", "shared")
	wantClass(t, "Read after Unshare", err, errs.PermissionDenied, "")
}

func TestAuthenticate(t *testing.T) {
	s, clk := newService(t)
	tok, secret := mustCreate(t, s, "t", &pb.CreateTokenRequest{Name: "ci", Role: pb.Role_ROLE_CONTRIBUTOR})
	got, err := s.Authenticate(secret)
	if err != nil || got.Id != tok.Id || got.Role != pb.Role_ROLE_CONTRIBUTOR || got.Tenant != "t" {
		t.Fatalf("Authenticate = %v, %v", got, err)
	}
	id, sec, _ := strings.Cut(secret, ".")
	wrong := []byte(sec)
	wrong[0] ^= 1 // one character changed
	unknownID := "tok_" + strings.Repeat("a", 20)
	for _, c := range []struct{ name, cred, msg string }{
		{"empty", "", "malformed"},
		{"no dot", id + sec, "malformed"},
		{"no secret", id + ".", "malformed"},
		{"not a token id", "tok_x." + sec, "malformed"},
		{"an id in capitals", strings.ToUpper(id) + "." + sec, "malformed"},
		{"Bearer left in", "Bearer " + secret, "malformed"},
		{"unknown id", unknownID + "." + sec, "token " + unknownID + " is not known, or its secret is wrong"},
		{"wrong secret", id + "." + string(wrong), "token " + id + " is not known, or its secret is wrong"},
	} {
		_, err := s.Authenticate(c.cred)
		wantClass(t, c.name, err, errs.Unauthenticated, "authorization")
		if !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %q, want %q", c.name, err, c.msg)
		}
	}
	// Revoked: the cached credential goes with the command.
	if _, err := s.RevokeToken(ctx, operator, "t", tok.Id); err != nil {
		t.Fatal(err)
	}
	_, err = s.Authenticate(secret)
	wantClass(t, "revoked", err, errs.Unauthenticated, "authorization")
	if !strings.Contains(err.Error(), "was revoked at 2026-11-30T12:00:00Z") {
		t.Errorf("revoked: %q", err)
	}

	// Expired, on the service's clock: valid up to the second before.
	exp, expSecret := mustCreate(t, s, "t", &pb.CreateTokenRequest{Name: "short", Role: pb.Role_ROLE_READER, TtlSeconds: 3600})
	start := clk.now()
	clk.set(start.Add(time.Hour - time.Nanosecond))
	if _, err := s.Authenticate(expSecret); err != nil {
		t.Fatalf("a nanosecond before expiry: %v", err)
	}
	clk.set(start.Add(time.Hour))
	_, err = s.Authenticate(expSecret)
	wantClass(t, "expired", err, errs.Unauthenticated, "authorization")
	if want := fmt.Sprintf("token %s (short) expired at 2026-11-30T13:00:00Z", exp.Id); !strings.Contains(err.Error(), want) {
		t.Errorf("expired: %q, want %q", err, want)
	}
}

// TestMachineCredential: a machine's new credential revokes its previous
// one, and is bound to the machine with the Machine role.
func TestMachineCredential(t *testing.T) {
	s, _ := newService(t)
	first, err := s.IssueMachineToken(ctx, operator, "t", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.IssueMachineToken(ctx, operator, "t", "vm1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Authenticate(first)
	wantClass(t, "the replaced credential", err, errs.Unauthenticated, "authorization")
	tok, err := s.Authenticate(second)
	if err != nil || tok.Role != pb.Role_ROLE_MACHINE || tok.Machine != "vm1" || tok.Tenant != "t" || tok.CreatedBy != operator.Id {
		t.Fatalf("the machine's credential: %v, %v", tok, err)
	}
}

func TestCreateTokenRefusals(t *testing.T) {
	s, _ := newService(t)
	for _, c := range []struct {
		name   string
		tenant string
		r      *pb.CreateTokenRequest
		field  string
	}{
		{"no name", "t", &pb.CreateTokenRequest{Role: pb.Role_ROLE_READER}, "name"},
		{"a name on two lines", "t", &pb.CreateTokenRequest{Name: "a\nb", Role: pb.Role_ROLE_READER}, "name"},
		{"a name too long", "t", &pb.CreateTokenRequest{Name: strings.Repeat("n", auth.MaxTokenNameLen+1), Role: pb.Role_ROLE_READER}, "name"},
		{"no role", "t", &pb.CreateTokenRequest{Name: "x"}, "role"},
		{"the Machine role", "t", &pb.CreateTokenRequest{Name: "x", Role: pb.Role_ROLE_MACHINE}, "role"},
		{"a negative lifetime", "t", &pb.CreateTokenRequest{Name: "x", Role: pb.Role_ROLE_READER, TtlSeconds: -1}, "ttlSeconds"},
		{"a lifetime over 10 years", "t", &pb.CreateTokenRequest{Name: "x", Role: pb.Role_ROLE_READER, TtlSeconds: auth.MaxTokenTTLSeconds + 1}, "ttlSeconds"},
		{"every tenant", auth.AllTenants, &pb.CreateTokenRequest{Name: "x", Role: pb.Role_ROLE_OWNER}, "tenant"},
	} {
		_, _, err := s.CreateToken(ctx, operator, c.tenant, c.r)
		wantClass(t, c.name, err, errs.InvalidArgument, c.field)
	}
	if toks, _, err := s.ListTokens(ctx, operator, "t", true, 0, ""); err != nil || len(toks) != 0 {
		t.Fatalf("tokens after refusals: %v, %v", toks, err)
	}
}
