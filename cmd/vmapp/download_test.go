package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
)

// TestVersionDownload downloads a replicated package with the CLI.
func TestVersionDownload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO processes")
	}
	c := testcluster.Start(t, testcluster.Options{})
	data := bytes.Repeat([]byte("vmapp!"), 2*testcluster.PartSize/6+100)
	c.Publish(t, "1.0.0", data, testcluster.Target("eastus", 2), testcluster.Target("westus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	e := clusterEnv(t, c)
	out := filepath.Join(t.TempDir(), "pkg")
	got := e.ok("version", "download", "--gallery", "g", "--app", "a", "latest", "--region", "westus", "--out", out, "--parallel", "2")
	if !strings.Contains(got, "package of g/a/1.0.0 from westus") {
		t.Fatalf("download said:\n%s", got)
	}
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("downloaded %d bytes, %v", len(b), err)
	}
	js := e.okJSON("version", "download", "--gallery", "g", "--app", "a", "1.0.0", "--region", "eastus", "--out", out)
	if js["sha256"] == "" || js["sources"] != nil {
		t.Fatalf("json plan: %v", js)
	}
	e.fails(1, "error: FailedPrecondition: The gallery application version 'g/a/1.0.0' isn't available in northeurope region", "version", "download", "--gallery", "g", "--app", "a", "1.0.0", "--region", "northeurope", "--out", out+"2")
	if _, err := os.Stat(out + "2"); err == nil {
		t.Fatal("a file appeared for a refused download")
	}
	e.fails(2, `required flag(s) "out" not set`, "version", "download", "--gallery", "g", "--app", "a", "1.0.0", "--region", "eastus")
	e.fails(2, "--parallel -1", "version", "download", "--gallery", "g", "--app", "a", "1.0.0", "--region", "eastus", "--out", out, "--parallel", "-1")
}
