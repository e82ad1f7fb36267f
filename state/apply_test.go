package state

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// step is a command and the outcome expected of it: ok, or a refusal of
// that class.
type step struct {
	op      any // a statepb.isCommand_Op
	refused errs.Class
	ok      bool
}

func ok(op any) step               { return step{op: op, ok: true} }
func no(c errs.Class, op any) step { return step{op: op, refused: c} }
func vref(v string) *statepb.VersionRef {
	return &statepb.VersionRef{Tenant: "t", Gallery: "g", Application: "a", Version: v}
}
func rref(region string, i int32) *statepb.ReplicaRef {
	return &statepb.ReplicaRef{Version: vref("1.0.0"), Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Region: region, Index: i}
}
func i32(n int32) *int32 { return &n }

func target(region string) *pb.TargetRegion {
	return &pb.TargetRegion{Name: region, RegionalReplicaCount: i32(1)}
}

func version(name string, regions ...string) *pb.GalleryApplicationVersion {
	v := &pb.GalleryApplicationVersion{Tenant: "t", Gallery: "g", Application: "a", Name: name, Location: "eastus",
		ProvisioningState: pb.ProvisioningCreating, PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}}}
	for _, r := range regions {
		v.PublishingProfile.TargetRegions = append(v.PublishingProfile.TargetRegions, target(r))
	}
	return v
}

func replica(region string, i int32) *statepb.Replica {
	return &statepb.Replica{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE,
		Region: region, Index: i, ObjectKey: fmt.Sprintf("obj-%s-%d", region, i), Phase: statepb.ReplicaPhase_REPLICA_PHASE_PENDING, SizeBytes: 10}
}

func cred(id, machine string) *statepb.Credential {
	role := pb.Role_ROLE_OWNER
	if machine != "" {
		role = pb.Role_ROLE_MACHINE
	}
	return &statepb.Credential{Token: &pb.Token{Id: id, Tenant: "t", Role: role, Machine: machine}, SecretSha256: []byte(id)}
}

