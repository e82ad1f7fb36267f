package vmappv1

import (
	"slices"
	"strings"
)

// Hand-written helpers on the generated API types, shared by vmappd, the
// replicator, the client and the CLI so they name and count things alike.

// Label names an artifact kind in messages: "package" or "default
// configuration". An unspecified kind means the package, as in requests.
func (k ArtifactKind) Label() string {
	if k == ArtifactKind_ARTIFACT_KIND_CONFIGURATION {
		return "default configuration"
	}
	return "package"
}

// The seeds' size limits of a version's files, and of a configuration
// given inline in an application profile (a larger one goes by
// configurationReference).
const (
	MaxPackageSize       = 2 << 30 // 2 GiB
	MaxConfigurationSize = 1 << 30 // 1 GiB
	MaxInlineConfigSize  = 1 << 20 // 1 MiB
)

// MaxSize is the largest file of kind k a version takes: MaxPackageSize, or
// MaxConfigurationSize for the default configuration.
func (k ArtifactKind) MaxSize() int64 {
	if k == ArtifactKind_ARTIFACT_KIND_CONFIGURATION {
		return MaxConfigurationSize
	}
	return MaxPackageSize
}

// ReplicasIn returns how many replicas the profile wants in the target
// region: the region's regionalReplicaCount, else the profile's
// replicaCount, else 1.
func (pp *PublishingProfile) ReplicasIn(tr *TargetRegion) int32 {
	switch {
	case tr.RegionalReplicaCount != nil:
		return tr.GetRegionalReplicaCount()
	case pp.ReplicaCount != nil:
		return pp.GetReplicaCount()
	}
	return 1
}

// AppRef names an application as a packageReferenceId does, without the
// version: "gallery/application", or "TENANT:gallery/application" for a
// gallery of another tenant (tenant not empty).
func AppRef(tenant, gallery, application string) string {
	if tenant != "" {
		return tenant + ":" + gallery + "/" + application
	}
	return gallery + "/" + application
}

// TenantMetadataKey is the gRPC metadata key that names the tenant a call
// runs in: clients send it, vmappd reads it.
const TenantMetadataKey = "vmapp-tenant"

// AllTenants is the tenant of the operator's tokens (Owner of every
// tenant), and the grantee of a public gallery share.
const AllTenants = "*"

// Label names a role: "Reader", "Contributor", "Owner" or "Machine".
func (r Role) Label() string {
	n := strings.TrimPrefix(r.String(), "ROLE_")
	return n[:1] + strings.ToLower(n[1:])
}

// Scope says where a token's role holds: "every tenant", "tenant T",
// "gallery G of tenant T" or "machine M of tenant T".
func (t *Token) Scope() string {
	switch {
	case t.GetTenant() == AllTenants:
		return "every tenant"
	case t.GetMachine() != "":
		return "machine " + t.Machine + " of tenant " + t.Tenant
	case t.GetGallery() != "":
		return "gallery " + t.Gallery + " of tenant " + t.Tenant
	}
	return "tenant " + t.GetTenant()
}

// Provisioning states of galleries, applications and versions (and
// machines: Succeeded or Failed).
const (
	ProvisioningCreating  = "Creating"
	ProvisioningSucceeded = "Succeeded"
	ProvisioningFailed    = "Failed"
	ProvisioningDeleting  = "Deleting"
)

// Replication states, as Azure names them: a region is Unknown (waiting
// for the package), Replicating, Completed or Failed; a version's
// aggregated state is Unknown, InProgress, Completed or Failed.
const (
	ReplicationUnknown     = "Unknown"
	ReplicationReplicating = "Replicating"
	ReplicationInProgress  = "InProgress"
	ReplicationCompleted   = "Completed"
	ReplicationFailed      = "Failed"
)

// States of an application in an instance view, as agents report them.
const (
	AppPending     = "Pending"
	AppDownloading = "Downloading"
	AppInstalling  = "Installing"
	AppUpdating    = "Updating"
	AppRemoving    = "Removing"
	AppInstalled   = "Installed"
	AppFailed      = "Failed"
	AppSkipped     = "Skipped"
)

