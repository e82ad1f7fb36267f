package server

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/fleet"
)

// edgeMetrics count what passes through vmappd's API that the gRPC
// metrics (calls, codes and durations by method: grpc_server_*) don't:
// bytes, plans by region, agents connected, custom actions' runs.
type edgeMetrics struct {
	uploadBytes   prometheus.Counter
	downloadBytes *prometheus.CounterVec
	plans         *prometheus.CounterVec
	actionRuns    *prometheus.CounterVec
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
		actionRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_action_runs_total", Help: "Custom actions' runs (health checks are not runs) that ended, by result (Succeeded | Failed), counted by the node that recorded the agent's report (sum over the nodes of a cluster).",
		}, []string{"result"}),
	}
	m.actionRuns.WithLabelValues(pb.ActionSucceeded)
	m.actionRuns.WithLabelValues(pb.ActionFailed)
	for _, r := range regions {
		m.downloadBytes.WithLabelValues(r)
		m.plans.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.uploadBytes, m.downloadBytes, m.plans, m.actionRuns)
		if fl != nil {
			reg.MustRegister(inventoryCollector{fl})
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "vmapp_agents_connected", Help: "Machines whose agent holds a goal-state stream open on this node (sum over the nodes of a cluster).",
			}, func() float64 { return float64(fl.ConnectedMachines()) }))
		}
	}
	return m
}

var applicationsDesc = prometheus.NewDesc("vmapp_applications",
	"Applications on machines, by the machine's region and the state their agent last reported (installed, failed, ...): this node's copy of the state, read at each scrape.",
	[]string{"region", "state"}, nil)

// inventoryCollector is vmapp_applications: counted from the inventory's
// indexes at each scrape, so it is never out of step with the state.
type inventoryCollector struct{ fl *fleet.Fleet }

func (inventoryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- applicationsDesc }

func (c inventoryCollector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.fl.InventoryCounts(context.Background())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(applicationsDesc, err)
		return
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(applicationsDesc, prometheus.GaugeValue, float64(n), k.Region, k.State)
	}
}
