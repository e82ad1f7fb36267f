package replicator

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
	"github.com/vmapp/vmapp/topology"
)

// world is a replicator on a real state file, without stores: enough to
// reconcile and to pick what to dispatch.
type world struct {
	t  *testing.T
	db *state.DB
	r  *Replicator

	mu       sync.Mutex
	proposed []*statepb.ReconcileReplicas
}

func newWorld(t *testing.T) *world {
	t.Helper()
	db, err := state.Open(filepath.Join(t.TempDir(), "vmapp.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	topo := &topology.Topology{}
	for _, name := range []string{"eastus", "westus", "northeurope"} {
		topo.Regions = append(topo.Regions, topology.Region{Name: name, Endpoints: []topology.Endpoint{{URL: "http://127.0.0.1:9", Bucket: "b"}}})
	}
	r, err := New(Options{DB: db, Topology: topo})
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, db: db, r: r}
	db.Watch(func(c *statepb.Command) {
		if op := c.GetReconcileReplicas(); op != nil {
			w.mu.Lock()
			w.proposed = append(w.proposed, op)
			w.mu.Unlock()
		}
	})
	return w
}

func (w *world) propose(op func(c *statepb.Command)) error {
	c := state.NewCommand(time.Unix(1_800_000_000, 0))
	op(c)
	return w.db.Propose(context.Background(), c)
}

// each runs fn for 0..n-1, 64 at a time (their commands share commits).
func (w *world) each(n int, fn func(i int) error) {
	w.t.Helper()
	var g errgroup.Group
	g.SetLimit(64)
	for i := range n {
		g.Go(func() error { return fn(i) })
	}
	if err := g.Wait(); err != nil {
		w.t.Fatal(err)
	}
}

func vname(i int) string { return fmt.Sprintf("1.0.%d", i) }

// publish creates n versions of t/g/a with a stored package, each wanting
// a replica in eastus and in westus.
func (w *world) publish(n int) {
	w.t.Helper()
	must := func(err error) {
		w.t.Helper()
		if err != nil {
			w.t.Fatal(err)
		}
	}
	must(w.propose(func(c *statepb.Command) {
		c.Op = &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: &pb.Gallery{Tenant: "t", Name: "g", ProvisioningState: pb.ProvisioningSucceeded}}}
	}))
	must(w.propose(func(c *statepb.Command) {
		c.Op = &statepb.Command_CreateApplication{CreateApplication: &statepb.CreateApplication{Application: &pb.GalleryApplication{Tenant: "t", Gallery: "g", Name: "a", ProvisioningState: pb.ProvisioningSucceeded}}}
	}))
	one := int32(1)
	w.each(n, func(i int) error {
		v := &pb.GalleryApplicationVersion{Tenant: "t", Gallery: "g", Application: "a", Name: vname(i), ProvisioningState: pb.ProvisioningCreating,
			PublishingProfile: &pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{{Name: "eastus", RegionalReplicaCount: &one}, {Name: "westus", RegionalReplicaCount: &one}}}}
		s := &statepb.UploadSession{Id: "s" + vname(i), Tenant: "t", Gallery: "g", Application: "a", Version: vname(i), Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, SizeBytes: 10}
		for _, op := range []func(c *statepb.Command){
			func(c *statepb.Command) {
				c.Op = &statepb.Command_CreateVersion{CreateVersion: &statepb.CreateVersion{Version: v}}
			},
			func(c *statepb.Command) {
				c.Op = &statepb.Command_CreateUpload{CreateUpload: &statepb.CreateUpload{Session: s}}
			},
			func(c *statepb.Command) {
				c.Op = &statepb.Command_FinishUpload{FinishUpload: &statepb.FinishUpload{SessionId: s.Id, Artifact: &pb.Artifact{SizeBytes: 10}, Manifest: &statepb.Manifest{SizeBytes: 10}}}
			},
		} {
			if err := w.propose(op); err != nil {
				return err
			}
		}
		return nil
	})
}

// reads runs fn and returns the records it read from the state.
func (w *world) reads(fn func(ctx context.Context) error) int64 {
	w.t.Helper()
	before := w.db.RecordsRead()
	if err := fn(context.Background()); err != nil {
		w.t.Fatal(err)
	}
	return w.db.RecordsRead() - before
}

func (w *world) replicas() int {
	n := 0
	w.db.View(context.Background(), func(tx *state.Tx) (err error) {
		n, err = state.Replicas.Count(tx, nil, nil)
		return err
	})
	return n
}

