package replicator

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Results of a copy attempt (vmapp_replica_copy_attempts_total's result).
const (
	resultCompleted = "completed"
	resultFailed    = "failed"
)

// replicaStates are the values of vmapp_replicas' state label: the
// replica phases, in lower case.
var replicaStates = []statepb.ReplicaPhase{
	statepb.ReplicaPhase_REPLICA_PHASE_PENDING, statepb.ReplicaPhase_REPLICA_PHASE_COPYING,
	statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED, statepb.ReplicaPhase_REPLICA_PHASE_FAILED,
	statepb.ReplicaPhase_REPLICA_PHASE_DELETING,
}

func phaseLabel(p statepb.ReplicaPhase) string {
	return strings.ToLower(strings.TrimPrefix(p.String(), "REPLICA_PHASE_"))
}

type metrics struct {
	bytes    *prometheus.CounterVec
	attempts *prometheus.CounterVec
	repaired *prometheus.CounterVec
	damage   *prometheus.CounterVec
	verified *prometheus.CounterVec
	reports  *prometheus.CounterVec
	deepDue  prometheus.Gauge
	replicas *prometheus.GaugeVec
	lag      *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, regions []string) metrics {
	m := metrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_replication_bytes_total",
			Help: "Bytes copied into replicas, by path: cross_region and in_region bytes pass through vmappd, server_side bytes are copied by the store.",
		}, []string{"path"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_replica_copy_attempts_total",
			Help: "Replica copy attempts that ended, by destination region and result: completed (copied and verified) or failed (retried later).",
		}, []string{"region", "result"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_replicas_repaired_total", Help: "Replicas found missing or damaged and copied again to completion, by region.",
		}, []string{"region"}),
		damage: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_replica_damage_found_total",
			Help: "Completed replicas found missing or damaged (and sent to be copied again), by region and by the check that found it: repair, scrub, deep_scrub or report.",
		}, []string{"region", "check"}),
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_replica_verified_bytes_total",
			Help: "Bytes of completed replicas read back and found sound, by region and check: repair (--deep), deep_scrub or report.",
		}, []string{"region", "check"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_replica_damage_reports_total",
			Help: "Reports of damaged replicas from downloaders, by what vmappd found: sound, damaged, not_completed or recently_verified.",
		}, []string{"verdict"}),
		deepDue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vmapp_replicas_deep_scrub_due",
			Help: "Completed replicas whose last deep check is older than the deep scrub's period: a number that keeps growing means the deep scrub reads slower than the stores fill.",
		}),
		replicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vmapp_replicas",
			Help: "Replica records by region and state (pending, copying, completed, failed, deleting), as the leader's replicator last counted them (every second); 0 on other nodes.",
		}, []string{"region", "state"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vmapp_replication_lag_seconds",
			Help:    "Time from a version's publication to its replication completing in a target region, by region.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9), // 1 s to 18 h
		}, []string{"region"}),
	}
	m.init(regions)
	if reg != nil {
		reg.MustRegister(m.bytes, m.attempts, m.repaired, m.damage, m.verified, m.reports, m.deepDue, m.replicas, m.lag)
	}
	return m
}

// init creates every series of every known region and label value, so
// that they exist (at 0) before the first event: a rate or an alert on a
// series that appears with its first failure misses that failure.
func (m metrics) init(regions []string) {
	for _, p := range []string{"cross_region", "in_region", "server_side"} {
		m.bytes.WithLabelValues(p)
	}
	for _, v := range []pb.ReplicaVerdict{pb.ReplicaVerdict_REPLICA_VERDICT_SOUND, pb.ReplicaVerdict_REPLICA_VERDICT_DAMAGED,
		pb.ReplicaVerdict_REPLICA_VERDICT_NOT_COMPLETED, pb.ReplicaVerdict_REPLICA_VERDICT_RECENTLY_VERIFIED} {
		m.reports.WithLabelValues(verdictLabel(v))
	}
	for _, r := range regions {
		m.attempts.WithLabelValues(r, resultCompleted)
		m.attempts.WithLabelValues(r, resultFailed)
		m.repaired.WithLabelValues(r)
		m.lag.WithLabelValues(r)
		for _, c := range []string{checkRepair, checkScrub, checkDeepScrub, checkReport} {
			m.damage.WithLabelValues(r, c)
			if c != checkScrub { // the scrub reads no bytes back
				m.verified.WithLabelValues(r, c)
			}
		}
		for _, s := range replicaStates {
			m.replicas.WithLabelValues(r, phaseLabel(s))
		}
	}
}
