// Package prometheus holds vmapp's alerting rules (alerts.yml). It is a
// module of its own so that Prometheus's rule parser, which its test
// uses, stays out of the product's go.mod.
package prometheus

import (
	"log/slog"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// TestRules checks alerts.yml as `promtool check rules` does, with the
// same package: the file's structure, every expression's PromQL, every
// annotation's template, and no rule twice.
func TestRules(t *testing.T) {
	groups, errs := rulefmt.ParseFile("alerts.yml", false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.Default())
	for _, err := range errs {
		t.Error(err)
	}
	if groups == nil || len(groups.Groups) == 0 || len(groups.Groups[0].Rules) == 0 {
		t.Fatal("alerts.yml has no rule")
	}
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if seen[r.Alert] {
				t.Errorf("alert %s is defined twice", r.Alert)
			}
			seen[r.Alert] = true
		}
	}
}
