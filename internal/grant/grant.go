// Package grant signs and checks peer grants: what lets one machine read
// one artifact from other machines' agents for a few minutes. vmappd signs
// a grant (Ed25519) when it gives a machine a download plan of a version in
// its goal state; an agent serving pieces checks the signature with the
// keys vmappd gave it in answer to its announcements, the expiry, and that
// the grant names the artifact asked for and the machine asking.
package grant

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/internal/atomicfile"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TTL is how long a grant works: a machine whose credential is revoked
// gets no new grant, and the one it holds lapses within TTL.
const TTL = 5 * time.Minute

// Scheme is the HTTP Authorization scheme a grant is sent with.
const Scheme = "VmappGrant"

// Signer signs grants.
type Signer struct{ key ed25519.PrivateKey }

// FromClusterKey derives the signer every node of a cluster shares from
// the cluster key, so that grants of any node check with the same key.
func FromClusterKey(clusterKey []byte) (*Signer, error) {
	seed, err := hkdf.Key(sha256.New, clusterKey, nil, "vmapp peer grants v1", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return &Signer{key: ed25519.NewKeyFromSeed(seed)}, nil
}

// FromFile reads the signer's seed from path, made (random, mode 0600) when
// missing: a single vmappd's.
func FromFile(path string) (*Signer, error) {
	seed, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		seed = make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(path, seed, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: %d bytes, not an Ed25519 seed (%d): delete it to make a new one", path, len(seed), ed25519.SeedSize)
	}
	return &Signer{key: ed25519.NewKeyFromSeed(seed)}, nil
}

// Public is the key grants are checked with.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign returns g, signed and encoded (base64url, no padding).
func (s *Signer) Sign(g *pb.PeerGrant) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(g)
	if err != nil {
		return "", err
	}
	sg, err := proto.Marshal(&pb.SignedPeerGrant{Grant: b, Signature: ed25519.Sign(s.key, b)})
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(sg), nil
}

// Check decodes a grant, checks its signature against keys and its expiry
// at now, and returns it. Errors say why, without the grant.
func Check(encoded string, keys []ed25519.PublicKey, now time.Time) (*pb.PeerGrant, error) {
	raw, err := base64.RawURLEncoding.DecodeString(encoded)
	if err != nil {
		return nil, fmt.Errorf("the grant is not base64url")
	}
	var sg pb.SignedPeerGrant
	if err := proto.Unmarshal(raw, &sg); err != nil {
		return nil, fmt.Errorf("the grant is malformed")
	}
	signed := false
	for _, k := range keys {
		if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, sg.Grant, sg.Signature) {
			signed = true
			break
		}
	}
	if !signed {
		return nil, fmt.Errorf("the grant is not signed by vmappd")
	}
	var g pb.PeerGrant
	if err := proto.Unmarshal(sg.Grant, &g); err != nil {
		return nil, fmt.Errorf("the grant is malformed")
	}
	if exp := g.ExpireTime.AsTime(); g.ExpireTime == nil || !now.Before(exp) {
		return nil, fmt.Errorf("the grant expired at %s", exp.UTC().Format(time.RFC3339))
	}
	return &g, nil
}

// New is a grant for machine (of tenant) to read an artifact until now+TTL.
func New(tenant, machine, galleryTenant, gallery, app, version string, kind pb.ArtifactKind, now time.Time) *pb.PeerGrant {
	return &pb.PeerGrant{Tenant: tenant, Machine: machine, GalleryTenant: galleryTenant, Gallery: gallery,
		Application: app, Version: version, Kind: kind, ExpireTime: timestamppb.New(now.Add(TTL))}
}
