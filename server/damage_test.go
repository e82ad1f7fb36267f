package server_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmapp/vmapp/internal/testkit/metricstest"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
)

// The tests of damaged replicas: rot on a MinIO disk (the files of an
// object flipped in place), found by repair, the deep scrub and the
// downloaders' reports.

func pkgKey(version string, i int32) string {
	return blob.ReplicaKey("default", "g", "a", version, pkg, i)
}

// rot flips bytes of replica i of version's package in region, in its
// files on disk named file... ("part." or "xl.meta"), at off (from the end
// when negative).
func (f *fleet) rot(region, version string, i int32, file string, off int64) {
	f.t.Helper()
	m := f.minio[region][int(i)%len(f.minio[region])]
	if m.Rot(f.t, f.bucket[region], pkgKey(version, i), file, off) == 0 {
		f.t.Fatalf("no %s* file of replica %d in %s under %s", file, i, region, m.DataDir)
	}
}

// sound checks that replica i in region holds data.
func (f *fleet) sound(region, version string, i int, data []byte) {
	f.t.Helper()
	if b, err := f.replica(region, version, i); err != nil || !bytes.Equal(b, data) {
		f.t.Fatalf("%s replica %d: %d bytes (want %d), %v", region, i, len(b), len(data), err)
	}
}

// repair runs RepairVersion and returns what it found, as "region/replica"
// -> problem, for problems and replicas not checked.
func (f *fleet) repair(version string, deep bool) (problems, unchecked map[string]string, sound int32) {
	f.t.Helper()
	r, err := replicationClient(f).RepairVersion(ctx(f.t), &pb.RepairVersionRequest{Gallery: "g", Application: "a", Version: version, Deep: deep})
	mustOK(f.t, err)
	byReplica := func(ps []*pb.ReplicaProblem) map[string]string {
		out := map[string]string{}
		for _, p := range ps {
			out[fmt.Sprintf("%s/%d", p.Region, p.Replica)] = p.Problem
		}
		return out
	}
	return byReplica(r.Problems), byReplica(r.Unchecked), r.ReplicasChecked
}

// metric sums the samples of a counter or gauge whose labels include
// labels (for a histogram, its observations' count).
func metric(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return metricstest.Value(t, reg, name, labels)
}

// series reports whether reg has a series of name with exactly labels.
func series(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) bool {
	t.Helper()
	mfs, err := reg.Gather()
	mustOK(t, err)
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			if mf.GetName() == name && maps.Equal(have, labels) {
				return true
			}
		}
	}
	return false
}

