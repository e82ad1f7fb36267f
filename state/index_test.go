package state

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// derivedBuckets are the buckets wantDerived computes from the records.
var derivedBuckets = []string{"machines_by_scaleset", "tokens_by_tenant", "inventory", "inventory_by_state", "inventory_by_app",
	"inventory_by_region", "deleting_galleries", "deleting_applications", "deleting_versions", "replicas_active", "machines_own_apps"}

// wantDerived computes what the indexes and the inventory must hold, from
// the records they derive from and the layouts the package doc gives,
// independently of the appliers' code.
func wantDerived(t *testing.T, tx *Tx) map[string]map[string]string {
	t.Helper()
	w := map[string]map[string]string{}
	for _, b := range derivedBuckets {
		w[b] = map[string]string{}
	}
	j := func(parts ...string) string { return strings.Join(parts, "\x00") }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(Machines.Scan(tx, nil, nil, func(k []byte, m *pb.Machine) (bool, error) {
		if m.ScaleSet != "" {
			w["machines_by_scaleset"][j(m.Tenant, m.ScaleSet, m.Name)] = string(k)
		}
		if m.ScaleSet != "" && len(m.GetApplicationProfile().GetGalleryApplications()) > 0 {
			w["machines_own_apps"][j(m.Tenant, m.ScaleSet, m.Name)] = string(k)
		}
		return true, nil
	}))
	must(Tokens.Scan(tx, nil, nil, func(k []byte, c *statepb.Credential) (bool, error) {
		class := "api"
		if c.Token.Machine != "" {
			class = "machine"
		}
		w["tokens_by_tenant"][j(c.Token.Tenant, class, c.Token.Id)] = string(k)
		return true, nil
	}))
	deleting := func(bucket string) func(k []byte, m resource) (bool, error) {
		return func(k []byte, m resource) (bool, error) {
			if m.GetProvisioningState() == pb.ProvisioningDeleting {
				w[bucket][string(k)] = string(k)
			}
			return true, nil
		}
	}
	must(Galleries.Scan(tx, nil, nil, func(k []byte, g *pb.Gallery) (bool, error) { return deleting("deleting_galleries")(k, g) }))
	must(Applications.Scan(tx, nil, nil, func(k []byte, a *pb.GalleryApplication) (bool, error) { return deleting("deleting_applications")(k, a) }))
	must(Versions.Scan(tx, nil, nil, func(k []byte, v *pb.GalleryApplicationVersion) (bool, error) {
		return deleting("deleting_versions")(k, v)
	}))
	must(Replicas.Scan(tx, nil, nil, func(k []byte, r *statepb.Replica) (bool, error) {
		if r.Phase != statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
			w["replicas_active"][string(k)] = string(k)
		}
		return true, nil
	}))
	must(InstanceViews.Scan(tx, nil, nil, func(k []byte, iv *pb.InstanceView) (bool, error) {
		m, ok, err := Machines.Get(tx, k)
		if !ok || err != nil {
			return false, fmt.Errorf("instance view %q of no machine (%v)", k, err)
		}
		for _, s := range iv.Applications {
			ik := j(m.Tenant, m.Name, s.Application)
			e, _ := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.InventoryEntry{Machine: m.Name, Region: m.Region, ScaleSet: m.ScaleSet, Status: s})
			w["inventory"][ik] = string(e)
			w["inventory_by_state"][j(m.Tenant, strings.ToLower(s.State), m.Name, s.Application)] = ik
			w["inventory_by_app"][j(m.Tenant, s.Application[strings.LastIndex(s.Application, "/")+1:], m.Name, s.Application)] = ik
			w["inventory_by_region"][j(m.Tenant, m.Region, m.Name, s.Application)] = ik
		}
		return true, nil
	}))
	return w
}

