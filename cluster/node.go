// Package cluster runs vmappd as a cluster: a raft log (hashicorp/raft,
// with raft-boltdb for the log and the stable store) replicates the state
// package's commands to every node, and the state file is raft's state
// machine. Any node serves reads from its own file; writes are proposed to
// the leader (forwarded by a node that isn't); work only one node may do
// (replication, reaping, expiring uploads) runs on the leader.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/state"
)

// Config configures a node.
type Config struct {
	// ID names the node in the cluster (unique, stable across restarts).
	ID string
	// RaftListen is the address raft listens on; RaftAdvertise the one the
	// other nodes dial (default RaftListen, which must then be a specific
	// address).
	RaftListen, RaftAdvertise string
	// APIAddress is this node's gRPC address as the other nodes reach it
	// (they forward writes to the leader's).
	APIAddress string
	// Dir holds raft's files: raft.db (log and stable store) and
	// snapshots/.
	Dir string
	// Key is the cluster key every node holds: raft connections and calls
	// between nodes prove it.
	Key []byte
	// ServerTLS and ClientTLS, when set, carry raft (and the calls between
	// nodes) over TLS.
	ServerTLS, ClientTLS *tls.Config
	// Join lists nodes' API addresses to ask to be added to; empty with no
	// raft state yet: the node bootstraps a cluster of its own.
	Join []string
	// Timing; zero values take raft's defaults (HeartbeatTimeout 1s,
	// ElectionTimeout 1s, LeaderLeaseTimeout 500ms).
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	Logger                                                *slog.Logger
}

// Node is one node of the cluster.
type Node struct {
	cfg    Config
	db     *state.DB
	raft   *raft.Raft
	logs   *raftboltdb.BoltStore
	trans  *raft.NetworkTransport
	stream *streamLayer
	log    *slog.Logger
	peers  *peerClients
	notify chan bool
	m      *metrics
	// results are the outcomes of the last commands applied, for a
	// deposed leader to learn those of its own (settle).
	results *results

	mu        sync.Mutex
	lastKnown raft.ServerID // the leader last seen
	leaderFns []func(ctx context.Context)
	stopLead  context.CancelFunc
	leadDone  sync.WaitGroup
	closed    chan struct{}
	joined    atomic.Bool // the node has been in the raft configuration
}

// Start opens raft's stores in cfg.Dir, starts raft with db as its state
// machine and installs the node as db's log. A node without raft state
// bootstraps a one-node cluster (keeping what db holds: a single vmappd
// becomes a cluster this way) unless cfg.Join names nodes to join.
func Start(cfg Config, db *state.DB) (*Node, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, db: db, log: cfg.Logger.With("node", cfg.ID), notify: make(chan bool, 8), closed: make(chan struct{}), m: newMetrics(), results: &results{}}
	if err := n.open(); err != nil {
		n.closeStores()
		return nil, err
	}
	db.SetLog(n)
	go n.watchLeadership()
	go n.watchLeaders()
	return n, nil
}

func (c *Config) check() error {
	switch {
	case c.ID == "" || len(c.ID) > 64:
		return fmt.Errorf("--node-id: 1 to 64 characters")
	case c.RaftListen == "":
		return fmt.Errorf("--raft-listen is required with --node-id")
	case len(c.Key) < 32:
		return fmt.Errorf("--cluster-key: the key must have at least 32 bytes")
	case c.APIAddress == "":
		return fmt.Errorf("the node's API address (--advertise) is required in a cluster")
	}
	return nil
}

