package cluster

import (
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's raft figures, for alerts: the state, leader
// changes, how far the state file is behind the log, snapshots.
type metrics struct {
	leaderChanges prometheus.Counter
	snapshotBytes prometheus.Gauge
	snapshotTime  prometheus.Histogram
	settled       *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "vmapp_raft_leader_changes_total",
			Help: "Times this node saw the cluster's leader change (including to no leader)."}),
		snapshotBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vmapp_raft_snapshot_bytes",
			Help: "Size of the last snapshot this node wrote (its state file)."}),
		snapshotTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vmapp_raft_snapshot_duration_seconds",
			Help: "Time to write a snapshot of the state file.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 8)}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vmapp_raft_writes_settled_total",
			Help: "Writes this node had appended as the leader when it lost the leadership, by what became of them: committed, not_applied, unknown."}, []string{"outcome"}),
	}
}

// Register adds the node's metrics to reg.
func (n *Node) Register(reg prometheus.Registerer) {
	states := []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}
	for _, s := range states {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmapp_raft_state",
			Help: "1 for the raft state this node is in.", ConstLabels: prometheus.Labels{"state": s.String()}},
			func() float64 {
				if n.raft.State() == s {
					return 1
				}
				return 0
			}))
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmapp_raft_term", Help: "The node's current raft term."},
			func() float64 { return float64(n.raft.CurrentTerm()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmapp_raft_commit_index", Help: "The last log index the node knows committed."},
			func() float64 { return float64(n.raft.CommitIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmapp_raft_applied_index", Help: "The last log index the node's state file holds."},
			func() float64 { return float64(n.db.AppliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmapp_raft_apply_lag", Help: "Committed log entries the node's state file doesn't hold yet."},
			func() float64 { return float64(max(n.raft.CommitIndex(), n.db.AppliedIndex()) - n.db.AppliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmapp_raft_has_leader", Help: "1 while the node knows a leader (it is part of a majority)."},
			func() float64 {
				if n.Healthy() {
					return 1
				}
				return 0
			}),
		n.m.leaderChanges, n.m.snapshotBytes, n.m.snapshotTime, n.m.settled,
	)
}
