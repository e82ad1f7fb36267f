package catalog

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/boltpb"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// ArtifactOf returns the version's stored artifact of kind k, or nil.
func ArtifactOf(v *pb.GalleryApplicationVersion, k pb.ArtifactKind) *pb.Artifact {
	if k == pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION {
		return v.GetDefaultConfiguration()
	}
	return v.GetPackage()
}

func sessionOf(tx *bolt.Tx, id string) (*statepb.UploadSession, error) {
	s := &statepb.UploadSession{}
	ok, err := boltpb.Get(tx.Bucket(bucketUploads), []byte(id), s)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errs.New(errs.NotFound, "sessionId", "Upload session '%s' doesn't exist: it completed, was aborted or expired. Begin the upload again.", id)
	}
	return s, nil
}

// findSession returns the open session for the version's artifact, or nil.
func findSession(tx *bolt.Tx, tenant, gallery, app, version string, k pb.ArtifactKind) (*statepb.UploadSession, error) {
	c := tx.Bucket(bucketUploads).Cursor()
	for key, v := c.First(); key != nil; key, v = c.Next() {
		s := &statepb.UploadSession{}
		if err := proto.Unmarshal(v, s); err != nil {
			return nil, err
		}
		if s.Tenant == tenant && s.Gallery == gallery && s.Application == app && s.Version == version && s.Kind == k {
			return s, nil
		}
	}
	return nil, nil
}

// UploadTarget checks that the version can take an artifact of kind k: it
// exists, is not being deleted and does not have that artifact yet.
func (s *Store) UploadTarget(ctx context.Context, tenant, gallery, app, version string, k pb.ArtifactKind) (*pb.GalleryApplicationVersion, error) {
	var v *pb.GalleryApplicationVersion
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		v, err = uploadTarget(tx, tenant, gallery, app, version, k)
		return err
	})
	return v, err
}

func uploadTarget(tx *bolt.Tx, tenant, gallery, app, version string, k pb.ArtifactKind) (*pb.GalleryApplicationVersion, error) {
	if version == Latest {
		return nil, invalid("version", "name the version to upload to; 'latest' is only for reading")
	}
	if _, err := liveApplication(tx, tenant, gallery, app, "Upload"); err != nil {
		return nil, err
	}
	v, err := getVersion(tx, tenant, gallery, app, version)
	if err != nil {
		return nil, err
	}
	what := versionPath(gallery, app, version)
	if v.ProvisioningState == StateDeleting {
		return nil, markedForDeletion("Upload", what)
	}
	if a := ArtifactOf(v, k); a != nil {
		return nil, errs.New(errs.FailedPrecondition, "kind", "Gallery application version '%s' already has its %s (sha256 %s); its content can't change: create a new version.", what, k.Label(), a.Sha256)
	}
	return v, nil
}

// FindUpload returns the open session for a version's artifact, or nil.
func (s *Store) FindUpload(ctx context.Context, tenant, gallery, app, version string, k pb.ArtifactKind) (*statepb.UploadSession, error) {
	var out *statepb.UploadSession
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		out, err = findSession(tx, tenant, gallery, app, version, k)
		return err
	})
	return out, err
}

// CreateUpload records a new session. It fails with FailedPrecondition when
// the version already has a session for the same artifact (another client
// began one first) or can't take the artifact.
func (s *Store) CreateUpload(ctx context.Context, sess *statepb.UploadSession) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		if _, err := uploadTarget(tx, sess.Tenant, sess.Gallery, sess.Application, sess.Version, sess.Kind); err != nil {
			return err
		}
		other, err := findSession(tx, sess.Tenant, sess.Gallery, sess.Application, sess.Version, sess.Kind)
		if err != nil {
			return err
		}
		if other != nil {
			return InProgress("sha256", other)
		}
		return boltpb.Put(tx.Bucket(bucketUploads), []byte(sess.Id), sess)
	})
}

