package replicator_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/blob/blobtest"
	"github.com/vmapp/vmapp/blob/s3"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/server/ingest"
	"github.com/vmapp/vmapp/state"
	"github.com/vmapp/vmapp/topology"
)

const (
	tenant   = "t"
	pkg      = pb.ArtifactKind_ARTIFACT_KIND_PACKAGE
	partSize = blob.MinPartSize
	// size makes three parts.
	size = 2*partSize + 1234
)

// rig is a replicator on a state file of its own, replicating between
// stores on one real MinIO server: eastus with two endpoints, westus with
// one, a bucket each, every store wrapped in a blobtest.Faulty. The
// catalog and the ingest service are the real ones.
type rig struct {
	t      *testing.T
	db     *state.DB
	cat    *catalog.Store
	ing    *ingest.Service
	r      *replicator.Replicator
	stores map[string][]*blobtest.Faulty

	mu       sync.Mutex
	failures []*statepb.ReplicaFailed // as the replicator recorded them
}

func newRig(t *testing.T) *rig {
	t.Helper()
	srv := miniotest.Start(t)
	g := &rig{t: t, stores: map[string][]*blobtest.Faulty{}}
	topo := &topology.Topology{}
	for _, reg := range []struct {
		name      string
		endpoints int
	}{{"eastus", 2}, {"westus", 1}} {
		region := topology.Region{Name: reg.name}
		for i := range reg.endpoints {
			bucket := fmt.Sprintf("%s-%d", reg.name, i)
			st, err := s3.NewWithCredentials(srv.Endpoint(), bucket, srv.AccessKey, srv.SecretKey)
			if err != nil {
				t.Fatal(err)
			}
			if err := st.EnsureBucket(context.Background()); err != nil {
				t.Fatal(err)
			}
			region.Endpoints = append(region.Endpoints, topology.Endpoint{URL: srv.Endpoint(), Bucket: bucket})
			g.stores[reg.name] = append(g.stores[reg.name], blobtest.NewFaulty(st))
		}
		topo.Regions = append(topo.Regions, region)
	}
	store := func(region string, i int) (blob.Store, error) { return g.stores[region][i], nil }

	var err error
	if g.db, err = state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{}); err != nil {
		t.Fatal(err)
	}
	g.db.Watch(func(c *statepb.Command) {
		if f := c.GetReplicaFailed(); f != nil {
			g.mu.Lock()
			g.failures = append(g.failures, f)
			g.mu.Unlock()
		}
	})
	g.cat = catalog.New(g.db, catalog.Options{Regions: topo.Names()})
	g.ing = ingest.New(ingest.Options{Catalog: g.cat, Store: store, PartSize: partSize})
	// One part at a time, so that the faults meet the calls in order.
	g.r, err = replicator.New(replicator.Options{DB: g.db, Catalog: g.cat, Topology: topo, Store: store, PartConcurrency: 1,
		RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		g.r.Run(ctx)
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
		g.db.Close()
	})
	return g
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// publish creates g/a/1.0.0 in eastus with the target regions and uploads
// a package of size bytes through the ingest service; it returns the bytes.
func (g *rig) publish(targets ...*pb.TargetRegion) []byte {
	t := g.t
	t.Helper()
	c := ctx(t)
	if _, err := g.cat.CreateGallery(c, tenant, &pb.Gallery{Name: "g", Location: "eastus"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.cat.CreateApplication(c, tenant, &pb.GalleryApplication{Gallery: "g", Name: "a", Location: "eastus", SupportedOsType: "Linux"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.cat.CreateVersion(c, tenant, &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "1.0.0", Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}, TargetRegions: targets}}); err != nil {
		t.Fatal(err)
	}
	data := blobtest.Data(size, 42)
	sum := sha256.Sum256(data)
	b, err := g.ing.Begin(c, tenant, &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, SizeBytes: size, Sha256: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.ing.Write(c, tenant, b.SessionId, func(offset int64, _ pb.ArtifactKind) (io.Reader, error) {
		return bytes.NewReader(data[offset:]), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	g.r.Poke()
	return data
}

func target(region string, n int32) *pb.TargetRegion {
	return &pb.TargetRegion{Name: region, RegionalReplicaCount: &n}
}

// states returns the replication state of each region of 1.0.0.
func (g *rig) states() map[string]string {
	g.t.Helper()
	v, err := g.cat.GetVersion(ctx(g.t), tenant, "g", "a", "1.0.0")
	if err != nil {
		g.t.Fatal(err)
	}
	s, err := g.r.Status(v)
	if err != nil {
		g.t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range s.Summary {
		out[r.Region] = r.State
	}
	return out
}

// waitFor waits until cond holds; the deadline only guards against a hang.
func (g *rig) waitFor(what string, cond func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			g.t.Fatalf("%s never happened; regions %v, failures %v", what, g.states(), g.failed())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (g *rig) completed(regions ...string) func() bool {
	return func() bool {
		s := g.states()
		for _, r := range regions {
			if s[r] != pb.ReplicationCompleted {
				return false
			}
		}
		return true
	}
}

// failed returns the failures recorded, as "region/index: error".
func (g *rig) failed() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, f := range g.failures {
		out = append(out, fmt.Sprintf("%s/%d: %s", f.Replica.GetRegion(), f.Replica.GetIndex(), f.Error))
	}
	return out
}

// replica reads replica i of the package in region from its store.
func (g *rig) replica(region string, i int32) []byte {
	eps := g.stores[region]
	return blobtest.ReadAll(g.t, eps[int(i)%len(eps)], blob.ReplicaKey(tenant, "g", "a", "1.0.0", pkg, i), 0, -1)
}

// wantOneFailure fails unless the replicator recorded exactly one failure,
// of region's replica index, whose error says want.
func (g *rig) wantOneFailure(region string, index int32, want string) {
	g.t.Helper()
	f := g.failed()
	if len(f) != 1 || !strings.HasPrefix(f[0], fmt.Sprintf("%s/%d: ", region, index)) || !strings.Contains(f[0], want) {
		g.t.Fatalf("failures recorded: %q, want one of %s/%d saying %q", f, region, index, want)
	}
}

// TestDestinationFaults: a part upload that fails once because the store
// is busy is recorded as a failed attempt, and the next attempt resumes the
// same multipart upload; when the store says the upload is gone (NotFound)
// while the source is there, the copy starts over with a new upload. Either
// way the replica completes.
func TestDestinationFaults(t *testing.T) {
	for _, c := range []struct {
		name    string
		fault   *blobtest.Fault
		failure string
		uploads int
	}{
		{"busy", &blobtest.Fault{Err: errs.New(errs.Unavailable, "", "injected: the store is busy")}, "injected: the store is busy", 1},
		{"upload gone", &blobtest.Fault{After: 1, Err: errs.New(errs.NotFound, "", "injected: NoSuchUpload")},
			"the store lost the upload; starting the replica over", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newRig(t)
			west := g.stores["westus"][0]
			c.fault.Op, c.fault.Times = blobtest.OpPutPart, 1
			west.Inject(c.fault)
			data := g.publish(target("eastus", 1), target("westus", 1))
			g.waitFor("replication", g.completed("eastus", "westus"))

			if c.fault.Hits() != 1 {
				t.Fatalf("the fault hit %d times", c.fault.Hits())
			}
			g.wantOneFailure("westus", 0, c.failure)
			if n := west.Calls(blobtest.OpNewMultipart); n != c.uploads {
				t.Errorf("%d multipart uploads started in westus, want %d", n, c.uploads)
			}
			if !bytes.Equal(g.replica("westus", 0), data) {
				t.Fatal("westus replica 0 differs from the package")
			}
		})
	}
}

// TestBadSourceReadRetried: a read of the source that ends short, or
// brings a changed byte, never makes a replica: the part's upload fails
// (its length, or the sha256 the store checks against the manifest's), the
// attempt is recorded as failed, and the next one copies the right bytes.
func TestBadSourceReadRetried(t *testing.T) {
	for _, c := range []struct {
		name  string
		fault *blobtest.Fault
	}{
		{"short", &blobtest.Fault{Cut: 1000}},
		{"corrupt", &blobtest.Fault{Corrupt: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newRig(t)
			fault := c.fault
			fault.Op, fault.Key, fault.Times = blobtest.OpGet, blob.SourceKey(tenant, "g", "a", "1.0.0", pkg), 1
			g.stores["eastus"][0].Inject(fault)
			data := g.publish(target("eastus", 1), target("westus", 1))
			g.waitFor("replication", g.completed("eastus", "westus"))

			if fault.Hits() != 1 {
				t.Fatalf("the fault hit %d times", fault.Hits())
			}
			g.wantOneFailure("westus", 0, "upload part")
			if !bytes.Equal(g.replica("westus", 0), data) {
				t.Fatal("westus replica 0 differs from the package")
			}
		})
	}
}

// TestStalledSourceDelaysOnlyItsReplicas: eastus replica 1 is streamed
// from replica 0 on the region's other endpoint; while that store's reads
// of replica 0 are held, westus (read from the source object) completes and
// eastus waits, without a failure; released, eastus completes.
func TestStalledSourceDelaysOnlyItsReplicas(t *testing.T) {
	g := newRig(t)
	gate := blobtest.NewGate()
	fault := &blobtest.Fault{Op: blobtest.OpGet, Key: blob.ReplicaKey(tenant, "g", "a", "1.0.0", pkg, 0), Hold: gate.Hold}
	g.stores["eastus"][0].Inject(fault)
	data := g.publish(target("eastus", 2), target("westus", 1))
	select { // replica 1's copy is reading replica 0
	case <-gate.Entered():
	case <-time.After(90 * time.Second):
		t.Fatalf("eastus replica 1 never read replica 0; regions %v, failures %q", g.states(), g.failed())
	}
	g.waitFor("westus's replication", g.completed("westus"))
	if s := g.states()["eastus"]; s != pb.ReplicationReplicating {
		t.Fatalf("eastus is %s while its replica 1 can't read its source", s)
	}
	gate.Open()
	g.waitFor("eastus's replication", g.completed("eastus"))
	if f := g.failed(); len(f) != 0 {
		t.Errorf("failures recorded: %q", f)
	}
	for i := range int32(2) {
		if !bytes.Equal(g.replica("eastus", i), data) {
			t.Fatalf("eastus replica %d differs from the package", i)
		}
	}
}
