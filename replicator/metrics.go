package replicator

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	bytes     *prometheus.CounterVec
	completed *prometheus.CounterVec
	failures  *prometheus.CounterVec
	repaired  *prometheus.CounterVec
	damage    *prometheus.CounterVec
	verified  *prometheus.CounterVec
	reports   *prometheus.CounterVec
	deepDue   prometheus.Gauge
	records   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_replication_bytes_total",
			Help: "Bytes copied into replicas, by path: cross_region and in_region bytes pass through vmappd, server_side bytes are copied by the store.",
		}, []string{"path"}),
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_replicas_completed_total", Help: "Replicas copied and verified, by region.",
		}, []string{"region"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_replica_attempts_failed_total", Help: "Failed replica copy or delete attempts, by region.",
		}, []string{"region"}),
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
		records: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vmapp_replicas_wanted", Help: "Replicas the catalog wants, over every version.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.bytes, m.completed, m.failures, m.repaired, m.damage, m.verified, m.reports, m.deepDue, m.records)
	}
	return m
}
