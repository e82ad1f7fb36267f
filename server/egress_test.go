package server_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	"github.com/vmapp/vmapp/internal/testkit/testnet"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestEgressCap: eastus's endpoints cap their egress (egressMBps), so
// plans give no presigned URL of them: an eastus plan isn't direct (the
// downloader reads through vmappd's ReadRange, which reads under the
// endpoint's cap), a westus plan has its own replica and not eastus's as
// a fallback. A download in eastus verifies, and what eastus's stores sent
// for it (counted at proxies in front of them) is the package and the
// requests' headers, all through vmappd.
func TestEgressCap(t *testing.T) {
	fronts := testnet.NewFronts(t, "127.0.0.1", 0, "eastus")
	c := testcluster.Start(t, testcluster.Options{EgressMBps: map[string]float64{"eastus": 50}, Front: fronts.Front})
	egress := fronts.Egress
	f := &fleet{env: &env{t: t, store: c.Catalog, c: c.Client, addr: c.Addr}, minio: c.MinIO, bucket: c.Bucket, repl: c.Replicator, reg: c.Daemon.Registry}
	data := f.publish("1.0.0", 3*testcluster.PartSize-7, tr("eastus", 2), tr("westus", 1))
	f.waitState("1.0.0", "Completed")
	plan := func(region string) *pb.DownloadPlan {
		r, err := downloadClient(f).GetDownloadPlan(ctx(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: region})
		mustOK(t, err)
		return r.Plan
	}
	if p := plan("eastus"); p.Direct || len(p.Sources) != 0 {
		t.Fatalf("an eastus plan with its endpoints capped: direct %v, sources %v", p.Direct, p.Sources)
	}
	if p := plan("westus"); !p.Direct || len(p.Sources) != 1 || p.Sources[0].Region != "westus" {
		t.Fatalf("a westus plan: direct %v, sources %v (eastus's replicas are capped)", p.Direct, p.Sources)
	}

	before := egress()
	out := filepath.Join(t.TempDir(), "pkg")
	if _, err := c.Client.Download(ctx(t), "g", "a", "1.0.0", out, client.DownloadOptions{Region: "eastus"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	mustOK(t, err)
	if sum, want := sha256.Sum256(b), sha256.Sum256(data); sum != want {
		t.Fatalf("downloaded %s, want %s", hex.EncodeToString(sum[:]), hex.EncodeToString(want[:]))
	}
	sent := egress() - before
	t.Logf("eastus's stores sent %d bytes for a %d-byte package", sent, len(data))
	if sent < int64(len(data)) || sent > int64(len(data))+64<<10 {
		t.Fatalf("eastus's stores sent %d bytes for a %d-byte package downloaded once through vmappd", sent, len(data))
	}
}
