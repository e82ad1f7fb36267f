package blob

import (
	"fmt"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Object keys: where vmapp keeps a version's files in a store, under
// tenants/T/galleries/G/applications/A/versions/V/. The keys are recorded
// in the state (uploads, manifests, replicas) when first used: changing
// this layout would lose the objects stored under the old one.

// SourceKey is where ingest stores a version's artifact, in the store of
// the version's location: .../versions/V/package or .../versions/V/config.
func SourceKey(tenant, gallery, app, version string, k pb.ArtifactKind) string {
	return versionDir(tenant, gallery, app, version) + artifactName(k)
}

// ReplicaKey is where replica index of a version's artifact lives in its
// region's store: .../versions/V/replicas/package-I or config-I.
func ReplicaKey(tenant, gallery, app, version string, k pb.ArtifactKind, index int32) string {
	return fmt.Sprintf("%sreplicas/%s-%d", versionDir(tenant, gallery, app, version), artifactName(k), index)
}

func versionDir(tenant, gallery, app, version string) string {
	return fmt.Sprintf("tenants/%s/galleries/%s/applications/%s/versions/%s/", tenant, gallery, app, version)
}

func artifactName(k pb.ArtifactKind) string {
	if k == pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION {
		return "config"
	}
	return "package"
}
