package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

const mib = 1 << 20

// replicating is a status in the middle of a replication: one region of each
// state.
func replicating() *pb.ReplicationStatus {
	return &pb.ReplicationStatus{AggregatedState: "Failed", Summary: []*pb.RegionalReplicationStatus{
		{Region: "eastus", State: "Completed", Progress: 100, ReplicasCompleted: 3, ReplicasWanted: 3, BytesDone: 24 * mib, BytesTotal: 24 * mib},
		{Region: "westus", State: "Replicating", Progress: 42, ReplicasCompleted: 0, ReplicasWanted: 2, BytesDone: 6710886, BytesTotal: 16 * mib,
			Eta: durationpb.New(75 * time.Second)},
		{Region: "northeurope", State: "Failed", Progress: 0, ReplicasWanted: 1, BytesTotal: 8 * mib,
			Details: "replica 0 (package): connection refused (attempt 3; retrying in 8s)"},
	}}
}

func completed() *pb.ReplicationStatus {
	return &pb.ReplicationStatus{AggregatedState: "Completed", Summary: []*pb.RegionalReplicationStatus{
		{Region: "eastus", State: "Completed", Progress: 100, ReplicasCompleted: 3, ReplicasWanted: 3, BytesDone: 24 * mib, BytesTotal: 24 * mib},
		{Region: "westus", State: "Completed", Progress: 100, ReplicasCompleted: 1, ReplicasWanted: 1, BytesDone: 1536, BytesTotal: 1536},
	}}
}

func TestReplicationTable(t *testing.T) {
	var b bytes.Buffer
	st := replicating()
	st.Summary = append(st.Summary, &pb.RegionalReplicationStatus{Region: "southindia", State: "Unknown", Details: "waiting for the package"})
	if err := writeReplicationTable(&b, st); err != nil {
		t.Fatal(err)
	}
	want := `REGION       STATE        PROGRESS  REPLICAS  BYTES           ETA   DETAILS
eastus       Completed    100%      3/3       24 MiB/24 MiB   -     -
westus       Replicating  42%       0/2       6.4 MiB/16 MiB  1:15  -
northeurope  Failed       0%        0/1       0 B/8 MiB       -     replica 0 (package): connection refused (attempt 3; retrying in 8s)
southindia   Unknown      -         -         -               -     waiting for the package
`
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := writeReplicationTable(&b, nil); err != nil || !strings.HasPrefix(b.String(), "REGION ") || strings.Count(b.String(), "\n") != 1 {
		t.Fatalf("empty table: %q %v", b.String(), err)
	}
}

func TestSummarizeReplication(t *testing.T) {
	for _, tc := range []struct {
		st   *pb.ReplicationStatus
		want string
	}{
		{replicating(), "Failed: 1/3 regions completed, 1 failed, 30.4 MiB/48 MiB"},
		{completed(), "Completed: 2/2 regions completed, 24 MiB/24 MiB"},
		{&pb.ReplicationStatus{AggregatedState: "Unknown", Summary: []*pb.RegionalReplicationStatus{{Region: "eastus", State: "Unknown"}}},
			"Unknown: 0/1 regions completed"},
		{&pb.ReplicationStatus{AggregatedState: "Completed"}, "Completed"},
		{nil, "Unknown"},
	} {
		if got := summarizeReplication(tc.st); got != tc.want {
			t.Errorf("summary %q, want %q", got, tc.want)
		}
	}
}

func TestReplicationResult(t *testing.T) {
	if err := replicationResult(completed()); err != nil {
		t.Fatalf("completed: %v", err)
	}
	err := replicationResult(replicating())
	if !errs.Is(err, errs.FailedPrecondition) ||
		err.Error() != "replication failed in northeurope: replica 0 (package): connection refused (attempt 3; retrying in 8s)" {
		t.Fatalf("one failed: %v", err)
	}
	st := replicating()
	st.Summary[1].State, st.Summary[1].Details = "Failed", "disk full"
	if err := replicationResult(st); !errs.Is(err, errs.FailedPrecondition) ||
		!strings.HasPrefix(err.Error(), "replication failed in westus, northeurope: westus: disk full; northeurope: replica 0") {
		t.Fatalf("two failed: %v", err)
	}
	st = replicating()
	st.AggregatedState, st.Summary = "InProgress", st.Summary[:2]
	if err := replicationResult(st); !errs.Is(err, errs.FailedPrecondition) || !strings.Contains(err.Error(), "ended before completing: InProgress") {
		t.Fatalf("in progress: %v", err)
	}
}

