package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/daemon"
	"github.com/vmapp/vmapp/state"
)

// cnode is one vmappd process of a test cluster, on a loopback IP of its
// own (127.0.0.11, .12, ...): the connections it makes to the other nodes
// leave from that IP, so a proxy can tell who calls.
type cnode struct {
	id, ip, data   string
	api, raft      string // where it listens
	apiAdv, raftAd string // where the other nodes reach it: a proxy's address in a proxied cluster
	apiProxy       *tcpProxy
	raftProxy      *tcpProxy
	extra          []string // more flags
	*proc                   // nil while it is stopped
	c              *client.Client
}

// vcluster is a cluster of vmappd processes on loopback.
type vcluster struct {
	t                 *testing.T
	bin, regions, key string
	nodes             []*cnode
	token             string
	// c calls every node (the SDK with their addresses, as --server a,b,c).
	c *client.Client
}

type clusterOpts struct {
	nodes int
	// proxied: the nodes reach each other (raft and gRPC) only through
	// proxies the test can cut.
	proxied bool
	// args are more vmappd flags for every node.
	args []string
}

// freeAddr is a free port on ip.
func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("loopback address %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCluster starts o.nodes vmappd nodes: n1 bootstraps the cluster, the
// others join through it; it returns once every node knows the leader and
// all the members.
func startCluster(t *testing.T, regionsYAML string, o clusterOpts) *vcluster {
	t.Helper()
	if l, err := net.Listen("tcp", "127.0.0.11:0"); err != nil {
		t.Skipf("the cluster tests give each node a loopback IP of its own (127.0.0.11, ...), and this system has none: %v", err)
	} else {
		l.Close()
	}
	dir := t.TempDir()
	vc := &vcluster{t: t, bin: build(t), regions: filepath.Join(dir, "regions.yaml"), key: filepath.Join(dir, "cluster.key")}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(vc.regions, []byte(regionsYAML), 0o600))
	must(os.WriteFile(vc.key, bytes.Repeat([]byte("0123456789abcdef"), 3), 0o600))
	for i := range o.nodes {
		n := vc.newNode(fmt.Sprintf("n%d", i+1), fmt.Sprintf("127.0.0.%d", 11+i), o.proxied)
		n.extra = o.args
		vc.nodes = append(vc.nodes, n)
	}
	vc.start(vc.nodes[0])
	deadline := time.Now().Add(time.Minute)
	var err error
	for vc.token, err = client.ReadTokenFile(filepath.Join(vc.nodes[0].data, daemon.AdminTokenFile)); err != nil; vc.token, err = client.ReadTokenFile(filepath.Join(vc.nodes[0].data, daemon.AdminTokenFile)) {
		if time.Now().After(deadline) {
			t.Fatalf("n1 wrote no operator token: %v\n%s", err, vc.nodes[0].output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	vc.nodes[0].c = vc.client(t, vc.nodes[0])
	for _, n := range vc.nodes[1:] {
		vc.start(n)
	}
	vc.c = vc.client(t, vc.nodes...)
	vc.waitFormed(vc.nodes...)
	return vc
}

func (vc *vcluster) newNode(id, ip string, proxied bool) *cnode {
	t := vc.t
	n := &cnode{id: id, ip: ip, data: filepath.Join(t.TempDir(), "data"), api: freeAddr(t, ip), raft: freeAddr(t, ip)}
	n.apiAdv, n.raftAd = n.api, n.raft
	if proxied {
		n.apiProxy, n.raftProxy = newProxy(t, ip+":0", n.api), newProxy(t, ip+":0", n.raft)
		n.apiAdv, n.raftAd = n.apiProxy.addr(), n.raftProxy.addr()
	}
	return n
}

// start starts (or restarts) n on its data and addresses; a node other
// than n1, or any node whose data is gone, joins through the others.
func (vc *vcluster) start(n *cnode) {
	t := vc.t
	t.Helper()
	args := []string{"--listen", n.api, "--node-id", n.id, "--raft-listen", n.raft, "--cluster-key", vc.key,
		"--advertise", n.apiAdv, "--raft-advertise", n.raftAd}
	var join []string
	for _, o := range vc.nodes {
		if o != n && o.proc != nil {
			join = append(join, o.apiAdv)
		}
	}
	if len(join) > 0 && (n != vc.nodes[0] || !exists(n.data)) {
		args = append(args, "--join", strings.Join(join, ","))
	}
	n.proc = launch(t, vc.bin, n.data, vc.regions, append(args, n.extra...)...)
	if n.c == nil && vc.token != "" {
		n.c = vc.client(t, n)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// client is an SDK client of the nodes given (their own addresses).
func (vc *vcluster) client(t *testing.T, nodes ...*cnode) *client.Client {
	t.Helper()
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.api)
	}
	c, err := client.New(strings.Join(addrs, ","), client.Options{Token: vc.token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// servers is every node's address, as --server takes them.
func (vc *vcluster) servers() string {
	var addrs []string
	for _, n := range vc.nodes {
		addrs = append(addrs, n.api)
	}
	return strings.Join(addrs, ",")
}

// kill9 kills n with SIGKILL.
func (vc *vcluster) kill9(n *cnode) {
	vc.t.Helper()
	n.proc.kill9(vc.t)
	n.proc = nil
}

// stop stops n gracefully (SIGTERM) and waits until it has.
func (vc *vcluster) stop(n *cnode) {
	n.cmd.Process.Signal(syscall.SIGTERM)
	<-n.done
	n.proc = nil
}

func (vc *vcluster) live() []*cnode {
	var out []*cnode
	for _, n := range vc.nodes {
		if n.proc != nil {
			out = append(out, n)
		}
	}
	return out
}

func (vc *vcluster) node(id string) *cnode {
	for _, n := range vc.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

// status asks n for the cluster's status.
func (vc *vcluster) status(n *cnode) (*pb.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := pb.NewClusterServiceClient(n.c.Conn()).GetClusterStatus(ctx, &pb.GetClusterStatusRequest{})
	return r.GetStatus(), err
}

// leader waits until every node given names the same leader, one of them,
// and returns it.
func (vc *vcluster) leader(nodes ...*cnode) *cnode {
	vc.t.Helper()
	var leader *cnode
	vc.eventually("the nodes agree on a leader", func() bool {
		id := ""
		for _, n := range nodes {
			st, err := vc.status(n)
			if err != nil || st.LeaderId == "" || id != "" && st.LeaderId != id {
				return false
			}
			id = st.LeaderId
		}
		for _, n := range nodes {
			if n.id == id {
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

// waitFormed waits until every node given knows a leader and sees every
// node of the cluster as a leader or a follower.
func (vc *vcluster) waitFormed(nodes ...*cnode) {
	vc.t.Helper()
	vc.eventually("the cluster is formed", func() bool {
		for _, n := range nodes {
			st, err := vc.status(n)
			if err != nil || st.LeaderId == "" || len(st.Nodes) != len(vc.nodes) {
				return false
			}
			for _, s := range st.Nodes {
				if s.State != "Leader" && s.State != "Follower" {
					return false
				}
			}
		}
		return true
	})
}

// eventually waits for cond; the deadline guards against a hang.
func (vc *vcluster) eventually(what string, cond func() bool) {
	vc.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			vc.t.Fatalf("never happened: %s\n%s", what, vc.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logs is the end of every live node's log, for failures.
func (vc *vcluster) logs() string {
	var b strings.Builder
	for _, n := range vc.live() {
		out := n.output()
		if len(out) > 8000 {
			out = out[len(out)-8000:]
		}
		fmt.Fprintf(&b, "--- %s (%s) ---\n%s\n", n.id, n.api, out)
	}
	return b.String()
}

// dumps stops every node and returns each one's state dump (state.Dump:
// every table's keys and values). A command committed while the nodes
// were stopping (background work) leaves them at different indexes: then
// they are started again, catch up, and are stopped again (three tries);
// different states at the same index are a real divergence.
func (vc *vcluster) dumps() map[string]string {
	t := vc.t
	t.Helper()
	for try := 1; ; try++ {
		vc.quiesce()
		live := vc.live()
		for _, n := range live {
			vc.stop(n)
		}
		out, applied := map[string]string{}, map[uint64]bool{}
		for _, n := range vc.nodes {
			var index uint64
			out[n.id], index = dumpFile(t, filepath.Join(n.data, daemon.DBFile))
			if slices.Contains(live, n) {
				applied[index] = true
			}
		}
		if len(applied) <= 1 || sameStates(out, live) || try == 3 {
			return out
		}
		t.Logf("the nodes stopped at different indexes %v: a command committed meanwhile; starting them to catch up", slices.Collect(maps.Keys(applied)))
		for _, n := range live {
			vc.start(n)
		}
		vc.waitFormed(live...)
	}
}

// sameStates reports whether the nodes' dumps are all the same.
func sameStates(dumps map[string]string, nodes []*cnode) bool {
	for _, n := range nodes {
		if dumps[n.id] != dumps[nodes[0].id] {
			return false
		}
	}
	return true
}

// quiesce waits until every node's file holds the same index, the same
// twice in a row 300 ms apart (no command in between).
func (vc *vcluster) quiesce() {
	vc.t.Helper()
	applied := func() string {
		var out []string
		for _, n := range vc.live() {
			st, err := vc.status(n)
			if err != nil {
				return "error " + err.Error()
			}
			for _, s := range st.Nodes {
				if s.Id == n.id {
					out = append(out, fmt.Sprint(s.AppliedIndex))
				}
			}
		}
		return strings.Join(out, " ")
	}
	vc.eventually("the nodes hold the same index", func() bool {
		a := applied()
		if strings.Contains(a, "error") || len(strings.Fields(a)) != len(vc.live()) {
			return false
		}
		for _, f := range strings.Fields(a) {
			if f != strings.Fields(a)[0] {
				return false
			}
		}
		time.Sleep(300 * time.Millisecond)
		return applied() == a
	})
}

func dumpFile(t *testing.T, path string) (dump string, applied uint64) {
	t.Helper()
	db, err := state.Open(path, state.Options{OpenTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b strings.Builder
	if err := db.Dump(&b); err != nil {
		t.Fatal(err)
	}
	return b.String(), db.AppliedIndex()
}

// sameDumps fails unless every dump equals the first node's.
func sameDumps(t *testing.T, dumps map[string]string, ids ...string) {
	t.Helper()
	for _, id := range ids[1:] {
		if dumps[id] != dumps[ids[0]] {
			t.Errorf("%s's state differs from %s's:\n%s", id, ids[0], firstDiff(dumps[ids[0]], dumps[id]))
		}
	}
}

// firstDiff shows the first line where two dumps differ.
func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n- %.300s\n+ %.300s", i+1, x, y)
		}
	}
	return "(equal)"
}
