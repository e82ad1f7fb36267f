package daemon

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmapp/vmapp/cluster"
)

// startNode starts the raft node when vmappd is part of a cluster.
func (d *Daemon) startNode() error {
	cc := d.Config.Cluster
	if cc.NodeID == "" {
		if cc.RaftListen != "" || len(cc.Join) > 0 || cc.KeyFile != "" {
			return fmt.Errorf("--raft-listen, --join and --cluster-key need --node-id: they are for a node of a cluster")
		}
		return nil
	}
	key, err := readKey(cc.KeyFile)
	if err != nil {
		return err
	}
	api := cc.Advertise
	if api == "" {
		api = d.lis.Addr().String()
		if ta, ok := d.lis.Addr().(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
			return fmt.Errorf("--advertise: --listen %s names no address the other nodes can dial: give the one they reach this node at", d.Config.Listen)
		}
	}
	cfg := cluster.Config{ID: cc.NodeID, RaftListen: cc.RaftListen, RaftAdvertise: cc.RaftAdvertise, APIAddress: api,
		Dir: filepath.Join(d.Config.DataDir, "raft"), Key: key, Join: cc.Join, Logger: d.log,
		HeartbeatTimeout: cc.HeartbeatTimeout, ElectionTimeout: cc.ElectionTimeout, LeaderLeaseTimeout: cc.LeaderLeaseTimeout}
	if d.tls != nil {
		cfg.ServerTLS, cfg.ClientTLS = nodeTLS(d.tls)
	}
	if d.Node, err = cluster.Start(cfg, d.State); err != nil {
		return err
	}
	d.Node.Register(d.Registry)
	n := d.Node.Members()
	if len(cc.Join) > 0 { // a node that joins shares with one other at least
		n = max(n, 2)
	}
	d.egress.Share(n)
	d.Node.OnLeader(func(ctx context.Context) {
		if _, err := d.Auth.Bootstrap(ctx, filepath.Join(d.Config.DataDir, AdminTokenFile)); err != nil && ctx.Err() == nil {
			d.log.Error("creating the bootstrap token failed", "err", err)
		}
		d.leaderWork(ctx)
	})
	return nil
}

// readKey reads the cluster key: at least 32 bytes after trimming white
// space (e.g. `openssl rand -base64 32`, which gives 44).
func readKey(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("--cluster-key is required with --node-id: a file with a secret every node holds (e.g. openssl rand -base64 32 > cluster.key)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--cluster-key: %w", err)
	}
	key := []byte(strings.TrimSpace(string(b)))
	if len(key) < 32 {
		return nil, fmt.Errorf("--cluster-key %s: the key has %d bytes; it needs at least 32 (openssl rand -base64 32)", path, len(key))
	}
	return key, nil
}

// joinAndWatch joins the cluster when the node has to (its gRPC server
// serves by then: the leader calls it back), then keeps the health status
// in step with the node: NOT_SERVING while it knows no leader (cut off
// from the majority, or between leaders); and the node's share of the
// endpoints' egress caps in step with the number of nodes.
func (d *Daemon) joinAndWatch(ctx context.Context) error {
	if err := d.Node.JoinCluster(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("joining the cluster: %w", err)
	}
	if err := d.proposePending(ctx); err != nil && ctx.Err() == nil {
		d.log.Error("pending commands were not applied; they will be at the next start", "err", err)
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	shared := 0
	for {
		problem := ""
		if !d.Node.Healthy() {
			problem = "the node knows no leader"
		}
		d.health.set("raft", problem)
		if n := d.Node.Members(); n > 0 && n != shared { // each node reads its share of an endpoint's egress cap
			d.egress.Share(n)
			shared = n
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
