package state

import (
	"fmt"

	"github.com/vmapp/vmapp/errs"
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

// UploadTarget checks, in tx, that a version can take an artifact of kind
// k: it exists, is not being deleted and doesn't have that artifact yet.
func (tx *Tx) UploadTarget(tenant, gallery, app, version string, k pb.ArtifactKind) (*pb.GalleryApplicationVersion, error) {
	if _, err := tx.LiveApplication(tenant, gallery, app, "Upload"); err != nil {
		return nil, err
	}
	v, err := tx.Version(tenant, gallery, app, version)
	if err != nil {
		return nil, err
	}
	what := VersionPath(gallery, app, version)
	if v.ProvisioningState == pb.ProvisioningDeleting {
		return nil, MarkedForDeletion("Upload", what)
	}
	if a := ArtifactOf(v, k); a != nil {
		return nil, errs.New(errs.FailedPrecondition, "kind", "Gallery application version '%s' already has its %s (sha256 %s); its content can't change: create a new version.", what, k.Label(), a.Sha256)
	}
	return v, nil
}

func createUpload(tx *Tx, op *statepb.CreateUpload) error {
	s := op.GetSession()
	if _, err := tx.UploadTarget(s.GetTenant(), s.GetGallery(), s.GetApplication(), s.GetVersion(), s.GetKind()); err != nil {
		return err
	}
	other, err := tx.SessionOf(s.Tenant, s.Gallery, s.Application, s.Version, s.Kind)
	if err != nil {
		return err
	}
	if other != nil {
		return UploadInProgress("sha256", other)
	}
	return Uploads.put(tx, UploadKey(s.Id), s)
}

func commitPart(tx *Tx, c *statepb.Command, op *statepb.CommitPart) error {
	s, err := tx.Session(op.SessionId)
	if err != nil {
		return err
	}
	p := op.GetPart()
	if want := int32(len(s.Parts) + 1); p.GetNumber() != want {
		return errs.New(errs.Aborted, "", "upload session %s: part %d committed out of order (want %d)", s.Id, p.GetNumber(), want)
	}
	s.Parts = append(s.Parts, p)
	s.CommittedOffset += p.SizeBytes
	s.Sha256State = op.Sha256State
	s.UpdateTime, s.ExpireTime = c.Time, op.ExpireTime
	return Uploads.put(tx, UploadKey(s.Id), s)
}

// finishUpload records the stored artifact and its manifest on the version
// and closes the session; the package makes the version Succeeded.
func finishUpload(tx *Tx, c *statepb.Command, op *statepb.FinishUpload) error {
	s, err := tx.Session(op.SessionId)
	if err != nil {
		return err
	}
	v, err := tx.UploadTarget(s.Tenant, s.Gallery, s.Application, s.Version, s.Kind)
	if err != nil {
		return err
	}
	a := op.GetArtifact()
	a.StoredTime = c.Time
	// An import records where the artifact came from, as the seeds'
	// mediaLink / defaultConfigurationLink, unless the version has one.
	if s.SourceUrl != "" {
		if v.PublishingProfile.Source == nil {
			v.PublishingProfile.Source = &pb.UserArtifactSource{}
		}
		src := v.PublishingProfile.Source
		if s.Kind == pb.ArtifactKind_ARTIFACT_KIND_PACKAGE && src.MediaLink == "" {
			src.MediaLink = s.SourceUrl
		} else if s.Kind == pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION && src.DefaultConfigurationLink == "" {
			src.DefaultConfigurationLink = s.SourceUrl
		}
	}
	if s.Kind == pb.ArtifactKind_ARTIFACT_KIND_PACKAGE {
		v.Package = a
		v.ProvisioningState, v.ProvisioningError = pb.ProvisioningSucceeded, nil
		v.PublishingProfile.PublishedDate = a.StoredTime
	} else {
		v.DefaultConfiguration = a
	}
	if err := Manifests.put(tx, ManifestKey(s.Tenant, s.Gallery, s.Application, s.Version, s.Kind), op.GetManifest()); err != nil {
		return err
	}
	if err := Uploads.delete(tx, UploadKey(s.Id)); err != nil {
		return err
	}
	if err := markDirty(tx, c, s.Tenant, s.Gallery, s.Application, s.Version); err != nil {
		return err
	}
	return Versions.put(tx, VersionKey(s.Tenant, s.Gallery, s.Application, s.Version), stamp(v, c))
}

// UploadInProgress is the refusal of an upload of another file (or from
// another source) while sess is open: it describes sess and names the
// command that aborts it. field is the request's field that differs.
func UploadInProgress(field string, sess *statepb.UploadSession) error {
	what := VersionPath(sess.Gallery, sess.Application, sess.Version)
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

// failIngest makes a version still waiting for its package Failed.
func failIngest(tx *Tx, c *statepb.Command, op *statepb.FailIngest) error {
	r := op.GetVersion()
	v, ok, err := Versions.Get(tx, refVersionKey(r))
	if err != nil || !ok || v.Package != nil || v.ProvisioningState != pb.ProvisioningCreating && v.ProvisioningState != pb.ProvisioningFailed {
		return err
	}
	v.ProvisioningState = pb.ProvisioningFailed
	v.ProvisioningError = op.GetError()
	v.ProvisioningError.Time = c.Time
	return Versions.put(tx, refVersionKey(r), stamp(v, c))
}

// retryIngest moves a Failed version back to Creating.
func retryIngest(tx *Tx, c *statepb.Command, op *statepb.RetryIngest) error {
	r := op.GetVersion()
	v, ok, err := Versions.Get(tx, refVersionKey(r))
	if err != nil || !ok || v.ProvisioningState != pb.ProvisioningFailed {
		return err
	}
	v.ProvisioningState, v.ProvisioningError = pb.ProvisioningCreating, nil
	return Versions.put(tx, refVersionKey(r), stamp(v, c))
}

func deleteUpload(tx *Tx, op *statepb.DeleteUpload) error {
	return Uploads.delete(tx, UploadKey(op.GetSessionId()))
}
