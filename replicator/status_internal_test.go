package replicator

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestServing: a region serves downloads while a replica found damaged is
// copied again, as long as another of each artifact is completed; not
// before every replica was completed once.
func TestServing(t *testing.T) {
	two := int32(2)
	version := func(config bool) *pb.GalleryApplicationVersion {
		v := &pb.GalleryApplicationVersion{
			Package:           &pb.Artifact{},
			PublishingProfile: &pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{{Name: "eastus", RegionalReplicaCount: &two}, {Name: "westus"}}},
		}
		if config {
			v.DefaultConfiguration = &pb.Artifact{}
		}
		return v
	}
	rep := func(k pb.ArtifactKind, i int32, phase statepb.ReplicaPhase, damage string) *statepb.Replica {
		return &statepb.Replica{Kind: k, Region: "eastus", Index: i, Phase: phase, Damage: damage}
	}
	for _, c := range []struct {
		name   string
		v      *pb.GalleryApplicationVersion
		region string
		recs   []*statepb.Replica
		want   bool
	}{
		{"every replica completed", version(false), "eastus", []*statepb.Replica{rep(pkg, 0, completed, ""), rep(pkg, 1, completed, "")}, true},
		{"one copied again after damage", version(false), "eastus", []*statepb.Replica{rep(pkg, 0, pending, "missing"), rep(pkg, 1, completed, "")}, true},
		{"one failing to be copied again", version(false), "eastus", []*statepb.Replica{rep(pkg, 0, completed, ""), rep(pkg, 1, failed, "piece 0 can't be read")}, true},
		{"one not copied yet", version(false), "eastus", []*statepb.Replica{rep(pkg, 0, completed, ""), rep(pkg, 1, copying, "")}, false},
		{"every one copied again", version(false), "eastus", []*statepb.Replica{rep(pkg, 0, pending, "missing"), rep(pkg, 1, copying, "missing")}, false},
		{"one record missing", version(false), "eastus", []*statepb.Replica{rep(pkg, 0, completed, "")}, false},
		{"an extra replica going", version(false), "eastus", []*statepb.Replica{rep(pkg, 0, completed, ""), rep(pkg, 1, completed, ""), rep(pkg, 2, deleting, "")}, true},
		{"an extra replica pending", version(false), "eastus", []*statepb.Replica{rep(pkg, 0, completed, ""), rep(pkg, 1, completed, ""), rep(pkg, 2, pending, "")}, true},
		{"not a target region", version(false), "northeurope", nil, false},
		{"no package yet", &pb.GalleryApplicationVersion{PublishingProfile: version(false).PublishingProfile}, "eastus", nil, false},
		{"configuration copied again, package sound", version(true), "eastus", []*statepb.Replica{
			rep(pkg, 0, completed, ""), rep(pkg, 1, completed, ""), rep(cfg, 0, completed, ""), rep(cfg, 1, pending, "missing")}, true},
		{"no configuration completed", version(true), "eastus", []*statepb.Replica{
			rep(pkg, 0, completed, ""), rep(pkg, 1, completed, ""), rep(cfg, 0, pending, "missing"), rep(cfg, 1, pending, "missing")}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := serving(c.v, c.region, c.recs); got != c.want {
				t.Fatalf("serving: %v, want %v", got, c.want)
			}
		})
	}
}

// A replica's ETA: its bytes left at the rate its copy moved so far; none
// before a byte moved, or when it isn't copying.
func TestReplicaETA(t *testing.T) {
	start := time.Unix(1000, 0)
	now := start.Add(30 * time.Second)
	for _, c := range []struct {
		name  string
		phase statepb.ReplicaPhase
		done  int64
		want  time.Duration // -1: none
	}{
		{"a quarter in 30 s", statepb.ReplicaPhase_REPLICA_PHASE_COPYING, 25, 90 * time.Second},
		{"nothing moved yet", statepb.ReplicaPhase_REPLICA_PHASE_COPYING, 0, -1},
		{"completed", statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED, 100, -1},
		{"failed", statepb.ReplicaPhase_REPLICA_PHASE_FAILED, 50, -1},
	} {
		rec := &statepb.Replica{Phase: c.phase, SizeBytes: 100, BytesDone: c.done, StartTime: timestamppb.New(start)}
		got := replicaStatus(rec, now).Eta
		switch {
		case c.want < 0 && got != nil:
			t.Errorf("%s: ETA %v, want none", c.name, got.AsDuration())
		case c.want >= 0 && (got == nil || got.AsDuration() != c.want):
			t.Errorf("%s: ETA %v, want %v", c.name, got.AsDuration(), c.want)
		}
	}
}
