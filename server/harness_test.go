package server_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/state"
	"github.com/vmapp/vmapp/topology"
)

const regionsYAML = `regions:
  - name: eastus
    endpoints:
      - {url: "http://127.0.0.1:9", bucket: vmapp-eastus}
  - name: westus
    endpoints:
      - {url: "http://127.0.0.1:9", bucket: vmapp-westus}
      - {url: "http://127.0.0.2:9", bucket: vmapp-westus}
  - name: northeurope
    endpoints:
      - {url: "http://127.0.0.1:9", bucket: vmapp-northeurope}
`

// env is a real vmappd (catalog on a bbolt file, gRPC on a loopback port)
// with a client connected to it.
type env struct {
	t     *testing.T
	store *catalog.Store
	c     *client.Client
	addr  string
}

// newEnv starts the server. The reaper does not run on its own: tests call
// reap() so that they can observe resources marked for deletion.
func newEnv(t *testing.T, o catalog.Options) *env {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "regions.yaml")
	if err := os.WriteFile(path, []byte(regionsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	o.Regions = topo.Names()
	db, err := state.Open(filepath.Join(dir, "vmapp.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store := catalog.New(db, o)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := server.New(server.Options{Store: store, Topology: topo})
	go gs.Serve(lis)
	c, err := client.New(lis.Addr().String(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		gs.Stop()
		db.Close()
	})
	return &env{t: t, store: store, c: c, addr: lis.Addr().String()}
}

// tenant returns a client for another tenant on the same server.
func (e *env) tenant(name string) pb.CatalogServiceClient {
	c, err := client.New(e.addr, client.Options{Tenant: name})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c.Catalog
}

func (e *env) reap() {
	e.t.Helper()
	if err := e.store.Reap(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// wantErr checks the gRPC code of err and that its message contains every
// one of subs.
func wantErr(t *testing.T, err error, code codes.Code, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got success, want %v error containing %q", code, subs)
	}
	if got := errs.ClassOf(err).Code(); got != code {
		t.Fatalf("got code %v (%v), want %v", got, err, code)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not contain %q", err, s)
		}
	}
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v (code %v)", err, status.Code(err))
	}
}

func (e *env) gallery(name string) *pb.Gallery {
	e.t.Helper()
	r, err := e.c.Catalog.CreateGallery(ctx(e.t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: name, Location: "eastus"}})
	mustOK(e.t, err)
	return r.Gallery
}

func (e *env) app(gallery, name string) *pb.GalleryApplication {
	e.t.Helper()
	r, err := e.c.Catalog.CreateApplication(ctx(e.t), &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{
		Gallery: gallery, Name: name, Location: "eastus", SupportedOsType: "Linux",
	}})
	mustOK(e.t, err)
	return r.Application
}

// newVersion returns a valid version request body; tests change one field.
func newVersion(gallery, app, name string) *pb.GalleryApplicationVersion {
	return &pb.GalleryApplicationVersion{
		Gallery: gallery, Application: app, Name: name, Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{
			ManageActions: &pb.UserArtifactManage{Install: "install.sh", Remove: "remove.sh"},
			TargetRegions: []*pb.TargetRegion{{Name: "eastus"}},
		},
	}
}

func (e *env) createVersion(v *pb.GalleryApplicationVersion) (*pb.GalleryApplicationVersion, error) {
	r, err := e.c.Catalog.CreateVersion(ctx(e.t), &pb.CreateVersionRequest{Version: v})
	return r.GetVersion(), err
}

func (e *env) version(gallery, app, name string, edit ...func(*pb.GalleryApplicationVersion)) *pb.GalleryApplicationVersion {
	e.t.Helper()
	v := newVersion(gallery, app, name)
	for _, f := range edit {
		f(v)
	}
	got, err := e.createVersion(v)
	mustOK(e.t, err)
	return got
}

func future() *timestamppb.Timestamp { return timestamppb.New(time.Now().Add(365 * 24 * time.Hour)) }
func past() *timestamppb.Timestamp   { return timestamppb.New(time.Now().Add(-24 * time.Hour)) }

func i32(n int32) *int32 { return proto.Int32(n) }