func (n *Node) open() error {
	cfg := n.cfg
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "snapshots"), 0o700); err != nil {
		return err
	}
	var err error
	if n.logs, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")}); err != nil {
		return fmt.Errorf("raft log %s: %w", cfg.Dir, err)
	}
	hlog := hclogAdapter(n.log)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.Dir, "snapshots"), 2, hlog)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.RaftListen)
	if err != nil {
		return fmt.Errorf("listen on %s for raft: %w", cfg.RaftListen, err)
	}
	adv := cfg.RaftAdvertise
	if adv == "" {
		adv = ln.Addr().String()
	}
	if a, err := net.ResolveTCPAddr("tcp", adv); err != nil || a.IP.IsUnspecified() {
		ln.Close()
		return fmt.Errorf("--raft-advertise %q: the other nodes need an address they can dial", adv)
	}
	// The address is kept as given, a host name unresolved: the nodes
	// dial it by name, so a node whose IP changes (a container recreated,
	// a machine on DHCP) is still found.
	n.cfg.RaftAdvertise = adv
	n.stream = newStreamLayer(ln, tcpAddr(adv), cfg.Key, cfg.ServerTLS, cfg.ClientTLS, n.log)
	// Calls to other nodes leave from the raft listen IP too.
	var local net.Addr
	if n.stream.dialer.LocalAddr != nil {
		local = n.stream.dialer.LocalAddr
	}
	n.peers = newPeerClients(cfg.Key, cfg.ClientTLS, local)
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: n.stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: hlog})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hlog
	rc.NotifyCh = n.notify
	rc.BatchApplyCh = true
	rc.HeartbeatTimeout = orDefault(cfg.HeartbeatTimeout, rc.HeartbeatTimeout)
	rc.ElectionTimeout = orDefault(cfg.ElectionTimeout, rc.ElectionTimeout)
	rc.LeaderLeaseTimeout = orDefault(cfg.LeaderLeaseTimeout, rc.LeaderLeaseTimeout)
	// The state file survives restarts and knows the last index it holds:
	// restore the newest snapshot only when the file is behind it.
	rc.NoSnapshotRestoreOnStart = !fileBehind(snaps, n.db.AppliedIndex())
	has, err := raft.HasExistingState(n.logs, n.logs, snaps)
	if err != nil {
		return err
	}
	if !has {
		// A new log: the indexes the file may hold are another log's.
		if len(cfg.Join) > 0 {
			if empty, err := n.db.Empty(); err != nil || !empty {
				return errors.Join(err, fmt.Errorf("--join: this node's state file holds state of its own, which joining would replace with the cluster's: start it on an empty data directory (or without --join to make its state a new cluster's)"))
			}
		}
		if err := n.db.ForgetLog(); err != nil {
			return err
		}
	}
	if n.raft, err = raft.NewRaft(rc, &fsm{db: n.db, m: n.m, results: n.results}, n.logs, n.logs, snaps, n.trans); err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	if has || len(cfg.Join) > 0 {
		return nil
	}
	n.log.Info("bootstrapping a new cluster", "raft", n.cfg.RaftAdvertise)
	f := n.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: n.trans.LocalAddr()}}})
	if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("bootstrap the cluster: %w", err)
	}
	n.onLeader(n.afterBootstrap)
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// fileBehind tells whether the newest snapshot holds more than the file.
func fileBehind(snaps raft.SnapshotStore, applied uint64) bool {
	list, err := snaps.List()
	return err == nil && len(list) > 0 && list[0].Index > applied
}

// afterBootstrap records this node's addresses and, once, snapshots the
// state and compacts the log: a state the file held before the cluster
// existed (a single vmappd's) is not in the log, so new nodes must get it
// as a snapshot.
func (n *Node) afterBootstrap(ctx context.Context) {
	if err := n.putSelf(ctx); err != nil {
		n.log.Warn("recording this node's addresses failed", "err", err)
	}
	rc := n.raft.ReloadableConfig()
	trailing := rc.TrailingLogs
	rc.TrailingLogs = 0
	if err := n.raft.ReloadConfig(rc); err == nil {
		if err := n.raft.Snapshot().Error(); err != nil {
			n.log.Warn("first snapshot failed", "err", err)
		}
		rc.TrailingLogs = trailing
		n.raft.ReloadConfig(rc)
	}
}

// onLeader registers fn to run whenever this node becomes the leader, with
// a ctx that ends when it stops being the leader. Commands fn proposes
// through ctx carry the term (state.WithLeaderTerm) and are refused once
// another term has begun.
func (n *Node) onLeader(fn func(ctx context.Context)) {
	n.mu.Lock()
	n.leaderFns = append(n.leaderFns, fn)
	n.mu.Unlock()
}

// OnLeader is onLeader for the daemon's leader-only work.
func (n *Node) OnLeader(fn func(ctx context.Context)) { n.onLeader(fn) }

func (n *Node) watchLeadership() {
	for {
		select {
		case <-n.closed:
			n.stepDown()
			return
		case isLeader := <-n.notify:
			if isLeader {
				n.lead()
			} else {
				n.stepDown()
			}
		}
	}
}

