package catalog

import (
	"context"
	"net/url"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/boltpb"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Latest is the version name that resolves to the newest eligible version.
const Latest = "latest"

var versionRules = maskRules{
	resource: "galleryApplicationVersion",
	mutable: []string{
		"publishing_profile.target_regions",
		"publishing_profile.replica_count",
		"publishing_profile.exclude_from_latest",
		"publishing_profile.end_of_life_date",
		"publishing_profile.source.media_link",
		"publishing_profile.source.default_configuration_link",
		"safety_profile.allow_deletion_of_replicated_locations",
	},
	immutable: []string{
		"location",
		"publishing_profile.manage_actions.install",
		"publishing_profile.manage_actions.remove",
		"publishing_profile.manage_actions.update",
		"publishing_profile.settings.package_file_name",
		"publishing_profile.settings.config_file_name",
		"publishing_profile.settings.script_behavior_after_reboot",
		"publishing_profile.storage_account_type",
	},
}

func versionPath(gallery, app, version string) string { return gallery + "/" + app + "/" + version }

func versionKey(tenant, gallery, app string, n VersionNumber) []byte {
	return key(tenant, gallery, app, n.key())
}

// getVersion reads a version (name or "latest") inside tx.
func getVersion(tx *bolt.Tx, tenant, gallery, app, name string) (*pb.GalleryApplicationVersion, error) {
	if name == Latest {
		return latestVersion(tx, tenant, gallery, app)
	}
	n, err := ParseVersion(name)
	if err != nil {
		return nil, err
	}
	v := &pb.GalleryApplicationVersion{}
	ok, err := boltpb.Get(tx.Bucket(bucketVersions), versionKey(tenant, gallery, app, n), v)
	if err != nil {
		return nil, err
	}
	if !ok {
		if _, err := getApplication(tx, tenant, gallery, app); err != nil {
			return nil, err
		}
		return nil, errs.New(errs.NotFound, "version", "Gallery application version '%s' doesn't exist.", versionPath(gallery, app, name))
	}
	return v, nil
}

// latestVersion is the highest version, in numeric order, that is not
// excludeFromLatest, not Failed and not marked for deletion.
func latestVersion(tx *bolt.Tx, tenant, gallery, app string) (*pb.GalleryApplicationVersion, error) {
	if _, err := getApplication(tx, tenant, gallery, app); err != nil {
		return nil, err
	}
	p := prefix(tenant, gallery, app)
	c := tx.Bucket(bucketVersions).Cursor()
	// Keys sort numerically; walk back from the end of the prefix range.
	k, v := c.Seek(append(slices.Clone(p), 0xff))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	for ; k != nil && hasPrefix(k, p); k, v = c.Prev() {
		ver := &pb.GalleryApplicationVersion{}
		if err := proto.Unmarshal(v, ver); err != nil {
			return nil, err
		}
		if st := ver.GetProvisioningState(); !ver.GetPublishingProfile().GetExcludeFromLatest() && st != StateDeleting && st != StateFailed {
			return ver, nil
		}
	}
	return nil, errs.New(errs.NotFound, "version", "Gallery application '%s' has no version eligible as latest (every version is excluded from latest, Failed or being deleted).", appPath(gallery, app))
}

// countByRegion counts the tenant's live versions targeting each region,
// skipping the version at skip.
func countByRegion(tx *bolt.Tx, tenant string, skip []byte) (map[string]int, error) {
	counts := map[string]int{}
	p := prefix(tenant)
	c := tx.Bucket(bucketVersions).Cursor()
	for k, v := c.Seek(p); k != nil && hasPrefix(k, p); k, v = c.Next() {
		if string(k) == string(skip) {
			continue
		}
		ver := &pb.GalleryApplicationVersion{}
		if err := proto.Unmarshal(v, ver); err != nil {
			return nil, err
		}
		if ver.GetProvisioningState() == StateDeleting {
			continue
		}
		for _, tr := range ver.GetPublishingProfile().GetTargetRegions() {
			counts[tr.GetName()]++
		}
	}
	return counts, nil
}

// checkRegionQuota refuses regions the tenant already has the maximum
// number of versions in.
func (s *Store) checkRegionQuota(tx *bolt.Tx, tenant string, k []byte, regions []string) error {
	if len(regions) == 0 {
		return nil
	}
	counts, err := countByRegion(tx, tenant, k)
	if err != nil {
		return err
	}
	for _, r := range regions {
		if counts[r] >= s.maxVersions {
			return errs.New(errs.ResourceExhausted, "publishingProfile.targetRegions", "The maximum number of VM application versions in region %s (max=%d, current=%d) has been exceeded. Delete versions replicated to %s, or remove it from targetRegions, and retry the request.", r, s.maxVersions, counts[r], r)
		}
	}
	return nil
}

func regionNames(v *pb.GalleryApplicationVersion) []string {
	var out []string
	for _, tr := range v.GetPublishingProfile().GetTargetRegions() {
		out = append(out, tr.GetName())
	}
	return out
}

// CreateVersion stores a new version of an existing application. It starts
// Creating: waiting for its package.
func (s *Store) CreateVersion(ctx context.Context, tenant string, in *pb.GalleryApplicationVersion) (*pb.GalleryApplicationVersion, error) {
	v := proto.Clone(in).(*pb.GalleryApplicationVersion)
	if err := s.validateVersion(v); err != nil {
		return nil, err
	}
	n, _ := ParseVersion(v.Name)
	v.Tenant, v.ProvisioningState = tenant, StateCreating
	v.CreateTime = s.timestamp()
	// What vmappd sets is never taken from the request.
	v.ReplicationStatus, v.Package, v.DefaultConfiguration, v.ProvisioningError = nil, nil, nil, nil
	v.PublishingProfile.PublishedDate = nil
	if v.SafetyProfile == nil {
		v.SafetyProfile = &pb.SafetyProfile{}
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if _, err := liveApplication(tx, tenant, v.Gallery, v.Application, "CreateVersion"); err != nil {
			return err
		}
		k := versionKey(tenant, v.Gallery, v.Application, n)
		old := &pb.GalleryApplicationVersion{}
		if ok, err := boltpb.Get(tx.Bucket(bucketVersions), k, old); err != nil {
			return err
		} else if ok && old.ProvisioningState == StateDeleting {
			return markedForDeletion("CreateVersion", versionPath(v.Gallery, v.Application, v.Name))
		} else if ok {
			return errs.New(errs.AlreadyExists, "version", "Gallery application version '%s' already exists.", versionPath(v.Gallery, v.Application, v.Name))
		}
		if err := s.checkRegionQuota(tx, tenant, k, regionNames(v)); err != nil {
			return err
		}
		return s.save(tx, bucketVersions, k, v)
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// GetVersion reads a version by name, or the latest with "latest".
func (s *Store) GetVersion(ctx context.Context, tenant, gallery, app, name string) (*pb.GalleryApplicationVersion, error) {
	if err := checkAppNames(gallery, app); err != nil {
		return nil, err
	}
	var v *pb.GalleryApplicationVersion
	err := s.view(ctx, func(tx *bolt.Tx) (err error) {
		v, err = getVersion(tx, tenant, gallery, app, name)
		return err
	})
	return v, err
}

// ListVersions lists an application's versions in numeric order.
func (s *Store) ListVersions(ctx context.Context, tenant, gallery, app string, pg Page) ([]*pb.GalleryApplicationVersion, string, error) {
	if _, err := s.GetApplication(ctx, tenant, gallery, app); err != nil {
		return nil, "", err
	}
	return list(ctx, s, bucketVersions, prefix(tenant, gallery, app), pg, func() *pb.GalleryApplicationVersion { return &pb.GalleryApplicationVersion{} })
}

// sameBlob reports whether two source links name the same object: only the
// query (a SAS token or presigned signature) may differ, as the seeds allow.
func sameBlob(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return false
	}
	ua.RawQuery, ub.RawQuery = "", ""
	return ua.String() == ub.String()
}

// UpdateVersion changes the mask's fields of a version: targetRegions,
// replicaCount, excludeFromLatest, endOfLifeDate, the SAS of its source links
// and its safety profile. Removing a region whose replicas exist needs
// safetyProfile.allowDeletionOfReplicatedLocations.
func (s *Store) UpdateVersion(ctx context.Context, tenant string, in *pb.GalleryApplicationVersion, mask []string, ifMatch string) (*pb.GalleryApplicationVersion, error) {
	if err := checkAppNames(in.GetGallery(), in.GetApplication()); err != nil {
		return nil, err
	}
	n, err := ParseVersion(in.GetName())
	if err != nil {
		return nil, err
	}
	var next *pb.GalleryApplicationVersion
	err = s.update(ctx, func(tx *bolt.Tx) error {
		what := versionPath(in.Gallery, in.Application, in.Name)
		if _, err := liveApplication(tx, tenant, in.Gallery, in.Application, "UpdateVersion"); err != nil {
			return err
		}
		cur, err := getVersion(tx, tenant, in.Gallery, in.Application, in.Name)
		if err != nil {
			return err
		}
		if cur.ProvisioningState == StateDeleting {
			return markedForDeletion("UpdateVersion", what)
		}
		if err := boltpb.CheckETag("version '"+what+"'", ifMatch, cur.Etag); err != nil {
			return err
		}
		if next, err = applyMask(cur, in, mask, versionRules); err != nil {
			return err
		}
		pp := next.PublishingProfile
		for _, l := range []struct{ field, old, new string }{
			{"publishingProfile.source.mediaLink", cur.GetPublishingProfile().GetSource().GetMediaLink(), pp.GetSource().GetMediaLink()},
			{"publishingProfile.source.defaultConfigurationLink", cur.GetPublishingProfile().GetSource().GetDefaultConfigurationLink(), pp.GetSource().GetDefaultConfigurationLink()},
		} {
			if l.old == l.new {
				continue
			}
			if err := checkLink(l.field, l.new); err != nil {
				return err
			}
			if !sameBlob(l.old, l.new) {
				return invalid(l.field, "Changing property 'galleryApplicationVersion.properties.%s' isn't allowed: only the SAS token (the URL's query) of '%s' can change.", l.field, l.old)
			}
		}
		if slices.Contains(mask, "publishing_profile.end_of_life_date") {
			if err := checkFuture("publishingProfile.endOfLifeDate", "galleryApplicationVersion.properties.publishingProfile.endOfLifeDate", pp.GetEndOfLifeDate(), s.now()); err != nil {
				return err
			}
		}
		if err := s.normalizeTargetRegions(next.Location, pp); err != nil {
			return err
		}
		before, after := regionNames(cur), regionNames(next)
		var added, removed []string
		for _, r := range after {
			if !slices.Contains(before, r) {
				added = append(added, r)
			}
		}
		for _, r := range before {
			if !slices.Contains(after, r) {
				removed = append(removed, r)
			}
		}
		if len(removed) > 0 && cur.Package != nil && !next.GetSafetyProfile().GetAllowDeletionOfReplicatedLocations() {
			return errs.New(errs.FailedPrecondition, "publishingProfile.targetRegions", "Removing region(s) %s from the target regions of '%s' deletes its replicas there, which safetyProfile.allowDeletionOfReplicatedLocations doesn't allow. Set it to true to allow it.", strings.Join(removed, ", "), what)
		}
		if err := s.checkRegionQuota(tx, tenant, versionKey(tenant, in.Gallery, in.Application, n), added); err != nil {
			return err
		}
		return s.save(tx, bucketVersions, versionKey(tenant, in.Gallery, in.Application, n), next)
	})
	if err != nil {
		return nil, err
	}
	return next, nil
}

// DeleteVersion marks a version for deletion; Reap removes it once its
// replicas are gone. Retrying the delete of a marked version is allowed.
func (s *Store) DeleteVersion(ctx context.Context, tenant, gallery, app, name, ifMatch string) (*pb.GalleryApplicationVersion, error) {
	if err := checkAppNames(gallery, app); err != nil {
		return nil, err
	}
	n, err := ParseVersion(name)
	if err != nil {
		return nil, err
	}
	var v *pb.GalleryApplicationVersion
	err = s.update(ctx, func(tx *bolt.Tx) (err error) {
		if v, err = getVersion(tx, tenant, gallery, app, name); err != nil {
			return err
		}
		if err := boltpb.CheckETag("version '"+versionPath(gallery, app, name)+"'", ifMatch, v.Etag); err != nil {
			return err
		}
		return s.markDeleting(tx, bucketVersions, versionKey(tenant, gallery, app, n), v)
	})
	if err != nil {
		return nil, err
	}
	s.wakeReaper()
	return v, nil
}

// AllVersions returns every version of every tenant, those being deleted
// included: the replicator's view of what should exist.
func (s *Store) AllVersions(ctx context.Context) ([]*pb.GalleryApplicationVersion, error) {
	var out []*pb.GalleryApplicationVersion
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVersions).ForEach(func(_, b []byte) error {
			v := &pb.GalleryApplicationVersion{}
			if err := proto.Unmarshal(b, v); err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}
