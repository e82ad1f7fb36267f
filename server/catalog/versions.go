package catalog

import (
	"context"
	"net/url"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
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
		"publishing_profile.storage_account_strategy",
		"publishing_profile.replication_mode",
		"publishing_profile.enable_health_check",
		"publishing_profile.advanced_settings",
		"publishing_profile.custom_actions",
	},
}

// getVersion reads a version (a name, or "latest") inside tx.
func getVersion(tx *state.Tx, tenant, gallery, app, name string) (*pb.GalleryApplicationVersion, error) {
	if name == Latest {
		return latestVersion(tx, tenant, gallery, app)
	}
	if _, err := ParseVersion(name); err != nil {
		return nil, err
	}
	return tx.Version(tenant, gallery, app, name)
}

// latestVersion is the highest version, in numeric order, that is not
// excludeFromLatest, not Failed and not marked for deletion.
func latestVersion(tx *state.Tx, tenant, gallery, app string) (*pb.GalleryApplicationVersion, error) {
	if _, err := tx.Application(tenant, gallery, app); err != nil {
		return nil, err
	}
	var latest *pb.GalleryApplicationVersion
	err := state.Versions.ScanDesc(tx, state.Prefix(tenant, gallery, app), func(_ []byte, v *pb.GalleryApplicationVersion) (bool, error) {
		st := v.GetProvisioningState()
		if !v.GetPublishingProfile().GetExcludeFromLatest() && st != pb.ProvisioningDeleting && st != pb.ProvisioningFailed {
			latest = v
			return false, nil
		}
		return true, nil
	})
	if err == nil && latest == nil {
		err = errs.New(errs.NotFound, "version", "Gallery application '%s' has no version eligible as latest (every version is excluded from latest, Failed or being deleted).", state.AppPath(gallery, app))
	}
	return latest, err
}

