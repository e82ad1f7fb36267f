package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
	"github.com/vmapp/vmapp/server"
)

// fleet is a testcluster (three regions of real MinIO processes and vmappd
// with its replicator) with the helpers of these tests.
type fleet struct {
	*env
	minio  map[string][]*miniotest.Server
	bucket map[string]string
	repl   *replicator.Replicator
	reg    *prometheus.Registry
}

func newFleet(t *testing.T, o replicator.Options) *fleet {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{Replicator: o})
	return &fleet{
		env:   &env{t: t, store: c.Catalog, c: c.Client, addr: c.Addr},
		minio: c.MinIO, bucket: c.Bucket, repl: c.Replicator, reg: c.Daemon.Registry,
	}
}

// publish creates g/a/<version> in eastus with the given target regions and
// uploads a package of size bytes; it returns the package.
func (f *fleet) publish(version string, size int, targets ...*pb.TargetRegion) []byte {
	f.t.Helper()
	if _, err := f.c.Catalog.GetGallery(ctx(f.t), &pb.GetGalleryRequest{Gallery: "g"}); err != nil {
		f.gallery("g")
		f.app("g", "a")
	}
	f.version("g", "a", version, func(v *pb.GalleryApplicationVersion) {
		v.PublishingProfile.TargetRegions = targets
	})
	path, sum, data := file(f.t, size)
	v, err := f.c.Upload(ctx(f.t), "g", "a", version, pkg, path, client.UploadOptions{})
	mustOK(f.t, err)
	if v.Package.GetSha256() != sum {
		f.t.Fatalf("package %v", v.Package)
	}
	return data
}

func tr(region string, n int32) *pb.TargetRegion {
	return &pb.TargetRegion{Name: region, RegionalReplicaCount: &n}
}

func (f *fleet) get(version string) *pb.GalleryApplicationVersion {
	f.t.Helper()
	r, err := f.c.Catalog.GetVersion(ctx(f.t), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: version})
	mustOK(f.t, err)
	return r.Version
}