// InProgress is the error for an upload of another file (or from another
// source) while sess is open: it describes sess and names the command that
// aborts it. field is the request's field that differs.
func InProgress(field string, sess *statepb.UploadSession) error {
	what := versionPath(sess.Gallery, sess.Application, sess.Version)
	desc := fmt.Sprintf("session %s, %d bytes stored", sess.Id, sess.CommittedOffset)
	if sess.SizeBytes >= 0 {
		desc += fmt.Sprintf(" of %d", sess.SizeBytes)
	}
	if sess.Sha256 != "" {
		desc += ", sha256 " + sess.Sha256
	}
	if sess.SourceUrl != "" {
		desc += ", imported from a URL"
	}
	return errs.New(errs.FailedPrecondition, field, "Another upload of the %s of '%s' is in progress (%s): resume it with the same file or URL, or abort it first: vmapp version upload --gallery %s --app %s %s --abort",
		sess.Kind.Label(), what, desc, sess.Gallery, sess.Application, sess.Version)
}

// GetUpload reads a session.
func (s *Store) GetUpload(ctx context.Context, id string) (*statepb.UploadSession, error) {
	var out *statepb.UploadSession
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		out, err = sessionOf(tx, id)
		return err
	})
	return out, err
}

// CommitPart appends a stored part to the session, with the sha256 state
// after it, and pushes its expiry back by ttl.
func (s *Store) CommitPart(ctx context.Context, id string, p *statepb.Part, sha256State []byte, ttl time.Duration) (*statepb.UploadSession, error) {
	var sess *statepb.UploadSession
	err := s.update(ctx, func(tx *bolt.Tx) (err error) {
		if sess, err = sessionOf(tx, id); err != nil {
			return err
		}
		if want := int32(len(sess.Parts) + 1); p.Number != want {
			return errs.New(errs.Aborted, "", "upload session %s: part %d committed out of order (want %d)", id, p.Number, want)
		}
		sess.Parts = append(sess.Parts, p)
		sess.CommittedOffset += p.SizeBytes
		sess.Sha256State = sha256State
		sess.UpdateTime = s.timestamp()
		sess.ExpireTime = timestamppb.New(s.now().Add(ttl))
		return boltpb.Put(tx.Bucket(bucketUploads), []byte(id), sess)
	})
	return sess, err
}

// FinishUpload records the stored artifact on the version and its manifest,
// and closes the session, in one transaction. The package makes the version
// Succeeded.
func (s *Store) FinishUpload(ctx context.Context, id string, a *pb.Artifact, m *statepb.Manifest) (*pb.GalleryApplicationVersion, error) {
	var v *pb.GalleryApplicationVersion
	err := s.update(ctx, func(tx *bolt.Tx) error {
		sess, err := sessionOf(tx, id)
		if err != nil {
			return err
		}
		if v, err = uploadTarget(tx, sess.Tenant, sess.Gallery, sess.Application, sess.Version, sess.Kind); err != nil {
			return err
		}
		a.StoredTime = s.timestamp()
		// An import records where the artifact came from, as the seeds'
		// mediaLink / defaultConfigurationLink, unless the version has one.
		if sess.SourceUrl != "" {
			if v.PublishingProfile.Source == nil {
				v.PublishingProfile.Source = &pb.UserArtifactSource{}
			}
			src := v.PublishingProfile.Source
			if sess.Kind == pb.ArtifactKind_ARTIFACT_KIND_PACKAGE && src.MediaLink == "" {
				src.MediaLink = sess.SourceUrl
			} else if sess.Kind == pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION && src.DefaultConfigurationLink == "" {
				src.DefaultConfigurationLink = sess.SourceUrl
			}
		}
		if sess.Kind == pb.ArtifactKind_ARTIFACT_KIND_PACKAGE {
			v.Package = a
			v.ProvisioningState, v.ProvisioningError = StateSucceeded, nil
			v.PublishingProfile.PublishedDate = a.StoredTime
		} else {
			v.DefaultConfiguration = a
		}
		n, _ := ParseVersion(v.Name)
		vk := versionKey(sess.Tenant, sess.Gallery, sess.Application, n)
		if err := boltpb.Put(tx.Bucket(bucketManifests), manifestKey(vk, sess.Kind), m); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUploads).Delete([]byte(id)); err != nil {
			return err
		}
		return s.save(tx, bucketVersions, vk, v)
	})
	return v, err
}

