package replicator

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	bytes     *prometheus.CounterVec
	completed *prometheus.CounterVec
	failures  *prometheus.CounterVec
	repaired  *prometheus.CounterVec
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
			Name: "vmapp_replicas_repaired_total", Help: "Completed replicas found missing or corrupted and copied again, by region.",
		}, []string{"region"}),
		records: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vmapp_replicas_wanted", Help: "Replicas the catalog wants, over every version.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.bytes, m.completed, m.failures, m.repaired, m.records)
	}
	return m
}
