package daemon_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// TestEveryChangeIsACommand runs a real vmappd through publishing,
// replication to three regions, machines and their reports, access and
// deletion, records every command its state applies, and replays them on
// a copy of the state taken before: the copy ends up holding exactly what
// the live file holds. A change that bypassed the commands would differ.
func TestEveryChangeIsACommand(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	db := c.Daemon.State
	var mu sync.Mutex
	var log []*statepb.Command
	db.Watch(func(cmd *statepb.Command) {
		mu.Lock()
		log = append(log, proto.CloneOf(cmd))
		mu.Unlock()
	})
	base := filepath.Join(t.TempDir(), "base.db")
	writeCopy(t, db, base)

	scenario(t, c)

	// Quiet: nothing more is applied (the replicator is done).
	var live []byte
	for last := -1; ; time.Sleep(300 * time.Millisecond) {
		mu.Lock()
		n := len(log)
		mu.Unlock()
		if n == last {
			live = dump(t, db)
			mu.Lock()
			quiet := len(log) == n
			mu.Unlock()
			if quiet {
				break
			}
		}
		last = n
	}
	replayed, err := state.Open(base, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer replayed.Close()
	for _, cmd := range log {
		replayed.Propose(context.Background(), cmd) // refusals refuse again
	}
	if got := dump(t, replayed); !bytes.Equal(got, live) {
		os.WriteFile(filepath.Join(t.TempDir(), "live"), live, 0o600)
		t.Fatalf("%d commands replayed on the state as it was give another state than the live one:\nlive:\n%s\nreplayed:\n%s", len(log), live, got)
	}
	if len(log) < 40 {
		t.Fatalf("only %d commands recorded: the scenario didn't run?", len(log))
	}
	t.Logf("%d commands replayed to the same state", len(log))
}

func scenario(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c.Publish(t, "1.0.0", bytes.Repeat([]byte("vmapp"), 3<<20), testcluster.Target("eastus", 2), testcluster.Target("westus", 1), testcluster.Target("northeurope", 1))
	c.WaitState(t, "1.0.0", "Completed")
	c.Publish(t, "2.0.0", []byte("small"), testcluster.Target("eastus", 1))
	fleet, access := pb.NewFleetServiceClient(c.Client.Conn()), pb.NewAccessServiceClient(c.Client.Conn())
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fleet.CreateScaleSet(ctx, &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "web", Region: "eastus", OsType: "Linux"}}))
	must(fleet.CreateMachine(ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "web-0", ScaleSet: "web"}}))
	must(fleet.CreateMachine(ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "vm1", Region: "eastus", OsType: "Linux"}}))
	must(fleet.SetApplication(ctx, &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "vm1"}}, Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}}))
	must(fleet.RetryApplication(ctx, &pb.RetryApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "vm1"}}, Application: "g/a"}))
	must(fleet.ReportStatus(ctx, &pb.ReportStatusRequest{Machine: "vm1", InstanceView: &pb.InstanceView{AgentVersion: "test"}}))
	must(access.CreateToken(ctx, &pb.CreateTokenRequest{Name: "ci", Role: pb.Role_ROLE_CONTRIBUTOR}))
	must(access.ShareGallery(ctx, &pb.ShareGalleryRequest{Gallery: "g", Grantee: "partner"}))
	must(fleet.DeleteScaleSet(ctx, &pb.DeleteScaleSetRequest{Name: "web", Cascade: true}))
	must(c.Client.Catalog.DeleteVersion(ctx, &pb.DeleteVersionRequest{Gallery: "g", Application: "a", Version: "2.0.0"}))
	must(c.Client.Catalog.UpdateVersion(ctx, &pb.UpdateVersionRequest{
		Version:    &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "1.0.0", PublishingProfile: &pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{testcluster.Target("eastus", 2), testcluster.Target("westus", 2), testcluster.Target("northeurope", 1)}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"publishing_profile.target_regions"}},
	}))
	c.WaitState(t, "1.0.0", "Completed")
	if err := c.Catalog.Reap(ctx); err != nil {
		t.Fatal(err)
	}
}

func writeCopy(t *testing.T, db *state.DB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func dump(t *testing.T, db *state.DB) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := db.Dump(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
