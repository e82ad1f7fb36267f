//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/daemon"
	"github.com/vmapp/vmapp/state"
)

// The state-scale scenario's fleet: five regions; an application per 200
// versions (50 for 10,000), two per tenant in a gallery "g" of publishing
// tenants t00, t01, … (so that the versions keep within the seeds' 300
// versions per region per tenant); machines and API tokens in tenant
// "default".
var stateRegions = []string{"eastus", "westus", "northeurope", "westeurope", "southeastasia"}

const (
	stateTenant  = "default"
	stateGallery = "g"
	// versionsPerApp: each application has as many versions, so that a
	// page of an application's versions is full (100) at every size.
	versionsPerApp = 200
	// scaleSetSize is the instances per scale set; 70% of the machines
	// are in scale sets, the rest alone.
	scaleSetSize = 1000
)

// stateShape is one size of the state: its machines, and the rest in
// proportion (the issue's 100,000 machines, 10,000 versions over 50
// applications, 200,000 tokens).
type stateShape struct {
	Machines, ScaleSets, Alone, APITokens, Versions, Apps int
}

func shapeFor(machines int) stateShape {
	inSets := machines * 7 / 10
	sets := max(1, inSets/scaleSetSize)
	versions := machines / 10
	return stateShape{Machines: machines, ScaleSets: sets, Alone: machines - inSets, APITokens: machines, Versions: versions,
		Apps: max(1, versions/versionsPerApp)}
}

// version i's application, and its name: versions go round the
// applications.
func (s stateShape) versionOf(i int) (app int, name string) {
	return i % s.Apps, stateVersionName(i / s.Apps)
}

// instances is how many machines scale set i has.
func (s stateShape) instances(i int) int {
	inSets := s.Machines - s.Alone
	n := inSets / s.ScaleSets
	if i == s.ScaleSets-1 {
		n += inSets % s.ScaleSets
	}
	return n
}

func scaleSetName(i int) string      { return fmt.Sprintf("ss%03d", i) }
func instanceName(set, i int) string { return fmt.Sprintf("ss%03d-%05d", set, i) }
func aloneName(i int) string         { return fmt.Sprintf("vm-%06d", i) }
func stateAppName(i int) string      { return fmt.Sprintf("app%02d", i) }
func stateAppTenant(i int) string    { return fmt.Sprintf("t%02d", i/2) }
func stateVersionName(i int) string  { return fmt.Sprintf("1.0.%d", i) }
func regionOf(i int) string          { return stateRegions[i%len(stateRegions)] }

// versionRegions are the three (of five) regions version i targets,
// turning with its number so that each tenant's versions spread evenly;
// region(3) is one it doesn't target.
func (s stateShape) versionRegions(i int) (targets []string, other string) {
	r := i%s.Apps + i/s.Apps
	return []string{regionOf(r), regionOf(r + 1), regionOf(r + 2)}, regionOf(r + 3)
}

// populated is a data directory holding a state of some shape.
type populated struct {
	dataDir   string
	seconds   float64 // to build it
	commands  int
	fileBytes int64
}

