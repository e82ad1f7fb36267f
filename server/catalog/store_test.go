package catalog

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func TestOpenLockedFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmapp.db")
	s, err := Open(context.Background(), path, Options{Regions: []string{"eastus"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = Open(context.Background(), path, Options{Regions: []string{"eastus"}, OpenTimeout: 200 * time.Millisecond})
	if !errs.Is(err, errs.Unavailable) || !strings.Contains(err.Error(), "is another vmappd running with the same --data directory?") {
		t.Fatalf("second open: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second open took %v", d)
	}
}

func TestSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmapp.db")
	s, err := Open(context.Background(), path, Options{Regions: []string{"eastus"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateGallery(context.Background(), "t", &pb.Gallery{Name: "g", Location: "eastus"}); err != nil {
		t.Fatal(err)
	}
	var v uint64
	s.db.View(func(tx *bolt.Tx) error { v = schemaOf(tx); return nil })
	if v != SchemaVersion {
		t.Fatalf("schema = %d, want %d", v, SchemaVersion)
	}
	// Reopening keeps the data and the version.
	s.Close()
	s, err = Open(context.Background(), path, Options{Regions: []string{"eastus"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetGallery(context.Background(), "t", "g"); err != nil {
		t.Fatal(err)
	}
	// A file from a newer vmappd is refused, untouched.
	s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion+1))
	})
	s.Close()
	_, err = Open(context.Background(), path, Options{Regions: []string{"eastus"}})
	if err == nil || !strings.Contains(err.Error(), "is newer than this vmappd understands") {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

func TestVersionKeyOrder(t *testing.T) {
	a, _ := ParseVersion("1.9.0")
	b, _ := ParseVersion("1.10.0")
	c, _ := ParseVersion("2147483647.0.0")
	if !a.Less(b) || !(a.key() < b.key()) || !(b.key() < c.key()) {
		t.Fatalf("order: %s %s %s", a.key(), b.key(), c.key())
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.0.0", "01.0.0", "2147483648.0.0", "1.0", "-1.0.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		// A valid name round-trips and its key orders like the numbers.
		if got := fmt.Sprintf("%d.%d.%d", v[0], v[1], v[2]); got != s {
			t.Fatalf("%q parsed as %v", s, v)
		}
	})
}