// CreateVersion stores a new version of an existing application. It starts
// Creating: waiting for its package.
func (s *Store) CreateVersion(ctx context.Context, tenant string, in *pb.GalleryApplicationVersion) (*pb.GalleryApplicationVersion, error) {
	v := proto.Clone(in).(*pb.GalleryApplicationVersion)
	if err := s.validateVersion(v); err != nil {
		return nil, err
	}
	if err := s.checkHealthAction(ctx, tenant, v); err != nil {
		return nil, err
	}
	v.Tenant, v.ProvisioningState = tenant, pb.ProvisioningCreating
	// What vmappd sets is never taken from the request.
	v.ReplicationStatus, v.Package, v.DefaultConfiguration, v.ProvisioningError = nil, nil, nil, nil
	v.PublishingProfile.PublishedDate = nil
	if v.SafetyProfile == nil {
		v.SafetyProfile = &pb.SafetyProfile{}
	}
	_, err := s.propose(ctx, func(c *statepb.Command) {
		v.CreateTime, v.UpdateTime, v.Etag = c.Time, c.Time, c.Etag
		c.Op = &statepb.Command_CreateVersion{CreateVersion: &statepb.CreateVersion{Version: v, MaxPerRegion: int32(s.maxVersions)}}
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// checkHealthAction refuses a version with enableHealthCheck and no
// custom action "health", its own or its application's.
func (s *Store) checkHealthAction(ctx context.Context, tenant string, v *pb.GalleryApplicationVersion) error {
	pp := v.GetPublishingProfile()
	if !pp.GetEnableHealthCheck() || pb.FindAction(pp.GetCustomActions(), nil, pb.HealthAction) != nil {
		return nil
	}
	app, err := s.GetApplication(ctx, tenant, v.Gallery, v.Application)
	if err != nil && !errs.Is(err, errs.NotFound) {
		return err
	}
	return checkHealthAction(pp, app)
}

// GetVersion reads a version by name, or the latest with "latest".
func (s *Store) GetVersion(ctx context.Context, tenant, gallery, app, name string) (*pb.GalleryApplicationVersion, error) {
	if err := checkAppNames(gallery, app); err != nil {
		return nil, err
	}
	var v *pb.GalleryApplicationVersion
	err := s.syncView(ctx, func(tx *state.Tx) (err error) {
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
	return list(ctx, s, state.Versions, state.Prefix(tenant, gallery, app), pg)
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
	if _, err := ParseVersion(in.GetName()); err != nil {
		return nil, err
	}
	var next *pb.GalleryApplicationVersion
	err := retryRace(ifMatch, func() error {
		var cur *pb.GalleryApplicationVersion
		err := s.syncView(ctx, func(tx *state.Tx) (err error) {
			if _, err := tx.LiveApplication(tenant, in.Gallery, in.Application, "UpdateVersion"); err != nil {
				return err
			}
			cur, err = tx.Version(tenant, in.Gallery, in.Application, in.Name)
			return err
		})
		if err != nil {
			return err
		}
		if next, err = s.updatedVersion(cur, in, mask, ifMatch); err != nil {
			return err
		}
		_, err = s.propose(ctx, func(c *statepb.Command) {
			next.UpdateTime, next.Etag = c.Time, c.Etag
			c.Op = &statepb.Command_UpdateVersion{UpdateVersion: &statepb.UpdateVersion{Version: next, ExpectEtag: cur.Etag, MaxPerRegion: int32(s.maxVersions)}}
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return next, nil
}

// updatedVersion checks an update of cur and returns the version it makes.
func (s *Store) updatedVersion(cur, in *pb.GalleryApplicationVersion, mask []string, ifMatch string) (*pb.GalleryApplicationVersion, error) {
	what := state.VersionPath(in.Gallery, in.Application, in.Name)
	if cur.ProvisioningState == pb.ProvisioningDeleting {
		return nil, state.MarkedForDeletion("UpdateVersion", what)
	}
	if err := state.CheckETag("version '"+what+"'", ifMatch, cur.Etag); err != nil {
		return nil, err
	}
	next, err := applyMask(cur, in, mask, versionRules)
	if err != nil {
		return nil, err
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
			return nil, err
		}
		if !sameBlob(l.old, l.new) {
			return nil, invalid(l.field, "Changing property 'galleryApplicationVersion.properties.%s' isn't allowed: only the SAS token (the URL's query) of '%s' can change.", l.field, l.old)
		}
	}
	if slices.Contains(mask, "publishing_profile.end_of_life_date") {
		if err := checkFuture("publishingProfile.endOfLifeDate", "galleryApplicationVersion.properties.publishingProfile.endOfLifeDate", pp.GetEndOfLifeDate(), s.now()); err != nil {
			return nil, err
		}
	}
	if err := s.normalizeTargetRegions(next.Location, pp); err != nil {
		return nil, err
	}
	var removed []string
	for _, r := range regionNames(cur) {
		if !slices.Contains(regionNames(next), r) {
			removed = append(removed, r)
		}
	}
	if len(removed) > 0 && cur.Package != nil && !next.GetSafetyProfile().GetAllowDeletionOfReplicatedLocations() {
		return nil, errs.New(errs.FailedPrecondition, "publishingProfile.targetRegions", "Removing region(s) %s from the target regions of '%s' deletes its replicas there, which safetyProfile.allowDeletionOfReplicatedLocations doesn't allow. Set it to true to allow it.", strings.Join(removed, ", "), what)
	}
	return next, nil
}

func regionNames(v *pb.GalleryApplicationVersion) []string {
	var out []string
	for _, tr := range v.GetPublishingProfile().GetTargetRegions() {
		out = append(out, tr.GetName())
	}
	return out
}

// DeleteVersion marks a version for deletion; Reap removes it once its
// replicas are gone. Retrying the delete of a marked version is allowed.
func (s *Store) DeleteVersion(ctx context.Context, tenant, gallery, app, name, ifMatch string) (*pb.GalleryApplicationVersion, error) {
	if err := checkAppNames(gallery, app); err != nil {
		return nil, err
	}
	if _, err := ParseVersion(name); err != nil {
		return nil, err
	}
	_, err := s.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_DeleteVersion{DeleteVersion: &statepb.DeleteVersion{Version: vref(tenant, gallery, app, name), ExpectEtag: ifMatch}}
	})
	if err != nil {
		return nil, err
	}
	return s.GetVersion(ctx, tenant, gallery, app, name)
}

func vref(tenant, gallery, app, version string) *statepb.VersionRef {
	return &statepb.VersionRef{Tenant: tenant, Gallery: gallery, Application: app, Version: version}
}

// AllVersions returns every version of every tenant, those being deleted
// included: the replicator's view of what should exist.
func (s *Store) AllVersions(ctx context.Context) ([]*pb.GalleryApplicationVersion, error) {
	var out []*pb.GalleryApplicationVersion
	err := s.view(ctx, func(tx *state.Tx) (err error) {
		out, err = state.Versions.All(tx, nil)
		return err
	})
	return out, err
}

// ReadVersion is GetVersion from this node's state as it is, without
// waiting for the cluster's latest commits (bounded-stale): for goal
// states, which are computed again at every change.
func (s *Store) ReadVersion(ctx context.Context, tenant, gallery, app, name string) (*pb.GalleryApplicationVersion, error) {
	var v *pb.GalleryApplicationVersion
	err := s.view(ctx, func(tx *state.Tx) (err error) {
		v, err = getVersion(tx, tenant, gallery, app, name)
		return err
	})
	return v, err
}

// ReadApplication is GetApplication from this node's state as it is
// (bounded-stale): for goal states.
func (s *Store) ReadApplication(ctx context.Context, tenant, gallery, name string) (*pb.GalleryApplication, error) {
	var a *pb.GalleryApplication
	err := s.view(ctx, func(tx *state.Tx) (err error) {
		a, err = tx.Application(tenant, gallery, name)
		return err
	})
	return a, err
}