// populate builds a vmappd data directory of shape s by applying commands
// to its state, as vmappd would: s.Apps applications (Linux, two per
// publishing tenant) and s.Versions versions over them, each with a stored
// package of 1 MiB and a completed replica in three of the five regions;
// scale sets
// of scaleSetSize instances and machines alone, spread over the regions,
// each with its agent credential and an instance view of two
// applications (10% Failed); s.APITokens API tokens (10% revoked); and an
// operator token written to DATA/admin.token.
func populate(t testing.TB, s stateShape) populated {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(filepath.Join(dir, daemon.DBFile), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	now := time.Now()
	run := func(n int, ops func(i int) []func(*statepb.Command)) {
		t.Helper()
		err := forEach(ctx, n, 256, func(ctx context.Context, i int) error {
			for _, op := range ops(i) {
				c := state.NewCommand(now)
				op(c)
				if err := db.Propose(ctx, c); err != nil {
					return fmt.Errorf("%T: %w", c.Op, err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()

	op, secret := auth.NewCredential(&pb.Token{Name: "bench operator", Tenant: auth.AllTenants, Role: pb.Role_ROLE_OWNER}, now)
	run(1, func(int) []func(*statepb.Command) {
		return []func(*statepb.Command){func(c *statepb.Command) {
			c.Op = &statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: op}}
		}}
	})
	run((s.Apps+1)/2, func(i int) []func(*statepb.Command) {
		g := &pb.Gallery{Tenant: stateAppTenant(2 * i), Name: stateGallery, Location: "eastus", ProvisioningState: pb.ProvisioningSucceeded, CreateTime: timestamppb.New(now)}
		return []func(*statepb.Command){func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: g}}
		}}
	})
	if err := os.WriteFile(filepath.Join(dir, daemon.AdminTokenFile), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(s.Apps, func(i int) []func(*statepb.Command) {
		a := &pb.GalleryApplication{Tenant: stateAppTenant(i), Gallery: stateGallery, Name: stateAppName(i), Location: "eastus", SupportedOsType: "Linux",
			ProvisioningState: pb.ProvisioningSucceeded, CreateTime: timestamppb.New(now)}
		return []func(*statepb.Command){func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateApplication{CreateApplication: &statepb.CreateApplication{Application: a}}
		}}
	})
	run(s.Versions, func(i int) []func(*statepb.Command) { return s.versionOps(i, now) })
	run(s.ScaleSets, func(i int) []func(*statepb.Command) {
		ss := &pb.ScaleSet{Tenant: stateTenant, Name: scaleSetName(i), Region: regionOf(i), OsType: "Linux", CreateTime: timestamppb.New(now)}
		return []func(*statepb.Command){func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateScaleSet{CreateScaleSet: &statepb.CreateScaleSet{ScaleSet: ss}}
		}}
	})
	var names []struct {
		name, set, region string
	}
	for i := range s.ScaleSets {
		for j := range s.instances(i) {
			names = append(names, struct{ name, set, region string }{instanceName(i, j), scaleSetName(i), regionOf(i)})
		}
	}
	for i := range s.Alone {
		names = append(names, struct{ name, set, region string }{aloneName(i), "", regionOf(i)})
	}
	run(len(names), func(i int) []func(*statepb.Command) {
		n := names[i]
		m := &pb.Machine{Tenant: stateTenant, Name: n.name, Region: n.region, OsType: "Linux", ScaleSet: n.set, ProvisioningState: pb.ProvisioningSucceeded}
		cred, _ := auth.MachineCredential(op.Token, stateTenant, n.name, now)
		return []func(*statepb.Command){
			func(c *statepb.Command) {
				c.Op = &statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: m, Credential: cred}}
			},
			func(c *statepb.Command) {
				c.Op = &statepb.Command_ReportStatus{ReportStatus: &statepb.ReportStatus{Tenant: stateTenant, Machine: n.name, InstanceView: instanceView(i, now)}}
			},
		}
	})
	run(s.APITokens, func(i int) []func(*statepb.Command) {
		cred, _ := auth.NewCredential(&pb.Token{Name: fmt.Sprintf("pipeline %d", i), Tenant: stateTenant, Role: pb.Role_ROLE_READER, CreatedBy: op.Token.Id}, now)
		ops := []func(*statepb.Command){func(c *statepb.Command) {
			c.Op = &statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: cred}}
		}}
		if i%10 == 9 {
			ops = append(ops, func(c *statepb.Command) {
				c.Op = &statepb.Command_RevokeToken{RevokeToken: &statepb.RevokeToken{Id: cred.Token.Id}}
			})
		}
		return ops
	})
	commands := 1 + (s.Apps+1)/2 + s.Apps + 4*s.Versions + s.ScaleSets + 2*len(names) + s.APITokens + s.APITokens/10
	p := populated{dataDir: dir, seconds: time.Since(start).Seconds(), commands: commands}
	if fi, err := os.Stat(filepath.Join(dir, daemon.DBFile)); err == nil {
		p.fileBytes = fi.Size()
	}
	return p
}

