package replicator

import (
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/blob"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/topology"
)

// Short names of kinds and phases, for the tables of this package's tests.
const (
	pkg = pb.ArtifactKind_ARTIFACT_KIND_PACKAGE
	cfg = pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION

	pending   = statepb.ReplicaPhase_REPLICA_PHASE_PENDING
	copying   = statepb.ReplicaPhase_REPLICA_PHASE_COPYING
	completed = statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED
	failed    = statepb.ReplicaPhase_REPLICA_PHASE_FAILED
	deleting  = statepb.ReplicaPhase_REPLICA_PHASE_DELETING
)

// topo has eastus with two endpoints, westus and northeurope with one.
func topo() *topology.Topology {
	ep := func(i int) topology.Endpoint {
		return topology.Endpoint{URL: fmt.Sprintf("http://127.0.0.1:%d", 9000+i), Bucket: "vmapp"}
	}
	return &topology.Topology{Regions: []topology.Region{
		{Name: "eastus", Endpoints: []topology.Endpoint{ep(0), ep(1)}},
		{Name: "westus", Endpoints: []topology.Endpoint{ep(2)}},
		{Name: "northeurope", Endpoints: []topology.Endpoint{ep(3)}},
	}}
}

func count(n int32) *int32 { return &n }

// TestWanted: a version wants, for each stored artifact, each target
// region's replica count of replicas, replica i on endpoint i mod the
// region's endpoints; regions the topology doesn't know get none.
func TestWanted(t *testing.T) {
	r := &Replicator{topo: topo()}
	version := func(pp *pb.PublishingProfile, config bool) *pb.GalleryApplicationVersion {
		v := &pb.GalleryApplicationVersion{Tenant: "t", Gallery: "g", Application: "a", Name: "1.2.3",
			Package: &pb.Artifact{SizeBytes: 1000}, PublishingProfile: pp}
		if config {
			v.DefaultConfiguration = &pb.Artifact{SizeBytes: 10}
		}
		return v
	}
	rep := func(k pb.ArtifactKind, region string, i, endpoint int32) *statepb.Replica {
		size := int64(1000)
		if k == cfg {
			size = 10
		}
		return &statepb.Replica{Tenant: "t", Gallery: "g", Application: "a", Version: "1.2.3", Kind: k, Region: region, Index: i,
			Endpoint: endpoint, ObjectKey: blob.ReplicaKey("t", "g", "a", "1.2.3", k, i), Phase: pending, SizeBytes: size}
	}
	for _, c := range []struct {
		name string
		v    *pb.GalleryApplicationVersion
		want []*statepb.Replica
	}{
		{"one region, default count", version(&pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{{Name: "westus"}}}, false),
			[]*statepb.Replica{rep(pkg, "westus", 0, 0)}},
		{"replicas spread over the region's endpoints",
			version(&pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{{Name: "eastus", RegionalReplicaCount: count(3)}}}, false),
			[]*statepb.Replica{rep(pkg, "eastus", 0, 0), rep(pkg, "eastus", 1, 1), rep(pkg, "eastus", 2, 0)}},
		{"the profile's count where a region has none, the region's own first",
			version(&pb.PublishingProfile{ReplicaCount: count(2), TargetRegions: []*pb.TargetRegion{
				{Name: "westus"}, {Name: "northeurope", RegionalReplicaCount: count(1)}}}, false),
			[]*statepb.Replica{rep(pkg, "westus", 0, 0), rep(pkg, "westus", 1, 0), rep(pkg, "northeurope", 0, 0)}},
		{"ten replicas on one endpoint",
			version(&pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{{Name: "northeurope", RegionalReplicaCount: count(10)}}}, false),
			func() (out []*statepb.Replica) {
				for i := range int32(10) {
					out = append(out, rep(pkg, "northeurope", i, 0))
				}
				return out
			}()},
		{"the default configuration too, every package replica first",
			version(&pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{{Name: "eastus", RegionalReplicaCount: count(2)}, {Name: "westus"}}}, true),
			[]*statepb.Replica{rep(pkg, "eastus", 0, 0), rep(pkg, "eastus", 1, 1), rep(pkg, "westus", 0, 0),
				rep(cfg, "eastus", 0, 0), rep(cfg, "eastus", 1, 1), rep(cfg, "westus", 0, 0)}},
		{"a region not in the topology is left out",
			version(&pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{{Name: "westus"}, {Name: "southindia", RegionalReplicaCount: count(3)}}}, false),
			[]*statepb.Replica{rep(pkg, "westus", 0, 0)}},
		{"no package yet: nothing", &pb.GalleryApplicationVersion{Tenant: "t", Gallery: "g", Application: "a", Name: "1.2.3",
			PublishingProfile: &pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{{Name: "westus"}}}}, nil},
		{"no target regions: nothing", version(&pb.PublishingProfile{}, true), nil},
		{"no publishing profile: nothing", version(nil, false), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := r.wanted(c.v)
			if len(got) != len(c.want) {
				t.Fatalf("%d records, want %d: %v", len(got), len(c.want), got)
			}
			for i := range got {
				if !proto.Equal(got[i], c.want[i]) {
					t.Errorf("record %d:\n got  %v\n want %v", i, got[i], c.want[i])
				}
			}
		})
	}
}

