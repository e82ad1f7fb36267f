//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
	// parallelism; before and after vmapp (A-B-A), as the store slows as it
	// fills.
	var baseCPU []cpuSplit
	putObject := func(name string) time.Duration {
		f, _ := os.Open(path)
		defer f.Close()
		syscall.Sync()
		c0 := cpuNow(0, m.Pid())
		start := time.Now()
		if _, err := m.Client(t).PutObject(ctx, "baseline", name, f, size, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		baseCPU = append(baseCPU, cpuNow(0, m.Pid()).minus(c0))
		return took
	}
	baselineA := putObject("package-a")

	bin, metrics := buildCmd(t, "vmappd"), freeAddr(t)
	d := startVmappdArgs(t, bin, regions, []string{"--metrics", metrics, "--pprof"}, "VMAPP_S3_ACCESS_KEY="+m.AccessKey, "VMAPP_S3_SECRET_KEY="+m.SecretKey)
	prof := newProfiler(t, bin, metrics)
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
	syscall.Sync()
	split0 := cpuNow(d.cmd.Process.Pid, m.Pid())
	// The CPU profile covers the upload's first baseline-time seconds: it
	// takes at least about that long, and runs the same way throughout.
	cpuProfile := prof.cpu(ctx, max(1, int(baselineA.Seconds())))
	start := time.Now()
	v, err := c.Upload(ctx, "bench", "app", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	vmSplit := cpuNow(d.cmd.Process.Pid, m.Pid()).minus(split0)
	if v.Package.GetSha256() != sum {
		t.Fatalf("stored package %v, want sha256 %s", v.Package, sum)
	}
	rss := peakRSS(d.cmd.Process.Pid)
	cpu := cpuSeconds(d.cmd.Process.Pid) - cpu0
	cpuTop, allocTop := prof.top(cpuProfile(), 15), prof.top(prof.allocs(ctx), 12, "-sample_index=alloc_space")
	baselineB := putObject("package-b")
	baseline := (baselineA + baselineB) / 2
	vm, base := mbps(size, took), mbps(size, baseline)
	writeProfileText(t, "ingest-profile.txt", cpuTop, allocTop)
	vg := vmSplit.perGiB(size)
	bg := baseCPU[0].plus(baseCPU[1]).perGiB(2 * size)
	report.Scenarios["ingest"] = Result{
		"bytes":                  size,
		"vmappMBps":              vm,
		"baselineMBps":           base,
		"vmappSeconds":           round(took.Seconds(), 2),
		"baselineSeconds":        round(baseline.Seconds(), 2),
		"baselineRunsSeconds":    map[string]float64{"a": round(baselineA.Seconds(), 2), "b": round(baselineB.Seconds(), 2)},
		"ratio":                  round(vm/base, 2),
		"vmappdPeakRSSBytes":     rss,
		"vmappdIdleRSSBytes":     rssIdle,
		"vmappdCPUSeconds":       round(cpu, 2),
		"vmappdCPUSecondsPerGiB": round(cpu/float64(size)*(1<<30), 2),
		"cpuSecondsPerGiB":       map[string]cpuSplit{"vmapp": vmSplit.perGiB(size), "baselineA": baseCPU[0].perGiB(size), "baselineB": baseCPU[1].perGiB(size)},
		"cpuProfileTop":          cpuTop,
		"allocProfileTop":        allocTop,
		"vmapp":                  fmt.Sprintf("%.0f MB/s", vm),
		"baseline":               fmt.Sprintf("%.0f MB/s (minio-go PutObject)", base),
		"notes": fmt.Sprintf("%d MiB incompressible; vmappd peak RSS %d MiB; CPU s per GiB (client+vmappd+MinIO) vmapp %.2f+%.2f+%.2f = %.2f, PutObject %.2f+%.2f = %.2f; baseline A-B-A %.1f/%.1f s; profiles in results/ingest-profile.txt",
			size>>20, rss>>20, vg.Client, vg.Vmappd, vg.MinIO, vg.Total, bg.Client, bg.MinIO, bg.Total, baselineA.Seconds(), baselineB.Seconds()),
		"baselineName": "minio-go PutObject",
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

// writeProfileText writes a scenario's profile summaries to results/name.
func writeProfileText(t testing.TB, name string, cpuTop, allocTop []string) {
	text := "# vmappd CPU profile (go tool pprof -top)\n\n" + strings.Join(cpuTop, "\n") +
		"\n\n# vmappd allocations since start (go tool pprof -top -sample_index=alloc_space)\n\n" + strings.Join(allocTop, "\n") + "\n"
	if err := os.WriteFile(filepath.Join("results", name), []byte(text), 0o644); err != nil {
		t.Log(err)
	}
}

// cpuSplit is CPU seconds by process: this one (the uploading client),
// vmappd and MinIO.
type cpuSplit struct {
	Client float64 `json:"client"`
	Vmappd float64 `json:"vmappd"`
	MinIO  float64 `json:"minio"`
	Total  float64 `json:"total"`
}

// cpuNow is the CPU time so far of this process, vmappd (pid 0: none) and
// MinIO.
func cpuNow(vmappd, minio int) cpuSplit {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	self := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	c := cpuSplit{Client: self, MinIO: cpuSeconds(minio)}
	if vmappd != 0 {
		c.Vmappd = cpuSeconds(vmappd)
	}
	return c
}

func (c cpuSplit) plus(o cpuSplit) cpuSplit {
	return cpuSplit{Client: c.Client + o.Client, Vmappd: c.Vmappd + o.Vmappd, MinIO: c.MinIO + o.MinIO}
}

func (c cpuSplit) minus(o cpuSplit) cpuSplit {
	return cpuSplit{Client: c.Client - o.Client, Vmappd: c.Vmappd - o.Vmappd, MinIO: c.MinIO - o.MinIO}
}

// perGiB scales c to a GiB of size bytes, rounded, with the total.
func (c cpuSplit) perGiB(size int64) cpuSplit {
	k := float64(1<<30) / float64(size)
	r := cpuSplit{Client: round(c.Client*k, 2), Vmappd: round(c.Vmappd*k, 2), MinIO: round(c.MinIO*k, 2)}
	r.Total = round(r.Client+r.Vmappd+r.MinIO, 2)
	return r
}
