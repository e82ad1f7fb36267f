package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// partition cuts the nodes of side from the others: every proxy in front
// of a node refuses (and cuts) the connections of the nodes across.
func (vc *vcluster) partition(side ...*cnode) {
	in := map[*cnode]bool{}
	for _, n := range side {
		in[n] = true
	}
	for _, n := range vc.nodes {
		var across []string
		for _, o := range vc.nodes {
			if in[o] != in[n] {
				across = append(across, o.ip)
			}
		}
		n.apiProxy.block(across...)
		n.raftProxy.block(across...)
	}
}

// heal lets every node reach every other again.
func (vc *vcluster) heal() {
	for _, n := range vc.nodes {
		n.apiProxy.unblock()
		n.raftProxy.unblock()
	}
}

// updateGallery sets g's description through c when its etag is etag.
func updateGallery(c *client.Client, etag, description string) (*pb.Gallery, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.Catalog.UpdateGallery(ctx, &pb.UpdateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Description: description},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}, IfMatch: etag})
	return r.GetGallery(), err
}

// TestClusterPartition cuts the leader off from the other two nodes
// (proxies between the nodes' raft and gRPC addresses refuse each other's
// connections): two updates of one gallery with the same etag, one on
// either side, never both succeed; the old leader refuses writes with
// Unavailable naming the leader it last knew, and reports NOT_SERVING;
// the majority elects a new leader and takes writes; healed, the old
// leader catches up and holds the majority's state.
func TestClusterPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three vmappd processes")
	}
	vc := startCluster(t, regionsYAML, clusterOpts{nodes: 3, proxied: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cr, err := vc.c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "eastus"}})
	if err != nil {
		t.Fatal(err)
	}
	g := cr.Gallery
	old := vc.leader(vc.nodes...)
	var rest []*cnode
	for _, n := range vc.nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	majority := vc.client(t, rest...)

	vc.partition(old)
	type outcome struct {
		side string
		g    *pb.Gallery
		err  error
	}
	outcomes := make([]outcome, 2)
	var wg sync.WaitGroup
	for i, side := range []struct {
		name string
		c    *client.Client
	}{{"minority (" + old.id + ")", old.c}, {"majority", majority}} {
		wg.Go(func() {
			// Each side retries while it has no leader (the majority
			// elects one meanwhile).
			deadline := time.Now().Add(30 * time.Second)
			r, err := updateGallery(side.c, g.Etag, "from the "+side.name)
			for errs.Is(err, errs.Unavailable) && time.Now().Before(deadline) {
				r, err = updateGallery(side.c, g.Etag, "from the "+side.name)
			}
			outcomes[i] = outcome{side.name, r, err}
		})
	}
	wg.Wait()
	succeeded := 0
	for _, o := range outcomes {
		t.Logf("update with etag %s through the %s: %v", g.Etag, o.side, o.err)
		if o.err == nil {
			succeeded++
		}
	}
	if succeeded > 1 {
		t.Fatalf("two updates with the same etag both succeeded: %v", outcomes)
	}
	if outcomes[0].err == nil || outcomes[1].err != nil {
		t.Fatalf("the update through the cut-off old leader succeeded, or the majority's failed: %v", outcomes)
	}

	newLeader := vc.leader(rest...)
	if newLeader == old {
		t.Fatalf("the majority kept %s, cut off, as its leader", old.id)
	}
	if _, err := majority.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "during", Location: "eastus"}}); err != nil {
		t.Fatalf("a write on the majority's side: %v", err)
	}
	var refusal error
	vc.eventually(old.id+" refuses writes", func() bool {
		_, refusal = old.c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "minority", Location: "eastus"}})
		return refusal != nil
	})
	t.Logf("a write on %s, cut off: %v", old.id, refusal)
	if !errs.Is(refusal, errs.Unavailable) || !strings.Contains(refusal.Error(), "the last leader it knew was ") {
		t.Fatalf("a write on the minority: %v, want Unavailable naming the last leader known", refusal)
	}
	vc.eventually(old.id+" reports NOT_SERVING", func() bool {
		r, err := healthpb.NewHealthClient(old.c.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.Status == healthpb.HealthCheckResponse_NOT_SERVING
	})

	vc.heal()
	vc.waitFormed(vc.nodes...)
	// The old leader reads what the majority wrote, linearizably.
	var got *pb.Gallery
	vc.eventually(old.id+" holds the majority's writes", func() bool {
		r, err := old.c.Catalog.GetGallery(ctx, &pb.GetGalleryRequest{Gallery: "during"})
		return err == nil && r != nil
	})
	r, err := old.c.Catalog.GetGallery(ctx, &pb.GetGalleryRequest{Gallery: "g"})
	if err != nil {
		t.Fatal(err)
	}
	got = r.Gallery
	for _, o := range outcomes {
		if o.err == nil && (got.Description != o.g.Description || got.Etag != o.g.Etag) {
			t.Fatalf("gallery g after healing: %q etag %s; the update that succeeded wrote %q etag %s", got.Description, got.Etag, o.g.Description, o.g.Etag)
		}
	}
	if succeeded == 0 && got.Etag != g.Etag {
		t.Fatalf("no update succeeded, yet g changed: %v", got)
	}
	if _, err := old.c.Catalog.GetGallery(ctx, &pb.GetGalleryRequest{Gallery: "minority"}); !errs.Is(err, errs.NotFound) {
		t.Fatalf("the write refused on the minority: %v", err)
	}
	dumps := vc.dumps()
	sameDumps(t, dumps, "n1", "n2", "n3")
}