// scenario uses every command, refusals included; the etags it expects
// are those the steps' commands get from command (e<step index>).
func scenario() []step {
	gal := &pb.Gallery{Tenant: "t", Name: "g", Location: "eastus", ProvisioningState: pb.ProvisioningSucceeded}
	gal2 := &pb.Gallery{Tenant: "t", Name: "g", Location: "eastus", ProvisioningState: pb.ProvisioningSucceeded, Description: "two"}
	app := &pb.GalleryApplication{Tenant: "t", Gallery: "g", Name: "a", SupportedOsType: "Linux", ProvisioningState: pb.ProvisioningSucceeded}
	sess := &statepb.UploadSession{Id: "s1", Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, SizeBytes: 10}
	part := func(n int32) *statepb.Part { return &statepb.Part{Number: n, SizeBytes: 5, Etag: fmt.Sprint(n)} }
	machine := func(name, ss string) *pb.Machine {
		return &pb.Machine{Tenant: "t", Name: name, Region: "westus", OsType: "Linux", ScaleSet: ss, ProvisioningState: pb.ProvisioningSucceeded}
	}
	entry := []*pb.VMGalleryApplication{{PackageReferenceId: "g/a/1.0.0"}}
	steps := []step{
		ok(&statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: gal}}),                     // 0
		no(errs.AlreadyExists, &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: gal}}), // 1
		no(errs.FailedPrecondition, &statepb.Command_UpdateGallery{UpdateGallery: &statepb.UpdateGallery{Gallery: gal2, ExpectEtag: `"nope"`}}),
		ok(&statepb.Command_UpdateGallery{UpdateGallery: &statepb.UpdateGallery{Gallery: gal2, ExpectEtag: `"e0"`}}), // 3
		ok(&statepb.Command_CreateApplication{CreateApplication: &statepb.CreateApplication{Application: app}}),      // 4
		no(errs.NotFound, &statepb.Command_CreateApplication{CreateApplication: &statepb.CreateApplication{Application: &pb.GalleryApplication{Tenant: "t", Gallery: "nope", Name: "a"}}}),
		ok(&statepb.Command_CreateVersion{CreateVersion: &statepb.CreateVersion{Version: version("1.0.0", "eastus", "westus"), MaxPerRegion: 1}}),
		no(errs.ResourceExhausted, &statepb.Command_CreateVersion{CreateVersion: &statepb.CreateVersion{Version: version("1.1.0", "eastus"), MaxPerRegion: 1}}),
		ok(&statepb.Command_CreateVersion{CreateVersion: &statepb.CreateVersion{Version: version("1.10.0"), MaxPerRegion: 1}}), // 8
		ok(&statepb.Command_CreateUpload{CreateUpload: &statepb.CreateUpload{Session: sess}}),
		no(errs.FailedPrecondition, &statepb.Command_CreateUpload{CreateUpload: &statepb.CreateUpload{Session: &statepb.UploadSession{Id: "s2", Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE}}}),
		ok(&statepb.Command_CommitPart{CommitPart: &statepb.CommitPart{SessionId: "s1", Part: part(1), Sha256State: []byte("h1")}}),
		no(errs.Aborted, &statepb.Command_CommitPart{CommitPart: &statepb.CommitPart{SessionId: "s1", Part: part(3)}}),
		ok(&statepb.Command_CommitPart{CommitPart: &statepb.CommitPart{SessionId: "s1", Part: part(2), Sha256State: []byte("h2")}}),
		ok(&statepb.Command_FinishUpload{FinishUpload: &statepb.FinishUpload{SessionId: "s1", Artifact: &pb.Artifact{SizeBytes: 10, Sha256: "ab"}, Manifest: &statepb.Manifest{PieceSize: 5, SizeBytes: 10}}}),
		no(errs.NotFound, &statepb.Command_FinishUpload{FinishUpload: &statepb.FinishUpload{SessionId: "s1"}}),
		ok(&statepb.Command_ReconcileReplicas{ReconcileReplicas: &statepb.ReconcileReplicas{Add: []*statepb.Replica{replica("eastus", 0), replica("westus", 0)}}}),
		ok(&statepb.Command_ReplicaStarted{ReplicaStarted: &statepb.ReplicaStarted{Replica: rref("eastus", 0)}}),
		ok(&statepb.Command_ReplicaMultipart{ReplicaMultipart: &statepb.ReplicaMultipart{Replica: rref("eastus", 0), MultipartId: "mp"}}),
		no(errs.FailedPrecondition, &statepb.Command_ReplicaPartCopied{ReplicaPartCopied: &statepb.ReplicaPartCopied{Replica: rref("eastus", 0), MultipartId: "other", Part: part(1)}}),
		ok(&statepb.Command_ReplicaPartCopied{ReplicaPartCopied: &statepb.ReplicaPartCopied{Replica: rref("eastus", 0), MultipartId: "mp", Part: part(1), CrossRegionBytes: 5}}),
		ok(&statepb.Command_ReplicaFailed{ReplicaFailed: &statepb.ReplicaFailed{Replica: rref("eastus", 0), Error: "boom", NextAttemptTime: timestamppb.New(time.Unix(9, 0))}}),
		ok(&statepb.Command_ReplicaCompleted{ReplicaCompleted: &statepb.ReplicaCompleted{Replica: rref("eastus", 0), Etag: "x", SizeBytes: 10}}),
		ok(&statepb.Command_ReplicaVerified{ReplicaVerified: &statepb.ReplicaVerified{Replica: rref("eastus", 0), Deep: true}}),
		no(errs.NotFound, &statepb.Command_ReplicaVerified{ReplicaVerified: &statepb.ReplicaVerified{Replica: rref("northeurope", 0)}}),
		ok(&statepb.Command_ReplicaRestart{ReplicaRestart: &statepb.ReplicaRestart{Replica: rref("eastus", 0), Pending: true, Reason: "repair"}}),
		ok(&statepb.Command_ReconcileReplicas{ReconcileReplicas: &statepb.ReconcileReplicas{Unwanted: []*statepb.ReplicaRef{rref("westus", 0)}}}),
		no(errs.FailedPrecondition, &statepb.Command_ReplicaStarted{ReplicaStarted: &statepb.ReplicaStarted{Replica: rref("westus", 0)}}),
		ok(&statepb.Command_ReplicaRemoved{ReplicaRemoved: &statepb.ReplicaRemoved{Replica: rref("eastus", 0), OnlyDeleting: true}}), // not Deleting: kept
		ok(&statepb.Command_ReplicaRemoved{ReplicaRemoved: &statepb.ReplicaRemoved{Replica: rref("westus", 0), OnlyDeleting: true}}),
		ok(&statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: cred("tok_a", ""), OnlyIfNone: true}}),
		no(errs.AlreadyExists, &statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: cred("tok_b", ""), OnlyIfNone: true}}),
		ok(&statepb.Command_RevokeToken{RevokeToken: &statepb.RevokeToken{Id: "tok_a"}}),
		no(errs.NotFound, &statepb.Command_RevokeToken{RevokeToken: &statepb.RevokeToken{Id: "tok_zz"}}),
		ok(&statepb.Command_PutShare{PutShare: &statepb.PutShare{Tenant: "t", Share: &pb.Share{Gallery: "g", Grantee: "u"}}}),
		ok(&statepb.Command_PutShare{PutShare: &statepb.PutShare{Tenant: "t", Share: &pb.Share{Gallery: "g", Grantee: "u", CreatedBy: "later"}}}),
		ok(&statepb.Command_DeleteShare{DeleteShare: &statepb.DeleteShare{Tenant: "t", Gallery: "g", Grantee: "u"}}),
		no(errs.NotFound, &statepb.Command_DeleteShare{DeleteShare: &statepb.DeleteShare{Tenant: "t", Gallery: "g", Grantee: "u"}}),
		ok(&statepb.Command_CreateScaleSet{CreateScaleSet: &statepb.CreateScaleSet{ScaleSet: &pb.ScaleSet{Tenant: "t", Name: "web", Region: "westus", OsType: "Linux"}}}),
		ok(&statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: machine("web-0", "web"), Credential: cred("tok_m0", "web-0")}}),
		ok(&statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: machine("vm1", ""), Credential: cred("tok_m1", "vm1")}}),
		no(errs.AlreadyExists, &statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: machine("vm1", "")}}),
		no(errs.NotFound, &statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: machine("x", "nope")}}),
		ok(&statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: cred("tok_m2", "vm1")}}), // revokes tok_m1
		ok(&statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{Machine: "vm1", Etag: `"e40"`}, Profile: &pb.ApplicationProfile{GalleryApplications: entry}}}),
		no(errs.FailedPrecondition, &statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{Machine: "vm1", Etag: `"e40"`}, Profile: &pb.ApplicationProfile{}}}),
		no(errs.Aborted, &statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{ScaleSet: "web", Etag: `"e38"`}, Others: []*statepb.ProfileEtag{{Machine: "web-0", Etag: `"stale"`}}, Profile: &pb.ApplicationProfile{}}}),
		ok(&statepb.Command_ReportStatus{ReportStatus: &statepb.ReportStatus{Tenant: "t", Machine: "vm1", InstanceView: &pb.InstanceView{AgentVersion: "1"}}}),
		no(errs.NotFound, &statepb.Command_ReportStatus{ReportStatus: &statepb.ReportStatus{Tenant: "t", Machine: "gone"}}),
	}
	steps = append(steps, actionSteps()...)
	steps = append(steps, []step{
		no(errs.FailedPrecondition, &statepb.Command_DeleteScaleSet{DeleteScaleSet: &statepb.DeleteScaleSet{Tenant: "t", Name: "web"}}),
		ok(&statepb.Command_DeleteScaleSet{DeleteScaleSet: &statepb.DeleteScaleSet{Tenant: "t", Name: "web", Cascade: true}}),
		ok(&statepb.Command_DeleteMachine{DeleteMachine: &statepb.DeleteMachine{Tenant: "t", Name: "vm1"}}),
		no(errs.FailedPrecondition, &statepb.Command_DeleteGallery{DeleteGallery: &statepb.DeleteGallery{Tenant: "t", Name: "g"}}),
		no(errs.FailedPrecondition, &statepb.Command_DeleteApplication{DeleteApplication: &statepb.DeleteApplication{Tenant: "t", Gallery: "g", Name: "a"}}),
		ok(&statepb.Command_DeleteVersion{DeleteVersion: &statepb.DeleteVersion{Version: vref("1.10.0")}}),
		no(errs.FailedPrecondition, &statepb.Command_UpdateVersion{UpdateVersion: &statepb.UpdateVersion{Version: version("1.10.0")}}),
		ok(&statepb.Command_UpdateVersion{UpdateVersion: &statepb.UpdateVersion{Version: version("1.0.0", "eastus"), MaxPerRegion: 1}}),
		ok(&statepb.Command_UpdateApplication{UpdateApplication: &statepb.UpdateApplication{Application: app}}),
		ok(&statepb.Command_DeleteGallery{DeleteGallery: &statepb.DeleteGallery{Tenant: "t", Name: "g", Cascade: true}}),
		no(errs.FailedPrecondition, &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: gal}}),
		ok(&statepb.Command_RemoveDeleted{RemoveDeleted: &statepb.RemoveDeleted{Kind: statepb.RemoveDeleted_KIND_GALLERY, Resources: []*statepb.VersionRef{vref("")}}}), // has an application: kept
		ok(&statepb.Command_RemoveVersion{RemoveVersion: &statepb.RemoveVersion{Version: vref("1.0.0")}}),
		ok(&statepb.Command_RemoveVersion{RemoveVersion: &statepb.RemoveVersion{Version: vref("1.10.0")}}),
		ok(&statepb.Command_RemoveDeleted{RemoveDeleted: &statepb.RemoveDeleted{Kind: statepb.RemoveDeleted_KIND_APPLICATION, Resources: []*statepb.VersionRef{vref("")}}}),
		ok(&statepb.Command_RemoveDeleted{RemoveDeleted: &statepb.RemoveDeleted{Kind: statepb.RemoveDeleted_KIND_GALLERY, Resources: []*statepb.VersionRef{vref("")}}}),
		ok(&statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: gal}}),
		ok(&statepb.Command_CreateApplication{CreateApplication: &statepb.CreateApplication{Application: app}}),
		ok(&statepb.Command_CreateVersion{CreateVersion: &statepb.CreateVersion{Version: version("2.0.0"), MaxPerRegion: 1}}),
		ok(&statepb.Command_FailIngest{FailIngest: &statepb.FailIngest{Version: vref("2.0.0"), Error: &pb.ProvisioningError{Code: "DataLoss", Message: "sha256 mismatch"}}}),
		ok(&statepb.Command_RetryIngest{RetryIngest: &statepb.RetryIngest{Version: vref("2.0.0")}}),
		ok(&statepb.Command_FailIngest{FailIngest: &statepb.FailIngest{Version: vref("2.0.0"), Error: &pb.ProvisioningError{Code: "NotFound", Message: "gone"}}}),
	}...)
	steps = append(steps, signing(len(steps))...)
	steps = append(steps, rollouts(len(steps))...)
	return append(steps,
		ok(&statepb.Command_PutNode{PutNode: &statepb.PutNode{Node: &pb.ClusterNode{Id: "n1", RaftAddress: "r1", ApiAddress: "a1", State: "ignored"}}}),
		ok(&statepb.Command_PutNode{PutNode: &statepb.PutNode{Node: &pb.ClusterNode{Id: "n2", RaftAddress: "r2", ApiAddress: "a2"}}}),
		ok(&statepb.Command_RemoveNode{RemoveNode: &statepb.RemoveNode{Id: "n1"}}),
	)
}