// TestRunnable: which records dispatch may start now. Deletions and
// replica 0 don't wait for anything but their retry time; replicas 1..
// wait for replica 0 of their own region to be completed.
func TestRunnable(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	const none = time.Duration(math.MinInt64) // no retry time set
	rec := func(region string, i int32, phase statepb.ReplicaPhase, retryIn time.Duration) *statepb.Replica {
		r := &statepb.Replica{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: region, Index: i, Phase: phase}
		if retryIn != none {
			r.NextAttemptTime = timestamppb.New(now.Add(retryIn))
		}
		return r
	}
	for _, c := range []struct {
		name   string
		rec    *statepb.Replica
		others []*statepb.Replica
		want   bool
	}{
		{"pending replica 0", rec("eastus", 0, pending, none), nil, true},
		{"replica 0 copying when the replicator started", rec("eastus", 0, copying, none), nil, true},
		{"completed", rec("eastus", 0, completed, none), nil, false},
		{"completed, whatever its retry time", rec("eastus", 0, completed, -time.Hour), nil, false},
		{"failed, retry due later", rec("eastus", 0, failed, time.Second), nil, false},
		{"failed, retry due now", rec("eastus", 0, failed, 0), nil, true},
		{"failed, retry due a minute ago", rec("eastus", 0, failed, -time.Minute), nil, true},
		{"replica 1 without a replica 0", rec("eastus", 1, pending, none), nil, false},
		{"replica 1, replica 0 pending", rec("eastus", 1, pending, none), []*statepb.Replica{rec("eastus", 0, pending, none)}, false},
		{"replica 1, replica 0 copying", rec("eastus", 1, pending, none), []*statepb.Replica{rec("eastus", 0, copying, none)}, false},
		{"replica 1, replica 0 failed", rec("eastus", 1, pending, none), []*statepb.Replica{rec("eastus", 0, failed, time.Hour)}, false},
		{"replica 1, replica 0 deleting", rec("eastus", 1, pending, none), []*statepb.Replica{rec("eastus", 0, deleting, none)}, false},
		{"replica 1, replica 0 completed", rec("eastus", 1, pending, none), []*statepb.Replica{rec("eastus", 0, completed, none)}, true},
		{"replica 3 failed, replica 0 completed, retry due later", rec("eastus", 3, failed, time.Minute),
			[]*statepb.Replica{rec("eastus", 0, completed, none)}, false},
		{"replica 1, only another region's replica 0 completed", rec("eastus", 1, pending, none),
			[]*statepb.Replica{rec("westus", 0, completed, none)}, false},
		{"replica 1, replica 0 of the configuration completed", rec("eastus", 1, pending, none),
			[]*statepb.Replica{{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Kind: cfg, Region: "eastus", Phase: completed}}, false},
		{"deleting replica 1 doesn't wait for replica 0", rec("eastus", 1, deleting, none), nil, true},
		{"deleting, retry due later", rec("eastus", 0, deleting, time.Minute), nil, false},
		{"deleting, retry due", rec("eastus", 0, deleting, -time.Minute), nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			byKey := map[string]*statepb.Replica{recordKey(c.rec): c.rec}
			for _, o := range c.others {
				byKey[recordKey(o)] = o
			}
			seed := func(k string) (*statepb.Replica, error) { return byKey[k], nil }
			if got, err := runnable(c.rec, seed, now); err != nil || got != c.want {
				t.Fatalf("runnable = %v, %v, want %v", got, err, c.want)
			}
		})
	}
}
