//go:build bench

package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// benchRegion is one region of the replication scenario: its bucket and the
// MinIO servers that are its endpoints, in topology order.
type benchRegion struct {
	name    string
	bucket  string
	servers []*miniotest.Server
	clients []*minio.Client
}

// TestReplication replicates one package from eastus to three regions, three
// replicas each, over five MinIO servers (eastus and westus two endpoints
// each, northeurope one), with the vmappd binary. The baseline makes the
// same nine replicas with minio-go directly, the way a script would: per
// region, replica 0 streamed from the source (GetObject → PutObject, or
// CopyObject when it lands on the source's own server), then the region's
// other replicas from replica 0 — CopyObject on the same server, streamed
// otherwise — regions in parallel; it runs before and after vmapp and
// counts the mean. It records both wall times (upload not included), their
// ratio, the bytes vmappd moved by path (its Prometheus metrics), vmappd's
// peak RSS, and checks every replica's size.
func TestReplication(t *testing.T) {
	size := int64(1 << 30)
	if quick {
		size = 128 << 20
	}
	const replicasPerRegion = 3
	const accessKey, secretKey = "vmappbench", "vmappbenchsecret"
	creds := miniotest.WithCredentials(accessKey, secretKey)

	// Five MinIO processes, started in parallel.
	layout := []struct {
		name      string
		endpoints int
	}{{"eastus", 2}, {"westus", 2}, {"northeurope", 1}}
	var regions []*benchRegion
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, l := range layout {
		r := &benchRegion{name: l.name, bucket: "vmapp-" + l.name, servers: make([]*miniotest.Server, l.endpoints)}
		regions = append(regions, r)
		for i := range l.endpoints {
			wg.Go(func() {
				s := miniotest.Start(t, creds)
				s.MakeBucket(t, r.bucket) // before vmappd: the baseline runs first
				mu.Lock()
				r.servers[i] = s
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var yaml strings.Builder
	yaml.WriteString("regions:\n")
	for _, r := range regions {
		fmt.Fprintf(&yaml, "  - name: %s\n    endpoints:\n", r.name)
		for _, s := range r.servers {
			fmt.Fprintf(&yaml, "      - {url: %q, bucket: %s}\n", s.Endpoint(), r.bucket)
			r.clients = append(r.clients, s.Client(t))
		}
	}
	regionsFile := filepath.Join(t.TempDir(), "regions.yaml")
	if err := os.WriteFile(regionsFile, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	east := regions[0]

	path := randomFile(t, size)
	sum, _, err := client.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 30*time.Minute)

	// vmapp: the vmappd binary with its default replication settings.
	metricsAddr := freeAddr(t)
	d := startVmappdArgs(t, buildCmd(t, "vmappd"), regionsFile, []string{"--metrics", metricsAddr},
		"VMAPP_S3_ACCESS_KEY="+accessKey, "VMAPP_S3_SECRET_KEY="+secretKey)
	pid := d.cmd.Process.Pid
	c, err := client.New(d.addr, client.Options{Token: d.token})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const gallery, app, version = "bench", "app", "1.0.0"
	var targets []*pb.TargetRegion
	for _, r := range regions {
		targets = append(targets, &pb.TargetRegion{Name: r.name, RegionalReplicaCount: proto.Int32(replicasPerRegion)})
	}
	mustDo(t, func() error {
		_, err := c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: gallery, Location: east.name}})
		return err
	}, func() error {
		_, err := c.Catalog.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: gallery, Name: app, Location: east.name, SupportedOsType: "Linux"}})
		return err
	}, func() error {
		_, err := c.Catalog.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
			Gallery: gallery, Application: app, Name: version, Location: east.name,
			PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}, TargetRegions: targets},
		}})
		return err
	})

	// The stores slow down as they fill up, so the baseline runs twice,
	// before and after vmapp (A-B-A), and its figure is the mean of both.
	// Each run, like vmapp, starts right after its source object is
	// written; the disks are synced between runs.
	var baseRuns []baselineRun
	baseline := func(run string) {
		t.Helper()
		syscall.Sync()
		src := "baseline/" + run + "/source"
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := east.clients[0].PutObject(ctx, east.bucket, src, f, size, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		regionSeconds, err := baselineReplicate(ctx, east, src, run, regions, replicasPerRegion, size)
		if err != nil {
			t.Fatal(err)
		}
		r := baselineRun{Run: run, Seconds: time.Since(start).Seconds(), RegionSeconds: regionSeconds}
		t.Logf("baseline %s: %.2fs; by region %v", run, r.Seconds, regionSeconds)
		baseRuns = append(baseRuns, r)
	}
	baseline("a")

	syscall.Sync()
	if _, err := c.Upload(ctx, gallery, app, version, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	// Timed from here: the upload has returned, replication runs.
	start := time.Now()
	uploadRSS := peakRSS(pid)
	rssReset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil // VmHWM := VmRSS
	cpu0 := cpuSeconds(pid)
	vmappRegion := map[string]float64{}
	var last *pb.ReplicationStatus
	for {
		r, err := c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: gallery, Application: app, Version: version})
		if err != nil {
			t.Fatal(err)
		}
		last = r.Version.GetReplicationStatus()
		for _, s := range last.GetSummary() {
			if _, seen := vmappRegion[s.Region]; !seen && s.State == pb.ReplicationCompleted {
				vmappRegion[s.Region] = round(time.Since(start).Seconds(), 2)
			}
		}
		if last.GetAggregatedState() == pb.ReplicationCompleted {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("replication did not complete: %v", last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	vmappTook := time.Since(start)
	rss := peakRSS(pid)
	cpu := cpuSeconds(pid) - cpu0
	pathBytes := scrapeReplicationBytes(t, metricsAddr)
	t.Logf("vmapp: %d MiB × %d replicas in %.2fs; by region %v; bytes by path %v", size>>20, 3*replicasPerRegion, vmappTook.Seconds(), vmappRegion, pathBytes)

	baseline("b")
	var baseSeconds float64
	baseRegion := map[string]float64{}
	for _, r := range baseRuns {
		baseSeconds += r.Seconds / float64(len(baseRuns))
		for name, sec := range r.RegionSeconds {
			baseRegion[name] = round(baseRegion[name]+sec/float64(len(baseRuns)), 2)
		}
	}
	for i := range baseRuns {
		baseRuns[i].Seconds = round(baseRuns[i].Seconds, 2)
	}

	// Every replica, vmapp's and the baseline's, is on its endpoint with the
	// package's size.
	for _, r := range regions {
		for i := range replicasPerRegion {
			cl := r.clients[i%len(r.clients)]
			for _, key := range []string{
				blob.ReplicaKey("default", gallery, app, version, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, int32(i)),
				baselineKey("a", i),
				baselineKey("b", i),
			} {
				info, err := cl.StatObject(ctx, r.bucket, key, minio.StatObjectOptions{})
				if err != nil {
					t.Fatalf("replica %d of %s (%s on endpoint %d): %v", i, r.name, key, i%len(r.clients), err)
				}
				if info.Size != size {
					t.Fatalf("replica %d of %s (%s on endpoint %d) has %d bytes, want %d", i, r.name, key, i%len(r.clients), info.Size, size)
				}
			}
		}
	}

	nonSource := int64(len(regions) - 1)
	cross := pathBytes["cross_region"]
	perRegion := cross / nonSource
	once := cross == nonSource*size
	if !once {
		t.Logf("WARNING: %d bytes crossed regions for %d non-source regions and a %d-byte package", cross, nonSource, size)
	}
	ratio := vmappTook.Seconds() / baseSeconds
	replicas := len(regions) * replicasPerRegion
	report.Scenarios["replication"] = Result{
		"bytes":                     size,
		"replicas":                  replicas,
		"vmappSeconds":              round(vmappTook.Seconds(), 2),
		"baselineSeconds":           round(baseSeconds, 2),
		"ratio":                     round(ratio, 2),
		"vmappRegionSeconds":        vmappRegion,
		"baselineRegionSeconds":     baseRegion,
		"baselineRuns":              baseRuns,
		"crossRegionBytes":          cross,
		"inRegionBytes":             pathBytes["in_region"],
		"serverSideBytes":           pathBytes["server_side"],
		"crossRegionBytesPerRegion": perRegion,
		"crossRegionOncePerRegion":  once,
		"vmappdPeakRSSBytes":        rss,
		"vmappdPeakRSSReplication":  rssReset,
		"vmappdUploadPeakRSSBytes":  uploadRSS,
		"vmappdCPUSeconds":          round(cpu, 2),
		"vmapp":                     fmt.Sprintf("%.1f s", vmappTook.Seconds()),
		"baseline":                  fmt.Sprintf("%.1f s (minio-go copies)", baseSeconds),
		"notes": fmt.Sprintf("%d MiB × %d replicas over 3 regions / 5 MinIO; lower ratio is better, goal ≤ 1.2; cross-region bytes once per region: %v; vmappd peak RSS %d MiB",
			size>>20, replicas, once, rss>>20),
		"baselineName": "minio-go GetObject→PutObject / CopyObject",
	}
	t.Logf("replication %d MiB × %d: vmapp %.2fs, baseline %.2fs, ratio %.2f (lower is better); cross-region %d B (%d per region, once: %v), in-region %d B, server-side %d B; vmappd peak RSS %d MiB (upload %d MiB), CPU %.1fs",
		size>>20, replicas, vmappTook.Seconds(), baseSeconds, ratio, cross, perRegion, once, pathBytes["in_region"], pathBytes["server_side"], rss>>20, uploadRSS>>20, cpu)
}

func baselineKey(run string, i int) string {
	return fmt.Sprintf("baseline/%s/replicas/package-%d", run, i)
}

// baselineRun is one run of the baseline.
type baselineRun struct {
	Run           string             `json:"run"`
	Seconds       float64            `json:"seconds"`
	RegionSeconds map[string]float64 `json:"regionSeconds"`
}

// baselineReplicate makes the replica set vmapp makes, with minio-go alone:
// for each region in parallel, replica 0 from the source object in src's
// endpoint 0, then replicas 1.. in parallel from replica 0; replica i on
// endpoint i mod n. A copy within one server is CopyObject, others stream
// GetObject → PutObject (default options) through this process. It returns
// each region's wall time.
func baselineReplicate(ctx context.Context, src *benchRegion, srcKey, run string, regions []*benchRegion, replicas int, size int64) (map[string]float64, error) {
	start := time.Now()
	var mu sync.Mutex
	took := map[string]float64{}
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range regions {
		g.Go(func() error {
			n := len(r.servers)
			if err := copyObject(gctx, src.servers[0], src.clients[0], src.bucket, srcKey, r.servers[0], r.clients[0], r.bucket, baselineKey(run, 0), size); err != nil {
				return fmt.Errorf("%s replica 0: %w", r.name, err)
			}
			rg, rctx := errgroup.WithContext(gctx)
			for i := 1; i < replicas; i++ {
				rg.Go(func() error {
					e := i % n
					if err := copyObject(rctx, r.servers[0], r.clients[0], r.bucket, baselineKey(run, 0), r.servers[e], r.clients[e], r.bucket, baselineKey(run, i), size); err != nil {
						return fmt.Errorf("%s replica %d: %w", r.name, i, err)
					}
					return nil
				})
			}
			if err := rg.Wait(); err != nil {
				return err
			}
			mu.Lock()
			took[r.name] = round(time.Since(start).Seconds(), 2)
			mu.Unlock()
			return nil
		})
	}
	return took, g.Wait()
}

// copyObject copies one object: server-side (CopyObject) within one server,
// else streamed through this process.
func copyObject(ctx context.Context, fromSrv *miniotest.Server, from *minio.Client, fromBucket, fromKey string, toSrv *miniotest.Server, to *minio.Client, toBucket, toKey string, size int64) error {
	if fromSrv == toSrv {
		_, err := to.CopyObject(ctx, minio.CopyDestOptions{Bucket: toBucket, Object: toKey}, minio.CopySrcOptions{Bucket: fromBucket, Object: fromKey})
		return err
	}
	obj, err := from.GetObject(ctx, fromBucket, fromKey, minio.GetObjectOptions{})
	if err != nil {
		return err
	}
	defer obj.Close()
	_, err = to.PutObject(ctx, toBucket, toKey, obj, size, minio.PutObjectOptions{})
	return err
}

// scrapeReplicationBytes reads vmapp_replication_bytes_total by path from
// vmappd's Prometheus endpoint.
func scrapeReplicationBytes(t testing.TB, addr string) map[string]int64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	out := map[string]int64{}
	const prefix = `vmapp_replication_bytes_total{path="`
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		label, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			t.Fatalf("unexpected metrics line %q", sc.Text())
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		out[label] = int64(v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
