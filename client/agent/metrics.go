package agent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The values of the agent's metrics' labels.
var (
	metricKinds   = []string{"package", "configuration"}
	metricSteps   = []string{"install", "update", "remove", "remove-old"}
	metricResults = []string{"ok", "failed"}
)

// metrics are the agent's own (Config.Registry), so that a machine's
// downloads and commands can be watched where they happen.
type metrics struct {
	connected     prometheus.Gauge
	downloads     *prometheus.CounterVec
	downloadBytes prometheus.Counter
	downloadTime  *prometheus.HistogramVec
	commands      *prometheus.CounterVec
	commandTime   *prometheus.HistogramVec
	// Peers (serving agents only; 0 otherwise).
	peerServed   prometheus.Counter
	peerRequests *prometheus.CounterVec
	badPeers     prometheus.Counter
	cacheHits    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vmapp_agent_connected", Help: "1 while the agent holds its goal-state stream from vmappd, 0 while it reconnects.",
		}),
		downloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_agent_downloads_total", Help: "Artifact downloads that ended, by kind (package, configuration) and result (ok, failed).",
		}, []string{"kind", "result"}),
		downloadBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmapp_agent_download_bytes_total", Help: "Bytes of the artifacts downloaded whole and verified.",
		}),
		downloadTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vmapp_agent_download_duration_seconds", Help: "Time to download and verify an artifact, by result.",
			Buckets: prometheus.ExponentialBuckets(0.05, 4, 9), // 50 ms to 55 min
		}, []string{"result"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_agent_commands_total", Help: "Install, update and remove commands that ended, by step (install, update, remove, remove-old) and result (ok: exit 0; failed: any other end, a timeout included).",
		}, []string{"step", "result"}),
		commandTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "vmapp_agent_command_duration_seconds", Help: "Time a command ran, by step.",
			Buckets: prometheus.ExponentialBuckets(0.1, 4, 9), // 100 ms to 1.8 h
		}, []string{"step"}),
		peerServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmapp_agent_peer_served_bytes_total", Help: "Bytes of cached packages served to peers.",
		}),
		peerRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vmapp_agent_peer_requests_total", Help: "Requests of peers for pieces, by result (served; refused: no grant, or another artifact's; missing: not held).",
		}, []string{"result"}),
		badPeers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmapp_agent_bad_peers_total", Help: "Peers that sent a piece failing verification: dropped for the download and reported to vmappd, which bans them for the artifact.",
		}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vmapp_agent_cache_hits_total", Help: "Installs whose package was in the cache already (preheated or kept): verified, not downloaded.",
		}),
	}
	for _, r := range []string{"served", "refused", "missing"} {
		m.peerRequests.WithLabelValues(r)
	}
	for _, r := range metricResults {
		m.downloadTime.WithLabelValues(r)
		for _, k := range metricKinds {
			m.downloads.WithLabelValues(k, r)
		}
		for _, s := range metricSteps {
			m.commands.WithLabelValues(s, r)
		}
	}
	for _, s := range metricSteps {
		m.commandTime.WithLabelValues(s)
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.downloads, m.downloadBytes, m.downloadTime, m.commands, m.commandTime,
			m.peerServed, m.peerRequests, m.badPeers, m.cacheHits)
	}
	return m
}

func resultLabel(ok bool) string {
	if ok {
		return "ok"
	}
	return "failed"
}

// download counts one download of kind that took d.
func (m *metrics) download(kind string, size int64, d time.Duration, err error) {
	r := resultLabel(err == nil)
	m.downloads.WithLabelValues(kind, r).Inc()
	m.downloadTime.WithLabelValues(r).Observe(d.Seconds())
	if err == nil {
		m.downloadBytes.Add(float64(size))
	}
}

// command counts one command of step.
func (m *metrics) command(step string, r result, ok bool) {
	m.commands.WithLabelValues(step, resultLabel(ok)).Inc()
	m.commandTime.WithLabelValues(step).Observe(r.Duration.Seconds())
}

// badPeer counts a peer dropped and reported for a bad piece
// (download.Options.OnBadPeer).
func (m *metrics) badPeer(string) { m.badPeers.Inc() }

// registerCache registers the cache's gauges, read from p when scraped.
func registerCache(reg prometheus.Registerer, p *peers) {
	if reg == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmapp_agent_cache_bytes", Help: "Bytes of the packages the agent keeps for peers."},
			func() float64 { b, _ := p.size(); return float64(b) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "vmapp_agent_cache_entries", Help: "Packages the agent keeps for peers."},
			func() float64 { _, n := p.size(); return float64(n) }),
	)
}
