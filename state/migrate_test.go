package state

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
)

// copyFile copies a committed state file into a temporary directory.
func copyFile(t *testing.T, from string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "vmapp.db")
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return to
}

// TestMigrateV2 opens the state file a schema-2 vmappd wrote and checks
// that every record it held reads back the same through the tables.
func TestMigrateV2(t *testing.T) {
	var golden struct {
		Buckets map[string]map[string]json.RawMessage
	}
	b, err := os.ReadFile("testdata/v2/records.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	db, err := Open(copyFile(t, "testdata/v2/vmapp.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tables := map[string]func(tx *Tx, k []byte) (proto.Message, bool, error){
		"galleries":     getter(Galleries),
		"applications":  getter(Applications),
		"versions":      getter(Versions),
		"uploads":       getter(Uploads),
		"manifests":     getter(Manifests),
		"replicas":      getter(Replicas),
		"auth_tokens":   getter(Tokens),
		"auth_shares":   getter(Shares),
		"machines":      getter(Machines),
		"scalesets":     getter(ScaleSets),
		"instanceviews": getter(InstanceViews),
	}
	records := 0
	err = db.View(context.Background(), func(tx *Tx) error {
		for bucket, want := range golden.Buckets {
			get := tables[bucket]
			for k64, wantJSON := range want {
				k, err := base64.RawURLEncoding.DecodeString(k64)
				if err != nil {
					t.Fatal(err)
				}
				records++
				if get == nil { // raw values: meta, auth_machines
					var v64 string
					json.Unmarshal(wantJSON, &v64)
					if bucket == "fleetmeta" || bucket == "meta" && string(k) == "schema" {
						continue // dropped; checked below
					}
					got := tx.tx.Bucket([]byte(bucket)).Get(k)
					if want, _ := base64.RawURLEncoding.DecodeString(v64); !bytes.Equal(got, want) {
						t.Errorf("%s %q: %q, want %q", bucket, k, got, want)
					}
					continue
				}
				m, ok, err := get(tx, k)
				if err != nil || !ok {
					t.Errorf("%s %q: found %v, %v", bucket, k, ok, err)
					continue
				}
				gotJSON, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
				if !jsonEqual(t, gotJSON, wantJSON) {
					t.Errorf("%s %q:\n got %s\nwant %s", bucket, k, gotJSON, wantJSON)
				}
			}
		}
		if tx.tx.Bucket([]byte("fleetmeta")) != nil {
			t.Error("the fleet's etag sequence is still there")
		}
		for _, b := range buckets {
			if tx.tx.Bucket(b) == nil {
				t.Errorf("bucket %s missing after the migration", b)
			}
		}
		if got := schemaOf(tx.tx); got != SchemaVersion {
			t.Errorf("schema %d, want %d", got, SchemaVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if records < 50 {
		t.Fatalf("only %d records compared: is the golden file complete?", records)
	}
}

func getter[M proto.Message](tb Table[M]) func(tx *Tx, k []byte) (proto.Message, bool, error) {
	return func(tx *Tx, k []byte) (proto.Message, bool, error) { return tb.Get(tx, k) }
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return bytes.Equal(ja, jb)
}

// TestNewerSchemaRefused: a file a newer vmappd wrote is not touched.
func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmapp.db")
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.Update(func(tx *bolt.Tx) error {
		m, _ := tx.CreateBucket(bucketMeta)
		return m.Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion+1))
	})
	b.Close()
	if _, err := Open(path, Options{}); err == nil || !bytes.Contains([]byte(err.Error()), []byte("newer than this vmappd understands")) {
		t.Fatalf("Open of a newer schema: %v", err)
	}
}

// TestLocked: a second opener of the same file gets Unavailable.
func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmapp.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = Open(path, Options{OpenTimeout: 50e6})
	if !errs.Is(err, errs.Unavailable) {
		t.Fatalf("second Open: %v, want Unavailable", err)
	}
}
