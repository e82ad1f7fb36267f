package main

import (
	"path/filepath"
	"testing"
)

// TestVersionModel: the rest of Azure's version model through the CLI:
// custom actions from flags and from a YAML file, the health check,
// advanced settings, the storage strategy, in -o json with Azure's names;
// and each wrong value refused with the field at fault.
func TestVersionModel(t *testing.T) {
	e := newEnv(t)
	e.ok("gallery", "create", "g", "--location", "eastus")
	e.ok("app", "create", "--gallery", "g", "app", "--os", "linux", "--custom-action", "status=systemctl status app")
	a := e.okJSON("app", "show", "--gallery", "g", "app")
	if at(a, "customActions", 0, "name") != "status" || at(a, "customActions", 0, "script") != "systemctl status app" {
		t.Fatalf("application's custom actions: %v", a)
	}

	v := e.okJSON("version", "create", "--gallery", "g", "--app", "app", "1.0.0", "--location", "eastus",
		"--install", "true", "--remove", "true", "--enable-health-check",
		"--custom-action", "health=curl -fs localhost/healthz",
		"--custom-action", "rotate=logrotate -f $CFG",
		"--custom-action-param", "rotate.CFG=ConfigurationDataBlob,required",
		"--custom-action-param", "rotate.KEEP=String,default=7,a,b",
		"--custom-action-param", "rotate.OUT=LogOutputBlob",
		"--advanced-setting", "tier=gold", "--advanced-setting", "empty=",
		"--storage-account-strategy", "PreferStandard_ZRS")
	for _, c := range []struct {
		path []any
		want any
	}{
		{[]any{"publishingProfile", "enableHealthCheck"}, true},
		{[]any{"publishingProfile", "customActions", 0, "name"}, "health"},
		{[]any{"publishingProfile", "customActions", 1, "script"}, "logrotate -f $CFG"},
		{[]any{"publishingProfile", "customActions", 1, "parameters", 0, "type"}, "ConfigurationDataBlob"},
		{[]any{"publishingProfile", "customActions", 1, "parameters", 0, "required"}, true},
		{[]any{"publishingProfile", "customActions", 1, "parameters", 1, "defaultValue"}, "7,a,b"},
		{[]any{"publishingProfile", "customActions", 1, "parameters", 2, "type"}, "LogOutputBlob"},
		{[]any{"publishingProfile", "advancedSettings", "tier"}, "gold"},
		{[]any{"publishingProfile", "replicationMode"}, "Full"},
		{[]any{"publishingProfile", "storageAccountStrategy"}, "PreferStandard_ZRS"},
		{[]any{"publishingProfile", "storageAccountType"}, "Standard_ZRS"},
	} {
		if got := at(v, c.path...); got != c.want {
			t.Errorf("%v: %v, want %v", c.path, got, c.want)
		}
	}

	file := filepath.Join(t.TempDir(), "actions.yaml")
	writeFile(t, file, `
- name: health
  script: ./check.sh
- name: dump
  script: ./dump.sh > "$OUT"
  description: dumps the state
  parameters:
    - {name: OUT, type: LogOutputBlob, description: the dump}
`)
	v = e.okJSON("version", "create", "--gallery", "g", "--app", "app", "1.0.1", "--location", "eastus",
		"--install", "true", "--remove", "true", "--enable-health-check", "--custom-action", "@"+file)
	if at(v, "publishingProfile", "customActions", 1, "parameters", 0, "name") != "OUT" || at(v, "publishingProfile", "customActions", 1, "description") != "dumps the state" {
		t.Errorf("custom actions from a file: %v", at(v, "publishingProfile", "customActions"))
	}
	out := e.ok("version", "show", "--gallery", "g", "--app", "app", "1.0.1")
	if fieldOf(t, out, "Custom actions") != "health, dump" || fieldOf(t, out, "Health check") == "" {
		t.Errorf("version show:\n%s", out)
	}

	notList := filepath.Join(t.TempDir(), "x.yaml")
	writeFile(t, notList, "x: 1")
	create := func(n string, extra ...string) []string {
		return append([]string{"version", "create", "--gallery", "g", "--app", "app", n, "--location", "eastus", "--install", "true", "--remove", "true"}, extra...)
	}
	for _, c := range []struct {
		code int
		want string
		args []string
	}{
		{1, "publishingProfile.enableHealthCheck", create("2.0.0", "--enable-health-check")},
		{1, "publishingProfile.replicationMode", create("2.0.0", "--replication-mode", "Shallow")},
		{1, "publishingProfile.storageAccountStrategy", create("2.0.0", "--storage-account-strategy", "PreferStandard_ZRS", "--storage-account-type", "Standard_LRS")},
		{1, "publishingProfile.customActions[1].name", create("2.0.0", "--custom-action", "a=true", "--custom-action", "A=true")},
		{1, "publishingProfile.customActions[0].parameters[0].defaultValue", create("2.0.0", "--custom-action", "a=true", "--custom-action-param", "a.F=ConfigurationDataBlob,default=x")},
		{1, "publishingProfile.customActions[0].parameters[0].type", create("2.0.0", "--custom-action", "a=true", "--custom-action-param", "a.F=Integer")},
		{1, "publishingProfile.customActions[0].parameters[0].name", create("2.0.0", "--custom-action", "a=true", "--custom-action-param", "a.PATH=String")},
		{2, "want NAME=SCRIPT", create("2.0.0", "--custom-action", "noscript")},
		{2, "no --custom-action b", create("2.0.0", "--custom-action", "a=true", "--custom-action-param", "b.X=String")},
		{2, "needs the --custom-action", create("2.0.0", "--custom-action-param", "a.X=String")},
		{2, "neither a type", create("2.0.0", "--custom-action", "a=true", "--custom-action-param", "a.X=String,optional")},
		{2, "want KEY=VALUE", create("2.0.0", "--advanced-setting", "novalue")},
		{2, "not a JSON or YAML list", create("2.0.0", "--custom-action", "@"+notList)},
		{1, "isn't allowed", []string{"version", "update", "--gallery", "g", "--app", "app", "1.0.0", "--enable-health-check=false"}},
	} {
		e.fails(c.code, c.want, c.args...)
	}
}