func actionRun(id, machine string) *pb.ActionRun {
	return &pb.ActionRun{Tenant: "t", Machine: machine, Id: id, Application: "g/a", Version: "1.0.0", Action: "x", Script: "true"}
}

func reqActions(max int32, runs ...*pb.ActionRun) *statepb.Command_RequestActions {
	return &statepb.Command_RequestActions{RequestActions: &statepb.RequestActions{Runs: runs, MaxPending: max}}
}

func finAction(id, state string) *statepb.Command_FinishAction {
	return &statepb.Command_FinishAction{FinishAction: &statepb.FinishAction{Tenant: "t", Machine: "vm1", KeepFinished: 1,
		Run: &pb.ActionRun{Id: id, State: state, ExitCode: 3, OutputTail: "out", Logs: []*pb.ActionLog{{Name: "L", Content: []byte("log"), SizeBytes: 3}}}}}
}

// actionSteps are the custom actions' commands on machine vm1: at most one
// pending, a report sent twice, the oldest finished run pruned.
func actionSteps() []step {
	return []step{
		ok(reqActions(1, actionRun("r1", "vm1"))),
		no(errs.ResourceExhausted, reqActions(1, actionRun("r2", "vm1"))),
		no(errs.NotFound, reqActions(1, actionRun("r3", "gone"))),
		no(errs.AlreadyExists, reqActions(0, actionRun("r1", "vm1"))),
		ok(finAction("r1", pb.ActionFailed)),
		ok(finAction("r1", pb.ActionSucceeded)), // already finished: unchanged
		ok(finAction("nope", pb.ActionSucceeded)),
		ok(reqActions(1, actionRun("r2", "vm1"))),
		ok(finAction("r2", pb.ActionSucceeded)), // keeps 1 finished: r1 goes
	}
}