// TestReconcileFollowsChanges: after the first full pass, the replicator
// reconciles the versions a command changed, and only them. A change to
// one version among 20 or among 2,000 reads the same records and proposes
// one command adding the one record it needs.
func TestReconcileFollowsChanges(t *testing.T) {
	perChange := map[int]int64{}
	for _, n := range []int{20, 2000} {
		w := newWorld(t)
		w.publish(n)
		if err := w.r.reconcileAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := w.replicas(); got != 2*n {
			t.Fatalf("%d versions: %d records after the full pass, want %d", n, got, 2*n)
		}
		full := w.reads(w.r.reconcileAll)
		if full < int64(3*n) {
			t.Fatalf("%d versions: the full pass read %d records: not every version and record?", n, full)
		}
		if idle := w.reads(w.r.reconcileDirty); idle != 0 {
			t.Fatalf("%d versions: with nothing changed, a reconcile read %d records", n, idle)
		}

		// Version 7 gains a region.
		var v *pb.GalleryApplicationVersion
		w.db.View(context.Background(), func(tx *state.Tx) (err error) {
			v, err = tx.Version("t", "g", "a", vname(7))
			return err
		})
		three := int32(1)
		v.PublishingProfile.TargetRegions = append(v.PublishingProfile.TargetRegions, &pb.TargetRegion{Name: "northeurope", RegionalReplicaCount: &three})
		if err := w.propose(func(c *statepb.Command) {
			c.Op = &statepb.Command_UpdateVersion{UpdateVersion: &statepb.UpdateVersion{Version: v, ExpectEtag: v.Etag}}
		}); err != nil {
			t.Fatal(err)
		}
		w.proposed = nil
		perChange[n] = w.reads(w.r.reconcileDirty)
		if len(w.proposed) != 1 || len(w.proposed[0].Add) != 1 || w.proposed[0].Add[0].Region != "northeurope" || w.proposed[0].Add[0].Version != vname(7) ||
			len(w.proposed[0].Unwanted) != 0 || len(w.proposed[0].Reconciled) != 1 {
			t.Fatalf("%d versions: proposed %v, want one command adding 1.0.7's northeurope record", n, w.proposed)
		}
		if got := w.replicas(); got != 2*n+1 {
			t.Fatalf("%d versions: %d records, want %d", n, got, 2*n+1)
		}
		if again := w.reads(w.r.reconcileDirty); again != 0 {
			t.Fatalf("%d versions: the change was reconciled, yet the next pass read %d records", n, again)
		}
		t.Logf("%d versions: full pass %d records read, a change to one version %d", n, full, perChange[n])
	}
	if perChange[20] != perChange[2000] || perChange[20] > 10 {
		t.Fatalf("records read to reconcile one change: %v (versions: records), want the same small number", perChange)
	}
}

// TestDispatchReadsWhatIsLeft: dispatch reads the records not completed,
// not every record: with every replica of 20 or 2,000 versions completed
// but one sent back to be copied, it reads the same few records and
// queues that one.
func TestDispatchReadsWhatIsLeft(t *testing.T) {
	perDispatch := map[int]int64{}
	for _, n := range []int{20, 2000} {
		w := newWorld(t)
		w.publish(n)
		if err := w.r.reconcileAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		ref := func(i int, region string) *statepb.ReplicaRef {
			return &statepb.ReplicaRef{Version: &statepb.VersionRef{Tenant: "t", Gallery: "g", Application: "a", Version: vname(i)},
				Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Region: region}
		}
		w.each(2*n, func(i int) error {
			return w.propose(func(c *statepb.Command) {
				c.Op = &statepb.Command_ReplicaCompleted{ReplicaCompleted: &statepb.ReplicaCompleted{Replica: ref(i/2, []string{"eastus", "westus"}[i%2]), SizeBytes: 10}}
			})
		})
		if err := w.propose(func(c *statepb.Command) {
			c.Op = &statepb.Command_ReplicaRestart{ReplicaRestart: &statepb.ReplicaRestart{Replica: ref(3, "westus"), Pending: true, Reason: "damaged"}}
		}); err != nil {
			t.Fatal(err)
		}
		var queues map[string][]*statepb.Replica
		w.r.mu.Lock()
		perDispatch[n] = w.reads(func(ctx context.Context) (err error) {
			queues, err = w.r.queued(ctx)
			return err
		})
		w.r.mu.Unlock()
		if len(queues) != 1 || len(queues[versionPrefix("t", "g", "a", vname(3))]) != 1 {
			t.Fatalf("%d versions: queued %v, want 1.0.3's westus replica", n, queues)
		}
	}
	if perDispatch[20] != perDispatch[2000] || perDispatch[20] > 5 {
		t.Fatalf("records read to pick what to copy: %v (versions: records), want the same small number", perDispatch)
	}
}
