// Package testcluster runs a whole vmapp deployment inside a test: three
// regions of real MinIO processes — eastus with two endpoints, westus and
// northeurope with one — and vmappd wired by daemon.New, as the binary is,
// serving gRPC on a loopback port.
package testcluster

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/server/daemon"
	"github.com/vmapp/vmapp/server/fleet"
	"github.com/vmapp/vmapp/server/ingest"
)

// Regions of every cluster, with their number of storage endpoints.
var Regions = []struct {
	Name      string
	Endpoints int
}{{"eastus", 2}, {"westus", 1}, {"northeurope", 1}}

// PartSize is the ingest part (and piece) size: S3's smallest, so that
// small test files have several pieces.
const PartSize = 5 << 20

// Options tune a cluster.
type Options struct {
	// Replicator tunes replication (the daemon sets the wiring fields).
	// Retries default to 100ms..500ms.
	Replicator     replicator.Options
	URLExpiry      time.Duration
	ProxyDownloads bool
	// Front, when set, gives the endpoint URL the regions file names for
	// endpoint i of region (a proxy in front of the MinIO at endpoint,
	// say); nil names the MinIO.
	Front func(region string, i int, endpoint string) string
	// EgressMBps sets egressMBps on every endpoint of the regions it
	// names.
	EgressMBps map[string]float64
	// Listen is vmappd's gRPC address; "" is a free loopback port.
	Listen string
	// HTTP serves the REST API and the web console (--http-listen) on a
	// loopback port too: Cluster.HTTPURL.
	HTTP bool
}

// Cluster is a running deployment.
type Cluster struct {
	Addr string
	// HTTPURL is the REST API's base URL (Options.HTTP), "http://ADDR".
	HTTPURL    string
	Client     *client.Client
	MinIO      map[string][]*miniotest.Server // region -> endpoints
	Bucket     map[string]string              // region -> bucket
	Daemon     *daemon.Daemon
	Catalog    *catalog.Store
	Ingest     *ingest.Service
	Replicator *replicator.Replicator
	Fleet      *fleet.Fleet
	Auth       *auth.Service
	Stores     daemon.Stores
	// AdminToken is the bootstrap operator token (Owner of every tenant):
	// Client calls with it.
	AdminToken string

	cfg  daemon.Config
	stop func() // stops vmappd and waits until it has
}

