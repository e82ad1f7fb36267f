package signpb

import (
	"bytes"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
)

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// version is g1/app/1.0.0 as the catalog holds the fixed vector
// sign/testdata/minimal-version.statement.
func version() *pb.GalleryApplicationVersion {
	return &pb.GalleryApplicationVersion{Tenant: "default", Gallery: "g1", Application: "app", Name: "1.0.0",
		Package: &pb.Artifact{Sha256: "bc4a71180870f7945155fbb02f4b0a2e3faa2a62d6d31b7039013055ed19869a", SizeBytes: 3, PieceSize: 8 << 20, PieceCount: 1},
		PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "sh install.sh", Remove: "sh remove.sh"},
			Settings: &pb.UserArtifactSettings{ScriptBehaviorAfterReboot: "None"}}}
}

// goalOf is v as a goal state carries it (fleet.goalApplication): the
// machine's own tenant's gallery, so no tenant but the signing's.
func goalOf(v *pb.GalleryApplicationVersion, s *pb.VersionSignatures) *pb.GoalApplication {
	return &pb.GoalApplication{Gallery: v.Gallery, Application: v.Application, Version: v.Name,
		ManageActions: v.PublishingProfile.ManageActions, Settings: v.PublishingProfile.Settings,
		Package: v.Package, DefaultConfiguration: v.DefaultConfiguration, Signing: s}
}

