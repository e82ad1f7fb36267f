package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	"github.com/vmapp/vmapp/internal/testkit/testnet"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestUploadResumesAfterKill9 kills vmappd with SIGKILL in the middle of an
// upload, restarts it on the same data and address, and checks that the
// client, retrying on its own, resumes from no earlier than the bytes the
// killed vmappd had reported committed, and that the stored object is the
// file.
func TestUploadResumesAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the vmappd binary and runs MinIO")
	}
	m := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	d := startFixed(t, fmt.Sprintf("regions:\n  - name: eastus\n    endpoints:\n      - {url: %q, bucket: vmapp-eastus}\n", m.Endpoint()))
	c, addr, dir := d.c, d.addr, t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "eastus"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Catalog.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "a", Location: "eastus", SupportedOsType: "Linux"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Catalog.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: "g", Application: "a", Name: "1.0.0", Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}, ReplicaCount: proto.Int32(1)},
	}}); err != nil {
		t.Fatal(err)
	}

	file := make([]byte, 48<<20)
	rand.Read(file)
	path := filepath.Join(dir, "app.bin")
	os.WriteFile(path, file, 0o600)
	s := sha256.Sum256(file)
	sum := hex.EncodeToString(s[:])

	slow, err := client.New(addr, client.Options{Token: d.token, DialOptions: []grpc.DialOption{grpc.WithContextDialer(testnet.SlowDialer(12 << 20))}})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	var mu sync.Mutex
	var starts []int64 // the offset each attempt started from
	last := int64(-1)
	type result struct {
		v   *pb.GalleryApplicationVersion
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := slow.Upload(ctx, "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{Progress: func(d, _ int64) {
			mu.Lock()
			defer mu.Unlock()
			if d <= last || last < 0 {
				starts = append(starts, d)
			}
			last = d
		}})
		done <- result{v, err}
	}()

	// Wait until vmappd says 16 MiB are committed, then kill it.
	var committed int64
	for committed < 16<<20 {
		b, err := c.Transfer.BeginUpload(ctx, &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, SizeBytes: int64(len(file)), Sha256: sum})
		if err != nil {
			t.Fatal(err)
		}
		committed = b.CommittedOffset
		time.Sleep(10 * time.Millisecond)
	}
	d.kill9(t)
	time.Sleep(500 * time.Millisecond)
	d.restart(t)
	r := <-done
	if r.err != nil {
		t.Fatalf("upload across a vmappd kill -9: %v", r.err)
	}
	if r.v.Package.GetSha256() != sum || r.v.ProvisioningState != "Succeeded" {
		t.Fatalf("version after the upload: %s %v", r.v.ProvisioningState, r.v.Package)
	}
	mu.Lock()
	t.Logf("attempts started at %v; %d bytes were committed at the kill", starts, committed)
	if len(starts) < 2 || starts[len(starts)-1] < committed {
		t.Fatalf("attempts started at %v: the resume lost committed bytes (%d)", starts, committed)
	}
	mu.Unlock()
	obj, err := m.Client(t).GetObject(ctx, "vmapp-eastus", blob.SourceKey("default", "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE), minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, file) {
		t.Fatalf("stored object: %d bytes, %v", len(got), err)
	}
}
