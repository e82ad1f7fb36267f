package console

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestMatrix renders the matrix of a status whose regions want different
// replica counts: a column per replica index, each replica's state,
// progress and details in its cell, "·" past a region's count.
func TestMatrix(t *testing.T) {
	st := &pb.ReplicationStatus{AggregatedState: pb.ReplicationInProgress, Summary: []*pb.RegionalReplicationStatus{
		{Region: "eastus", State: pb.ReplicationCompleted, ReplicasWanted: 1, ReplicasCompleted: 1, Progress: 100, BytesDone: 2048, BytesTotal: 2048,
			Replicas: []*pb.ReplicaStatus{{Index: 0, Artifact: "package", State: pb.ReplicationCompleted, Progress: 100, BytesDone: 2048, SizeBytes: 2048}}},
		{Region: "westus", State: pb.ReplicationFailed, ReplicasWanted: 2, Progress: 25, BytesDone: 1024, BytesTotal: 4096, Eta: durationpb.New(0),
			Details: "replica 1 (package): store down",
			Replicas: []*pb.ReplicaStatus{
				{Index: 0, Artifact: "package", State: "Copying", Progress: 50, BytesDone: 1024, SizeBytes: 2048},
				{Index: 1, Artifact: "package", State: pb.ReplicationFailed, SizeBytes: 2048, Attempts: 3, Details: "store down <b>"},
			}},
	}}
	m := matrixOf(st)
	if len(m.Columns) != 2 || len(m.Rows) != 2 || len(m.Rows[0].Cells[1]) != 0 || len(m.Rows[1].Cells[1]) != 1 {
		t.Fatalf("matrix: %d columns, rows %+v", len(m.Columns), m.Rows)
	}
	c := &Console{pages: parsePages()}
	html, err := c.fragment("version", "matrix", m)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Replica 0", "Replica 1", `data-region="westus"`, "50%", "1.0 KiB / 2.0 KiB", "store down &lt;b&gt;", `aria-label="no such replica"`, "1/1 done", "0/2 done"} {
		if !strings.Contains(html, want) {
			t.Errorf("the matrix lacks %q:\n%s", want, html)
		}
	}
}

// TestPagesParse renders every page's template with no data: each parses
// with the layout, and an empty listing says how to fill it.
func TestPagesParse(t *testing.T) {
	c := &Console{pages: parsePages()}
	for _, name := range []string{"galleries", "machines", "scalesets"} {
		var b strings.Builder
		if err := c.pages[name].ExecuteTemplate(&b, "layout", page{Title: name, Data: listing{}}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(b.String(), `class="empty"`) {
			t.Errorf("%s has no empty state:\n%s", name, b.String())
		}
	}
}

// TestSafeNext keeps the page a sign-in returns to inside the console.
func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/inventory?state=Failed": "/ui/inventory?state=Failed",
		"//evil.example/ui/":         "/ui/",
		"https://evil.example/":      "/ui/",
		"/ui/\\evil":                 "/ui/",
		"":                           "/ui/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
