package state

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// key joins a record's path with NUL separators (no name can hold a NUL),
// so that a prefix scan lists a resource's children.
func key(parts ...string) []byte {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}

// Prefix is the key prefix of every record under parts: key(parts...)
// followed by a separator.
func Prefix(parts ...string) []byte { return append(key(parts...), 0) }

// VersionNumber is a parsed Major.Minor.Patch.
type VersionNumber [3]int32

var versionName = regexp.MustCompile(`^(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})\.(0|[1-9][0-9]{0,9})$`)

// ParseVersionNumber parses three int32 parts separated by periods, without
// signs or leading zeros; false when name is not one.
func ParseVersionNumber(name string) (VersionNumber, bool) {
	var v VersionNumber
	m := versionName.FindStringSubmatch(name)
	if m == nil {
		return v, false
	}
	for i := range 3 {
		n, err := strconv.ParseInt(m[i+1], 10, 32)
		if err != nil {
			return v, false
		}
		v[i] = int32(n)
	}
	return v, true
}

// Less orders versions numerically.
func (v VersionNumber) Less(w VersionNumber) bool {
	for i := range 3 {
		if v[i] != w[i] {
			return v[i] < w[i]
		}
	}
	return false
}

// sortable encodes the version so that byte order is numeric order.
func (v VersionNumber) sortable() string {
	return fmt.Sprintf("%010d.%010d.%010d", v[0], v[1], v[2])
}

// Keys of the records, one function per bucket (see the package doc).

func GalleryKey(tenant, name string) []byte              { return key(tenant, name) }
func ApplicationKey(tenant, gallery, name string) []byte { return key(tenant, gallery, name) }

// VersionKey is the key of a version; the name must parse
// (ParseVersionNumber), else the key matches no record.
func VersionKey(tenant, gallery, app, version string) []byte {
	n, ok := ParseVersionNumber(version)
	if !ok {
		return key(tenant, gallery, app, "\xff"+version)
	}
	return key(tenant, gallery, app, n.sortable())
}

func refVersionKey(r *statepb.VersionRef) []byte {
	return VersionKey(r.GetTenant(), r.GetGallery(), r.GetApplication(), r.GetVersion())
}

// ManifestKey is the key of a version's artifact manifest.
func ManifestKey(tenant, gallery, app, version string, k pb.ArtifactKind) []byte {
	return append(append(VersionKey(tenant, gallery, app, version), 0), byte(k))
}

// UploadKey is the key of an upload session.
func UploadKey(id string) []byte { return []byte(id) }

// ReplicaPrefix is the prefix of a version's replica records (by name, not
// numeric order).
func ReplicaPrefix(tenant, gallery, app, version string) []byte {
	return Prefix(tenant, gallery, app, version)
}

// ReplicaKey is the key of a replica record.
func ReplicaKey(tenant, gallery, app, version string, k pb.ArtifactKind, region string, index int32) []byte {
	return append(ReplicaPrefix(tenant, gallery, app, version), fmt.Sprintf("%d\x00%s\x00%02d", k, region, index)...)
}

// KeyOfReplica is the key of r's record.
func KeyOfReplica(r *statepb.Replica) []byte {
	return ReplicaKey(r.Tenant, r.Gallery, r.Application, r.Version, r.Kind, r.Region, r.Index)
}

func refReplicaKey(r *statepb.ReplicaRef) []byte {
	v := r.GetVersion()
	return ReplicaKey(v.GetTenant(), v.GetGallery(), v.GetApplication(), v.GetVersion(), r.GetKind(), r.GetRegion(), r.GetIndex())
}

// RefOf names a replica record.
func RefOf(r *statepb.Replica) *statepb.ReplicaRef {
	return &statepb.ReplicaRef{
		Version: &statepb.VersionRef{Tenant: r.Tenant, Gallery: r.Gallery, Application: r.Application, Version: r.Version},
		Kind:    r.Kind, Region: r.Region, Index: r.Index,
	}
}

// TokenKey is the key of a credential.
func TokenKey(id string) []byte { return []byte(id) }

// MachineTokenKey is the key of a machine's live agent credential id.
func MachineTokenKey(tenant, machine string) []byte { return key(tenant, machine) }

// ShareKey is the key of a gallery share.
func ShareKey(tenant, gallery, grantee string) []byte { return key(tenant, gallery, grantee) }

// MachineKey is the key of a machine, and of its instance view.
func MachineKey(tenant, name string) []byte { return key(tenant, name) }

// ScaleSetKey is the key of a scale set.
func ScaleSetKey(tenant, name string) []byte { return key(tenant, name) }

// MachineInScaleSetKey is a machine's key in MachinesByScaleSet.
func MachineInScaleSetKey(tenant, scaleSet, machine string) []byte {
	return key(tenant, scaleSet, machine)
}

// Token classes in TokensByTenant: API tokens (people, pipelines, the
// operator's) sort before machine tokens.
const (
	TokenClassAPI     = "api"
	TokenClassMachine = "machine"
)

// TokenInTenantKey is a token's key in TokensByTenant.
func TokenInTenantKey(t *pb.Token) []byte {
	class := TokenClassAPI
	if t.GetMachine() != "" {
		class = TokenClassMachine
	}
	return key(t.GetTenant(), class, t.GetId())
}

// InventoryKey is the key of a machine's inventory entry for an
// application (as its agent names it: gallery/application).
func InventoryKey(tenant, machine, application string) []byte {
	return key(tenant, machine, application)
}

// InventoryState is how InventoryByState keys a state: any case matches.
func InventoryState(state string) string { return strings.ToLower(state) }

// InventoryAppName is how InventoryByApp keys an application: by the name
// after its last '/', so that "application" and "gallery/application" (or
// "TENANT:gallery/application") filters both find it.
func InventoryAppName(application string) string {
	return application[strings.LastIndexByte(application, '/')+1:]
}

// dirtyKey is a version's key in dirty_versions: its reference as written.
func dirtyKey(tenant, gallery, app, version string) []byte { return key(tenant, gallery, app, version) }

// NodeKey is the key of a cluster node.
func NodeKey(id string) []byte { return []byte(id) }
