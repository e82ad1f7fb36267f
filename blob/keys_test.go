package blob_test

import (
	"testing"

	"github.com/vmapp/vmapp/blob"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestKeys pins the layout of stored objects: stores hold objects under
// these keys, and the state records them.
func TestKeys(t *testing.T) {
	const (
		pkg = pb.ArtifactKind_ARTIFACT_KIND_PACKAGE
		cfg = pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION
	)
	for _, c := range []struct{ got, want string }{
		{blob.SourceKey("t", "g", "a", "1.0.0", pkg), "tenants/t/galleries/g/applications/a/versions/1.0.0/package"},
		{blob.SourceKey("t", "g", "a", "1.0.0", cfg), "tenants/t/galleries/g/applications/a/versions/1.0.0/config"},
		{blob.SourceKey("t", "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_UNSPECIFIED), "tenants/t/galleries/g/applications/a/versions/1.0.0/package"},
		{blob.ReplicaKey("t", "g", "a", "1.0.0", pkg, 0), "tenants/t/galleries/g/applications/a/versions/1.0.0/replicas/package-0"},
		{blob.ReplicaKey("default", "my.g", "my-app", "2018.12.1", cfg, 9), "tenants/default/galleries/my.g/applications/my-app/versions/2018.12.1/replicas/config-9"},
	} {
		if c.got != c.want {
			t.Errorf("%q, want %q", c.got, c.want)
		}
	}
}