// FailIngest records that an upload or import of a version's artifact
// failed for good, or was abandoned: a version still waiting for its
// package (Creating, or Failed already) becomes Failed with cause as its
// provisioningError. A version that has its package, or is being deleted,
// is left as it is. An Internal cause is recorded as "internal error", as
// replies say it.
func (s *Store) FailIngest(ctx context.Context, tenant, gallery, app, version string, cause error) error {
	class, msg := errs.ClassOf(cause), cause.Error()
	if class == errs.Internal {
		msg = "internal error"
	}
	return s.editVersion(ctx, tenant, gallery, app, version, func(v *pb.GalleryApplicationVersion) bool {
		if v.Package != nil || (v.ProvisioningState != StateCreating && v.ProvisioningState != StateFailed) {
			return false
		}
		v.ProvisioningState = StateFailed
		v.ProvisioningError = &pb.ProvisioningError{Code: class.String(), Message: msg, Time: s.timestamp()}
		return true
	})
}

// RetryIngest moves a Failed version back to Creating: an upload or import
// of it began again.
func (s *Store) RetryIngest(ctx context.Context, tenant, gallery, app, version string) error {
	return s.editVersion(ctx, tenant, gallery, app, version, func(v *pb.GalleryApplicationVersion) bool {
		if v.ProvisioningState != StateFailed {
			return false
		}
		v.ProvisioningState, v.ProvisioningError = StateCreating, nil
		return true
	})
}

// editVersion saves a version after edit, when edit reports a change.
func (s *Store) editVersion(ctx context.Context, tenant, gallery, app, version string, edit func(*pb.GalleryApplicationVersion) bool) error {
	n, err := ParseVersion(version)
	if err != nil {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		v, err := getVersion(tx, tenant, gallery, app, version)
		if err != nil || !edit(v) {
			return err
		}
		return s.save(tx, bucketVersions, versionKey(tenant, gallery, app, n), v)
	})
}

func manifestKey(versionKey []byte, k pb.ArtifactKind) []byte {
	return append(append(append([]byte(nil), versionKey...), 0), byte(k))
}

// Manifest returns the per-piece manifest of a version's stored artifact.
func (s *Store) Manifest(ctx context.Context, tenant, gallery, app, version string, k pb.ArtifactKind) (*statepb.Manifest, error) {
	n, err := ParseVersion(version)
	if err != nil {
		return nil, err
	}
	m := &statepb.Manifest{}
	err = s.view(ctx, func(tx *bolt.Tx) error {
		ok, err := boltpb.Get(tx.Bucket(bucketManifests), manifestKey(versionKey(tenant, gallery, app, n), k), m)
		if err == nil && !ok {
			err = errs.New(errs.NotFound, "version", "Gallery application version '%s' has no stored %s.", versionPath(gallery, app, version), k.Label())
		}
		return err
	})
	return m, err
}

// DeleteUpload removes a session record (its parts are the caller's to abort).
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	return s.update(ctx, func(tx *bolt.Tx) error { return tx.Bucket(bucketUploads).Delete([]byte(id)) })
}

// ListUploads returns every open session.
func (s *Store) ListUploads(ctx context.Context) ([]*statepb.UploadSession, error) {
	var out []*statepb.UploadSession
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketUploads).ForEach(func(_, v []byte) error {
			sess := &statepb.UploadSession{}
			if err := proto.Unmarshal(v, sess); err != nil {
				return err
			}
			out = append(out, sess)
			return nil
		})
	})
	return out, err
}
