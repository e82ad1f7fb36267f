package state

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	bolt "go.etcd.io/bbolt"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
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
	// Schema 4's indexes were built from the records, and hold what the
	// appliers would have written.
	checkDerived(t, db, "after the migration")
	counts := map[string]int{}
	db.View(context.Background(), func(tx *Tx) error {
		for _, b := range derivedBuckets {
			counts[b] = tx.tx.Bucket([]byte(b)).Stats().KeyN
		}
		return nil
	})
	for _, b := range []string{"machines_by_scaleset", "tokens_by_tenant", "inventory", "inventory_by_state", "inventory_by_app", "inventory_by_region"} {
		if counts[b] == 0 {
			t.Errorf("the migration left %s empty: %v", b, counts)
		}
	}
	if counts["tokens_by_tenant"] != len(golden.Buckets["auth_tokens"]) {
		t.Errorf("%d tokens indexed, %d stored", counts["tokens_by_tenant"], len(golden.Buckets["auth_tokens"]))
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

// TestMigrate3To4 takes a file the scenarios wrote, turns it into what a
// schema-3 vmappd left (no indexes, no inventory, no dirty marks), and
// opens it: the migration builds exactly what the appliers had written.
func TestMigrate3To4(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmapp.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	steps := append(scenario(), fleetScenario()[:13]...)
	for i, s := range steps {
		checkOutcome(t, i, s, db.Propose(context.Background(), command(i, s)))
	}
	db.Propose(context.Background(), command(len(steps), step{op: &statepb.Command_DeleteVersion{DeleteVersion: &statepb.DeleteVersion{Version: vref("2.0.0")}}}))
	db.Propose(context.Background(), command(len(steps)+1, step{op: &statepb.Command_ReconcileReplicas{ReconcileReplicas: &statepb.ReconcileReplicas{Add: []*statepb.Replica{replica("eastus", 0)}}}}))
	want := dump(t, db)
	db.Close()

	db = reopenAs(t, path, 3, append(derivedBuckets, "dirty_versions")...)
	defer db.Close()
	checkDerived(t, db, "after the migration")
	var marks []*statepb.DirtyMark
	db.View(context.Background(), func(tx *Tx) (err error) {
		marks, err = tx.DirtyVersions(nil, 100)
		return err
	})
	// What the dirty marks were is the replicator's first full pass's to
	// find again; everything else is as written.
	got := regexp.MustCompile(`(?m)^\[dirty_versions\]\n(".*\n)*`).ReplaceAll(dump(t, db), []byte("[dirty_versions]\n"))
	want = regexp.MustCompile(`(?m)^\[dirty_versions\]\n(".*\n)*`).ReplaceAll(want, []byte("[dirty_versions]\n"))
	if !bytes.Equal(got, want) || len(marks) != 0 {
		t.Fatalf("after the migration:\n%s\nwant\n%s\n(dirty marks %v)", got, want, marks)
	}
	var active int
	db.View(context.Background(), func(tx *Tx) error {
		active, _ = Replicas.Count(tx, nil, nil)
		return nil
	})
	if !bytes.Contains(got, []byte("[replicas_active]\n\"t")) || !bytes.Contains(got, []byte("[deleting_versions]\n\"t")) || active == 0 {
		t.Fatalf("the scenario left no active replica or deleted version to index:\n%s", got)
	}
}

// TestMigrate8To9 takes a file the scenarios wrote, with instances of
// scale sets that have applications of their own, turns it into what a
// schema-8 vmappd left (no machines_own_apps), and opens it: the
// migration indexes exactly the instances the appliers had indexed, and a
// change of the scale set's profile that didn't read them is refused.
func TestMigrate8To9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vmapp.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	steps := fleetScenario()
	last := 0
	for i, s := range steps { // up to the deletions
		if _, del := s.op.(*statepb.Command_DeleteMachine); del {
			break
		}
		checkOutcome(t, i, s, db.Propose(context.Background(), command(i, s)))
		last = i
	}
	want := dump(t, db)
	db.Close()
	if !bytes.Contains(want, []byte("[machines_own_apps]\n\"t")) {
		t.Fatalf("the scenario left no instance with applications of its own:\n%s", want)
	}

	db = reopenAs(t, path, 8, "machines_own_apps")
	defer db.Close()
	checkDerived(t, db, "after the migration")
	if got := dump(t, db); !bytes.Equal(got, want) {
		t.Fatalf("after the migration:\n%s\nwant\n%s", got, want)
	}
	stale := step{op: &statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{ScaleSet: "ss"}, Profile: &pb.ApplicationProfile{}}}}
	if err := db.Propose(context.Background(), command(last+1, stale)); !errs.Is(err, errs.Aborted) {
		t.Fatalf("a scale set's change that read none of its instances with applications: %v, want Aborted", err)
	}
}

// reopenAs turns the closed state file at path into what a vmappd of
// schema left, without the buckets that schema didn't have, and opens it
// (migrating it).
func reopenAs(t *testing.T, path string, schema uint64, missing ...string) *DB {
	t.Helper()
	b, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range missing {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint64(nil, schema))
	})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}