func TestReplicationJSONLine(t *testing.T) {
	var b bytes.Buffer
	v := jsonView{w: &b}
	for _, st := range []*pb.ReplicationStatus{replicating(), completed()} {
		if err := v.update(&pb.WatchReplicationResponse{Status: st}); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(b.String(), "\n")
	if len(lines) != 3 || lines[2] != "" {
		t.Fatalf("want 2 lines, got:\n%s", b.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]any{
		"status.aggregatedState":             "Failed",
		"status.summary.0.region":            "eastus",
		"status.summary.0.replicasCompleted": 3.0,
		"status.summary.0.replicasWanted":    3.0,
		"status.summary.0.bytesDone":         25165824.0, // int64: a string in protojson, a number here
		"status.summary.1.eta":               "75s",
		"status.summary.1.replicasCompleted": nil, // zero: left out
		"status.summary.2.details":           "replica 0 (package): connection refused (attempt 3; retrying in 8s)",
		"status.summary.0.replicas_wanted":   nil, // camelCase only
	} {
		var p []any
		for _, s := range strings.Split(path, ".") {
			if len(s) == 1 && s[0] >= '0' && s[0] <= '9' {
				p = append(p, int(s[0]-'0'))
			} else {
				p = append(p, s)
			}
		}
		if got := at(m, p...); got != want {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
}

func TestPrintVersionReplication(t *testing.T) {
	v := &pb.GalleryApplicationVersion{Name: "1.0.0", Gallery: "g", Application: "app", Location: "eastus", ReplicationStatus: replicating()}
	var b bytes.Buffer
	c := &cli{stdout: &b, output: "table"}
	if err := c.printVersion(v); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if got := fieldOf(t, out, "Replication"); got != "Failed: 1/3 regions completed, 1 failed, 30.4 MiB/48 MiB" {
		t.Errorf("Replication: %q", got)
	}
	for _, re := range []string{
		`\n\nREGION\s+STATE\s+PROGRESS\s+REPLICAS\s+BYTES\s+ETA\s+DETAILS\n`,
		`(?m)^eastus\s+Completed\s+100%\s+3/3\s+24 MiB/24 MiB\s+-\s+-$`,
		`(?m)^westus\s+Replicating\s+42%\s+0/2\s+6.4 MiB/16 MiB\s+1:15\s+-$`,
		`(?m)^northeurope\s+Failed\s+0%\s+0/1\s+0 B/8 MiB\s+-\s+replica 0 \(package\): connection refused`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("no %s in:\n%s", re, out)
		}
	}
	// No status (a server without replication): no table.
	b.Reset()
	v.ReplicationStatus = nil
	if err := c.printVersion(v); err != nil || strings.Contains(b.String(), "REGION") || strings.Contains(b.String(), "Replication") {
		t.Fatalf("without status:\n%s", b.String())
	}
	b.Reset()
	v.ReplicationStatus = completed()
	c.output = "json"
	if err := c.printVersion(v); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil || at(m, "replicationStatus", "aggregatedState") != "Completed" ||
		at(m, "replicationStatus", "summary", 1, "bytesTotal") != 1536.0 {
		t.Fatalf("json: %v\n%s", err, b.String())
	}
}

func TestLinesView(t *testing.T) {
	var b bytes.Buffer
	v := &linesView{w: &b, name: "g/app/1.0.0"}
	for _, st := range []*pb.ReplicationStatus{replicating(), completed()} {
		if err := v.update(&pb.WatchReplicationResponse{Status: st}); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.finish(completed()); err != nil {
		t.Fatal(err)
	}
	want := `eastus       Completed    100%    3/3  24 MiB/24 MiB          -
westus       Replicating   42%    0/2  6.4 MiB/16 MiB         ETA 1:15
northeurope  Failed         0%    0/1  0 B/8 MiB              -          replica 0 (package): connection refused (attempt 3; retrying in 8s)
eastus       Completed    100%    3/3  24 MiB/24 MiB          -
westus       Completed    100%    1/1  1.5 KiB/1.5 KiB        -
Replication of g/app/1.0.0: Completed: 2/2 regions completed, 24 MiB/24 MiB
`
	if b.String() != want {
		t.Fatalf("lines:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestBlockView(t *testing.T) {
	var b bytes.Buffer
	v := newBlockView(&b, "g/app/1.0.0", 90)
	now := time.Unix(1000, 0)
	v.now = func() time.Time { return now }
	st := replicating()
	st.Summary[1].Eta = nil // the rate gives the ETA
	if err := v.update(&pb.WatchReplicationResponse{Status: st}); err != nil {
		t.Fatal(err)
	}
	first := b.String()
	if !strings.HasPrefix(first, "\x1b[J") || strings.Count(first, "\n") != 4 ||
		!strings.Contains(first, "\nwestus       [=====       ]  42%  0/2  6.4 MiB/16 MiB\n") {
		t.Fatalf("first block: %q", first)
	}
	b.Reset()
	now = now.Add(10 * time.Second)
	st.Summary[1].BytesDone += 5 * mib // 512 KiB/s
	st.Summary[1].Progress = 100 * int32(st.Summary[1].BytesDone/1024) / (16 * 1024)
	if err := v.update(&pb.WatchReplicationResponse{Status: st}); err != nil {
		t.Fatal(err)
	}
	second := b.String()
	if !strings.HasPrefix(second, "\x1b[4A\x1b[J") {
		t.Fatalf("second block does not redraw the first: %q", second)
	}
	lines := strings.Split(strings.TrimPrefix(second, "\x1b[4A\x1b[J"), "\n")
	if len(lines) != 5 || lines[4] != "" {
		t.Fatalf("second block: %q", second)
	}
	for i, want := range []string{
		"Replication of g/app/1.0.0: Failed: 1/3 regions completed, 1 failed, 35.4 MiB/48 MiB",
		"eastus       [============] 100%  3/3  24 MiB/24 MiB  Completed",
		"westus       [========    ]  71%  0/2  11.4 MiB/16 MiB  512 KiB/s  ETA 0:09",
		"northeurope  [            ]   0%  0/1  0 B/8 MiB  Failed: replica 0 (package): connection refused (attempt 3; retrying in 8s)",
	} {
		if i == 3 {
			want = want[:89] // cut to the terminal's width
		}
		if lines[i] != want {
			t.Errorf("line %d:\n%q\nwant\n%q", i, lines[i], want)
		}
	}
}

func TestWriteRepair(t *testing.T) {
	var b bytes.Buffer
	err := writeRepair(&b, "g/app/1.0.0", &pb.RepairVersionResponse{
		Problems: []*pb.ReplicaProblem{
			{Region: "westus", Replica: 1, Artifact: "package", Problem: "missing"},
			{Region: "eastus", Replica: 0, Artifact: "default configuration", Problem: "size 10, want 12"},
		},
		ReplicasChecked: 4,
		Status:          &pb.ReplicationStatus{AggregatedState: "InProgress", Summary: []*pb.RegionalReplicationStatus{{Region: "eastus", State: "Replicating"}, {Region: "westus", State: "Replicating"}}},
	})
	want := `REGION  REPLICA  ARTIFACT               PROBLEM
westus  1        package                missing
eastus  0        default configuration  size 10, want 12
2 problems found, being copied again; 4 replicas checked sound.
Replication of g/app/1.0.0: InProgress: 0/2 regions completed
`
	if err != nil || b.String() != want {
		t.Fatalf("repair:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := writeRepair(&b, "g/app/1.0.0", &pb.RepairVersionResponse{ReplicasChecked: 1}); err != nil || b.String() != "No problems found: 1 replica checked sound.\n" {
		t.Fatalf("no problems: %q %v", b.String(), err)
	}

	// Replicas that could not be checked are listed after the problems.
	b.Reset()
	r := &pb.RepairVersionResponse{
		Problems:        []*pb.ReplicaProblem{{Region: "eastus", Replica: 1, Artifact: "package", Problem: "piece 0 can't be read"}},
		Unchecked:       []*pb.ReplicaProblem{{Region: "westus", Replica: 0, Artifact: "package", Problem: "connection refused"}, {Region: "westus", Replica: 1, Artifact: "package", Problem: "connection refused"}},
		ReplicasChecked: 1,
	}
	want = `REGION  REPLICA  ARTIFACT  PROBLEM
eastus  1        package   piece 0 can't be read
westus  0        package   not checked: connection refused
westus  1        package   not checked: connection refused
1 problem found, being copied again; 2 replicas could not be checked; 1 replica checked sound.
`
	if err := writeRepair(&b, "g/app/1.0.0", r); err != nil || b.String() != want {
		t.Fatalf("repair with replicas not checked:\n%s\nwant:\n%s", b.String(), want)
	}
	err = repairResult(r)
	if !errs.Is(err, errs.Unavailable) || err.Error() != "2 replicas could not be checked (westus/0 (package), westus/1 (package)): their store did not answer; the others were checked; run the repair again once it is back" {
		t.Fatalf("outcome with replicas not checked: %v", err)
	}
	r.Problems = nil
	b.Reset()
	if err := writeRepair(&b, "g/app/1.0.0", r); err != nil || !strings.HasSuffix(b.String(), "\n2 replicas could not be checked; 1 replica checked sound.\n") {
		t.Fatalf("only replicas not checked:\n%s", b.String())
	}
}

// The test server runs without a replicator: ReplicationService is not
// served.
func TestReplicationWithoutReplicator(t *testing.T) {
	e := newEnv(t)
	e.ok("gallery", "create", "g", "--location", "eastus")
	e.ok("app", "create", "--gallery", "g", "app", "--os", "linux")
	e.ok("version", "create", "--gallery", "g", "--app", "app", "1.0.0", "--install", "i", "--remove", "r")

	for _, args := range [][]string{
		{"version", "watch", "--gallery", "g", "--app", "app", "1.0.0"},
		{"-o", "json", "version", "watch", "--gallery", "g", "--app", "app", "1.0.0"},
		{"version", "repair", "--gallery", "g", "--app", "app", "1.0.0"},
		{"-o", "json", "version", "repair", "--gallery", "g", "--app", "app", "1.0.0", "--deep"},
	} {
		r := e.fails(1, "error: Unimplemented: vmappd at "+e.addr+" serves no ReplicationService", args...)
		if strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("more than the error on stderr: %v", r)
		}
	}
	// --wait follows the replication once the package is stored; this
	// server has no TransferService, so the import fails first.
	e.fails(1, "error: Unimplemented: ", "version", "upload", "--gallery", "g", "--app", "app", "1.0.0", "--package-url", "https://example.com/p.tgz", "--wait")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"version", "watch", "--gallery", "g", "--app", "app"}, "missing argument VERSION"},
		{[]string{"version", "watch", "--gallery", "g", "--app", "app", "1.0.0", "2.0.0"}, `unexpected argument "2.0.0"`},
		{[]string{"version", "watch", "--gallery", "g", "1.0.0"}, `required flag(s) "app" not set`},
		{[]string{"version", "watch", "--gallery", "g", "--app", "app", "1.0.0", "--deep"}, "unknown flag: --deep"},
		{[]string{"version", "repair", "--app", "app", "1.0.0"}, `required flag(s) "gallery" not set`},
		{[]string{"version", "repair", "--gallery", "g", "--app", "app"}, "missing argument VERSION"},
		{[]string{"version", "repair", "--gallery", "g", "--app", "app", "1.0.0", "--deep=maybe"}, `invalid argument "maybe" for "--deep"`},
		{[]string{"version", "create", "--gallery", "g", "--app", "app", "2.0.0", "--install", "i", "--remove", "r", "--wait"}, "--wait needs --package or --package-url"},
		{[]string{"version", "create", "--gallery", "g", "--app", "app", "2.0.0", "--install", "i", "--remove", "r", "--config", "c.json", "--wait"}, "--wait needs --package or --package-url"},
	} {
		r := e.vmapp(tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, "error: "+tc.want) || !strings.Contains(r.stderr, "--help' for usage.") || r.stdout != "" {
			t.Errorf("want exit 2 with %q, got %v", tc.want, r)
		}
	}
	// The usage errors created nothing.
	if js := e.okJSON("version", "list", "--gallery", "g", "--app", "app"); len(js["value"].([]any)) != 1 {
		t.Fatalf("versions: %v", js)
	}
	for cmd, want := range map[string]string{"watch": "-o json each update", "repair": "--deep", "create": "--wait", "upload": "--wait"} {
		if out := e.ok("version", cmd, "--help"); !strings.Contains(out, want) {
			t.Errorf("version %s --help lacks %q:\n%s", cmd, want, out)
		}
	}
}

// fakeReplication streams the statuses it holds, then ends.
type fakeReplication struct {
	pb.UnimplementedReplicationServiceServer
	updates []*pb.ReplicationStatus
	repair  *pb.RepairVersionResponse
	got     chan *pb.RepairVersionRequest
}

func (f *fakeReplication) WatchReplication(r *pb.WatchReplicationRequest, s pb.ReplicationService_WatchReplicationServer) error {
	if r.Version != "1.0.0" {
		return errs.ToStatus(errs.New(errs.NotFound, "", "Gallery application version '%s/%s/%s' doesn't exist.", r.Gallery, r.Application, r.Version))
	}
	for _, st := range f.updates {
		if err := s.Send(&pb.WatchReplicationResponse{Status: st}); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeReplication) RepairVersion(_ context.Context, r *pb.RepairVersionRequest) (*pb.RepairVersionResponse, error) {
	f.got <- r
	return f.repair, nil
}

// fakeEnv serves only fake's ReplicationService.
func fakeEnv(t *testing.T, fake *fakeReplication) *env {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterReplicationServiceServer(gs, fake)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return &env{t: t, addr: lis.Addr().String()}
}

// The client side of watch and repair, against a fake ReplicationService
// (server/replication_test.go tests the real one).
func TestWatchAndRepairFake(t *testing.T) {
	inProgress := replicating()
	inProgress.AggregatedState = "InProgress"
	inProgress.Summary[2].State, inProgress.Summary[2].Details = "Replicating", ""
	fake := &fakeReplication{updates: []*pb.ReplicationStatus{inProgress, completed()}, got: make(chan *pb.RepairVersionRequest, 2)}
	e := fakeEnv(t, fake)
	watch := []string{"version", "watch", "--gallery", "g", "--app", "app", "1.0.0"}

	out := e.ok(watch...)
	if n := strings.Count(out, "\n"); n != 6 || !strings.HasSuffix(out, "\nReplication of g/app/1.0.0: Completed: 2/2 regions completed, 24 MiB/24 MiB\n") {
		t.Fatalf("watch:\n%s", out)
	}
	out = e.ok(append([]string{"-o", "json"}, watch...)...)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `{"status":{"aggregatedState":"InProgress"`) || !strings.HasPrefix(lines[1], `{"status":{"aggregatedState":"Completed"`) {
		t.Fatalf("watch json:\n%s", out)
	}

	// Ends with a region Failed: exit 1, after the updates.
	fake.updates = []*pb.ReplicationStatus{inProgress, replicating()}
	r := e.vmapp(watch...)
	if r.code != 1 || r.stderr != "error: FailedPrecondition: replication failed in northeurope: replica 0 (package): connection refused (attempt 3; retrying in 8s)\n" ||
		!strings.Contains(r.stdout, "Replication of g/app/1.0.0: Failed: 1/3 regions completed, 1 failed") {
		t.Fatalf("failed watch: %v", r)
	}
	r = e.vmapp(append([]string{"-o", "json"}, watch...)...)
	if r.code != 1 || !strings.HasPrefix(r.stderr, "error: FailedPrecondition: replication failed in northeurope: ") || strings.Count(r.stdout, "\n") != 2 {
		t.Fatalf("failed watch json: %v", r)
	}
	// Ends before every region is done.
	fake.updates = []*pb.ReplicationStatus{inProgress}
	if r := e.vmapp(watch...); r.code != 1 || !strings.Contains(r.stderr, "error: FailedPrecondition: replication ended before completing: InProgress") {
		t.Fatalf("unfinished watch: %v", r)
	}
	fake.updates = nil
	if r := e.vmapp(watch...); r.code != 1 || !strings.Contains(r.stderr, "error: Unavailable: the replication stream ended without a status") {
		t.Fatalf("empty watch: %v", r)
	}
	e.fails(1, "error: NotFound: Gallery application version 'g/app/9.9.9' doesn't exist.\n", "version", "watch", "--gallery", "g", "--app", "app", "9.9.9")

	fake.repair = &pb.RepairVersionResponse{
		Problems:        []*pb.ReplicaProblem{{Region: "westus", Replica: 1, Artifact: "package", Problem: "missing"}},
		ReplicasChecked: 3, Status: inProgress,
	}
	out = e.ok("version", "repair", "--gallery", "g", "--app", "app", "1.0.0", "--deep")
	if req := <-fake.got; !req.Deep || req.Gallery != "g" || req.Application != "app" || req.Version != "1.0.0" {
		t.Fatalf("repair request: %v", req)
	}
	if !regexp.MustCompile(`^REGION\s+REPLICA\s+ARTIFACT\s+PROBLEM\nwestus\s+1\s+package\s+missing\n1 problem found, being copied again; 3 replicas checked sound.\nReplication of g/app/1.0.0: InProgress: `).MatchString(out) {
		t.Fatalf("repair:\n%s", out)
	}
	js := e.okJSON("version", "repair", "--gallery", "g", "--app", "app", "1.0.0")
	if req := <-fake.got; req.Deep {
		t.Fatalf("repair without --deep: %v", req)
	}
	if at(js, "problems", 0, "region") != "westus" || at(js, "replicasChecked") != 3.0 || at(js, "status", "aggregatedState") != "InProgress" {
		t.Fatalf("repair json: %v", js)
	}
}

// TestRepairUnreadable: `version repair --deep` against vmappd and real
// MinIO. A replica whose data rotted at its start (MinIO cuts its reads
// short) is found and copied again;
// one on a store that is down can't be checked: it is listed, and the exit
// status is 1.
func TestRepairUnreadable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO processes")
	}
	c := testcluster.Start(t, testcluster.Options{})
	data := bytes.Repeat([]byte("vmapp!"), 2*testcluster.PartSize/6+100)
	c.Publish(t, "1.0.0", data, testcluster.Target("eastus", 2), testcluster.Target("westus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	e := clusterEnv(t, c)
	if c.ReplicaServer("eastus", 0).Rot(t, c.Bucket["eastus"], testcluster.ReplicaKey("1.0.0", 0), "part.1", 100) != 1 {
		t.Fatal("no part.1 of eastus replica 0")
	}
	c.ReplicaServer("westus", 0).Stop(t)

	r := e.vmapp("version", "repair", "--gallery", "g", "--app", "a", "1.0.0", "--deep")
	lines := strings.Split(r.stdout, "\n")
	if r.code != 1 || len(lines) != 6 ||
		!regexp.MustCompile(`^eastus\s+0\s+package\s+piece 0 can't be read \(the store answers other requests\): `).MatchString(lines[1]) ||
		!regexp.MustCompile(`^westus\s+0\s+package\s+not checked: .*unavailable`).MatchString(lines[2]) ||
		lines[3] != "1 problem found, being copied again; 1 replica could not be checked; 1 replica checked sound." ||
		r.stderr != "error: Unavailable: 1 replica could not be checked (westus/0 (package)): their store did not answer; the others were checked; run the repair again once it is back\n" {
		t.Fatalf("repair: %v", r)
	}
	c.WaitState(t, "1.0.0", "Completed")
	got, err := c.ReplicaServer("eastus", 0).Client(t).GetObject(context.Background(), c.Bucket["eastus"], testcluster.ReplicaKey("1.0.0", 0), minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(got); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("eastus replica 0 after the repair: %d bytes, %v", len(b), err)
	}

	// -o json: the response, and the same exit status.
	r = e.vmapp("-o", "json", "version", "repair", "--gallery", "g", "--app", "a", "1.0.0", "--deep")
	var js map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil || r.code != 1 || at(js, "unchecked", 0, "region") != "westus" || at(js, "replicasChecked") != 2.0 || js["problems"] != nil {
		t.Fatalf("repair -o json: %v (%v)", r, err)
	}
	c.ReplicaServer("westus", 0).Restart(t)
	if out := e.ok("version", "repair", "--gallery", "g", "--app", "a", "1.0.0", "--deep"); !strings.HasPrefix(out, "No problems found: 3 replicas checked sound.\n") {
		t.Fatalf("repair once westus is back:\n%s", out)
	}
}