// TestRepairUnreadable: replicas MinIO refuses to serve — their metadata
// rotted (500 on every request, a delete too), their data rotted at its
// start (a GET cut short; 503 "Resource requested is unreadable" without a
// range) — are found by repair while MinIO answers other requests, deleted
// and copied again. A store that is down holds replicas that can't be
// checked: they are listed, nothing is deleted, and the others are checked
// all the same.
func TestRepairUnreadable(t *testing.T) {
	f := newFleet(t, replicator.Options{})
	data := f.publish("1.0.0", 2*testcluster.PartSize+10, tr("eastus", 3), tr("westus", 2), tr("northeurope", 2))
	f.waitState("1.0.0", "Completed")
	damage := func() float64 {
		return metric(t, f.reg, "vmapp_replica_damage_found_total", map[string]string{"check": "repair"})
	}

	f.rot("northeurope", "1.0.0", 0, "xl.meta", -64)
	f.minio["westus"][0].Stop(t)
	problems, unchecked, sound := f.repair("1.0.0", false)
	// Both westus replicas are on its one store: the second isn't tried
	// once the first found it down.
	if len(problems) != 1 || !strings.Contains(problems["northeurope/0"], "its metadata can't be read (the store answers other requests)") ||
		len(unchecked) != 2 || !strings.Contains(unchecked["westus/0"], "connection refused") ||
		!strings.HasPrefix(unchecked["westus/1"], "its store did not answer for g/a/1.0.0 package replica 0: ") || sound != 4 {
		t.Fatalf("repair found problems %v, unchecked %v, %d sound", problems, unchecked, sound)
	}
	t.Logf("northeurope/0: %s; westus/0 not checked: %s; westus/1: %s", problems["northeurope/0"], unchecked["westus/0"], unchecked["westus/1"])
	f.waitState("1.0.0", "Completed")
	f.sound("northeurope", "1.0.0", 0, data)

	// Data rotted at its start: MinIO describes the object but won't
	// serve its bytes; only a deep repair reads them.
	f.rot("eastus", "1.0.0", 1, "part.1", 100)
	if problems, _, sound := f.repair("1.0.0", false); len(problems) != 0 || sound != 5 {
		t.Fatalf("a shallow repair found %v, %d sound", problems, sound)
	}
	problems, unchecked, sound = f.repair("1.0.0", true)
	if len(problems) != 1 || !strings.Contains(problems["eastus/1"], "piece 0 can't be read (the store answers other requests)") ||
		len(unchecked) != 2 || sound != 4 {
		t.Fatalf("deep repair found problems %v, unchecked %v, %d sound", problems, unchecked, sound)
	}
	t.Logf("eastus/1: %s", problems["eastus/1"])
	f.waitState("1.0.0", "Completed")
	f.sound("eastus", "1.0.0", 1, data)
	if n := damage(); n != 2 {
		t.Fatalf("vmapp_replica_damage_found_total{check=repair} is %v, want 2", n)
	}
	if n := metric(t, f.reg, "vmapp_replicas_repaired_total", nil); n != 2 {
		t.Fatalf("vmapp_replicas_repaired_total is %v, want 2", n)
	}

	// A small package, rotted in its only block.
	small := f.publish("1.0.1", 1000, tr("eastus", 1), tr("northeurope", 2))
	f.waitState("1.0.1", "Completed")
	f.rot("northeurope", "1.0.1", 1, "part.1", 100)
	problems, unchecked, sound = f.repair("1.0.1", true)
	if len(problems) != 1 || !strings.Contains(problems["northeurope/1"], "piece 0 can't be read (the store answers other requests)") || len(unchecked) != 0 || sound != 2 {
		t.Fatalf("deep repair of a small package found problems %v, unchecked %v, %d sound", problems, unchecked, sound)
	}
	t.Logf("northeurope/1 of 1.0.1: %s", problems["northeurope/1"])
	f.waitState("1.0.1", "Completed")
	f.sound("northeurope", "1.0.1", 1, small)
	if n := damage(); n != 3 {
		t.Fatalf("vmapp_replica_damage_found_total{check=repair} is %v, want 3", n)
	}

	// The replica on the store that was down is untouched.
	f.minio["westus"][0].Restart(t)
	f.sound("westus", "1.0.0", 0, data)
	f.sound("westus", "1.0.0", 1, data)
	if problems, unchecked, sound := f.repair("1.0.0", true); len(problems)+len(unchecked) != 0 || sound != 7 {
		t.Fatalf("deep repair of sound replicas: problems %v, unchecked %v, %d sound", problems, unchecked, sound)
	}
}