// Start runs a cluster until the test ends.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	const access, secret = "cluster-access", "cluster-secret"
	c := &Cluster{MinIO: map[string][]*miniotest.Server{}, Bucket: map[string]string{}}
	var yaml strings.Builder
	yaml.WriteString("regions:\n")
	for _, r := range Regions {
		fmt.Fprintf(&yaml, "  - name: %s\n    endpoints:\n", r.Name)
		c.Bucket[r.Name] = "vmapp-" + r.Name
		for i := range r.Endpoints {
			m := miniotest.Start(t, miniotest.WithCredentials(access, secret))
			c.MinIO[r.Name] = append(c.MinIO[r.Name], m)
			url := m.Endpoint()
			if o.Front != nil {
				url = o.Front(r.Name, i, url)
			}
			fmt.Fprintf(&yaml, "      - {url: %q, bucket: %s, egressMBps: %v}\n", url, c.Bucket[r.Name], o.EgressMBps[r.Name])
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	regions := filepath.Join(dir, "regions.yaml")
	must(os.WriteFile(regions, []byte(yaml.String()), 0o600))
	os.Setenv("VMAPP_S3_ACCESS_KEY", access)
	os.Setenv("VMAPP_S3_SECRET_KEY", secret)
	cfg := daemon.Config{DataDir: filepath.Join(dir, "data"), Listen: cmp.Or(o.Listen, "127.0.0.1:0"), RegionsFile: regions, PartSize: PartSize,
		URLExpiry: o.URLExpiry, ProxyDownloads: o.ProxyDownloads, Replicator: o.Replicator}
	if o.HTTP {
		cfg.HTTPListen = "127.0.0.1:0"
	}
	if cfg.Replicator.RetryBase == 0 {
		cfg.Replicator.RetryBase, cfg.Replicator.RetryMax = 100*time.Millisecond, 500*time.Millisecond
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c.cfg = cfg
	c.serve(t)
	var err error
	c.AdminToken, err = client.ReadTokenFile(filepath.Join(cfg.DataDir, daemon.AdminTokenFile))
	must(err)
	c.Client, err = client.New(c.Addr, client.Options{Token: c.AdminToken})
	must(err)
	t.Cleanup(func() {
		c.Client.Close()
		c.stop()
	})
	return c
}

// serve starts vmappd on c.cfg.
func (c *Cluster) serve(t testing.TB) {
	t.Helper()
	d, err := daemon.New(context.Background(), c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, eps := range d.Stores {
		for _, st := range eps {
			if err := st.EnsureBucket(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.Daemon, c.Catalog, c.Ingest, c.Replicator, c.Fleet, c.Auth, c.Stores = d, d.Catalog, d.Ingest, d.Replicator, d.Fleet, d.Auth, d.Stores
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- d.Serve(ctx) }()
	c.Addr = d.Addr().String()
	if a := d.HTTPAddr(); a != nil {
		c.HTTPURL = "http://" + a.String()
		c.cfg.HTTPListen = a.String() // the same port after a Restart
	}
	c.stop = func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("vmappd: %v", err)
		}
		c.stop = func() {}
	}
}

// Restart stops vmappd (its goal-state streams are cut after 10 s: stop
// the agents first to be quick), calls edit with the path of its state
// file, which nothing holds then, and starts vmappd again on the same
// data directory and address: a test changes the file as whoever holds
// it could.
func (c *Cluster) Restart(t testing.TB, edit func(path string)) {
	t.Helper()
	c.stop()
	edit(filepath.Join(c.cfg.DataDir, daemon.DBFile))
	c.cfg.Listen = c.Addr
	c.serve(t)
	// Client reconnects with backoff: wait until its calls go through.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.Client.Catalog.ListRegions(ctx, &pb.ListRegionsRequest{})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("vmappd restarted, but the client can't reach it: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Target is a target region with a replica count.
func Target(region string, n int32) *pb.TargetRegion {
	return &pb.TargetRegion{Name: region, RegionalReplicaCount: &n}
}

// Publish creates gallery "g" and application "a" (once), version in
// eastus with the target regions, and uploads data as its package.
func (c *Cluster) Publish(t testing.TB, version string, data []byte, targets ...*pb.TargetRegion) {
	t.Helper()
	// A guard against a hang only: uploading 120 MiB on a loaded 2-core
	// machine took more than a minute (TestDownloadParallelism).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cat := c.Client.Catalog
	if _, err := cat.GetGallery(ctx, &pb.GetGalleryRequest{Gallery: "g"}); err != nil {
		if _, err := cat.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "eastus"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := cat.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "a", Location: "eastus", SupportedOsType: "Linux"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cat.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
		Gallery: "g", Application: "a", Name: version, Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{
			ManageActions: &pb.UserArtifactManage{Install: "install.sh", Remove: "remove.sh"},
			TargetRegions: targets,
		},
	}}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "package")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.Upload(ctx, "g", "a", version, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Version reads g/a/version.
func (c *Cluster) Version(t testing.TB, version string) *pb.GalleryApplicationVersion {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.Client.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: version})
	if err != nil {
		t.Fatal(err)
	}
	return r.Version
}

// WaitState waits until the version's aggregated replication state is
// want (pb.ReplicationCompleted, ...).
func (c *Cluster) WaitState(t testing.TB, version, want string) *pb.GalleryApplicationVersion {
	t.Helper()
	deadline := time.Now().Add(10 * time.Minute) // a guard against a hang only
	for {
		v := c.Version(t, version)
		if v.ReplicationStatus.GetAggregatedState() == want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("replication of %s never became %s: %v", version, want, v.ReplicationStatus)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ReplicaKey is the object key of replica i of g/a/version's package.
func ReplicaKey(version string, i int32) string {
	return blob.ReplicaKey("default", "g", "a", version, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, i)
}

// ReplicaServer is the MinIO process holding replica i in region.
func (c *Cluster) ReplicaServer(region string, i int32) *miniotest.Server {
	eps := c.MinIO[region]
	return eps[int(i)%len(eps)]
}