// TestActionRuns: the runs the action commands leave, and that they go
// with their machine.
func TestActionRuns(t *testing.T) {
	db := openTemp(t)
	steps := []step{ok(&statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: &pb.Machine{Tenant: "t", Name: "vm1", Region: "westus", OsType: "Linux"}}})}
	steps = append(steps, actionSteps()...)
	for i, s := range steps {
		checkOutcome(t, i, s, db.Propose(context.Background(), command(i, s)))
	}
	var runs []*pb.ActionRun
	view := func() {
		t.Helper()
		err := db.View(context.Background(), func(tx *Tx) (err error) {
			runs, err = ActionRuns.All(tx, Prefix("t", "vm1"))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	view()
	if len(runs) != 1 || runs[0].Id != "r2" || runs[0].State != pb.ActionSucceeded || runs[0].ExitCode != 3 || string(runs[0].Logs[0].Content) != "log" ||
		runs[0].Script != "true" || runs[0].CreateTime == nil || runs[0].EndTime == nil {
		t.Fatalf("runs: %v", runs)
	}
	del := ok(&statepb.Command_DeleteMachine{DeleteMachine: &statepb.DeleteMachine{Tenant: "t", Name: "vm1"}})
	checkOutcome(t, 99, del, db.Propose(context.Background(), command(99, del)))
	view()
	if len(runs) != 0 {
		t.Fatalf("runs of a deleted machine: %v", runs)
	}
}

// signing are the signing commands, from step base on, on version 2.0.0
// (whose etag is step base-1's).
func signing(base int) []step {
	etag := func(i int) string { return fmt.Sprintf(`"e%d"`, i) }
	policy := &pb.TrustPolicy{Gallery: "g", RequiredSignatures: 1, Keys: []*pb.TrustedKey{{Name: "a", KeyId: "A"}, {Name: "b", KeyId: "B"}}}
	put := func(gallery, expect string) *statepb.Command_PutTrustPolicy {
		p := proto.CloneOf(policy)
		p.Gallery = gallery
		return &statepb.Command_PutTrustPolicy{PutTrustPolicy: &statepb.PutTrustPolicy{Tenant: "t", Policy: p, ExpectEtag: expect}}
	}
	sig := func(seq uint64, key string, replace bool, versionEtag, policyEtag string) *statepb.Command_SignVersion {
		return &statepb.Command_SignVersion{SignVersion: &statepb.SignVersion{Version: vref("2.0.0"),
			Statement: &pb.VersionSignatures{Tenant: "t", Sequence: seq}, Signature: &pb.VersionSignature{KeyId: key, Signature: "sig by " + key},
			Replace: replace, VersionEtag: versionEtag, PolicyEtag: policyEtag}}
	}
	v, p := etag(base-1), etag(base)
	otherActions := sig(3, "B", false, v, p)
	otherActions.SignVersion.Statement.CustomActions = []*pb.GalleryApplicationCustomAction{{Name: "x", Script: "x"}}
	return []step{
		ok(put("g", "")),                                      // base
		no(errs.Aborted, put("g", "")),                        // it exists now
		no(errs.NotFound, put("nope", "")),                    // no such gallery
		ok(sig(3, "A", false, v, p)),                          // the first statement
		ok(sig(3, "B", false, v, p)),                          // a second signer
		ok(sig(3, "A", false, v, p)),                          // A again: replaces its signature
		no(errs.Aborted, otherActions),                        // its parameters, other custom actions: raced
		no(errs.FailedPrecondition, sig(4, "A", false, v, p)), // another statement, not replacing
		no(errs.FailedPrecondition, sig(2, "A", true, v, p)),  // not above the highest sequence
		no(errs.Aborted, sig(3, "A", false, etag(0), p)),      // the version changed since
		ok(sig(4, "B", true, v, p)),                           // replaces the statement
		ok(put("g", p)),
		no(errs.Aborted, sig(4, "A", false, v, p)), // the policy changed since
	}
}

// command builds step i's command: time and etag from i.
func command(i int, s step) *statepb.Command {
	c := &statepb.Command{Time: timestamppb.New(time.Unix(1_700_000_000+int64(i), 0)), Etag: fmt.Sprintf(`"e%d"`, i)}
	setOp(c, s.op)
	return c
}

func setOp(c *statepb.Command, op any) {
	switch o := op.(type) {
	case *statepb.Command_CreateGallery:
		c.Op = o
	case *statepb.Command_UpdateGallery:
		c.Op = o
	case *statepb.Command_DeleteGallery:
		c.Op = o
	case *statepb.Command_CreateApplication:
		c.Op = o
	case *statepb.Command_UpdateApplication:
		c.Op = o
	case *statepb.Command_DeleteApplication:
		c.Op = o
	case *statepb.Command_CreateVersion:
		c.Op = o
	case *statepb.Command_UpdateVersion:
		c.Op = o
	case *statepb.Command_DeleteVersion:
		c.Op = o
	case *statepb.Command_RemoveDeleted:
		c.Op = o
	case *statepb.Command_RemoveVersion:
		c.Op = o
	case *statepb.Command_CreateUpload:
		c.Op = o
	case *statepb.Command_CommitPart:
		c.Op = o
	case *statepb.Command_FinishUpload:
		c.Op = o
	case *statepb.Command_DeleteUpload:
		c.Op = o
	case *statepb.Command_ReconcileReplicas:
		c.Op = o
	case *statepb.Command_ReplicaStarted:
		c.Op = o
	case *statepb.Command_ReplicaMultipart:
		c.Op = o
	case *statepb.Command_ReplicaPartCopied:
		c.Op = o
	case *statepb.Command_ReplicaFailed:
		c.Op = o
	case *statepb.Command_ReplicaCompleted:
		c.Op = o
	case *statepb.Command_ReplicaRestart:
		c.Op = o
	case *statepb.Command_ReplicaRemoved:
		c.Op = o
	case *statepb.Command_ReplicaVerified:
		c.Op = o
	case *statepb.Command_IssueToken:
		c.Op = o
	case *statepb.Command_RevokeToken:
		c.Op = o
	case *statepb.Command_PutShare:
		c.Op = o
	case *statepb.Command_DeleteShare:
		c.Op = o
	case *statepb.Command_CreateMachine:
		c.Op = o
	case *statepb.Command_DeleteMachine:
		c.Op = o
	case *statepb.Command_CreateScaleSet:
		c.Op = o
	case *statepb.Command_DeleteScaleSet:
		c.Op = o
	case *statepb.Command_SetProfile:
		c.Op = o
	case *statepb.Command_ReportStatus:
		c.Op = o
	case *statepb.Command_RequestActions:
		c.Op = o
	case *statepb.Command_FinishAction:
		c.Op = o
	case *statepb.Command_PutNode:
		c.Op = o
	case *statepb.Command_FailIngest:
		c.Op = o
	case *statepb.Command_RetryIngest:
		c.Op = o
	case *statepb.Command_RemoveNode:
		c.Op = o
	case *statepb.Command_SignVersion:
		c.Op = o
	case *statepb.Command_PutTrustPolicy:
		c.Op = o
	case *statepb.Command_CreateRollout:
		c.Op = o
	case *statepb.Command_PutRollout:
		c.Op = o
	default:
		panic(fmt.Sprintf("no command for %T", op))
	}
}

func openTemp(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "vmapp.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// dump lists every bucket's keys and values in order.
func dump(t *testing.T, db *DB) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := db.Dump(&out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func checkOutcome(t *testing.T, i int, s step, err error) {
	t.Helper()
	switch {
	case s.ok && err != nil:
		t.Errorf("step %d (%T): %v", i, s.op, err)
	case !s.ok && (err == nil || errs.ClassOf(err) != s.refused):
		t.Errorf("step %d (%T): %v, want a refusal %v", i, s.op, err, s.refused)
	}
}

// TestDeterministic applies the scenario command by command to one file
// and in one batch to another: the files hold the same, and every refused
// command left its file as it was.
func TestDeterministic(t *testing.T) {
	steps := scenario()
	a, b := openTemp(t), openTemp(t)
	var cmds []*statepb.Command
	for i, s := range steps {
		c := command(i, s)
		cmds = append(cmds, c)
		before := dump(t, a)
		err := a.Propose(context.Background(), c)
		checkOutcome(t, i, s, err)
		if !s.ok && !bytes.Equal(before, dump(t, a)) {
			t.Errorf("step %d (%T) was refused (%v) but changed the file", i, s.op, err)
		}
	}
	for i, err := range b.applyBatch(cmds, nil, 0) {
		checkOutcome(t, i, steps[i], err)
	}
	if da, db := dump(t, a), dump(t, b); !bytes.Equal(da, db) {
		t.Fatalf("the same commands gave different files:\n%s\n---\n%s", da, db)
	}
}

// TestWatchAndGroupCommit proposes from many goroutines at once: every
// command is applied once, watchers see exactly the applied ones.
func TestWatchAndGroupCommit(t *testing.T) {
	db := openTemp(t)
	var mu sync.Mutex
	seen := map[string]int{}
	db.Watch(func(c *statepb.Command) {
		mu.Lock()
		seen[c.GetCreateGallery().GetGallery().GetName()]++
		mu.Unlock()
	})
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			g := &pb.Gallery{Tenant: "t", Name: fmt.Sprintf("g%d", i%(n/2))}
			c := NewCommand(time.Unix(1, 0))
			c.Op = &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: g}}
			if err := db.Propose(context.Background(), c); err != nil && !errs.Is(err, errs.AlreadyExists) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if len(seen) != n/2 {
		t.Fatalf("watchers saw %d galleries, want %d", len(seen), n/2)
	}
	for g, k := range seen {
		if k != 1 {
			t.Errorf("gallery %s applied %d times", g, k)
		}
	}
	db.View(context.Background(), func(tx *Tx) error {
		if n2, _ := Galleries.Count(tx, Prefix("t"), nil); n2 != n/2 {
			t.Errorf("%d galleries stored, want %d", n2, n/2)
		}
		return nil
	})
}

// TestClosed: a command proposed after Close is refused, never lost
// silently.
func TestClosed(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "vmapp.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	c := NewCommand(time.Unix(1, 0))
	c.Op = &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: &pb.Gallery{Tenant: "t", Name: "g"}}}
	if err := db.Propose(context.Background(), c); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("Propose after Close: %v, want Unavailable", err)
	}
}

