package daemon

import (
	"testing"

	"github.com/vmapp/vmapp/topology"
)

// A cluster node reads its share of each endpoint's egress cap: the cap
// over the number of nodes, so that together they never pass it; an
// endpoint without a cap stays uncapped.
func TestEgressShare(t *testing.T) {
	topo, err := topology.Parse([]byte("regions:\n  - name: eastus\n    endpoints:\n      - {url: 'http://127.0.0.1:1', bucket: vmapp-a, egressMBps: 90}\n      - {url: 'http://127.0.0.1:2', bucket: vmapp-b}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, caps := Stores{"eastus": {nil, nil}}.Capped(topo)
	if len(caps) != 1 || caps[0].c.Rate() != 90e6 {
		t.Fatalf("caps: %+v", caps)
	}
	for _, c := range []struct {
		nodes int
		want  int64
	}{{3, 30e6}, {1, 90e6}, {0, 90e6}, {2, 45e6}} {
		caps.Share(c.nodes)
		if got := caps[0].c.Rate(); got != c.want {
			t.Errorf("%d nodes: %d bytes/s each, want %d", c.nodes, got, c.want)
		}
	}
}
