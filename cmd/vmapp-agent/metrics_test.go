//go:build unix

package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/internal/testkit/metricstest"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// testMetrics: an agent with --metrics-listen and --log-format json
// installs an application; its /metrics count the download and the
// command, say it is connected, and pass Prometheus' linter; every line
// it logs is a JSON object.
func (e *env) testMetrics(t *testing.T) {
	e.publish(t, "metered", "true")
	args := e.machine(t, "metered-vm")
	if _, err := e.fl.SetApplication(ctx(t), &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: "metered-vm"}},
		Application: &pb.VMGalleryApplication{PackageReferenceId: "g/metered/1.0.0"}}); err != nil {
		t.Fatal(err)
	}
	p := e.start(t, append(args, "--metrics-listen", "127.0.0.1:0", "--log-format", "json")...)
	addr := metricsAddr(t, e, p)
	sample := func(series string) string {
		_, body := metricstest.Get(t, addr, "/metrics")
		return metricstest.Sample(body, series)
	}
	e.poll(t, "the install counted", func() bool { return sample(`vmapp_agent_commands_total{result="ok",step="install"}`) == "1" })
	for series, want := range map[string]string{
		`vmapp_agent_downloads_total{kind="package",result="ok"}`:     "1",
		`vmapp_agent_downloads_total{kind="package",result="failed"}`: "0",
		`vmapp_agent_download_bytes_total`:                            strconv.Itoa(len("package of metered")),
		`vmapp_agent_connected`:                                       "1",
		`vmapp_agent_commands_total{result="failed",step="install"}`:  "0",
	} {
		if got := sample(series); got != want {
			t.Errorf("%s is %q, want %s", series, got, want)
		}
	}
	// vmappd's side: the agent connected, its download planned.
	reg := e.c.Daemon.Registry
	if n := metricstest.Value(t, reg, "vmapp_agents_connected", nil); n < 1 {
		t.Errorf("vmapp_agents_connected is %v with the agent connected", n)
	}
	if n := metricstest.Value(t, reg, "vmapp_download_plans_total", map[string]string{"region": "eastus"}); n < 1 {
		t.Errorf("vmapp_download_plans_total{region=eastus} is %v after a download", n)
	}
	_, body := metricstest.Get(t, addr, "/metrics")
	metricstest.Lint(t, "vmapp-agent", body)
	exposed := metricstest.Exposed(body)
	for _, n := range metricstest.Names(metricstest.Exprs(t), "vmapp_agent_") {
		if !exposed[n] {
			t.Errorf("the dashboard or the alerts use %s, which the agent doesn't expose", n)
		}
	}
	if !strings.Contains(body, "vmapp_build_info{") {
		t.Error("no vmapp_build_info on the agent's /metrics")
	}
	for line := range strings.Lines(p.log.String()) {
		if !json.Valid([]byte(line)) {
			t.Errorf("a log line that is not JSON: %q", line)
		}
	}
}
