//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestIngest uploads one package with vmapp (client → vmappd → MinIO) and,
// as the baseline, PutObject's the same file straight into the same MinIO
// with minio-go. It records both rates, their ratio and vmappd's peak RSS.
func TestIngest(t *testing.T) {
	size := int64(2 << 30)
	if quick {
		size = 256 << 20
	}
	m := miniotest.Start(t)
	m.MakeBucket(t, "baseline")
	regions := filepath.Join(t.TempDir(), "regions.yaml")
	os.WriteFile(regions, fmt.Appendf(nil, "regions:\n  - name: eastus\n    endpoints:\n      - {url: %q, bucket: vmapp-eastus}\n", m.Endpoint()), 0o600)
	path := randomFile(t, size)
	sum, _, err := client.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 30*time.Minute)

	// Baseline: minio-go PutObject of the file, its default part size and
	// parallelism.
	f, _ := os.Open(path)
	start := time.Now()
	if _, err := m.Client(t).PutObject(ctx, "baseline", "package", f, size, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	baseline := time.Since(start)
	f.Close()

	d := startVmappd(t, buildCmd(t, "vmappd"), regions, "VMAPP_S3_ACCESS_KEY="+m.AccessKey, "VMAPP_S3_SECRET_KEY="+m.SecretKey)
	rssIdle := peakRSS(d.cmd.Process.Pid)
	c, err := client.New(d.addr, client.Options{Token: d.token})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustDo(t, func() error {
		_, err := c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "bench", Location: "eastus"}})
		return err
	}, func() error {
		_, err := c.Catalog.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "bench", Name: "app", Location: "eastus", SupportedOsType: "Linux"}})
		return err
	}, func() error {
		_, err := c.Catalog.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
			Gallery: "bench", Application: "app", Name: "1.0.0", Location: "eastus",
			PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}, ReplicaCount: proto.Int32(1)},
		}})
		return err
	})
	cpu0 := cpuSeconds(d.cmd.Process.Pid)
	start = time.Now()
	v, err := c.Upload(ctx, "bench", "app", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if v.Package.GetSha256() != sum {
		t.Fatalf("stored package %v, want sha256 %s", v.Package, sum)
	}
	rss := peakRSS(d.cmd.Process.Pid)
	vm, base := mbps(size, took), mbps(size, baseline)
	report.Scenarios["ingest"] = Result{
		"bytes":              size,
		"vmappMBps":          vm,
		"baselineMBps":       base,
		"vmappSeconds":       round(took.Seconds(), 2),
		"baselineSeconds":    round(baseline.Seconds(), 2),
		"ratio":              round(vm/base, 2),
		"vmappdPeakRSSBytes": rss,
		"vmappdIdleRSSBytes": rssIdle,
		"vmappdCPUSeconds":   round(cpuSeconds(d.cmd.Process.Pid)-cpu0, 2),
		"vmapp":              fmt.Sprintf("%.0f MB/s", vm),
		"baseline":           fmt.Sprintf("%.0f MB/s (minio-go PutObject)", base),
		"notes":              fmt.Sprintf("%d MiB incompressible; vmappd peak RSS %d MiB", size>>20, rss>>20),
		"baselineName":       "minio-go PutObject",
	}
	t.Logf("ingest %d MiB: vmapp %.0f MB/s, PutObject %.0f MB/s, ratio %.2f, vmappd peak RSS %d MiB", size>>20, vm, base, vm/base, rss>>20)
}

func mustDo(t testing.TB, fs ...func() error) {
	t.Helper()
	for _, f := range fs {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
}