// rollouts are the rollout commands, from step base on: a scale set r with
// machine r-0 on g/a/1.0.0, and a rollout of 2.0.0 over it.
func rollouts(base int) []step {
	etag := func(i int) string { return fmt.Sprintf(`"e%d"`, base+i) }
	ro := func(name, state, machineState string) *pb.Rollout {
		return &pb.Rollout{Tenant: "t", Name: name, Application: "g/a", Version: "2.0.0", Target: &pb.RolloutTarget{ScaleSet: "r"}, State: state,
			Machines: []*pb.RolloutMachine{{Name: "r-0", Region: "westus", PreviousVersion: "1.0.0", State: machineState}}}
	}
	put := func(state, machineState, expect string) *statepb.Command_PutRollout {
		return &statepb.Command_PutRollout{PutRollout: &statepb.PutRollout{Rollout: ro("ro", state, machineState), ExpectEtag: expect}}
	}
	create := func(name string) *statepb.Command_CreateRollout {
		return &statepb.Command_CreateRollout{CreateRollout: &statepb.CreateRollout{Rollout: ro(name, pb.RolloutRunning, pb.RolloutMachinePending)}}
	}
	profile := func(version, expect string) *statepb.Command_SetProfile {
		return &statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{ScaleSet: "r", Etag: expect},
			Profile: &pb.ApplicationProfile{GalleryApplications: []*pb.VMGalleryApplication{{PackageReferenceId: "g/a/" + version}}}}}
	}
	return []step{
		ok(&statepb.Command_CreateScaleSet{CreateScaleSet: &statepb.CreateScaleSet{ScaleSet: &pb.ScaleSet{Tenant: "t", Name: "r", Region: "westus", OsType: "Linux"}}}),
		ok(&statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: &pb.Machine{Tenant: "t", Name: "r-0", Region: "westus", OsType: "Linux", ScaleSet: "r"}}}),
		ok(profile("1.0.0", etag(0))), // 2
		ok(create("ro")),              // 3
		no(errs.AlreadyExists, create("ro")),
		no(errs.FailedPrecondition, create("ro2")), // r-0 is ro's
		no(errs.Aborted, put(pb.RolloutRunning, pb.RolloutMachineUpdating, `"nope"`)),
		ok(put(pb.RolloutRunning, pb.RolloutMachineUpdating, etag(3))),    // 7: pins r-0 at 2.0.0
		no(errs.FailedPrecondition, profile("3.0.0", etag(2))),            // ro moves g/a on r-0
		ok(put(pb.RolloutSucceeded, pb.RolloutMachineSucceeded, etag(7))), // 9: the profile says 2.0.0, no pin
		no(errs.FailedPrecondition, put(pb.RolloutAborted, pb.RolloutMachineSucceeded, etag(9))),
	}
}
