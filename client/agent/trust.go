package agent

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
	"github.com/vmapp/vmapp/sign/signpb"
)

// Trust is what the agent verifies versions with: the keys the machine's
// operator trusts, from its trust file, never from vmappd.
type Trust struct {
	// Policy is the trusted keys and how many of them must have signed a
	// version (the threshold). Signed key changes that goal states carry
	// are applied to it (and kept in the state file).
	Policy sign.Policy
	// AllowConfigurationOverrides accepts a profile's configuration
	// override (inline or configurationReference): the operator's, which
	// no publisher signs. Without it such a goal is refused.
	AllowConfigurationOverrides bool
}

// ReadTrustFile reads a trust file (see ParseTrust); errors name the file.
func ReadTrustFile(path string) (*Trust, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t, err := ParseTrust(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// ParseTrust parses a trust file: UTF-8 lines, each empty, a comment
// ('#'), a public key in minisign's one-line form (what `minisign -P`
// takes), "required N" (how many of the keys must have signed a version;
// default 1) or "allow-configuration-overrides". The untrusted comment
// lines of minisign public key files are skipped, so that `cat *.pub`
// makes a trust file.
func ParseTrust(data []byte) (*Trust, error) {
	t := &Trust{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	required := 1
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		word, arg, _ := strings.Cut(line, " ")
		switch {
		case line == "", strings.HasPrefix(line, "#"), strings.HasPrefix(line, "untrusted comment:"):
		case line == "allow-configuration-overrides":
			t.AllowConfigurationOverrides = true
		case word == "required":
			v, err := strconv.Atoi(strings.TrimSpace(arg))
			if err != nil || v < 1 {
				return nil, fmt.Errorf("line %d: %q: want 'required N', N at least 1", n, line)
			}
			required = v
		default:
			k, err := minisign.ParsePublicKey(line)
			if err != nil {
				return nil, fmt.Errorf("line %d: not a public key (minisign's one-line form), 'required N' or 'allow-configuration-overrides': %w", n, err)
			}
			t.Policy.Keys = append(t.Policy.Keys, k)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	p, err := sign.NewPolicy(required, t.Policy.Keys...)
	if err != nil {
		return nil, err
	}
	t.Policy = p
	return t, nil
}

// check decides whether the machine may act on ga under policy, at now,
// having installed sequence highest of the application: nil, or a
// refusal of package sign (sign.ReasonOf tells which).
func (t *Trust) check(policy sign.Policy, ga *pb.GoalApplication, highest uint64, now time.Time) error {
	stmt := signpb.GoalStatement(ga)
	switch {
	case !t.AllowConfigurationOverrides && (len(ga.Configuration) > 0 || ga.ConfigurationReference != ""):
		return &sign.Refusal{Reason: sign.Unsigned, Detail: fmt.Sprintf("version %s: the profile's configuration override (configuration or configurationReference) is not covered by a publisher's signature; the trust file's allow-configuration-overrides accepts it", ga.Version)}
	case stmt == nil:
		return &sign.Refusal{Reason: sign.Unsigned, Detail: fmt.Sprintf("version %s carries no signature", ga.Version)}
	}
	sigs, err := signpb.Signatures(ga.Signing.Signatures)
	if err != nil {
		return &sign.Refusal{Reason: sign.SignatureInvalid, Detail: err.Error()}
	}
	return policy.Check(stmt, sigs, highest, now)
}

// signedAction is custom action name of the installed version ga as a
// statement the agent accepts now covers it: ga's statement is verified
// as the plan verifies an install (the policy, the sequence installed,
// now), and the action must be among those it covers. Otherwise a refusal
// of package sign.
func (a *agent) signedAction(ga *pb.GoalApplication, name string) (*pb.GalleryApplicationCustomAction, error) {
	a.mu.Lock()
	policy, highest := a.policy, a.st.Sequences[appKey(ga)]
	a.mu.Unlock()
	if err := a.cfg.Trust.check(policy, ga, highest, a.clock.Now()); err != nil {
		return nil, err
	}
	def := pb.FindAction(ga.Signing.CustomActions, nil, name)
	if def == nil {
		return nil, &sign.Refusal{Reason: sign.Unsigned, Detail: fmt.Sprintf("custom action '%s' is not one the signed statement of version %s (sequence %d) covers; the publisher signs a new statement of the version to cover it",
			name, ga.Version, ga.Signing.Sequence)}
	}
	return def, nil
}

// checkRun refuses run r unless ga, the goal of its application, is the
// installed version's with a statement the agent accepts that covers r's
// action with exactly r's script, and r's parameters are the action's as
// signed (each declared, with its type; each required one given).
func (a *agent) checkRun(r *pb.ActionRun, ga *pb.GoalApplication) error {
	if ga == nil || ga.Version != r.Version {
		return &sign.Refusal{Reason: sign.Unsigned, Detail: fmt.Sprintf("the goal state carries no statement of %s version %s to check the action against", r.Application, r.Version)}
	}
	def, err := a.signedAction(ga, r.Action)
	if err != nil {
		return err
	}
	invalid := func(format string, args ...any) error {
		return &sign.Refusal{Reason: sign.SignatureInvalid, Detail: fmt.Sprintf("custom action '%s' of version %s: ", def.Name, r.Version) + fmt.Sprintf(format, args...)}
	}
	if r.Script != def.Script {
		return invalid("the script vmappd sent is not the one signed")
	}
	given := map[string]bool{}
	for _, p := range r.Parameters {
		i := slices.IndexFunc(def.Parameters, func(d *pb.GalleryApplicationCustomActionParameter) bool { return d.Name == p.Name })
		switch {
		case i < 0:
			return invalid("parameter %s is not one of the action as signed", p.Name)
		case given[p.Name]:
			return invalid("parameter %s is given twice", p.Name)
		case paramType(def.Parameters[i].Type) != paramType(p.Type):
			return invalid("parameter %s is a %s, signed as a %s", p.Name, paramType(p.Type), paramType(def.Parameters[i].Type))
		}
		given[p.Name] = true
	}
	for _, d := range def.Parameters {
		if d.Required && !given[d.Name] {
			return invalid("its required parameter %s is missing", d.Name)
		}
	}
	return nil
}

// paramType is a parameter's type, String when empty.
func paramType(t string) string { return cmp.Or(t, pb.ParamString) }

// refusalText is a refusal's reason for the instance view: its code
// first ("SignatureInvalid: version ... refused: ...").
func refusalText(err error) string {
	var r *sign.Refusal
	if !errors.As(err, &r) {
		return err.Error()
	}
	text := r.Reason.String() + ": "
	if s, _, ok := strings.Cut(err.Error(), " refused: "); ok {
		text += s + " refused: "
	}
	return text + r.Detail
}

// signingKey identifies the signatures a goal carries: a failure at the
// same version and configuration with other signatures is another target
// (a publisher's new signature is tried at once).
func signingKey(ga *pb.GoalApplication) string {
	if ga.Signing == nil {
		return ""
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(ga.Signing)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// replayKeyChanges makes the policy the agent verifies with: the trust
// file's, with the key changes the state recorded applied again, in
// order. One that no longer applies (the trust file changed) is logged
// and skipped.
func (a *agent) replayKeyChanges() {
	t := a.cfg.Trust
	if t == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.policy, a.refusedChanges = t.Policy, map[string]bool{}
	for _, b := range a.st.KeyChanges {
		kc := &pb.KeyChange{}
		if err := proto.Unmarshal(b, kc); err != nil {
			a.log.Warn("a key change recorded in the state is unreadable: skipped", "err", err)
			continue
		}
		next, err := signpb.Apply(a.policy, kc)
		if err != nil {
			a.log.Warn("a key change recorded in the state no longer applies to the trust file's keys: skipped", "err", err)
			continue
		}
		a.policy = next
	}
	var ids []string
	for _, k := range a.policy.Keys {
		ids = append(ids, k.ID.String())
	}
	a.log.Info("verifying signatures", "keys", strings.Join(ids, ","), "required", max(a.policy.Threshold, 1),
		"key_changes", len(a.st.KeyChanges), "configuration_overrides", t.AllowConfigurationOverrides)
}

// applyKeyChangesLocked applies the key changes of a goal state that the
// state doesn't hold yet and that the policy accepts (signed by the keys
// the policy requires: vmappd can't forge one), and records them. A
// refused one is logged once, and tried again with every goal state (a
// change of another gallery may make it apply). a.mu is held.
func (a *agent) applyKeyChangesLocked(changes []*pb.KeyChange) {
	for _, kc := range changes {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(kc)
		if err != nil || slices.ContainsFunc(a.st.KeyChanges, func(x []byte) bool { return bytes.Equal(x, b) }) {
			continue
		}
		next, err := signpb.Apply(a.policy, kc)
		if err != nil {
			if !a.refusedChanges[string(b)] {
				a.refusedChanges[string(b)] = true
				a.log.Info("a key change of the goal state was not applied", "err", err)
			}
			continue
		}
		a.policy = next
		a.st.KeyChanges = append(a.st.KeyChanges, b)
		if st, _, err := signpb.KeyChange(kc); err == nil {
			a.log.Info("applied a signed key change", "change", st.Subject())
		}
	}
}
