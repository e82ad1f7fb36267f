package metricstest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Dashboard and Alerts are deploy/'s Grafana dashboard and Prometheus
// rule file, relative to the repository's root.
const (
	Dashboard = "deploy/grafana/vmapp.json"
	Alerts    = "deploy/prometheus/alerts.yml"
)

// RepoPath is path (relative to the repository's root) made absolute.
func RepoPath(path string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", path)
}

// Rule is an alerting rule of Alerts.
type Rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// ReadAlerts parses Alerts strictly (no field Prometheus doesn't know).
func ReadAlerts(t testing.TB) []Rule {
	t.Helper()
	f, err := os.Open(RepoPath(Alerts))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []Rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("%s: %v", Alerts, err)
	}
	var out []Rule
	for _, g := range file.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// Panel is a panel of Dashboard with its queries.
type Panel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// ReadDashboard parses Dashboard's panels.
func ReadDashboard(t testing.TB) []Panel {
	t.Helper()
	b, err := os.ReadFile(RepoPath(Dashboard))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string  `json:"title"`
		Panels []Panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", Dashboard, err)
	}
	return d.Panels
}

// Exprs are every query of the dashboard and the alerts.
func Exprs(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, p := range ReadDashboard(t) {
		for _, q := range p.Targets {
			out = append(out, q.Expr)
		}
	}
	for _, r := range ReadAlerts(t) {
		out = append(out, r.Expr)
	}
	return out
}

// metricName matches the names of vmapp's and the gRPC server's metrics
// in a query (label values are quoted and don't start so).
var metricName = regexp.MustCompile(`\b(?:vmapp|grpc_server)_[a-z0-9_]+\b`)

// Names are the metric names the queries use that start with prefix,
// sorted, once each.
func Names(exprs []string, prefix string) []string {
	var out []string
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			if strings.HasPrefix(n, prefix) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Exposed are the metric names in an exposition body (a histogram's
// _bucket, _sum and _count included).
func Exposed(body string) map[string]bool {
	out := map[string]bool{}
	for line := range strings.Lines(body) {
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		name, _, _ = strings.Cut(name, "{")
		out[name] = true
	}
	return out
}