// checkDerived fails the test unless every index and the inventory hold
// exactly what the records imply.
func checkDerived(t *testing.T, db *DB, when string) {
	t.Helper()
	err := db.View(context.Background(), func(tx *Tx) error {
		for b, want := range wantDerived(t, tx) {
			got := map[string]string{}
			tx.tx.Bucket([]byte(b)).ForEach(func(k, v []byte) error {
				got[string(k)] = string(v)
				return nil
			})
			if !maps.Equal(got, want) {
				t.Errorf("%s: %s holds\n  %q\nwant\n  %q", when, b, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fleetScenario exercises the inventory and the fleet's indexes: scale
// sets and machines, reports that change states and applications, a
// machine's second credential, deletions.
func fleetScenario() []step {
	machine := func(name, ss, region string) *pb.Machine {
		return &pb.Machine{Tenant: "t", Name: name, Region: region, OsType: "Linux", ScaleSet: ss}
	}
	report := func(m string, apps ...string) step { // apps: application=state pairs
		iv := &pb.InstanceView{}
		for _, a := range apps {
			name, st, _ := strings.Cut(a, "=")
			iv.Applications = append(iv.Applications, &pb.ApplicationStatus{Application: name, State: st, Version: "1.0.0"})
		}
		return ok(&statepb.Command_ReportStatus{ReportStatus: &statepb.ReportStatus{Tenant: "t", Machine: m, InstanceView: iv}})
	}
	own := []*pb.VMGalleryApplication{{PackageReferenceId: "g/tools/1.0.0"}}
	withOwn := func(m *pb.Machine) *pb.Machine {
		m.ApplicationProfile = &pb.ApplicationProfile{GalleryApplications: own}
		return m
	}
	return []step{
		ok(&statepb.Command_CreateScaleSet{CreateScaleSet: &statepb.CreateScaleSet{ScaleSet: &pb.ScaleSet{Tenant: "t", Name: "ss", Region: "eastus", OsType: "Linux"}}}),
		ok(&statepb.Command_CreateScaleSet{CreateScaleSet: &statepb.CreateScaleSet{ScaleSet: &pb.ScaleSet{Tenant: "u", Name: "ss", Region: "eastus", OsType: "Linux"}}}),
		ok(&statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: machine("ss-0", "ss", "eastus"), Credential: cred("tok_s0", "ss-0")}}),
		ok(&statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: machine("ss-1", "ss", "eastus"), Credential: cred("tok_s1", "ss-1")}}),
		ok(&statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: &pb.Machine{Tenant: "u", Name: "ss-0", Region: "eastus", OsType: "Linux", ScaleSet: "ss"}}}),
		ok(&statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: machine("alone", "", "westus"), Credential: cred("tok_al", "alone")}}),
		no(errs.AlreadyExists, &statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: machine("alone", "ss", "eastus")}}),
		ok(&statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: &statepb.Credential{Token: &pb.Token{Id: "tok_op", Tenant: "*", Role: pb.Role_ROLE_OWNER}}}}),
		ok(&statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: cred("tok_s0b", "ss-0")}}),
		report("ss-0", "g/a=Installed", "h/a=Failed", "g/tools=Installing"),
		report("ss-1", "g/a=Failed"),
		report("alone", "other:g/a=installed"),
		report("ss-0", "g/a=Failed", "g/tools=Installed"), // a state changed, an application gone
		no(errs.NotFound, &statepb.Command_ReportStatus{ReportStatus: &statepb.ReportStatus{Tenant: "t", Machine: "ghost", InstanceView: &pb.InstanceView{Applications: []*pb.ApplicationStatus{{Application: "g/a", State: "Failed"}}}}}),
		report("alone"),
		report("alone", "g/a=Removing"),
		// Instances with applications of their own: by their profile, at
		// creation, and a scale set's change that didn't read one refused.
		ok(&statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{Machine: "ss-0"}, Profile: &pb.ApplicationProfile{GalleryApplications: own}}}),
		no(errs.Aborted, &statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{ScaleSet: "ss"}, Profile: &pb.ApplicationProfile{}}}),
		ok(&statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{Machine: "ss-0"}, Profile: &pb.ApplicationProfile{}}}),
		ok(&statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{ScaleSet: "ss"}, Profile: &pb.ApplicationProfile{}}}),
		ok(&statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{Machine: "alone"}, Profile: &pb.ApplicationProfile{GalleryApplications: own}}}), // no scale set: not indexed
		ok(&statepb.Command_CreateMachine{CreateMachine: &statepb.CreateMachine{Machine: withOwn(machine("ss-2", "ss", "eastus"))}}),
		ok(&statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: "t", Target: &statepb.ProfileEtag{Machine: "ss-0"}, Profile: &pb.ApplicationProfile{GalleryApplications: own}}}),
		ok(&statepb.Command_DeleteMachine{DeleteMachine: &statepb.DeleteMachine{Tenant: "t", Name: "ss-1"}}),
		ok(&statepb.Command_DeleteScaleSet{DeleteScaleSet: &statepb.DeleteScaleSet{Tenant: "t", Name: "ss", Cascade: true}}),
		ok(&statepb.Command_DeleteMachine{DeleteMachine: &statepb.DeleteMachine{Tenant: "t", Name: "alone"}}),
	}
}

