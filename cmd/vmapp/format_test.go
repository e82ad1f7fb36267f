package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestInt64AsNumbers: protojson writes 64-bit integers as strings; vmapp's
// JSON and YAML print them as numbers, exactly, in nested messages, lists
// and at the top, and leave strings that look like numbers alone.
func TestInt64AsNumbers(t *testing.T) {
	st := &pb.ClusterStatus{Term: math.MaxUint64, CommitIndex: 7, LeaderId: "12",
		Nodes: []*pb.ClusterNode{{Id: "1", Term: 3, AppliedIndex: 1 << 60}}}
	raw, err := marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"term":18446744073709551615`, `"commitIndex":7`, `"leaderId":"12"`, `"appliedIndex":1152921504606846976`, `"term":3`, `"id":"1"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("no %s in %s", want, raw)
		}
	}
	r, err := marshal(&pb.WatchReplicationResponse{Status: replicating()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(r), `"bytesDone":25165824`) || !strings.Contains(string(r), `"eta":"75s"`) {
		t.Errorf("replication status: %s", r)
	}
	var out bytes.Buffer
	c := &cli{stdout: &out, stderr: io.Discard, output: "yaml"}
	if err := c.printJSON(st); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Term     uint64 `yaml:"term"`
		LeaderID string `yaml:"leaderId"`
	}
	if err := yaml.Unmarshal(out.Bytes(), &back); err != nil || back.Term != math.MaxUint64 || back.LeaderID != "12" {
		t.Errorf("yaml %v %+v:\n%s", err, back, out.String())
	}
	if !strings.Contains(out.String(), "term: 18446744073709551615\n") || !strings.Contains(out.String(), `leaderId: "12"`) {
		t.Errorf("yaml:\n%s", out.String())
	}
}

// TestOutputFormats runs -o yaml, tsv, json and --query against a real
// vmappd.
func TestOutputFormats(t *testing.T) {
	e := newEnv(t)
	e.ok("gallery", "create", "g1", "--location", "eastus", "--description", "a & b")
	e.ok("gallery", "create", "g2", "--location", "westus")
	e.ok("app", "create", "-g", "g1", "a", "--os", "linux")
	e.ok("version", "create", "-g", "g1", "-a", "a", "1.0.0", "--install", "tar -xzf a && ./install.sh", "--remove", "r",
		"--target-region", "eastus=3", "--target-region", "westus")

	// YAML: the list, numbers as numbers.
	var list struct {
		Value []map[string]any `yaml:"value"`
	}
	if err := yaml.Unmarshal([]byte(e.ok("gallery", "list", "-o", "yaml")), &list); err != nil || len(list.Value) != 2 || list.Value[0]["name"] != "g1" || list.Value[0]["description"] != "a & b" {
		t.Fatalf("yaml list: %v %v", err, list)
	}
	y := e.ok("version", "show", "-g", "g1", "-a", "a", "1.0.0", "-o", "yaml")
	if !strings.Contains(y, "regionalReplicaCount: 3\n") || !strings.Contains(y, "install: tar -xzf a && ./install.sh\n") {
		t.Errorf("yaml version:\n%s", y)
	}
	// JSON keeps & as it is.
	if js := e.ok("gallery", "show", "g1", "-o", "json"); !strings.Contains(js, `"description": "a & b"`) {
		t.Errorf("json:\n%s", js)
	}

	// TSV: a line per item, scalar values in key order, no header.
	tsvOut := e.ok("gallery", "list", "-o", "tsv", "--query", "value[].{n: name, l: location}")
	if tsvOut != "eastus\tg1\nwestus\tg2\n" {
		t.Errorf("tsv with query: %q", tsvOut)
	}
	lines := strings.Split(strings.TrimSpace(e.ok("gallery", "list", "-o", "tsv")), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "\tg1\t") || strings.HasPrefix(lines[0], "NAME") {
		t.Errorf("tsv list: %q", lines)
	}
	if got := e.ok("version", "show", "-g", "g1", "-a", "a", "1.0.0", "-o", "tsv", "--query", "publishingProfile.targetRegions[].regionalReplicaCount"); got != "3\n" {
		t.Errorf("tsv of a list of numbers: %q", got)
	}

	// --query: JMESPath, comparing numbers; the result as -o says.
	var names []string
	js := e.ok("version", "show", "-g", "g1", "-a", "a", "1.0.0", "-o", "json", "--query", "publishingProfile.targetRegions[?regionalReplicaCount > `1`].name")
	if err := json.Unmarshal([]byte(js), &names); err != nil || len(names) != 1 || names[0] != "eastus" {
		t.Errorf("query: %v %q", err, js)
	}
	if got := e.ok("gallery", "list", "--query", "value[?location=='westus'].name", "-o", "tsv"); got != "g2\n" {
		t.Errorf("query filter: %q", got)
	}
	// In table output, a query's result is a table.
	tbl := e.ok("gallery", "list", "--query", "value[].{name: name, location: location}")
	if !regexp.MustCompile(`^LOCATION\s+NAME\neastus\s+g1\nwestus\s+g2\n$`).MatchString(tbl) {
		t.Errorf("table of a query:\n%s", tbl)
	}
	if got := e.ok("gallery", "show", "g1", "--query", "location"); got != "RESULT\neastus\n" {
		t.Errorf("table of a scalar: %q", got)
	}

	e.fails(2, `--query "value[?": `, "gallery", "list", "--query", "value[?")
	e.fails(2, `--output "xml": must be table, json, yaml or tsv`, "gallery", "list", "-o", "xml")
}