// waitMetric waits until metric reaches at least want.
func (f *fleet) waitMetric(name string, labels map[string]string, want float64) {
	f.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for metric(f.t, f.reg, name, labels) < want {
		if time.Now().After(deadline) {
			f.t.Fatalf("%s%v never reached %v (it is %v)", name, labels, want, metric(f.t, f.reg, name, labels))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDeepScrub: bit rot inside a replica's data, which its size and ETag
// don't show, is found by the deep scrub alone (no repair asked for), and
// the replica is copied again. The metrics count the bytes read back sound,
// the damage found and the repair.
func TestDeepScrub(t *testing.T) {
	f := newFleet(t, replicator.Options{DeepScrubPeriod: time.Second, DeepScrubRate: 200e6})
	data := f.publish("1.0.0", 2*testcluster.PartSize+10, tr("eastus", 2), tr("northeurope", 1))
	f.waitState("1.0.0", "Completed")
	f.rot("eastus", "1.0.0", 1, "part.2", 3<<20)

	eastus := map[string]string{"region": "eastus"}
	f.waitMetric("vmapp_replicas_repaired_total", eastus, 1)
	f.sound("eastus", "1.0.0", 1, data)
	if n := metric(t, f.reg, "vmapp_replica_damage_found_total", map[string]string{"region": "eastus", "check": "deep_scrub"}); n != 1 {
		t.Fatalf("vmapp_replica_damage_found_total{region=eastus,check=deep_scrub} is %v, want 1", n)
	}
	if n := metric(t, f.reg, "vmapp_replica_damage_found_total", nil); n != 1 {
		t.Fatalf("vmapp_replica_damage_found_total is %v in all, want 1", n)
	}
	// Every replica is read back in turn: the sound ones too.
	for _, region := range []string{"eastus", "northeurope"} {
		f.waitMetric("vmapp_replica_verified_bytes_total", map[string]string{"region": region, "check": "deep_scrub"}, float64(len(data)))
	}
	if s := f.get("1.0.0").ReplicationStatus.GetAggregatedState(); s != "Completed" {
		t.Fatalf("replication is %s after the deep scrub's repair", s)
	}
}

// report sends ReportReplicaDamage for replica i of g/a/version's package in
// region.
func (f *fleet) report(version, region string, i int32, piece int64) (*pb.ReportReplicaDamageResponse, error) {
	return downloadClient(f).ReportReplicaDamage(ctx(f.t), &pb.ReportReplicaDamageRequest{
		Gallery: "g", Application: "a", Version: version, Kind: pkg, Region: region, Replica: i, Piece: piece,
		Problem: "piece has the wrong sha256",
	})
}

// TestReportReplicaDamage: vmappd verifies a downloader's report of a bad
// piece by reading that piece itself. A false report changes nothing, and
// the same piece isn't read again for a while however many report it; a
// true one sends the replica to be copied again, and the region keeps
// serving from its other replicas meanwhile. Bad reports are refused,
// naming the field.
func TestReportReplicaDamage(t *testing.T) {
	f := newFleet(t, replicator.Options{})
	data := f.publish("1.0.0", 3*testcluster.PartSize+10, tr("eastus", 2), tr("westus", 1))
	f.waitState("1.0.0", "Completed")
	stat := func(region string, i int32) minio.ObjectInfo {
		t.Helper()
		info, err := f.minio[region][int(i)%len(f.minio[region])].Client(t).StatObject(context.Background(), f.bucket[region], pkgKey("1.0.0", i), minio.StatObjectOptions{})
		mustOK(t, err)
		return info
	}
	verified := func() float64 {
		return metric(t, f.reg, "vmapp_replica_verified_bytes_total", map[string]string{"check": "report"})
	}

	// A false report: the piece is read, found sound, nothing changes.
	before := stat("eastus", 0)
	r, err := f.report("1.0.0", "eastus", 0, 1)
	mustOK(t, err)
	if r.Verdict != pb.ReplicaVerdict_REPLICA_VERDICT_SOUND || verified() != testcluster.PartSize {
		t.Fatalf("a false report: %v; %v bytes read", r, verified())
	}
	// Ten more of the same piece, at once: none reads it again.
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			r, err := f.report("1.0.0", "eastus", 0, 1)
			if err != nil || r.Verdict != pb.ReplicaVerdict_REPLICA_VERDICT_RECENTLY_VERIFIED {
				t.Errorf("a report of a piece just found sound: %v, %v", r, err)
			}
		})
	}
	wg.Wait()
	// Of another piece, at once: read once (the last, 10 bytes).
	for range 10 {
		wg.Go(func() {
			r, err := f.report("1.0.0", "eastus", 0, 3)
			if err != nil || (r.Verdict != pb.ReplicaVerdict_REPLICA_VERDICT_SOUND && r.Verdict != pb.ReplicaVerdict_REPLICA_VERDICT_RECENTLY_VERIFIED) {
				t.Errorf("reports of a sound piece at once: %v, %v", r, err)
			}
		})
	}
	wg.Wait()
	if verified() != testcluster.PartSize+10 {
		t.Fatalf("%v bytes read for reports of two pieces (%d bytes)", verified(), testcluster.PartSize+10)
	}
	if after := stat("eastus", 0); after.ETag != before.ETag || !after.LastModified.Equal(before.LastModified) || f.get("1.0.0").ReplicationStatus.AggregatedState != "Completed" {
		t.Fatalf("a false report changed the replica: %v -> %v, %v", before, after, f.get("1.0.0").ReplicationStatus)
	}

	// A true report: piece 2 of eastus replica 1 rotted.
	f.rot("eastus", "1.0.0", 1, "part.3", 3<<20)
	r, err = f.report("1.0.0", "eastus", 1, 2)
	mustOK(t, err)
	if r.Verdict != pb.ReplicaVerdict_REPLICA_VERDICT_DAMAGED || !strings.Contains(r.Detail, "piece 2") {
		t.Fatalf("a true report: %v", r)
	}
	t.Logf("verdict: %s", r.Detail)
	// The region serves from its other replica while this one is copied
	// again (TestServing has the cases).
	_, err = downloadClient(f).GetDownloadPlan(ctx(t), &pb.GetDownloadPlanRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, Region: "eastus"})
	mustOK(t, err)
	f.waitMetric("vmapp_replicas_repaired_total", map[string]string{"region": "eastus"}, 1)
	f.sound("eastus", "1.0.0", 1, data)
	if n := metric(t, f.reg, "vmapp_replica_damage_found_total", map[string]string{"region": "eastus", "check": "report"}); n != 1 {
		t.Fatalf("vmapp_replica_damage_found_total{check=report} is %v, want 1", n)
	}
	// Reports that shared a reading count as sound: 21 found the pieces
	// sound (read or not), one damaged.
	reports := func(verdict string) float64 {
		return metric(t, f.reg, "vmapp_replica_damage_reports_total", map[string]string{"verdict": verdict})
	}
	if reports("sound")+reports("recently_verified") != 21 || reports("sound") < 2 || reports("damaged") != 1 {
		t.Errorf("vmapp_replica_damage_reports_total: sound %v, recently_verified %v, damaged %v", reports("sound"), reports("recently_verified"), reports("damaged"))
	}

	for _, c := range []struct {
		name  string
		req   *pb.ReportReplicaDamageRequest
		code  codes.Code
		field string
	}{
		{"unknown region", &pb.ReportReplicaDamageRequest{Region: "mars"}, codes.InvalidArgument, "region 'mars' is not one of"},
		{"not a target region", &pb.ReportReplicaDamageRequest{Region: "northeurope"}, codes.InvalidArgument, "has no replicas in region 'northeurope'"},
		{"replica past the count", &pb.ReportReplicaDamageRequest{Region: "eastus", Replica: 2}, codes.InvalidArgument, "has 2 replicas in eastus (0..1), not replica 2"},
		{"negative replica", &pb.ReportReplicaDamageRequest{Region: "eastus", Replica: -1}, codes.InvalidArgument, "replica -1 must not be negative"},
		{"negative piece", &pb.ReportReplicaDamageRequest{Region: "eastus", Piece: -1}, codes.InvalidArgument, "piece -1 must not be negative"},
		{"piece past the end", &pb.ReportReplicaDamageRequest{Region: "eastus", Piece: 4}, codes.InvalidArgument, "has 4 pieces (0..3), not piece 4"},
		{"no kind", &pb.ReportReplicaDamageRequest{Region: "eastus", Kind: -1}, codes.InvalidArgument, "kind must be"},
		{"no configuration", &pb.ReportReplicaDamageRequest{Region: "eastus", Kind: conf}, codes.FailedPrecondition, "has no default configuration"},
		{"problem too long", &pb.ReportReplicaDamageRequest{Region: "eastus", Problem: strings.Repeat("x", 1025)}, codes.InvalidArgument, "problem must be UTF-8 text of at most 1024 bytes"},
		{"unknown version", &pb.ReportReplicaDamageRequest{Version: "9.9.9", Region: "eastus"}, codes.NotFound, "9.9.9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := c.req
			req.Gallery, req.Application = "g", "a"
			if req.Version == "" {
				req.Version = "1.0.0"
			}
			if req.Kind == 0 {
				req.Kind = pkg
			} else if req.Kind < 0 {
				req.Kind = 0
			}
			_, err := downloadClient(f).ReportReplicaDamage(ctx(t), req)
			wantErr(t, err, c.code, c.field)
		})
	}
}
