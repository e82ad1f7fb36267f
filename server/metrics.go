package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmapp/vmapp/server/fleet"
)

// edgeMetrics count what passes through vmappd's API that the gRPC
// metrics (calls, codes and durations by method: grpc_server_*) don't:
// bytes, plans by region, agents connected.
type edgeMetrics struct {
	uploadBytes   prometheus.Counter
	downloadBytes *prometheus.CounterVec
	plans         *prometheus.CounterVec
}

func newEdgeMetrics(reg prometheus.Registerer, regions []string, fl *fleet.Fleet) *edgeMetrics {
	m := &edgeMetrics{
		uploadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmapp_upload_bytes_total", Help: "Bytes of artifacts received by Upload streams (stored into the source region as they arrive).",
		}),
		downloadBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_download_bytes_total", Help: "Bytes of replicas sent by ReadRange (machines that can't reach the stores), by region.",
		}, []string{"region"}),
		plans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_download_plans_total", Help: "Download plans given out, by the region asked for: each is a download starting or resuming.",
		}, []string{"region"}),
	}
	for _, r := range regions {
		m.downloadBytes.WithLabelValues(r)
		m.plans.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.uploadBytes, m.downloadBytes, m.plans)
		if fl != nil {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "vmapp_agents_connected", Help: "Machines whose agent holds a goal-state stream open on this node (sum over the nodes of a cluster).",
			}, func() float64 { return float64(fl.ConnectedMachines()) }))
		}
	}
	return m
}