// TestFixedVector: the statement of a version, from the catalog's record
// and from a goal state, is the fixed vector's bytes, and the vector's
// signature by the test key verifies against it.
func TestFixedVector(t *testing.T) {
	s := &pb.VersionSignatures{Tenant: "default", Sequence: 1}
	want := read(t, "../testdata/minimal-version.statement")
	for name, st := range map[string]*sign.Version{"catalog": Statement(version(), s), "goal state": GoalStatement(goalOf(version(), s))} {
		got, err := st.Encode()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v\n%s\nwant\n%s", name, err, got, want)
		}
	}
	pub, err := minisign.DecodePublicKey(read(t, "../testdata/test.pub"))
	if err != nil {
		t.Fatal(err)
	}
	sigs := []*pb.VersionSignature{{KeyId: pub.ID.String(), Signature: string(read(t, "../testdata/minimal-version.statement.minisig"))}}
	parsed, err := Signatures(sigs)
	if err != nil {
		t.Fatal(err)
	}
	p, err := sign.NewPolicy(1, pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check(GoalStatement(goalOf(version(), s)), parsed, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestOldSignatureOfVersionWithActions: a statement signed before
// statements covered custom actions covers none (its record has none),
// so its bytes are what was signed then, and its signature verifies,
// whatever custom actions the version has.
func TestOldSignatureOfVersionWithActions(t *testing.T) {
	v := version()
	v.PublishingProfile.CustomActions = []*pb.GalleryApplicationCustomAction{{Name: "lint", Script: "./lint.sh"}}
	s := &pb.VersionSignatures{Tenant: "default", Sequence: 1}
	got, err := Statement(v, s).Encode()
	if err != nil || !bytes.Equal(got, read(t, "../testdata/minimal-version.statement")) {
		t.Fatalf("%v\n%s", err, got)
	}
}

// TestParams: a new statement covers the version's custom actions and its
// application's (the version's win by name); another signature of a
// signed statement covers what it covered, whatever the application has
// now; a statement with other parameters covers them as they are now.
func TestParams(t *testing.T) {
	v := version()
	own := &pb.GalleryApplicationCustomAction{Name: "lint", Script: "./lint.sh"}
	v.PublishingProfile.CustomActions = []*pb.GalleryApplicationCustomAction{own}
	app := &pb.GalleryApplication{CustomActions: []*pb.GalleryApplicationCustomAction{{Name: "LINT", Script: "app's lint"}, {Name: "restart", Script: "x"}}}
	want := &pb.VersionSignatures{Tenant: "default", Sequence: 2}
	names := func(s *pb.VersionSignatures) (out []string) {
		for _, a := range s.CustomActions {
			out = append(out, a.Name+"="+a.Script)
		}
		return out
	}
	p := Params(v, app, nil, want)
	if got := names(p); len(got) != 2 || got[0] != "lint=./lint.sh" || got[1] != "restart=x" || p.Sequence != 2 || p.Tenant != "default" {
		t.Fatalf("new statement: %v %v", got, p)
	}
	p.Signatures = []*pb.VersionSignature{{KeyId: "k"}}
	app.CustomActions = append(app.CustomActions, &pb.GalleryApplicationCustomAction{Name: "later", Script: "y"})
	if got := names(Params(v, app, p, want)); len(got) != 2 {
		t.Fatalf("another signer: %v", got)
	}
	if got := names(Params(v, app, p, &pb.VersionSignatures{Tenant: "default", Sequence: 3})); len(got) != 3 {
		t.Fatalf("a new statement: %v", got)
	}
}

// TestEveryFieldMapped: each field of the version that the statement
// covers changes the statement built from the catalog and from a goal
// state alike.
func TestEveryFieldMapped(t *testing.T) {
	s := &pb.VersionSignatures{Tenant: "default", Sequence: 1}
	base, _ := Statement(version(), s).Encode()
	for name, edit := range map[string]func(v *pb.GalleryApplicationVersion, s *pb.VersionSignatures){
		"install": func(v *pb.GalleryApplicationVersion, _ *pb.VersionSignatures) {
			v.PublishingProfile.ManageActions.Install = "x"
		},
		"update": func(v *pb.GalleryApplicationVersion, _ *pb.VersionSignatures) {
			v.PublishingProfile.ManageActions.Update = "x"
		},
		"remove": func(v *pb.GalleryApplicationVersion, _ *pb.VersionSignatures) {
			v.PublishingProfile.ManageActions.Remove = "x"
		},
		"pkg name": func(v *pb.GalleryApplicationVersion, _ *pb.VersionSignatures) {
			v.PublishingProfile.Settings.PackageFileName = "x"
		},
		"cfg name": func(v *pb.GalleryApplicationVersion, _ *pb.VersionSignatures) {
			v.PublishingProfile.Settings.ConfigFileName = "x"
		},
		"reboot": func(v *pb.GalleryApplicationVersion, _ *pb.VersionSignatures) {
			v.PublishingProfile.Settings.ScriptBehaviorAfterReboot = "Rerun"
		},
		"package sha256": func(v *pb.GalleryApplicationVersion, _ *pb.VersionSignatures) {
			v.Package.Sha256 = v.Package.Sha256[:63] + "0"
		},
		"package size": func(v *pb.GalleryApplicationVersion, _ *pb.VersionSignatures) { v.Package.SizeBytes = 4 },
		"configuration": func(v *pb.GalleryApplicationVersion, _ *pb.VersionSignatures) {
			v.DefaultConfiguration = &pb.Artifact{Sha256: v.Package.Sha256, SizeBytes: 1}
		},
		"sequence": func(_ *pb.GalleryApplicationVersion, s *pb.VersionSignatures) { s.Sequence = 2 },
		"expiry": func(_ *pb.GalleryApplicationVersion, s *pb.VersionSignatures) {
			s.ExpireTime = timestamppb.New(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC))
		},
		"rollback": func(_ *pb.GalleryApplicationVersion, s *pb.VersionSignatures) {
			s.Rollback, s.ExpireTime = true, timestamppb.New(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC))
		},
		"names": func(v *pb.GalleryApplicationVersion, s *pb.VersionSignatures) {
			v.Name, s.Tenant, v.Tenant = "1.0.1", "other", "other"
		},
		"a custom action": func(_ *pb.GalleryApplicationVersion, s *pb.VersionSignatures) {
			s.CustomActions = []*pb.GalleryApplicationCustomAction{{Name: "a", Script: "x"}}
		},
		"a custom action's parameter": func(_ *pb.GalleryApplicationVersion, s *pb.VersionSignatures) {
			s.CustomActions = []*pb.GalleryApplicationCustomAction{{Name: "a", Script: "x", Description: "d",
				Parameters: []*pb.GalleryApplicationCustomActionParameter{{Name: "P", Required: true, Type: pb.ParamString, DefaultValue: "v", Description: "p"}}}}
		},
	} {
		v, p := version(), &pb.VersionSignatures{Tenant: "default", Sequence: 1}
		edit(v, p)
		fromCatalog, err1 := Statement(v, p).Encode()
		fromGoal, err2 := GoalStatement(goalOf(v, p)).Encode()
		if err1 != nil || err2 != nil || bytes.Equal(fromCatalog, base) || !bytes.Equal(fromCatalog, fromGoal) {
			t.Errorf("%s: %v, %v; changed %v; the same from both: %v", name, err1, err2, !bytes.Equal(fromCatalog, base), bytes.Equal(fromCatalog, fromGoal))
		}
	}
	if GoalStatement(&pb.GoalApplication{}) != nil {
		t.Fatal("a goal without signatures has a statement")
	}
}