// waitState waits until the version's aggregated replication state is want.
func (f *fleet) waitState(version, want string) *pb.GalleryApplicationVersion {
	f.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		v := f.get(version)
		if v.ReplicationStatus.GetAggregatedState() == want {
			return v
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("replication of %s never became %s: %v", version, want, v.ReplicationStatus)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func regionStatus(v *pb.GalleryApplicationVersion, region string) *pb.RegionalReplicationStatus {
	for _, s := range v.ReplicationStatus.GetSummary() {
		if s.Region == region {
			return s
		}
	}
	return nil
}

// replica reads replica i of the version's package in region.
func (f *fleet) replica(region, version string, i int) ([]byte, error) {
	m := f.minio[region][i%len(f.minio[region])]
	obj, err := m.Client(f.t).GetObject(context.Background(), f.bucket[region], blob.ReplicaKey("default", "g", "a", version, pkg, int32(i)), minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// objects counts the objects and unfinished multipart uploads under a
// version's replicas on every endpoint.
func (f *fleet) objects(version string) (objects, uploads int) {
	prefix := path.Dir(blob.ReplicaKey("default", "g", "a", version, pkg, 0)) + "/"
	for region, ms := range f.minio {
		for _, m := range ms {
			c := m.Client(f.t)
			for o := range c.ListObjects(context.Background(), f.bucket[region], minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
				if o.Err != nil {
					f.t.Fatal(o.Err)
				}
				objects++
			}
			// MinIO lists multipart uploads of one object name only.
			for i := range int32(10) {
				for u := range c.ListIncompleteUploads(context.Background(), f.bucket[region], blob.ReplicaKey("default", "g", "a", version, pkg, i), false) {
					if u.Err != nil {
						f.t.Fatal(u.Err)
					}
					uploads++
				}
			}
		}
	}
	return objects, uploads
}

func TestReplicatesToEveryRegionOncePerRegion(t *testing.T) {
	f := newFleet(t, replicator.Options{})
	size := 2*testcluster.PartSize + 4321
	data := f.publish("1.0.0", size, tr("eastus", 3), tr("westus", 2), tr("northeurope", 10))

	// Watch it to the end.
	ws, err := replicationClient(f).WatchReplication(ctx(t), &pb.WatchReplicationRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, err)
	var last *pb.ReplicationStatus
	updates := 0
	for {
		r, err := ws.Recv()
		if err == io.EOF {
			break
		}
		mustOK(t, err)
		last, updates = r.Status, updates+1
	}
	if last.GetAggregatedState() != "Completed" {
		t.Fatalf("the watch ended with %v after %d updates", last, updates)
	}

	v := f.waitState("1.0.0", "Completed")
	for _, want := range []struct {
		region string
		n      int32
	}{{"eastus", 3}, {"westus", 2}, {"northeurope", 10}} {
		s := regionStatus(v, want.region)
		if s.GetState() != "Completed" || s.ReplicasCompleted != want.n || s.ReplicasWanted != want.n || s.Progress != 100 || s.BytesDone != int64(size)*int64(want.n) {
			t.Fatalf("%s: %v", want.region, s)
		}
		for i := range int(want.n) {
			b, err := f.replica(want.region, "1.0.0", i)
			if err != nil || !bytes.Equal(b, data) {
				t.Fatalf("replica %d in %s: %d bytes, %v", i, want.region, len(b), err)
			}
		}
	}
	// Bytes cross regions once per target region other than the source;
	// inside eastus, only the replica on the second endpoint streams.
	cross, in, err := f.repl.Bytes(v)
	mustOK(t, err)
	if cross != 2*int64(size) || in != int64(size) {
		t.Fatalf("bytes through vmappd: cross-region %d, in-region %d; want %d and %d", cross, in, 2*size, size)
	}
	if err := f.repl.Available(context.Background(), v, "northeurope"); err != nil {
		t.Fatal(err)
	}

	// A region that isn't a target.
	f.publish("1.0.1", 100, tr("eastus", 1))
	v = f.waitState("1.0.1", "Completed")
	wantErr(t, f.repl.Available(context.Background(), v, "westus"), codes.FailedPrecondition, "'g/a/1.0.1' isn't available in westus region")
	if len(v.ReplicationStatus.Summary) != 1 {
		t.Fatalf("summary %v", v.ReplicationStatus)
	}
}

func replicationClient(f *fleet) pb.ReplicationServiceClient {
	return pb.NewReplicationServiceClient(f.c.Conn())
}

// TestRegionOutage: a region whose store is down fails on its own, the
// others complete, and it completes once the store is back.
//
// Its metrics follow: every region's series exist before anything
// happened; westus's failed copy attempts and failed replicas count while
// it is down; once it is back, every region's replicas are completed and
// its replication lag observed once.
func TestRegionOutage(t *testing.T) {
	f := newFleet(t, replicator.Options{})
	for _, region := range []string{"eastus", "westus", "northeurope"} {
		for _, m := range []struct {
			name   string
			labels map[string]string
		}{
			{"vmapp_replica_copy_attempts_total", map[string]string{"region": region, "result": "failed"}},
			{"vmapp_replica_copy_attempts_total", map[string]string{"region": region, "result": "completed"}},
			{"vmapp_replicas", map[string]string{"region": region, "state": "failed"}},
			{"vmapp_replica_damage_found_total", map[string]string{"region": region, "check": "deep_scrub"}},
			{"vmapp_replication_lag_seconds", map[string]string{"region": region}},
		} {
			if !series(t, f.reg, m.name, m.labels) {
				t.Errorf("no %s%v before the first event", m.name, m.labels)
			}
		}
	}
	f.minio["westus"][0].Stop(t)
	data := f.publish("1.0.0", testcluster.PartSize+1, tr("eastus", 2), tr("westus", 2), tr("northeurope", 1))
	v := f.waitState("1.0.0", "Failed")
	// westus is Failed between its attempts, Replicating during one: wait
	// for a moment it is Failed with the others completed.
	deadline := time.Now().Add(30 * time.Second)
	for regionStatus(v, "eastus").GetState() != "Completed" || regionStatus(v, "northeurope").GetState() != "Completed" ||
		regionStatus(v, "westus").GetState() != "Failed" {
		if time.Now().After(deadline) {
			t.Fatalf("the other regions did not complete while westus was down: %v", v.ReplicationStatus)
		}
		time.Sleep(50 * time.Millisecond)
		v = f.get("1.0.0")
	}
	w := regionStatus(v, "westus")
	if !strings.Contains(w.Details, "replica 0") || !strings.Contains(w.Details, "attempt") {
		t.Fatalf("westus while down: %v", w)
	}
	if err := f.repl.Available(context.Background(), v, "westus"); err == nil {
		t.Fatal("westus available while its store is down")
	}
	westus := func(labels map[string]string) map[string]string { labels["region"] = "westus"; return labels }
	if n := metric(t, f.reg, "vmapp_replica_copy_attempts_total", westus(map[string]string{"result": "failed"})); n < 1 {
		t.Errorf("westus failed copy attempts %v while it was Failed", n)
	}
	f.waitMetric("vmapp_replicas", westus(map[string]string{"state": "failed"}), 1)
	if n := metric(t, f.reg, "vmapp_replica_copy_attempts_total", map[string]string{"result": "failed", "region": "eastus"}); n != 0 {
		t.Errorf("eastus failed copy attempts %v", n)
	}
	f.minio["westus"][0].Restart(t)
	f.waitState("1.0.0", "Completed")
	for i := range 2 {
		if b, err := f.replica("westus", "1.0.0", i); err != nil || !bytes.Equal(b, data) {
			t.Fatalf("westus replica %d after the outage: %v", i, err)
		}
	}
	for region, n := range map[string]float64{"eastus": 2, "westus": 2, "northeurope": 1} {
		// Each is counted just after the state says it: wait for them.
		f.waitMetric("vmapp_replicas", map[string]string{"region": region, "state": "completed"}, n)
		f.waitMetric("vmapp_replica_copy_attempts_total", map[string]string{"region": region, "result": "completed"}, n)
		f.waitMetric("vmapp_replication_lag_seconds", map[string]string{"region": region}, 1)
		if got := metric(t, f.reg, "vmapp_replicas", map[string]string{"region": region}); got != n {
			t.Errorf("%s: %v replica records in all, want %v completed and nothing else", region, got, n)
		}
		if got := metric(t, f.reg, "vmapp_replica_copy_attempts_total", map[string]string{"region": region, "result": "completed"}); got != n {
			t.Errorf("%s: %v completed copy attempts, want %v", region, got, n)
		}
		if got := metric(t, f.reg, "vmapp_replication_lag_seconds", map[string]string{"region": region}); got != 1 {
			t.Errorf("%s: replication lag observed %v times, want once", region, got)
		}
	}
}

// TestRepair: replicas deleted, overwritten and rotted on disk behind the
// replicator's back are found and copied again.
func TestRepair(t *testing.T) {
	f := newFleet(t, replicator.Options{})
	data := f.publish("1.0.0", 2*testcluster.PartSize+10, tr("eastus", 3), tr("northeurope", 2))
	f.waitState("1.0.0", "Completed")
	key := func(i int32) string { return blob.ReplicaKey("default", "g", "a", "1.0.0", pkg, i) }

	// Deleted and overwritten (through the store's API).
	mustOK(t, f.minio["eastus"][0].Client(t).RemoveObject(context.Background(), "vmapp-eastus", key(2), minio.RemoveObjectOptions{}))
	junk := bytes.Repeat([]byte("x"), len(data))
	_, err := f.minio["northeurope"][0].Client(t).PutObject(context.Background(), "vmapp-northeurope", key(1), bytes.NewReader(junk), int64(len(junk)), minio.PutObjectOptions{})
	mustOK(t, err)
	_, err = replicationClient(f).RepairVersion(ctx(t), &pb.RepairVersionRequest{Gallery: "g", Application: "a", Version: "9.9.9"})
	wantErr(t, err, codes.NotFound, "9.9.9")
	ws, err := replicationClient(f).WatchReplication(ctx(t), &pb.WatchReplicationRequest{Gallery: "g", Application: "nope", Version: "1.0.0"})
	mustOK(t, err)
	_, err = ws.Recv()
	wantErr(t, err, codes.NotFound, "nope")
	r, err := replicationClient(f).RepairVersion(ctx(t), &pb.RepairVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, err)
	got := map[string]string{}
	for _, p := range r.Problems {
		got[fmt.Sprintf("%s/%d", p.Region, p.Replica)] = p.Problem
	}
	if len(got) != 2 || got["eastus/2"] != "missing" || !strings.Contains(got["northeurope/1"], "store ETag") || r.ReplicasChecked != 3 {
		t.Fatalf("repair found %v, %d sound", got, r.ReplicasChecked)
	}
	f.waitState("1.0.0", "Completed")
	for _, c := range []struct {
		region string
		i      int
	}{{"eastus", 2}, {"northeurope", 1}} {
		if b, err := f.replica(c.region, "1.0.0", c.i); err != nil || !bytes.Equal(b, data) {
			t.Fatalf("%s replica %d after repair: %v", c.region, c.i, err)
		}
	}

	// Rotted on disk in the middle of its second part: MinIO's metadata is
	// intact, so only a deep check (reading every piece) notices.
	f.rot("eastus", "1.0.0", 1, "part.2", 3<<20)
	r, err = replicationClient(f).RepairVersion(ctx(t), &pb.RepairVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, err)
	if len(r.Problems) != 0 {
		t.Fatalf("a shallow repair found %v", r.Problems)
	}
	r, err = replicationClient(f).RepairVersion(ctx(t), &pb.RepairVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0", Deep: true})
	mustOK(t, err)
	if len(r.Problems) != 1 || r.Problems[0].Region != "eastus" || r.Problems[0].Replica != 1 {
		t.Fatalf("a deep repair found %v", r.Problems)
	}
	t.Logf("deep repair: %v", r.Problems[0].Problem)
	f.waitState("1.0.0", "Completed")
	if b, err := f.replica("eastus", "1.0.0", 1); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("eastus replica 1 after a deep repair: %v", err)
	}
}

// TestTargetRegionChanges: removing a region needs
// allowDeletionOfReplicatedLocations and then deletes its replicas; a
// lower count deletes the extra ones; a new region is replicated.
func TestTargetRegionChanges(t *testing.T) {
	f := newFleet(t, replicator.Options{})
	f.publish("1.0.0", testcluster.PartSize, tr("eastus", 3), tr("northeurope", 2))
	v := f.waitState("1.0.0", "Completed")
	update := func(v *pb.GalleryApplicationVersion, paths ...string) (*pb.GalleryApplicationVersion, error) {
		r, err := f.c.Catalog.UpdateVersion(ctx(t), &pb.UpdateVersionRequest{Version: v, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
		return r.GetVersion(), err
	}
	v.PublishingProfile.TargetRegions = []*pb.TargetRegion{tr("eastus", 1), tr("westus", 1)}
	_, err := update(v, "publishing_profile.target_regions")
	wantErr(t, err, codes.FailedPrecondition, "northeurope")
	if n, _ := f.objects("1.0.0"); n != 5 {
		t.Fatalf("%d replica objects after a refused update, want 5", n)
	}
	v.SafetyProfile = &pb.SafetyProfile{AllowDeletionOfReplicatedLocations: true}
	_, err = update(v, "publishing_profile.target_regions", "safety_profile.allow_deletion_of_replicated_locations")
	mustOK(t, err)
	v = f.waitState("1.0.0", "Completed")
	if len(v.ReplicationStatus.Summary) != 2 || regionStatus(v, "westus") == nil || regionStatus(v, "northeurope") != nil {
		t.Fatalf("status after the update: %v", v.ReplicationStatus)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, u := f.objects("1.0.0")
		if n == 2 && u == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d replica objects and %d uploads left, want 2 and 0", n, u)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDeleteWhileReplicating: a version deleted in the middle of slow
// copies loses every replica and every unfinished upload.
func TestDeleteWhileReplicating(t *testing.T) {
	f := newFleet(t, replicator.Options{Bandwidth: 4e6, PartConcurrency: 1})
	f.publish("1.0.0", 3*testcluster.PartSize, tr("eastus", 2), tr("westus", 2), tr("northeurope", 1))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, u := f.objects("1.0.0"); u > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no copy ever started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err := f.c.Catalog.DeleteVersion(ctx(t), &pb.DeleteVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, err)
	mustOK(t, f.store.Reap(context.Background()))
	if n, u := f.objects("1.0.0"); n != 0 || u != 0 {
		t.Fatalf("%d replica objects and %d uploads left after the delete", n, u)
	}
	_, err = f.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	wantErr(t, err, codes.NotFound)
	// And nothing comes back.
	time.Sleep(500 * time.Millisecond)
	if n, u := f.objects("1.0.0"); n != 0 || u != 0 {
		t.Fatalf("%d replica objects and %d uploads reappeared", n, u)
	}
}

// TestDeleteWithRegionDown: the version stays marked for deletion until
// its replicas in a region that is down can be deleted.
func TestDeleteWithRegionDown(t *testing.T) {
	f := newFleet(t, replicator.Options{})
	f.publish("1.0.0", 1000, tr("eastus", 1), tr("westus", 1))
	f.waitState("1.0.0", "Completed")
	f.minio["westus"][0].Stop(t)
	_, err := f.c.Catalog.DeleteVersion(ctx(t), &pb.DeleteVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, err)
	if err := f.store.Reap(context.Background()); err == nil {
		t.Fatal("reaped a version whose replicas could not be deleted")
	}
	v := f.get("1.0.0")
	if v.ProvisioningState != "Deleting" {
		t.Fatalf("state %s", v.ProvisioningState)
	}
	f.minio["westus"][0].Restart(t)
	mustOK(t, f.store.Reap(context.Background()))
	if n, u := f.objects("1.0.0"); n != 0 || u != 0 {
		t.Fatalf("%d replica objects and %d uploads left", n, u)
	}
}

func downloadClient(f *fleet) pb.DownloadServiceClient {
	return pb.NewDownloadServiceClient(f.c.Conn())
}

// readRange collects a ReadRange stream.
func readRange(f *fleet, r *pb.ReadRangeRequest) ([]byte, error) {
	s, err := downloadClient(f).ReadRange(ctx(f.t), r)
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if m.Offset != r.Offset+int64(len(out)) {
			f.t.Fatalf("chunk at %d after %d bytes from %d", m.Offset, len(out), r.Offset)
		}
		out = append(out, m.Data...)
	}
}

func TestDownloadPlanAndReadRange(t *testing.T) {
	f := newFleet(t, replicator.Options{})
	data := f.publish("1.0.0", 2*testcluster.PartSize+99, tr("eastus", 2), tr("westus", 1))
	plan := func(version, region string, k pb.ArtifactKind) (*pb.DownloadPlan, error) {
		r, err := downloadClient(f).GetDownloadPlan(ctx(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: version, Kind: k, Region: region})
		return r.GetPlan(), err
	}
	f.waitState("1.0.0", "Completed")

	p, err := plan("latest", "westus", pkg)
	mustOK(t, err)
	if p.Version != "1.0.0" || p.SizeBytes != int64(len(data)) || p.PieceSize != testcluster.PartSize || len(p.PieceSha256) != 3 || !p.Direct || len(p.Sources) != 3 {
		t.Fatalf("plan %v", p)
	}
	if s := p.Sources[0]; s.Region != "westus" || s.Fallback || !p.Sources[1].Fallback || p.Sources[1].Region != "eastus" {
		t.Fatalf("sources %v", p.Sources)
	}
	if left := time.Until(p.ExpireTime.AsTime()); left <= 0 || left > server.DefaultURLExpiry {
		t.Fatalf("the plan expires in %v", left)
	}
	for _, s := range p.Sources {
		req, _ := http.NewRequest(http.MethodGet, s.Url, nil)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", testcluster.PartSize, 2*testcluster.PartSize-1))
		resp, err := http.DefaultClient.Do(req)
		mustOK(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, data[testcluster.PartSize:2*testcluster.PartSize]) {
			t.Fatalf("ranged GET of %s/%d: %s, %d bytes", s.Region, s.Replica, resp.Status, len(b))
		}
		if sum := sha256.Sum256(b); !bytes.Equal(sum[:], p.PieceSha256[1]) {
			t.Fatal("piece 1 does not match the plan's sha256")
		}
	}

	_, err = plan("1.0.0", "northeurope", pkg)
	wantErr(t, err, codes.FailedPrecondition, "'g/a/1.0.0' isn't available in northeurope region")
	_, err = plan("1.0.0", "mars", pkg)
	wantErr(t, err, codes.InvalidArgument, "region 'mars'")
	_, err = plan("1.0.0", "eastus", conf)
	wantErr(t, err, codes.FailedPrecondition, "has no default configuration")
	_, err = plan("1.0.0", "eastus", 0)
	wantErr(t, err, codes.InvalidArgument, "kind")
	_, err = plan("9.9.9", "eastus", pkg)
	wantErr(t, err, codes.NotFound)

	rr := func(off, n int64) *pb.ReadRangeRequest {
		return &pb.ReadRangeRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: "eastus", Offset: off, Length: n}
	}
	b, err := readRange(f, rr(0, int64(len(data))))
	mustOK(t, err)
	if !bytes.Equal(b, data) {
		t.Fatalf("ReadRange of everything: %d bytes", len(b))
	}
	b, err = readRange(f, rr(int64(len(data))-10, 1000))
	mustOK(t, err)
	if !bytes.Equal(b, data[len(data)-10:]) {
		t.Fatalf("ReadRange across the end: %d bytes", len(b))
	}
	_, err = readRange(f, rr(int64(len(data)), 1))
	wantErr(t, err, codes.OutOfRange, "offset")
	_, err = readRange(f, rr(-1, 1))
	wantErr(t, err, codes.OutOfRange, "offset")
	_, err = readRange(f, rr(0, 0))
	wantErr(t, err, codes.InvalidArgument, "length")
	// Replica 0's endpoint down: replica 1 serves.
	f.minio["eastus"][0].Stop(t)
	b, err = readRange(f, rr(testcluster.PartSize, testcluster.PartSize))
	mustOK(t, err)
	if !bytes.Equal(b, data[testcluster.PartSize:2*testcluster.PartSize]) {
		t.Fatal("ReadRange from the second replica differs")
	}

	// A version still replicating isn't available.
	f.minio["eastus"][0].Restart(t)
	f.minio["westus"][0].Stop(t)
	f.publish("1.0.1", 100, tr("eastus", 1), tr("westus", 1))
	_, err = plan("1.0.1", "westus", pkg)
	wantErr(t, err, codes.FailedPrecondition, "isn't available in westus region")
}

// TestFairBetweenVersions: small versions published behind a large one that
// is still copying (slowly, one copy at a time) complete before it does.
func TestFairBetweenVersions(t *testing.T) {
	f := newFleet(t, replicator.Options{Concurrency: 1, Bandwidth: 8e6})
	f.publish("1.0.0", 3*testcluster.PartSize, tr("eastus", 3), tr("westus", 2), tr("northeurope", 2))
	small := []string{"2.0.0", "2.0.1", "2.0.2", "2.0.3", "2.0.4"}
	for _, v := range small {
		f.publish(v, 1000, tr("eastus", 1), tr("westus", 1))
	}
	for _, v := range small {
		f.waitState(v, "Completed")
	}
	if s := f.get("1.0.0").ReplicationStatus.GetAggregatedState(); s == "Completed" {
		t.Fatalf("the large version completed before the small ones")
	}
	f.waitState("1.0.0", "Completed")
}
