package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// simAgent is a simulated agent: its own credential and connection to
// every node, one goal-state stream held (reopened when its node goes
// away), and a ReportStatus of each goal state's applications as
// Installed. It stands for vmapp-agent's calls, not its installs.
type simAgent struct {
	machine string
	c       *client.Client

	mu         sync.Mutex
	reported   string // the last version reported Installed and acknowledged
	reconnects int
	failures   []error // operations that failed: never expected
}

func (a *simAgent) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failures = append(a.failures, err)
}

// run holds the stream until ctx ends.
func (a *simAgent) run(ctx context.Context) {
	fl := pb.NewFleetServiceClient(a.c.Conn())
	for ctx.Err() == nil {
		s, err := fl.WatchGoalState(ctx, &pb.WatchGoalStateRequest{Machine: a.machine, OsType: "Linux"})
		for err == nil {
			var r *pb.WatchGoalStateResponse
			if r, err = s.Recv(); err == nil {
				err = a.report(ctx, fl, r.GoalState)
			}
		}
		switch {
		case ctx.Err() != nil:
			return
		case errs.Is(err, errs.Unavailable): // its node went away: another serves
			a.mu.Lock()
			a.reconnects++
			a.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		default:
			a.fail(fmt.Errorf("%s: goal-state stream: %w", a.machine, err))
			return
		}
	}
}

// report says every application of the goal state is Installed.
func (a *simAgent) report(ctx context.Context, fl pb.FleetServiceClient, g *pb.GoalState) error {
	view := &pb.InstanceView{AgentVersion: "sim"}
	version := ""
	for _, app := range g.Applications {
		view.Applications = append(view.Applications, &pb.ApplicationStatus{Application: app.Gallery + "/" + app.Application, Version: app.Version, State: "Installed", Operation: "install", Attempts: 1})
		version = app.Version
	}
	if _, err := fl.ReportStatus(ctx, &pb.ReportStatusRequest{Machine: a.machine, InstanceView: view}); err != nil {
		if ctx.Err() == nil {
			a.fail(fmt.Errorf("%s: ReportStatus: %w", a.machine, err))
		}
		return err
	}
	a.mu.Lock()
	a.reported = version
	a.mu.Unlock()
	return nil
}

// TestClusterRollingRestart restarts the three nodes one at a time
// (SIGTERM, start again, wait until it is back in the cluster) while 200
// simulated agents hold goal-state streams and a version replicates to
// two regions: no agent operation fails (a stream cut by its node's
// restart is reopened on another node; every ReportStatus succeeds), the
// replication completes, every agent gets the version and reports it, and
// every report acknowledged is in the cluster's state, the same on every
// node.
func TestClusterRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three vmappd processes, MinIO and 200 simulated agents")
	}
	const agents = 200
	east := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	west := miniotest.Start(t, miniotest.WithCredentials(accessKey, secretKey))
	vc := startCluster(t, fmt.Sprintf(`regions:
  - name: eastus
    endpoints: [{url: %q, bucket: vmapp-eastus}]
  - name: westus
    endpoints: [{url: %q, bucket: vmapp-westus}]
replication:
  partConcurrency: 1
  bandwidthMBps: 2
`, east.Endpoint(), west.Endpoint()), clusterOpts{nodes: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	fl := pb.NewFleetServiceClient(vc.c.Conn())
	must(t)(fl.CreateScaleSet(ctx, &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "ss", Region: "eastus", OsType: "Linux"}}))
	sims := make([]*simAgent, agents)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range sims {
		g.Go(func() error {
			name := fmt.Sprintf("vm%03d", i)
			r, err := fl.CreateMachine(gctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: name, ScaleSet: "ss"}})
			if err != nil {
				return err
			}
			c, err := client.New(vc.servers(), client.Options{Token: r.AgentToken, Keepalive: true, WaitForReady: true})
			sims[i] = &simAgent{machine: name, c: c}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	actx, stopAgents := context.WithCancel(ctx)
	var running sync.WaitGroup
	for _, a := range sims {
		running.Go(func() { a.run(actx) })
		defer a.c.Close()
	}
	defer running.Wait()
	defer stopAgents()

	// A version of 32 MiB to westus, two replicas, at 2 MB/s (about 30 s):
	// it replicates through the restarts.
	newVersion(t, vc.c, "1.0.0", &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"},
		TargetRegions: []*pb.TargetRegion{{Name: "eastus"}, {Name: "westus", RegionalReplicaCount: proto.Int32(2)}}, ReplicaCount: proto.Int32(1)})
	path, _ := randomPackage(t, 32<<20)
	must(t)(vc.c.Upload(ctx, "g", "a", "1.0.0", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{}))
	// The scale set is in eastus, the source region: its replica is there
	// first, while westus's are copied through the restarts.
	vc.eventually("1.0.0 can be set on the scale set", func() bool {
		_, err := fl.SetApplication(ctx, &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: "ss"}},
			Application: &pb.VMGalleryApplication{PackageReferenceId: "g/a/1.0.0"}})
		return err == nil
	})
	var restarts atomic.Int32
	for _, n := range vc.nodes {
		r, err := vc.c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
		if err != nil {
			t.Fatal(err)
		}
		replication := r.Version.ReplicationStatus.GetAggregatedState()
		t.Logf("restarting %s; replication %s", n.id, replication)
		if n == vc.nodes[0] && replication == "Completed" {
			t.Fatal("the version replicated before the restarts")
		}
		vc.stop(n)
		vc.start(n)
		vc.waitFormed(vc.nodes...)
		restarts.Add(1)
	}
	waitReplicated(t, vc.c, "1.0.0")
	vc.eventually("every agent reported 1.0.0 Installed", func() bool {
		for _, a := range sims {
			a.mu.Lock()
			v, failed := a.reported, len(a.failures)
			a.mu.Unlock()
			if failed > 0 {
				return true // reported below
			}
			if v != "1.0.0" {
				return false
			}
		}
		return true
	})
	stopAgents()
	running.Wait()
	reconnects := 0
	var failures []error
	for _, a := range sims {
		reconnects += a.reconnects
		failures = append(failures, a.failures...)
	}
	t.Logf("%d agents, %d restarts: %d streams reopened on another node, %d agent operations failed", agents, restarts.Load(), reconnects, len(failures))
	if len(failures) > 0 {
		t.Fatalf("agent operations failed during the rolling restart: %v", errors.Join(failures[:min(len(failures), 10)]...))
	}
	if reconnects == 0 {
		t.Fatal("no stream was cut by the restarts: the test restarted nothing the agents used")
	}
	for _, a := range sims {
		r, err := fl.GetMachine(ctx, &pb.GetMachineRequest{Name: a.machine})
		if err != nil {
			t.Fatal(err)
		}
		apps := r.Machine.InstanceView.GetApplications()
		if len(apps) != 1 || apps[0].Version != "1.0.0" || apps[0].State != "Installed" {
			t.Fatalf("%s's instance view lost its report: %v", a.machine, r.Machine.InstanceView)
		}
	}
	dumps := vc.dumps()
	sameDumps(t, dumps, "n1", "n2", "n3")
}
