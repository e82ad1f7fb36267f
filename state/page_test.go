package state

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func proposeGallery(t *testing.T, db *DB, tenant, name string) {
	t.Helper()
	c := NewCommand(time.Unix(1, 0))
	c.Op = &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: &pb.Gallery{Tenant: tenant, Name: name}}}
	if err := db.Propose(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func TestPage(t *testing.T) {
	db := openTemp(t)
	for i := range 25 {
		proposeGallery(t, db, "t", fmt.Sprintf("g%02d", i))
	}
	proposeGallery(t, db, "u", "other")
	page := func(token string, size int) (names []string, next string, err error) {
		err = db.View(context.Background(), func(tx *Tx) error {
			gs, n, err := Page(tx, Galleries, Prefix("t"), token, size, func(g *pb.Gallery) bool { return g.Name != "g13" })
			for _, g := range gs {
				names = append(names, g.Name)
			}
			next = n
			return err
		})
		return
	}
	var all []string
	token := ""
	for pages := 0; ; pages++ {
		names, next, err := page(token, 10)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, names...)
		if pages == 0 { // changes between pages: one added ahead, one removed behind
			proposeGallery(t, db, "t", "g99")
		}
		if next == "" {
			break
		}
		token = next
	}
	if len(all) != 25 || all[0] != "g00" || all[24] != "g99" {
		t.Fatalf("pages held %d galleries: %v", len(all), all)
	}
	if _, _, err := page("!!!", 10); !errs.Is(err, errs.InvalidArgument) || errs.FieldOf(err) != "pageToken" {
		t.Errorf("a malformed token: %v, want InvalidArgument on pageToken", err)
	}
	if _, err := PageSize(-1); !errs.Is(err, errs.InvalidArgument) {
		t.Error("a negative page size was accepted")
	}
	if n, _ := PageSize(5000); n != MaxPageSize {
		t.Errorf("page size 5000 became %d", n)
	}
}
