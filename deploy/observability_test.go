package deploy

import (
	"testing"

	"github.com/vmapp/vmapp/internal/testkit/metricstest"
)

// TestAlertsAndDashboard: deploy/prometheus/alerts.yml parses as a rule
// file (its PromQL and templates are checked as promtool does in
// deploy/prometheus's own module), every rule says what and how bad; the
// Grafana dashboard is JSON whose panels all query something. That every metric they name exists is checked
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
	for _, p := range metricstest.ReadDashboard(t) {
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("panel %q has no title or no query", p.Title)
		}
	}
	metricstest.Exprs(t)
}