// lead starts the leader-only work, once this node's file holds every
// command committed before it became the leader (a barrier).
func (n *Node) lead() {
	n.stepDown()
	if err := n.raft.Barrier(30 * time.Second).Error(); err != nil {
		n.log.Warn("leader barrier failed; leader-only work not started", "err", err)
		return
	}
	term := n.raft.CurrentTerm()
	ctx, cancel := context.WithCancel(state.WithLeaderTerm(context.Background(), term))
	n.mu.Lock()
	n.stopLead = cancel
	fns := n.leaderFns
	n.mu.Unlock()
	n.log.Info("this node leads the cluster", "term", term)
	for _, fn := range fns {
		n.leadDone.Go(func() { fn(ctx) })
	}
}

func (n *Node) stepDown() {
	n.mu.Lock()
	cancel := n.stopLead
	n.stopLead = nil
	n.mu.Unlock()
	if cancel != nil {
		n.log.Info("this node no longer leads: leader-only work stops")
		cancel()
		n.leadDone.Wait()
	}
}

// Shutdown stops raft and closes its stores; the state file is the
// caller's.
func (n *Node) Shutdown() error {
	select {
	case <-n.closed:
		return nil
	default:
		close(n.closed)
	}
	err := n.raft.Shutdown().Error()
	n.stepDown()
	n.peers.close()
	n.closeStores()
	return err
}

func (n *Node) closeStores() {
	if n.trans != nil {
		n.trans.Close()
	}
	if n.logs != nil {
		n.logs.Close()
	}
}

// IsLeader tells whether this node leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Healthy tells whether the node knows a leader: it is part of a majority.
func (n *Node) Healthy() bool {
	_, id := n.raft.LeaderWithID()
	return id != ""
}

// Serving refuses (Unavailable, so that clients try another node) while
// the node can't answer for the cluster: it hasn't joined yet, or it knows
// no leader (cut off from the majority).
func (n *Node) Serving() error {
	if !n.joined.Load() {
		for _, m := range n.members() {
			if m == n.cfg.ID {
				n.joined.Store(true)
			}
		}
		if !n.joined.Load() {
			return errs.New(errs.Unavailable, "", "node %s hasn't joined the cluster yet: ask another node", n.cfg.ID)
		}
	}
	if !n.Healthy() {
		return n.noLeader()
	}
	return nil
}

// leader returns the current leader's id, and remembers it.
func (n *Node) leader() raft.ServerID {
	_, id := n.raft.LeaderWithID()
	n.mu.Lock()
	defer n.mu.Unlock()
	if id != "" {
		n.lastKnown = id
	}
	return id
}

// watchLeaders counts the changes of leader this node sees.
func (n *Node) watchLeaders() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)
	for {
		select {
		case <-n.closed:
			return
		case o := <-ch:
			lo := o.Data.(raft.LeaderObservation)
			n.m.leaderChanges.Inc()
			n.log.Info("the cluster's leader changed", "leader", lo.LeaderID, "term", o.Raft.CurrentTerm())
			n.leader()
		}
	}
}

// noLeader explains why there is nobody to send a write to.
func (n *Node) noLeader() error {
	n.mu.Lock()
	last := n.lastKnown
	n.mu.Unlock()
	msg := "this node knows no leader: it can't reach a majority of the cluster, or an election is under way"
	if last != "" {
		msg += fmt.Sprintf(" (the last leader it knew was %s at %s)", last, n.apiAddress(last))
	}
	return errs.New(errs.Unavailable, fieldNotLeader, "%s; retry, or ask another node", msg)
}

// hclogAdapter sends raft's log lines to slog.
func hclogAdapter(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Info, Output: slogWriter{log}, DisableTime: true})
}

type slogWriter struct{ log *slog.Logger }

// Write logs one of hclog's lines ("[WARN]  raft: ...") at its level.
func (w slogWriter) Write(p []byte) (int, error) {
	line := string(trimNewline(p))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{"[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERROR]": slog.LevelError, "[DEBUG]": slog.LevelDebug, "[TRACE]": slog.LevelDebug} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			level, line = l, strings.TrimLeft(rest, " ")
		}
	}
	line = strings.TrimPrefix(line, "raft: ")
	w.log.Log(context.Background(), level, line, "component", "raft")
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

var _ io.Writer = slogWriter{}