// versionOps make version i: created, its package stored, and a completed
// replica in each of its three regions.
func (s stateShape) versionOps(i int, now time.Time) []func(*statepb.Command) {
	a, name := s.versionOf(i)
	app, tenant := stateAppName(a), stateAppTenant(a)
	regions, _ := s.versionRegions(i)
	one := int32(1)
	pp := &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "install.sh", Remove: "remove.sh"}}
	for _, r := range regions {
		pp.TargetRegions = append(pp.TargetRegions, &pb.TargetRegion{Name: r, RegionalReplicaCount: &one})
	}
	v := &pb.GalleryApplicationVersion{Tenant: tenant, Gallery: stateGallery, Application: app, Name: name, Location: "eastus",
		ProvisioningState: pb.ProvisioningCreating, PublishingProfile: pp, SafetyProfile: &pb.SafetyProfile{}, CreateTime: timestamppb.New(now)}
	const size = 1 << 20
	sess := &statepb.UploadSession{Id: fmt.Sprintf("s-%d", i), Tenant: tenant, Gallery: stateGallery, Application: app, Version: name,
		Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, SizeBytes: size}
	sum := fmt.Sprintf("%064x", i)
	var recs []*statepb.Replica
	for _, r := range regions {
		recs = append(recs, &statepb.Replica{Tenant: tenant, Gallery: stateGallery, Application: app, Version: name, Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE,
			Region: r, ObjectKey: blob.ReplicaKey(tenant, stateGallery, app, name, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, 0),
			Phase: statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED, SizeBytes: size, BytesDone: size, Etag: "e",
			CompleteTime: timestamppb.New(now), VerifyTime: timestamppb.New(now), DeepVerifyTime: timestamppb.New(now)})
	}
	return []func(*statepb.Command){
		func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateVersion{CreateVersion: &statepb.CreateVersion{Version: v}}
		},
		func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateUpload{CreateUpload: &statepb.CreateUpload{Session: sess}}
		},
		func(c *statepb.Command) {
			c.Op = &statepb.Command_FinishUpload{FinishUpload: &statepb.FinishUpload{SessionId: sess.Id,
				Artifact: &pb.Artifact{SizeBytes: size, Sha256: sum, PieceSize: size}, Manifest: &statepb.Manifest{PieceSize: size, SizeBytes: size}}}
		},
		func(c *statepb.Command) {
			c.Op = &statepb.Command_ReconcileReplicas{ReconcileReplicas: &statepb.ReconcileReplicas{Add: recs}}
		},
	}
}

// instanceView is machine i's report: two applications, one of five
// everyone runs (Failed on 10% of the machines) and one of 45 others.
func instanceView(i int, now time.Time) *pb.InstanceView {
	st := pb.AppInstalled
	if i%10 == 3 {
		st = pb.AppFailed
	}
	at := timestamppb.New(now)
	return &pb.InstanceView{AgentVersion: "bench", Applications: []*pb.ApplicationStatus{
		{Application: stateGallery + "/" + stateAppName(i%5), Version: "1.0.0", State: st, Operation: "install", EndTime: at},
		{Application: stateGallery + "/" + stateAppName(5+i%45), Version: "1.0.0", State: pb.AppInstalled, Operation: "install", EndTime: at},
	}}
}

// stateRegionsFile writes a topology of the five regions, all on one MinIO
// server (a bucket each): the scenario stores nothing, vmappd only needs
// its stores to answer.
func stateRegionsFile(t testing.TB, m *miniotest.Server) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("regions:\n")
	for _, r := range stateRegions {
		fmt.Fprintf(&b, "  - name: %s\n    endpoints:\n      - {url: %q, bucket: vmapp-%s}\n", r, m.Endpoint(), r)
	}
	path := filepath.Join(t.TempDir(), "regions.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rssParts is a process's resident set: anonymous memory and mapped file
// pages (the state file's, read through bbolt's mmap), in bytes.
func rssParts(pid int) (anon, file int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "RssAnon:":
			anon = kb << 10
		case "RssFile:":
			file = kb << 10
		}
	}
	return anon, file
}
