package vmappv1_test

import (
	"slices"
	"testing"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestStateNames pins the states to the names Azure and vmapp's users
// (scripts, the CLI's --state, dashboards) see: changing one is an API
// change.
func TestStateNames(t *testing.T) {
	for got, want := range map[string]string{
		pb.ProvisioningCreating: "Creating", pb.ProvisioningSucceeded: "Succeeded", pb.ProvisioningFailed: "Failed", pb.ProvisioningDeleting: "Deleting",
		pb.ReplicationUnknown: "Unknown", pb.ReplicationReplicating: "Replicating", pb.ReplicationInProgress: "InProgress",
		pb.ReplicationCompleted: "Completed",
		pb.AppPending:           "Pending", pb.AppDownloading: "Downloading", pb.AppInstalling: "Installing", pb.AppUpdating: "Updating",
		pb.AppRemoving: "Removing", pb.AppInstalled: "Installed", pb.AppSkipped: "Skipped",
	} {
		if got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
	if pb.ReplicationFailed != "Failed" || pb.AppFailed != "Failed" {
		t.Errorf("Failed is %q and %q", pb.ReplicationFailed, pb.AppFailed)
	}
	want := []string{"Pending", "Downloading", "Installing", "Installed", "Updating", "Removing", "Failed", "Skipped"}
	if !slices.Equal(pb.AppStates, want) {
		t.Errorf("AppStates = %q, want %q", pb.AppStates, want)
	}
}

// TestWireNames pins what clients of other versions send and expect.
func TestWireNames(t *testing.T) {
	if pb.TenantMetadataKey != "vmapp-tenant" {
		t.Errorf("TenantMetadataKey = %q", pb.TenantMetadataKey)
	}
	if pb.MaxInlineConfigSize != 1<<20 {
		t.Errorf("MaxInlineConfigSize = %d", pb.MaxInlineConfigSize)
	}
}
