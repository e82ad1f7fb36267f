package state

import (
	"context"
	"testing"
	"time"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestWatchersBeforeApplied: a cluster's proposer returns once the file
// holds its command's log index (WaitApplied). The watchers — which drop
// cached goal states and credentials — must have run by then, or a read
// right after the answer could find the cache as it was.
func TestWatchersBeforeApplied(t *testing.T) {
	db := openTemp(t)
	seen := map[string]uint64{} // gallery -> the applied index its watcher saw
	db.Watch(func(c *statepb.Command) { seen[c.GetCreateGallery().GetGallery().GetName()] = db.AppliedIndex() })
	entry := func(index uint64, name string) Entry {
		c := NewCommand(time.Unix(1, 0))
		c.Op = &statepb.Command_CreateGallery{CreateGallery: &statepb.CreateGallery{Gallery: &pb.Gallery{Tenant: "t", Name: name}}}
		return Entry{Index: index, Term: 1, Cmd: c}
	}
	for _, err := range db.ApplyLogged([]Entry{entry(1, "a"), entry(2, "b")}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := db.WaitApplied(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if seen["a"] != 0 || seen["b"] != 0 || len(seen) != 2 {
		t.Fatalf("the watchers saw applied indexes %v: the index was published before they ran", seen)
	}
}
