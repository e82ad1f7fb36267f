package catalog

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// UploadTarget checks that the version can take an artifact of kind k: it
// exists, is not being deleted and does not have that artifact yet.
func (s *Store) UploadTarget(ctx context.Context, tenant, gallery, app, version string, k pb.ArtifactKind) (*pb.GalleryApplicationVersion, error) {
	if version == Latest {
		return nil, invalid("version", "name the version to upload to; 'latest' is only for reading")
	}
	var v *pb.GalleryApplicationVersion
	err := s.syncView(ctx, func(tx *state.Tx) (err error) {
		v, err = tx.UploadTarget(tenant, gallery, app, version, k)
		return err
	})
	return v, err
}

// FindUpload returns the open session for a version's artifact, or nil.
func (s *Store) FindUpload(ctx context.Context, tenant, gallery, app, version string, k pb.ArtifactKind) (*statepb.UploadSession, error) {
	var out *statepb.UploadSession
	err := s.syncView(ctx, func(tx *state.Tx) (err error) {
		out, err = tx.SessionOf(tenant, gallery, app, version, k)
		return err
	})
	return out, err
}

// CreateUpload records a new session. It fails with FailedPrecondition when
// the version already has a session for the same artifact (another client
// began one first) or can't take the artifact.
func (s *Store) CreateUpload(ctx context.Context, sess *statepb.UploadSession) error {
	_, err := s.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_CreateUpload{CreateUpload: &statepb.CreateUpload{Session: sess}}
	})
	return err
}

// GetUpload reads a session.
func (s *Store) GetUpload(ctx context.Context, id string) (*statepb.UploadSession, error) {
	var out *statepb.UploadSession
	err := s.syncView(ctx, func(tx *state.Tx) (err error) {
		out, err = tx.Session(id)
		return err
	})
	return out, err
}

// CommitPart appends a stored part to the session, with the sha256 state
// after it, and pushes its expiry back by ttl.
func (s *Store) CommitPart(ctx context.Context, id string, p *statepb.Part, sha256State []byte, ttl time.Duration) (*statepb.UploadSession, error) {
	_, err := s.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_CommitPart{CommitPart: &statepb.CommitPart{SessionId: id, Part: p, Sha256State: sha256State,
			ExpireTime: timestamppb.New(c.Time.AsTime().Add(ttl))}}
	})
	if err != nil {
		return nil, err
	}
	var sess *statepb.UploadSession
	err = s.view(ctx, func(tx *state.Tx) (err error) {
		sess, err = tx.Session(id)
		return err
	})
	return sess, err
}

// FinishUpload records the stored artifact on the version and its manifest,
// and closes the session, in one command. The package makes the version
// Succeeded.
func (s *Store) FinishUpload(ctx context.Context, id string, a *pb.Artifact, m *statepb.Manifest) (*pb.GalleryApplicationVersion, error) {
	var sess *statepb.UploadSession
	err := s.view(ctx, func(tx *state.Tx) (err error) {
		sess, err = tx.Session(id)
		return err
	})
	if err != nil {
		return nil, err
	}
	_, err = s.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_FinishUpload{FinishUpload: &statepb.FinishUpload{SessionId: id, Artifact: a, Manifest: m}}
	})
	if err != nil {
		return nil, err
	}
	var v *pb.GalleryApplicationVersion
	err = s.view(ctx, func(tx *state.Tx) (err error) {
		v, err = tx.Version(sess.Tenant, sess.Gallery, sess.Application, sess.Version)
		return err
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
	_, err := s.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_FailIngest{FailIngest: &statepb.FailIngest{Version: vref(tenant, gallery, app, version),
			Error: &pb.ProvisioningError{Code: class.String(), Message: msg}}}
	})
	return err
}

// RetryIngest moves a Failed version back to Creating: an upload or import
// of it began again.
func (s *Store) RetryIngest(ctx context.Context, tenant, gallery, app, version string) error {
	_, err := s.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_RetryIngest{RetryIngest: &statepb.RetryIngest{Version: vref(tenant, gallery, app, version)}}
	})
	return err
}

// Manifest returns the per-piece manifest of a version's stored artifact.
func (s *Store) Manifest(ctx context.Context, tenant, gallery, app, version string, k pb.ArtifactKind) (*statepb.Manifest, error) {
	if _, err := ParseVersion(version); err != nil {
		return nil, err
	}
	var m *statepb.Manifest
	err := s.view(ctx, func(tx *state.Tx) error {
		var ok bool
		var err error
		m, ok, err = state.Manifests.Get(tx, state.ManifestKey(tenant, gallery, app, version, k))
		if err == nil && !ok {
			err = errs.New(errs.NotFound, "version", "Gallery application version '%s' has no stored %s.", state.VersionPath(gallery, app, version), k.Label())
		}
		return err
	})
	return m, err
}

// DeleteUpload removes a session record (its parts are the caller's to abort).
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	_, err := s.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_DeleteUpload{DeleteUpload: &statepb.DeleteUpload{SessionId: id}}
	})
	return err
}

// ListUploads returns every open session.
func (s *Store) ListUploads(ctx context.Context) ([]*statepb.UploadSession, error) {
	var out []*statepb.UploadSession
	err := s.view(ctx, func(tx *state.Tx) (err error) {
		out, err = state.Uploads.All(tx, nil)
		return err
	})
	return out, err
}
