// Package signtest signs versions in tests as a publisher does: keys made
// on the spot, statements built from the version vmappd holds, signatures
// added through the SigningService.
package signtest

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
	"github.com/vmapp/vmapp/sign/signpb"
)

// Key makes a key pair.
func Key(t testing.TB) minisign.PrivateKey {
	t.Helper()
	k, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// Trust adds k's public key to gallery's trust policy under name.
func Trust(t testing.TB, cl *client.Client, gallery, name string, k minisign.PrivateKey) *pb.TrustPolicy {
	t.Helper()
	r, err := pb.NewSigningServiceClient(cl.Conn()).AddTrustedKey(ctx(t), &pb.AddTrustedKeyRequest{Gallery: gallery, PublicKey: k.Public().String(), Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return r.Policy
}

// Signature signs the statement of version v with the parameters p.
func Signature(t testing.TB, k minisign.PrivateKey, v *pb.GalleryApplicationVersion, p *pb.VersionSignatures) string {
	t.Helper()
	s, err := sign.Sign(k, signpb.Statement(v, p), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return string(s.Encode())
}

// Request is the SignVersionRequest of gallery/app/version as vmappd holds
// it, signed by k with the parameters p (sequence, expiry, rollback) and
// the custom actions vmappd takes the statement to cover (signpb.Params).
func Request(t testing.TB, cl *client.Client, k minisign.PrivateKey, gallery, app, version string, p *pb.VersionSignatures) *pb.SignVersionRequest {
	t.Helper()
	r, err := cl.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: gallery, Application: app, Version: version})
	if err != nil {
		t.Fatal(err)
	}
	ar, err := cl.Catalog.GetApplication(ctx(t), &pb.GetApplicationRequest{Gallery: gallery, Application: app})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := pb.NewSigningServiceClient(cl.Conn()).GetVersionSignatures(ctx(t), &pb.GetVersionSignaturesRequest{Gallery: gallery, Application: app, Version: version})
	if err != nil {
		t.Fatal(err)
	}
	p = signpb.Params(r.Version, ar.Application, cur.Signatures, &pb.VersionSignatures{Tenant: r.Version.Tenant,
		Sequence: p.GetSequence(), ExpireTime: p.GetExpireTime(), Rollback: p.GetRollback()})
	return &pb.SignVersionRequest{Gallery: gallery, Application: app, Version: version,
		Sequence: p.GetSequence(), ExpireTime: p.GetExpireTime(), Rollback: p.GetRollback(), Signature: Signature(t, k, r.Version, p)}
}

// Sign signs gallery/app/version with k and the parameters p, and adds
// the signature (replace: replacing the statement signed before).
func Sign(t testing.TB, cl *client.Client, k minisign.PrivateKey, gallery, app, version string, p *pb.VersionSignatures, replace bool) *pb.VersionSignatures {
	t.Helper()
	req := Request(t, cl, k, gallery, app, version, p)
	req.Replace = replace
	r, err := pb.NewSigningServiceClient(cl.Conn()).SignVersion(ctx(t), req)
	if err != nil {
		t.Fatalf("sign %s/%s/%s: %v", gallery, app, version, err)
	}
	return r.Signatures
}

// Tamper is a signed token (a grant, a statement's signature) with one
// character near its end, inside the signature, replaced by another:
// always changed, where cutting off the end and appending a fixed string
// leaves it as it was when it already ended that way.
func Tamper(s string) string {
	b := []byte(s)
	i := len(b) - 10
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