// TestIndexesFollowCommands applies every command of the scenarios one at
// a time and checks, after each, that the indexes and the inventory hold
// exactly what the records imply (a refused command changing none).
func TestIndexesFollowCommands(t *testing.T) {
	db := openTemp(t)
	steps := append(scenario(), fleetScenario()...)
	for i, s := range steps {
		c := command(i, s)
		err := db.Propose(context.Background(), c)
		checkOutcome(t, i, s, err)
		checkDerived(t, db, fmt.Sprintf("after step %d (%T)", i, s.op))
	}
	// The fleet scenario's machines are gone with their entries; the
	// other tenant's machine is still indexed in its scale set.
	db.View(context.Background(), func(tx *Tx) error {
		if n, _ := Inventory.Count(tx, nil, nil); n != 0 {
			t.Errorf("%d inventory entries left", n)
		}
		if ms, err := tx.Instances("u", "ss"); err != nil || len(ms) != 1 || ms[0].Name != "ss-0" {
			t.Errorf("instances of u/ss: %v, %v", ms, err)
		}
		return nil
	})
}

// TestInventoryIndexes checks what each index finds, mid-scenario.
func TestInventoryIndexes(t *testing.T) {
	db := openTemp(t)
	steps := fleetScenario()[:13]
	for i, s := range steps {
		checkOutcome(t, i, s, db.Propose(context.Background(), command(i, s)))
	}
	list := func(s Scanner[*pb.InventoryEntry], prefix []byte) []string {
		var out []string
		db.View(context.Background(), func(tx *Tx) error {
			es, _, err := Page(tx, s, prefix, "", 100, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				out = append(out, e.Machine+" "+e.Status.Application+" "+e.Status.State)
			}
			return nil
		})
		return out
	}
	for _, c := range []struct {
		name   string
		s      Scanner[*pb.InventoryEntry]
		prefix []byte
		want   []string
	}{
		{"all", Inventory, Prefix("t"), []string{"alone other:g/a installed", "ss-0 g/a Failed", "ss-0 g/tools Installed", "ss-1 g/a Failed"}},
		{"failed", InventoryByState, Prefix("t", InventoryState("FAILED")), []string{"ss-0 g/a Failed", "ss-1 g/a Failed"}},
		{"installed, any case", InventoryByState, Prefix("t", InventoryState("Installed")), []string{"alone other:g/a installed", "ss-0 g/tools Installed"}},
		{"application a of any gallery", InventoryByApp, Prefix("t", InventoryAppName("g/a")), []string{"alone other:g/a installed", "ss-0 g/a Failed", "ss-1 g/a Failed"}},
		{"westus", InventoryByRegion, Prefix("t", "westus"), []string{"alone other:g/a installed"}},
		{"another tenant", Inventory, Prefix("u"), nil},
	} {
		if got := list(c.s, c.prefix); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestDirtyMarks: the commands that change what a version's replica
// records should be mark it; a reconcile clears the marks it read, and
// not one set again since.
func TestDirtyMarks(t *testing.T) {
	db := openTemp(t)
	marks := func() map[string]string {
		out := map[string]string{}
		db.View(context.Background(), func(tx *Tx) error {
			ms, err := tx.DirtyVersions(nil, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				out[m.Version.Version] = m.Mark
			}
			return nil
		})
		return out
	}
	steps := scenario()
	for i, s := range steps[:15] { // up to FinishUpload of 1.0.0
		checkOutcome(t, i, s, db.Propose(context.Background(), command(i, s)))
	}
	if got := marks(); !maps.Equal(got, map[string]string{"1.0.0": `"e14"`}) {
		t.Fatalf("after the upload: %v", got)
	}
	read := marks()["1.0.0"]
	propose := func(i int, op any) {
		t.Helper()
		if err := db.Propose(context.Background(), command(i, step{op: op})); err != nil {
			t.Fatal(err)
		}
	}
	propose(100, &statepb.Command_UpdateVersion{UpdateVersion: &statepb.UpdateVersion{Version: version("1.0.0", "eastus")}})
	propose(101, &statepb.Command_DeleteVersion{DeleteVersion: &statepb.DeleteVersion{Version: vref("1.10.0")}})
	if got := marks(); !maps.Equal(got, map[string]string{"1.0.0": `"e100"`, "1.10.0": `"e101"`}) {
		t.Fatalf("after an update and a delete: %v", got)
	}
	// A reconcile that read 1.0.0 before its update leaves it marked.
	stale := []*statepb.DirtyMark{{Version: vref("1.0.0"), Mark: read}, {Version: vref("1.10.0"), Mark: `"e101"`}}
	propose(102, &statepb.Command_ReconcileReplicas{ReconcileReplicas: &statepb.ReconcileReplicas{Reconciled: stale}})
	if got := marks(); !maps.Equal(got, map[string]string{"1.0.0": `"e100"`}) {
		t.Fatalf("after a reconcile of what it read: %v", got)
	}
	propose(103, &statepb.Command_ReconcileReplicas{ReconcileReplicas: &statepb.ReconcileReplicas{Reconciled: []*statepb.DirtyMark{{Version: vref("1.0.0"), Mark: `"e100"`}}}})
	propose(104, &statepb.Command_ReconcileReplicas{ReconcileReplicas: &statepb.ReconcileReplicas{Add: []*statepb.Replica{replica("eastus", 0)}}})
	if got := marks(); len(got) != 0 {
		t.Fatalf("after reconciling everything: %v", got)
	}
	propose(105, &statepb.Command_ReplicaRemoved{ReplicaRemoved: &statepb.ReplicaRemoved{Replica: rref("eastus", 0)}})
	propose(106, &statepb.Command_RemoveVersion{RemoveVersion: &statepb.RemoveVersion{Version: vref("1.10.0")}})
	if got := marks(); !maps.Equal(got, map[string]string{"1.0.0": `"e105"`, "1.10.0": `"e106"`}) {
		t.Fatalf("after a replica's and a version's removal: %v", got)
	}
	// Paged in key order (as written: 1.0.0 before 1.10.0).
	db.View(context.Background(), func(tx *Tx) error {
		first, _ := tx.DirtyVersions(nil, 1)
		rest, _ := tx.DirtyVersions(first[0].Version, 10)
		if len(first) != 1 || first[0].Version.Version != "1.0.0" || len(rest) != 1 || rest[0].Version.Version != "1.10.0" {
			t.Errorf("pages %v then %v", first, rest)
		}
		return nil
	})
}

// TestRecordsRead counts what reads decode.
func TestRecordsRead(t *testing.T) {
	db := openTemp(t)
	for i := range 10 {
		proposeGallery(t, db, "t", fmt.Sprintf("g%d", i))
	}
	before := db.RecordsRead()
	db.View(context.Background(), func(tx *Tx) error {
		Galleries.Get(tx, GalleryKey("t", "g3"))
		Page(tx, Galleries, Prefix("t"), "", 4, nil)
		return nil
	})
	// One Get, and a page of 4 reads a fifth record to know there is more.
	if got := db.RecordsRead() - before; got != 6 {
		t.Fatalf("%d records read, want 6", got)
	}
}

// TestInventoryCounts counts entries by region and state mid-scenario,
// across tenants, after a report changed states and dropped an
// application, and again once machines are deleted.
func TestInventoryCounts(t *testing.T) {
	db := openTemp(t)
	steps := fleetScenario()
	counts := func() map[RegionState]int {
		var c map[RegionState]int
		if err := db.View(context.Background(), func(tx *Tx) (err error) {
			c, err = InventoryCounts(tx)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for i, s := range steps[:13] {
		checkOutcome(t, i, s, db.Propose(context.Background(), command(i, s)))
	}
	want := map[RegionState]int{{"eastus", "failed"}: 2, {"eastus", "installed"}: 1, {"westus", "installed"}: 1}
	if got := counts(); !maps.Equal(got, want) {
		t.Errorf("counts: %v, want %v", got, want)
	}
	for i, s := range steps[13:] {
		checkOutcome(t, 13+i, s, db.Propose(context.Background(), command(13+i, s)))
	}
	if got := counts(); len(got) != 0 {
		t.Errorf("counts once every machine is gone: %v", got)
	}
}
