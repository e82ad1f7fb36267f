package main

import (
	"strings"
	"testing"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
)

// TestPreheatCLI: vmapp version preheat chooses machines and says which;
// version show lists the preheat in a table and in -o json; --cancel
// ends it; wrong uses are refused before or by vmappd, naming the flag.
func TestPreheatCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO processes")
	}
	c := testcluster.Start(t, testcluster.Options{})
	c.Publish(t, "1.0.0", []byte("package one"), testcluster.Target("eastus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	e := clusterEnv(t, c)
	e.ok("vmss", "create", "--name", "web", "--region", "eastus", "--os", "linux")
	for _, vm := range []string{"web-0", "web-1"} {
		e.ok("vm", "create", "--name", vm, "--vmss", "web")
	}
	e.ok("vm", "create", "--name", "vm1", "--region", "eastus", "--os", "linux")
	ref := []string{"--gallery", "g", "--app", "a", "1.0.0", "--region", "eastus"}

	out := e.ok(append([]string{"version", "preheat"}, append(ref, "--machines", "2")...)...)
	if want := "Preheating g/a/1.0.0 in eastus on 2 machines: vm1, web-0\n"; out != want {
		t.Fatalf("preheat: %q, want %q", out, want)
	}
	out = e.ok("version", "show", "--gallery", "g", "--app", "a", "1.0.0")
	lineMatching(t, out, `PREHEAT REGION\s+CHOSEN\s+HOLDING\s+HOLDING IN REGION`)
	lineMatching(t, out, `eastus\s+vm1,web-0\s+0/2\s+0`)

	e.ok(append([]string{"version", "preheat"}, append(ref, "--scale-set", "web")...)...) // --scale-set is --vmss
	m := e.okJSON("version", "show", "--gallery", "g", "--app", "a", "1.0.0")
	if at(m, "preheat", 0, "scaleSet") != "web" || at(m, "preheat", 0, "wanted") != float64(2) || at(m, "preheat", 0, "holding") != nil /* 0: left out, as every zero in -o json */ ||
		at(m, "preheat", 0, "machines", 1) != "web-1" || at(m, "preheat", 1) != nil {
		t.Fatalf("-o json preheat: %v", at(m, "preheat"))
	}

	out = e.ok(append([]string{"version", "preheat"}, append(ref, "--cancel")...)...)
	if !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel: %q", out)
	}
	if m := e.okJSON("version", "show", "--gallery", "g", "--app", "a", "1.0.0"); at(m, "preheat") != nil {
		t.Fatalf("preheat after the cancel: %v", at(m, "preheat"))
	}

	e.fails(2, "give --machines N, --vmss S or --cancel", append([]string{"version", "preheat"}, ref...)...)
	e.fails(2, "none of the others can be", append([]string{"version", "preheat"}, append(ref, "--machines", "1", "--vmss", "web")...)...)
	e.fails(2, `required flag(s) "region" not set`, "version", "preheat", "--gallery", "g", "--app", "a", "1.0.0", "--machines", "1")
	e.fails(1, "region eastus has 3 machines; 4 asked for", append([]string{"version", "preheat"}, append(ref, "--machines", "4")...)...)
	e.fails(1, "has no preheat in region eastus", append([]string{"version", "preheat"}, append(ref, "--cancel")...)...)
}
