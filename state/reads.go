package state

import (
	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Reads shared by the domain packages and the appliers, with the seeds'
// messages for what doesn't exist or is being deleted.

// MarkedForDeletion is the seeds' refusal of op on a resource marked for
// deletion.
func MarkedForDeletion(op, what string) error {
	return errs.New(errs.FailedPrecondition, "", "Operation '%s' isn't allowed on '%s' since it's marked for deletion. You can only retry the delete operation (or wait for an ongoing one to complete).", op, what)
}

// AppPath and VersionPath name resources in messages.
func AppPath(gallery, app string) string              { return gallery + "/" + app }
func VersionPath(gallery, app, version string) string { return gallery + "/" + app + "/" + version }

// Gallery reads a gallery.
func (tx *Tx) Gallery(tenant, name string) (*pb.Gallery, error) {
	g, ok, err := Galleries.Get(tx, GalleryKey(tenant, name))
	if err == nil && !ok {
		err = errs.New(errs.NotFound, "gallery", "Gallery '%s' doesn't exist.", name)
	}
	return g, err
}

// LiveGallery reads a gallery not marked for deletion; op names the
// operation refused otherwise.
func (tx *Tx) LiveGallery(tenant, name, op string) (*pb.Gallery, error) {
	g, err := tx.Gallery(tenant, name)
	if err == nil && g.GetProvisioningState() == pb.ProvisioningDeleting {
		return nil, MarkedForDeletion(op, name)
	}
	return g, err
}

// Application reads an application (NotFound names the gallery when it is
// the gallery that is missing).
func (tx *Tx) Application(tenant, gallery, name string) (*pb.GalleryApplication, error) {
	a, ok, err := Applications.Get(tx, ApplicationKey(tenant, gallery, name))
	if err != nil || ok {
		return a, err
	}
	if _, err := tx.Gallery(tenant, gallery); err != nil {
		return nil, err
	}
	return nil, errs.New(errs.NotFound, "application", "Gallery application '%s' doesn't exist.", AppPath(gallery, name))
}

// LiveApplication reads an application, in a live gallery, that is not
// marked for deletion.
func (tx *Tx) LiveApplication(tenant, gallery, name, op string) (*pb.GalleryApplication, error) {
	if _, err := tx.LiveGallery(tenant, gallery, op); err != nil {
		return nil, err
	}
	a, err := tx.Application(tenant, gallery, name)
	if err == nil && a.GetProvisioningState() == pb.ProvisioningDeleting {
		return nil, MarkedForDeletion(op, AppPath(gallery, name))
	}
	return a, err
}

// Version reads a version by its exact name.
func (tx *Tx) Version(tenant, gallery, app, name string) (*pb.GalleryApplicationVersion, error) {
	v, ok, err := Versions.Get(tx, VersionKey(tenant, gallery, app, name))
	if err != nil || ok {
		return v, err
	}
	if _, err := tx.Application(tenant, gallery, app); err != nil {
		return nil, err
	}
	return nil, errs.New(errs.NotFound, "version", "Gallery application version '%s' doesn't exist.", VersionPath(gallery, app, name))
}

// Session reads an upload session.
func (tx *Tx) Session(id string) (*statepb.UploadSession, error) {
	s, ok, err := Uploads.Get(tx, UploadKey(id))
	if err == nil && !ok {
		err = errs.New(errs.NotFound, "sessionId", "Upload session '%s' doesn't exist: it completed, was aborted or expired. Begin the upload again.", id)
	}
	return s, err
}

// SessionOf returns the open session for a version's artifact, or nil.
func (tx *Tx) SessionOf(tenant, gallery, app, version string, k pb.ArtifactKind) (*statepb.UploadSession, error) {
	var out *statepb.UploadSession
	err := Uploads.Scan(tx, nil, nil, func(_ []byte, s *statepb.UploadSession) (bool, error) {
		if s.Tenant == tenant && s.Gallery == gallery && s.Application == app && s.Version == version && s.Kind == k {
			out = s
			return false, nil
		}
		return true, nil
	})
	return out, err
}

// Machine reads a machine (without its instance view).
func (tx *Tx) Machine(tenant, name string) (*pb.Machine, error) {
	m, ok, err := Machines.Get(tx, MachineKey(tenant, name))
	if err == nil && !ok {
		err = errs.New(errs.NotFound, "name", "Machine '%s' doesn't exist.", name)
	}
	return m, err
}

// ScaleSet reads a scale set.
func (tx *Tx) ScaleSet(tenant, name string) (*pb.ScaleSet, error) {
	s, ok, err := ScaleSets.Get(tx, ScaleSetKey(tenant, name))
	if err == nil && !ok {
		err = errs.New(errs.NotFound, "name", "Scale set '%s' doesn't exist.", name)
	}
	return s, err
}

// MachineToken returns the id of a machine's live agent credential, "" when
// it has none.
func (tx *Tx) MachineToken(tenant, machine string) string {
	return string(tx.tx.Bucket(bucketMachineTokens).Get(MachineTokenKey(tenant, machine)))
}

// AnyToken tells whether any credential exists.
func (tx *Tx) AnyToken() bool {
	k, _ := Tokens.bucket(tx).Cursor().First()
	return k != nil
}