// Health of an application whose version has enableHealthCheck, in an
// instance view: Checking while the agent runs its health action (with its
// retries), then Healthy or Unhealthy. The state stays Installed.
const (
	HealthChecking  = "Checking"
	HealthHealthy   = "Healthy"
	HealthUnhealthy = "Unhealthy"
)

// States of a custom action's run.
const (
	ActionPending   = "Pending"
	ActionSucceeded = "Succeeded"
	ActionFailed    = "Failed"
)

// Types of a custom action's parameter, as Azure names them.
const (
	ParamString                = "String"
	ParamConfigurationDataBlob = "ConfigurationDataBlob"
	ParamLogOutputBlob         = "LogOutputBlob"
)

// HealthAction is the custom action the agent runs to check an
// application's health (enableHealthCheck).
const HealthAction = "health"

// AppStates lists them, in the order an operation goes through them.
var AppStates = []string{AppPending, AppDownloading, AppInstalling, AppInstalled, AppUpdating, AppRemoving, AppFailed, AppSkipped}

// SameStatement tells whether s and o are the parameters of the same
// statement of a version (tenant, sequence, expiry, rollback), their
// signatures aside.
func (s *VersionSignatures) SameStatement(o *VersionSignatures) bool {
	return s.GetTenant() == o.GetTenant() && s.GetSequence() == o.GetSequence() && s.GetRollback() == o.GetRollback() &&
		s.GetExpireTime().AsTime().Equal(o.GetExpireTime().AsTime()) && (s.GetExpireTime() == nil) == (o.GetExpireTime() == nil)
}

// FindAction is the custom action name of a version (own) or else of its
// application (app); nil when neither defines it.
func FindAction(own, app []*GalleryApplicationCustomAction, name string) *GalleryApplicationCustomAction {
	for _, list := range [][]*GalleryApplicationCustomAction{own, app} {
		for _, a := range list {
			if strings.EqualFold(a.GetName(), name) {
				return a
			}
		}
	}
	return nil
}

// MergeActions is the custom actions a version offers: its own, then its
// application's that it doesn't redefine.
func MergeActions(own, app []*GalleryApplicationCustomAction) []*GalleryApplicationCustomAction {
	out := slices.Clone(own)
	for _, a := range app {
		if FindAction(own, nil, a.GetName()) == nil {
			out = append(out, a)
		}
	}
	return out
}

// States of a rollout (Rollout.state).
const (
	RolloutRunning     = "Running"
	RolloutPaused      = "Paused"
	RolloutHalted      = "Halted"
	RolloutRollingBack = "RollingBack"
	RolloutRolledBack  = "RolledBack"
	RolloutSucceeded   = "Succeeded"
	RolloutAborted     = "Aborted"
)

// RolloutStates lists the states of a rollout, the metrics' label values.
var RolloutStates = []string{RolloutRunning, RolloutPaused, RolloutHalted, RolloutRollingBack, RolloutRolledBack, RolloutSucceeded, RolloutAborted}

// RolloutActive tells whether a rollout in state may still move machines:
// Running, Paused or RollingBack.
func RolloutActive(state string) bool {
	return state == RolloutRunning || state == RolloutPaused || state == RolloutRollingBack
}

// States of a machine in a rollout (RolloutMachine.state).
const (
	RolloutMachinePending        = "Pending"
	RolloutMachineUpdating       = "Updating"
	RolloutMachineSucceeded      = "Succeeded"
	RolloutMachineFailed         = "Failed"
	RolloutMachineRollingBack    = "RollingBack"
	RolloutMachineRolledBack     = "RolledBack"
	RolloutMachineRollbackFailed = "RollbackFailed"
)

// RolloutMachineStates lists the states of a machine in a rollout.
var RolloutMachineStates = []string{RolloutMachinePending, RolloutMachineUpdating, RolloutMachineSucceeded, RolloutMachineFailed,
	RolloutMachineRollingBack, RolloutMachineRolledBack, RolloutMachineRollbackFailed}
