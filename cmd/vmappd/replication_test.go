package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/daemon"
	"github.com/vmapp/vmapp/state"
)

// TestReplicationResumesAfterKill9 kills vmappd with SIGKILL while it copies
// a package to another region (slowly: the regions file limits the
// bandwidth), restarts it, and checks from the bbolt file that the copy
// resumed from the parts already copied: the bytes that crossed regions sum
// to the package size exactly, not more.
func TestReplicationResumesAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the vmappd binary and runs MinIO")
	}
	east := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	west := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	d := startFixed(t, fmt.Sprintf(`regions:
  - name: eastus
    endpoints: [{url: %q, bucket: vmapp-eastus}]
  - name: westus
    endpoints: [{url: %q, bucket: vmapp-westus}]
replication:
  partConcurrency: 1
  bandwidthMBps: 12
`, east.Endpoint(), west.Endpoint()))
	c, dir := d.c, t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	must := must(t)
	createVersion(ctx, t, c, &pb.TargetRegion{Name: "eastus"}, &pb.TargetRegion{Name: "westus", RegionalReplicaCount: proto.Int32(2)})
	const size = 40 << 20 // five 8 MiB parts: about 3.5 s at 12 MB/s
	path := filepath.Join(dir, "app.bin")
	f, _ := os.Create(path)
	f.Truncate(size) // zeros are fine: nothing compresses on this path
	f.Close()
	must(c.Upload(ctx, "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{}))

	west0 := func() *pb.RegionalReplicationStatus {
		r, err := c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range r.Version.ReplicationStatus.GetSummary() {
			if s.Region == "westus" {
				return s
			}
		}
		return nil
	}
	var atKill int64
	for {
		s := west0()
		if s.GetBytesDone() >= 16<<20 {
			if s.State == "Completed" || s.BytesDone >= size {
				t.Fatalf("the copy finished before the kill: %v", s)
			}
			atKill = s.BytesDone
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.kill9(t)
	d.restart(t)
	for west0().GetState() != "Completed" {
		if ctx.Err() != nil {
			t.Fatalf("westus never completed after the restart: %v", west0())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Stop vmappd to read its state file.
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	db, err := state.Open(filepath.Join(d.data, daemon.DBFile), state.Options{OpenTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var cross, in int64
	db.View(context.Background(), func(tx *state.Tx) error {
		recs, err := state.Replicas.All(tx, nil)
		for _, r := range recs {
			if r.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
				t.Errorf("replica %s/%d is %v", r.Region, r.Index, r.Phase)
			}
			cross += r.CrossRegionBytes
			in += r.InRegionBytes
		}
		return err
	})
	t.Logf("%d bytes were copied to westus at the kill; cross-region bytes in all %d, in-region %d", atKill, cross, in)
	if cross != size {
		t.Fatalf("%d bytes crossed regions for a %d-byte package: the copy did not resume from its parts", cross, size)
	}
}
