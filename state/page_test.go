package state

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
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

// TestPageOver pages over two prefixes (a tenant's galleries, then
// another's), with changes between pages, and refuses tokens it didn't
// make.
func TestPageOver(t *testing.T) {
	db := openTemp(t)
	for i := range 5 {
		proposeGallery(t, db, "a", fmt.Sprintf("g%d", i))
		proposeGallery(t, db, "b", fmt.Sprintf("g%d", i))
	}
	proposeGallery(t, db, "c", "x")
	prefixes := [][]byte{Prefix("b"), Prefix("a")}
	page := func(token string, size int) (names []string, next string, err error) {
		err = db.View(context.Background(), func(tx *Tx) error {
			gs, n, err := PageOver(tx, Galleries, prefixes, token, size, nil)
			for _, g := range gs {
				names = append(names, g.Tenant+"/"+g.Name)
			}
			next = n
			return err
		})
		return
	}
	var all []string
	token := ""
	for pages := 0; ; pages++ {
		names, next, err := page(token, 3)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, names...)
		switch pages {
		case 0: // one removed behind, one added ahead in the same prefix and in the next
			removeGallery(t, db, "b", "g0")
			proposeGallery(t, db, "b", "g9")
			proposeGallery(t, db, "a", "g00")
		case 1: // the page ended at b's last: the next starts at a's first
			if next == "" || names[len(names)-1] != "b/g9" {
				t.Fatalf("second page %v, next %q", names, next)
			}
		}
		if next == "" {
			break
		}
		token = next
	}
	want := "b/g0 b/g1 b/g2 b/g3 b/g4 b/g9 a/g0 a/g00 a/g1 a/g2 a/g3 a/g4"
	if strings.Join(all, " ") != want {
		t.Fatalf("pages held %v, want %s", all, want)
	}
	_, next, _ := page("", 2)
	raw, _ := base64.RawURLEncoding.DecodeString(next)
	for name, bad := range map[string]string{
		"not base64":         "!!!",
		"words":              "not-a-token",
		"a checksum off":     base64.RawURLEncoding.EncodeToString(append(raw[:len(raw)-1], raw[len(raw)-1]^1)),
		"a prefix past them": pageToken([][]byte{nil, nil, nil}, 2, []byte("x")),
		"no key":             pageToken([][]byte{nil, nil}, 1, nil),
		"too short":          base64.RawURLEncoding.EncodeToString(raw[:3]),
	} {
		if _, _, err := page(bad, 2); !errs.Is(err, errs.InvalidArgument) || errs.FieldOf(err) != "pageToken" {
			t.Errorf("%s: %v, want InvalidArgument on pageToken", name, err)
		}
	}
}

func removeGallery(t *testing.T, db *DB, tenant, name string) {
	t.Helper()
	c := NewCommand(time.Unix(1, 0))
	c.Op = &statepb.Command_DeleteGallery{DeleteGallery: &statepb.DeleteGallery{Tenant: tenant, Name: name}}
	if err := db.Propose(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	c = NewCommand(time.Unix(1, 0))
	c.Op = &statepb.Command_RemoveDeleted{RemoveDeleted: &statepb.RemoveDeleted{Kind: statepb.RemoveDeleted_KIND_GALLERY, Resources: []*statepb.VersionRef{{Tenant: tenant, Gallery: name}}}}
	if err := db.Propose(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}
