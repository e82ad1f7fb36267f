package state

import (
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func createGallery(tx *Tx, c *statepb.Command, op *statepb.CreateGallery) error {
	g := op.GetGallery()
	k := GalleryKey(g.GetTenant(), g.GetName())
	if old, ok, err := Galleries.Get(tx, k); err != nil {
		return err
	} else if ok && old.ProvisioningState == pb.ProvisioningDeleting {
		return MarkedForDeletion("CreateGallery", g.Name)
	} else if ok {
		return errs.New(errs.AlreadyExists, "gallery", "Gallery '%s' already exists.", g.Name)
	}
	return Galleries.put(tx, k, stamp(g, c))
}

func updateGallery(tx *Tx, c *statepb.Command, op *statepb.UpdateGallery) error {
	g := op.GetGallery()
	cur, err := tx.LiveGallery(g.GetTenant(), g.GetName(), "UpdateGallery")
	if err != nil {
		return err
	}
	if err := CheckETag("gallery '"+g.Name+"'", op.ExpectEtag, cur.Etag); err != nil {
		return err
	}
	return Galleries.put(tx, GalleryKey(g.Tenant, g.Name), stamp(g, c))
}

func deleteGallery(tx *Tx, c *statepb.Command, op *statepb.DeleteGallery) error {
	g, err := tx.Gallery(op.Tenant, op.Name)
	if err != nil {
		return err
	}
	if err := CheckETag("gallery '"+op.Name+"'", op.ExpectEtag, g.Etag); err != nil {
		return err
	}
	p := Prefix(op.Tenant, op.Name)
	if !op.Cascade {
		n, err := Applications.Count(tx, p, live)
		if err != nil {
			return err
		}
		if n > 0 {
			return errs.New(errs.FailedPrecondition, "cascade", "Gallery '%s' has %d application(s): delete them first, or delete with cascade.", op.Name, n)
		}
	}
	if err := markAll(tx, c, Versions, DeletingVersions, p); err != nil {
		return err
	}
	if err := markAll(tx, c, Applications, DeletingApplications, p); err != nil {
		return err
	}
	// A new gallery of the same name starts private, and trusting no key.
	if err := deleteAll(tx, Shares, Prefix(op.Tenant, op.Name)); err != nil {
		return err
	}
	if err := TrustPolicies.delete(tx, GalleryKey(op.Tenant, op.Name)); err != nil {
		return err
	}
	return markDeleting(tx, c, Galleries, DeletingGalleries, GalleryKey(op.Tenant, op.Name), g)
}

func createApplication(tx *Tx, c *statepb.Command, op *statepb.CreateApplication) error {
	a := op.GetApplication()
	if _, err := tx.LiveGallery(a.GetTenant(), a.GetGallery(), "CreateApplication"); err != nil {
		return err
	}
	k := ApplicationKey(a.Tenant, a.Gallery, a.GetName())
	if old, ok, err := Applications.Get(tx, k); err != nil {
		return err
	} else if ok && old.ProvisioningState == pb.ProvisioningDeleting {
		return MarkedForDeletion("CreateApplication", AppPath(a.Gallery, a.Name))
	} else if ok {
		return errs.New(errs.AlreadyExists, "application", "Gallery application '%s' already exists.", AppPath(a.Gallery, a.Name))
	}
	return Applications.put(tx, k, stamp(a, c))
}

func updateApplication(tx *Tx, c *statepb.Command, op *statepb.UpdateApplication) error {
	a := op.GetApplication()
	cur, err := tx.LiveApplication(a.GetTenant(), a.GetGallery(), a.GetName(), "UpdateApplication")
	if err != nil {
		return err
	}
	if err := CheckETag("application '"+AppPath(a.Gallery, a.Name)+"'", op.ExpectEtag, cur.Etag); err != nil {
		return err
	}
	return Applications.put(tx, ApplicationKey(a.Tenant, a.Gallery, a.Name), stamp(a, c))
}

func deleteApplication(tx *Tx, c *statepb.Command, op *statepb.DeleteApplication) error {
	a, err := tx.Application(op.Tenant, op.Gallery, op.Name)
	if err != nil {
		return err
	}
	what := AppPath(op.Gallery, op.Name)
	if err := CheckETag("application '"+what+"'", op.ExpectEtag, a.Etag); err != nil {
		return err
	}
	p := Prefix(op.Tenant, op.Gallery, op.Name)
	if !op.Cascade {
		n, err := Versions.Count(tx, p, live)
		if err != nil {
			return err
		}
		if n > 0 {
			return errs.New(errs.FailedPrecondition, "cascade", "Gallery application '%s' has %d version(s): delete them first, or delete with cascade.", what, n)
		}
	}
	if err := markAll(tx, c, Versions, DeletingVersions, p); err != nil {
		return err
	}
	return markDeleting(tx, c, Applications, DeletingApplications, ApplicationKey(op.Tenant, op.Gallery, op.Name), a)
}

func createVersion(tx *Tx, c *statepb.Command, op *statepb.CreateVersion) error {
	v := op.GetVersion()
	if _, err := tx.LiveApplication(v.GetTenant(), v.GetGallery(), v.GetApplication(), "CreateVersion"); err != nil {
		return err
	}
	k := VersionKey(v.Tenant, v.Gallery, v.Application, v.GetName())
	if old, ok, err := Versions.Get(tx, k); err != nil {
		return err
	} else if ok && old.ProvisioningState == pb.ProvisioningDeleting {
		return MarkedForDeletion("CreateVersion", VersionPath(v.Gallery, v.Application, v.Name))
	} else if ok {
		return errs.New(errs.AlreadyExists, "version", "Gallery application version '%s' already exists.", VersionPath(v.Gallery, v.Application, v.Name))
	}
	if err := checkRegionQuota(tx, v.Tenant, k, targetRegions(v), op.MaxPerRegion); err != nil {
		return err
	}
	return Versions.put(tx, k, stamp(v, c))
}

func updateVersion(tx *Tx, c *statepb.Command, op *statepb.UpdateVersion) error {
	v := op.GetVersion()
	what := VersionPath(v.GetGallery(), v.GetApplication(), v.GetName())
	if _, err := tx.LiveApplication(v.Tenant, v.Gallery, v.Application, "UpdateVersion"); err != nil {
		return err
	}
	cur, err := tx.Version(v.Tenant, v.Gallery, v.Application, v.Name)
	if err != nil {
		return err
	}
	if cur.ProvisioningState == pb.ProvisioningDeleting {
		return MarkedForDeletion("UpdateVersion", what)
	}
	if err := CheckETag("version '"+what+"'", op.ExpectEtag, cur.Etag); err != nil {
		return err
	}
	var added []string
	for _, r := range targetRegions(v) {
		if !slices.Contains(targetRegions(cur), r) {
			added = append(added, r)
		}
	}
	k := VersionKey(v.Tenant, v.Gallery, v.Application, v.Name)
	if err := checkRegionQuota(tx, v.Tenant, k, added, op.MaxPerRegion); err != nil {
		return err
	}
	if err := markDirty(tx, c, v.Tenant, v.Gallery, v.Application, v.Name); err != nil {
		return err
	}
	return Versions.put(tx, k, stamp(v, c))
}

func deleteVersion(tx *Tx, c *statepb.Command, op *statepb.DeleteVersion) error {
	r := op.GetVersion()
	v, err := tx.Version(r.GetTenant(), r.GetGallery(), r.GetApplication(), r.GetVersion())
	if err != nil {
		return err
	}
	if err := CheckETag("version '"+VersionPath(r.Gallery, r.Application, r.Version)+"'", op.ExpectEtag, v.Etag); err != nil {
		return err
	}
	return markDeleting(tx, c, Versions, DeletingVersions, refVersionKey(r), v)
}

// removeDeleted removes galleries or applications marked for deletion
// whose children are gone.
func removeDeleted(tx *Tx, op *statepb.RemoveDeleted) error {
	for _, r := range op.GetResources() {
		var err error
		switch op.Kind {
		case statepb.RemoveDeleted_KIND_GALLERY:
			err = removeIfDoomed(tx, Galleries, DeletingGalleries, Applications, GalleryKey(r.Tenant, r.Gallery))
		case statepb.RemoveDeleted_KIND_APPLICATION:
			err = removeIfDoomed(tx, Applications, DeletingApplications, Versions, ApplicationKey(r.Tenant, r.Gallery, r.Application))
		default:
			return errs.New(errs.InvalidArgument, "kind", "RemoveDeleted of kind %s", op.Kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// removeIfDoomed deletes the record at k of t (and its key in deleting)
// when it is marked Deleting and has no record left under it in children.
func removeIfDoomed[M, C resource](tx *Tx, t Table[M], deleting Index[M], children Table[C], k []byte) error {
	m, ok, err := t.Get(tx, k)
	if err != nil || !ok || m.GetProvisioningState() != pb.ProvisioningDeleting {
		return err
	}
	p := append(slices.Clone(k), 0)
	if ck, _ := children.bucket(tx).Cursor().Seek(p); ck != nil && hasPrefix(ck, p) {
		return nil
	}
	if err := deleting.delete(tx, k); err != nil {
		return err
	}
	return t.delete(tx, k)
}

// removeVersion removes a version marked for deletion with its manifests,
// upload sessions and signatures.
func removeVersion(tx *Tx, c *statepb.Command, op *statepb.RemoveVersion) error {
	r := op.GetVersion()
	k := refVersionKey(r)
	v, ok, err := Versions.Get(tx, k)
	if err != nil || !ok || v.ProvisioningState != pb.ProvisioningDeleting {
		return err
	}
	if err := Versions.delete(tx, k); err != nil {
		return err
	}
	if err := Signatures.delete(tx, k); err != nil {
		return err
	}
	if err := dropPreheatsOf(tx, r); err != nil {
		return err
	}
	if err := DeletingVersions.delete(tx, k); err != nil {
		return err
	}
	// Records a crash left behind are the replicator's to remove.
	if err := markDirty(tx, c, r.Tenant, r.Gallery, r.Application, r.Version); err != nil {
		return err
	}
	for _, kind := range []pb.ArtifactKind{pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION} {
		if err := Manifests.delete(tx, ManifestKey(r.Tenant, r.Gallery, r.Application, r.Version, kind)); err != nil {
			return err
		}
		s, err := tx.SessionOf(r.Tenant, r.Gallery, r.Application, r.Version, kind)
		if err != nil {
			return err
		}
		if s != nil {
			if err := Uploads.delete(tx, UploadKey(s.Id)); err != nil {
				return err
			}
		}
	}
	return nil
}

// resource is what galleries, applications and versions share.
type resource interface {
	proto.Message
	GetProvisioningState() string
}

func live[M resource](m M) bool { return m.GetProvisioningState() != pb.ProvisioningDeleting }

// markDeleting marks m (stored at k) Deleting, and indexes it in deleting
// for the reaper; marking twice is a no-op so a retried delete keeps its
// etag. A version is marked dirty for the replicator too.
func markDeleting[M resource](tx *Tx, c *statepb.Command, t Table[M], deleting Index[M], k []byte, m M) error {
	if m.GetProvisioningState() == pb.ProvisioningDeleting {
		return nil
	}
	r := m.ProtoReflect()
	r.Set(r.Descriptor().Fields().ByName("provisioning_state"), protoValue(pb.ProvisioningDeleting))
	if v, ok := any(m).(*pb.GalleryApplicationVersion); ok {
		if err := markDirty(tx, c, v.Tenant, v.Gallery, v.Application, v.Name); err != nil {
			return err
		}
	}
	if err := deleting.put(tx, k, k); err != nil {
		return err
	}
	return t.put(tx, k, stamp(m, c))
}

// markAll marks every record of t under prefix p Deleting.
func markAll[M resource](tx *Tx, c *statepb.Command, t Table[M], deleting Index[M], p []byte) error {
	type kv struct {
		k []byte
		m M
	}
	var todo []kv
	err := t.Scan(tx, p, nil, func(k []byte, m M) (bool, error) {
		if live(m) {
			todo = append(todo, kv{slices.Clone(k), m})
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, e := range todo { // no writes while the cursor walks
		if err := markDeleting(tx, c, t, deleting, e.k, e.m); err != nil {
			return err
		}
	}
	return nil
}

// deleteAll deletes every record of t under prefix p.
func deleteAll[M proto.Message](tx *Tx, t Table[M], p []byte) error {
	c := t.bucket(tx).Cursor()
	for k, _ := c.Seek(p); k != nil && hasPrefix(k, p); k, _ = c.Seek(p) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

func targetRegions(v *pb.GalleryApplicationVersion) []string {
	var out []string
	for _, tr := range v.GetPublishingProfile().GetTargetRegions() {
		out = append(out, tr.GetName())
	}
	return out
}

// checkRegionQuota refuses regions the tenant already has max live
// versions in (the version at skip aside).
func checkRegionQuota(tx *Tx, tenant string, skip []byte, regions []string, max int32) error {
	if len(regions) == 0 || max <= 0 {
		return nil
	}
	counts := map[string]int32{}
	err := Versions.Scan(tx, Prefix(tenant), nil, func(k []byte, v *pb.GalleryApplicationVersion) (bool, error) {
		if live(v) && string(k) != string(skip) {
			for _, r := range targetRegions(v) {
				counts[r]++
			}
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	for _, r := range regions {
		if counts[r] >= max {
			return errs.New(errs.ResourceExhausted, "publishingProfile.targetRegions", "The maximum number of VM application versions in region %s (max=%d, current=%d) has been exceeded. Delete versions replicated to %s, or remove it from targetRegions, and retry the request.", r, max, counts[r], r)
		}
	}
	return nil
}
