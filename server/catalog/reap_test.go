package catalog

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// TestReapReadsWhatIsDeleted: the reaper reads the resources marked for
// deletion (an index), not every gallery, application and version. Among
// 20 or 2,000 versions, reaping one deleted version and an application
// deleted with its 3 versions reads the same records.
func TestReapReadsWhatIsDeleted(t *testing.T) {
	perReap := map[int]int64{}
	for _, n := range []int{20, 2000} {
		db, err := state.Open(filepath.Join(t.TempDir(), "vmapp.db"), state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		s := New(db, Options{Regions: []string{"eastus"}})
		propose := func(op func(c *statepb.Command)) error {
			c := state.NewCommand(time.Unix(1_800_000_000, 0))
			op(c)
			return db.Propose(context.Background(), c)
		}
		version := func(app, name string) error {
			return propose(func(c *statepb.Command) {
				c.Op = &statepb.Command_CreateVersion{CreateVersion: &statepb.CreateVersion{Version: &pb.GalleryApplicationVersion{
					Tenant: "t", Gallery: "g", Application: app, Name: name, ProvisioningState: pb.ProvisioningSucceeded}}}
			})
		}
		if err := propose(func(c *statepb.Command) {
			c.Op = &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: &pb.Gallery{Tenant: "t", Name: "g"}}}
		}); err != nil {
			t.Fatal(err)
		}
		for _, app := range []string{"big", "small"} {
			if err := propose(func(c *statepb.Command) {
				c.Op = &statepb.Command_CreateApplication{CreateApplication: &statepb.CreateApplication{Application: &pb.GalleryApplication{Tenant: "t", Gallery: "g", Name: app}}}
			}); err != nil {
				t.Fatal(err)
			}
		}
		var g errgroup.Group
		g.SetLimit(64)
		for i := range n {
			g.Go(func() error { return version("big", fmt.Sprintf("1.0.%d", i)) })
		}
		for i := range 3 {
			g.Go(func() error { return version("small", fmt.Sprintf("2.0.%d", i)) })
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if _, err := s.DeleteVersion(ctx, "t", "g", "big", "1.0.7", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := s.DeleteApplication(ctx, "t", "g", "small", "", true); err != nil {
			t.Fatal(err)
		}
		before := db.RecordsRead()
		if err := s.Reap(ctx); err != nil {
			t.Fatal(err)
		}
		perReap[n] = db.RecordsRead() - before
		if _, err := s.GetVersion(ctx, "t", "g", "big", "1.0.7"); err == nil {
			t.Fatalf("%d versions: 1.0.7 was not reaped", n)
		}
		if _, err := s.GetApplication(ctx, "t", "g", "small"); err == nil {
			t.Fatalf("%d versions: application small was not reaped", n)
		}
		if v, err := s.GetVersion(ctx, "t", "g", "big", "1.0.8"); err != nil || v.ProvisioningState != pb.ProvisioningSucceeded {
			t.Fatalf("%d versions: 1.0.8 is %v, %v", n, v, err)
		}
		before = db.RecordsRead()
		if err := s.Reap(ctx); err != nil {
			t.Fatal(err)
		}
		if idle := db.RecordsRead() - before; idle != 0 {
			t.Fatalf("%d versions: with nothing to reap, the reaper read %d records", n, idle)
		}
	}
	if perReap[20] != perReap[2000] || perReap[20] > 40 {
		t.Fatalf("records read to reap 4 versions and an application: %v (versions: records), want the same small number", perReap)
	}
	t.Logf("records read by the reaper: %v", perReap)
}
