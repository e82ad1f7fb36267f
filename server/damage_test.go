package server_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
)

// The tests of damaged replicas: rot on a MinIO disk (the files of an
// object flipped in place), found by repair.

func pkgKey(version string, i int32) string {
	return replicator.ObjectKey("default", "g", "a", version, pkg, i)
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
// labels.
func metric(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	mustOK(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.Metric {
			have := map[string]string{}
			for _, l := range m.Label {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
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
	data := f.publish("1.0.0", 2*testcluster.PartSize+10, tr("eastus", 3), tr("westus", 1), tr("northeurope", 2))
	f.waitState("1.0.0", "Completed")
	damage := func() float64 {
		return metric(t, f.reg, "vmapp_replica_damage_found_total", map[string]string{"check": "repair"})
	}

	f.rot("northeurope", "1.0.0", 0, "xl.meta", -64)
	f.minio["westus"][0].Stop(t)
	problems, unchecked, sound := f.repair("1.0.0", false)
	if len(problems) != 1 || !strings.Contains(problems["northeurope/0"], "its metadata can't be read (the store answers other requests)") ||
		len(unchecked) != 1 || unchecked["westus/0"] == "" || sound != 4 {
		t.Fatalf("repair found problems %v, unchecked %v, %d sound", problems, unchecked, sound)
	}
	t.Logf("northeurope/0: %s; westus/0 not checked: %s", problems["northeurope/0"], unchecked["westus/0"])
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
		len(unchecked) != 1 || unchecked["westus/0"] == "" || sound != 4 {
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
	if problems, unchecked, sound := f.repair("1.0.0", true); len(problems)+len(unchecked) != 0 || sound != 6 {
		t.Fatalf("deep repair of sound replicas: problems %v, unchecked %v, %d sound", problems, unchecked, sound)
	}
}
