package state

import (
	"context"
	"testing"
	"time"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestSignatureRecords: a version's signatures (one per key, the
// statement replaced only when asked), the application's highest
// sequence (which outlives the version), and a trust policy that goes
// with its gallery.
func TestSignatureRecords(t *testing.T) {
	db := openTemp(t)
	now := time.Unix(1_700_000_000, 0)
	propose := func(op any) *statepb.Command {
		t.Helper()
		now = now.Add(time.Second)
		c := NewCommand(now)
		setOp(c, op)
		if err := db.Propose(context.Background(), c); err != nil {
			t.Fatalf("%T: %v", op, err)
		}
		return c
	}
	read := func() (sigs *pb.VersionSignatures, policy *pb.TrustPolicy, highest uint64) {
		t.Helper()
		err := db.View(context.Background(), func(tx *Tx) (err error) {
			if sigs, err = tx.VersionSignatures("t", "g", "a", "1.0.0"); err != nil {
				return err
			}
			if policy, err = tx.TrustPolicy("t", "g"); err != nil {
				return err
			}
			highest = tx.HighestSequence("t", "g", "a")
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	keys := func(s *pb.VersionSignatures) (out []string) {
		for _, x := range s.GetSignatures() {
			out = append(out, x.KeyId+":"+x.Signature)
		}
		return out
	}

	propose(&statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: &pb.Gallery{Tenant: "t", Name: "g", ProvisioningState: pb.ProvisioningSucceeded}}})
	propose(&statepb.Command_CreateApplication{CreateApplication: &statepb.CreateApplication{Application: &pb.GalleryApplication{Tenant: "t", Gallery: "g", Name: "a"}}})
	vc := propose(&statepb.Command_CreateVersion{CreateVersion: &statepb.CreateVersion{Version: version("1.0.0")}})
	if s, p, h := read(); s != nil || p != nil || h != 0 {
		t.Fatalf("before anything is signed: %v, %v, %d", s, p, h)
	}
	pc := propose(&statepb.Command_PutTrustPolicy{PutTrustPolicy: &statepb.PutTrustPolicy{Tenant: "t", Policy: &pb.TrustPolicy{Gallery: "g", RequiredSignatures: 1}}})
	sign := func(seq uint64, key, sig string, replace bool) {
		t.Helper()
		propose(&statepb.Command_SignVersion{SignVersion: &statepb.SignVersion{Version: &statepb.VersionRef{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0"},
			Statement: &pb.VersionSignatures{Tenant: "t", Sequence: seq}, Signature: &pb.VersionSignature{KeyId: key, Signature: sig, Status: "not stored"},
			Replace: replace, VersionEtag: vc.Etag, PolicyEtag: pc.Etag}})
	}
	sign(3, "A", "a1", false)
	sign(3, "B", "b1", false)
	sign(3, "A", "a2", false)
	s, p, h := read()
	if got := keys(s); len(got) != 2 || got[0] != "B:b1" || got[1] != "A:a2" || h != 3 || p.GetEtag() != pc.Etag {
		t.Fatalf("signatures %v, highest %d, policy %v", got, h, p)
	}
	if st := s.Signatures[0].Status; st != "" || s.Signatures[0].AddTime == nil {
		t.Fatalf("stored signature %v: a status is only set on reads, the time always", s.Signatures[0])
	}
	sign(5, "A", "a3", true)
	if s, _, h := read(); len(keys(s)) != 1 || keys(s)[0] != "A:a3" || s.Sequence != 5 || h != 5 {
		t.Fatalf("after the statement was replaced: %v, sequence %d, highest %d", keys(s), s.Sequence, h)
	}

	propose(&statepb.Command_DeleteVersion{DeleteVersion: &statepb.DeleteVersion{Version: &statepb.VersionRef{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0"}}})
	propose(&statepb.Command_RemoveVersion{RemoveVersion: &statepb.RemoveVersion{Version: &statepb.VersionRef{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0"}}})
	if s, p, h := read(); s != nil || p == nil || h != 5 {
		t.Fatalf("after the version was removed: signatures %v, policy %v, highest %d (the sequence must stay)", s, p, h)
	}
	propose(&statepb.Command_DeleteGallery{DeleteGallery: &statepb.DeleteGallery{Tenant: "t", Name: "g", Cascade: true}})
	if _, p, h := read(); p != nil || h != 5 {
		t.Fatalf("after the gallery was deleted: policy %v, highest %d", p, h)
	}
}
