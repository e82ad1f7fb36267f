package deploy

import (
	"os/exec"
	"testing"

	"github.com/vmapp/vmapp/internal/testkit/metricstest"
)

// TestAlertsAndDashboard: deploy/prometheus/alerts.yml parses as a rule
// file (promtool check rules too, when promtool is on the PATH), every
// rule says what and how bad; the Grafana dashboard is JSON whose panels
// all query something. That every metric they name exists is checked
// against a real vmappd's /metrics in cmd/vmappd's TestHealthAndMetrics
// and a real agent's in cmd/vmapp-agent's TestBinary/Metrics.
func TestAlertsAndDashboard(t *testing.T) {
	rules := metricstest.ReadAlerts(t)
	if len(rules) == 0 {
		t.Fatal("no rules")
	}
	for _, r := range rules {
		if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("rule %q lacks a name, an expression, a severity, a summary or a description", r.Alert)
		}
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(promtool, "check", "rules", metricstest.RepoPath(metricstest.Alerts)).CombinedOutput(); err != nil {
			t.Errorf("promtool check rules: %v\n%s", err, out)
		}
	} else {
		t.Log("no promtool on the PATH: the rules' PromQL is not parsed")
	}
	for _, p := range metricstest.ReadDashboard(t) {
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("panel %q has no title or no query", p.Title)
		}
	}
	metricstest.Exprs(t)
}
