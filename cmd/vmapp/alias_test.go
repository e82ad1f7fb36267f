package main

import (
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// catalogJSON runs the same catalog commands against a fresh vmappd and
// returns their -o json outputs without etags and times, which differ
// between runs.
func catalogJSON(t *testing.T, cmds [][]string) []map[string]any {
	e := newEnv(t)
	var out []map[string]any
	for _, args := range cmds {
		m := e.okJSON(args...)
		for _, k := range []string{"etag", "createTime", "updateTime"} {
			delete(m, k)
		}
		out = append(out, m)
	}
	return out
}

// TestAzAliasesMeanTheSame publishes the same gallery, application and
// version with vmapp's flags and with az's spellings, each against its own
// real vmappd, and compares what vmappd made of them.
func TestAzAliasesMeanTheSame(t *testing.T) {
	eol := future()
	native := [][]string{
		{"gallery", "create", "g1", "--location", "eastus"},
		{"gallery", "show", "g1"},
		{"app", "create", "--gallery", "g1", "a1", "--os", "linux", "--end-of-life", eol},
		{"app", "show", "-g", "g1", "a1"},
		{"version", "create", "--gallery", "g1", "--app", "a1", "1.0.0", "--install", "sh i.sh", "--remove", "sh r.sh",
			"--update", "sh u.sh", "--target-region", "eastus=2", "--target-region", "westus", "--end-of-life", eol,
			"--package-file-name", "a.tgz", "--config-file-name", "a.json"},
		{"version", "show", "--gallery", "g1", "--app", "a1", "1.0.0"},
		{"version", "update", "--gallery", "g1", "--app", "a1", "1.0.0", "--target-region", "eastus", "--target-region", "westus=3", "--target-region", "northeurope"},
	}
	az := [][]string{
		{"gallery", "create", "--gallery-name", "g1", "--location", "eastus"},
		{"gallery", "show", "-r", "g1"},
		{"app", "create", "-r", "g1", "--application-name", "a1", "--os", "linux", "--end-of-life-date", eol},
		{"app", "show", "--gallery-name", "g1", "-n", "a1"},
		{"version", "create", "-r", "g1", "--application-name", "a1", "--version-name", "1.0.0", "--install-command", "sh i.sh",
			"--remove-command", "sh r.sh", "--update-command", "sh u.sh", "--target-regions", "eastus=2 westus",
			"--end-of-life-date", eol, "--package-file-name", "a.tgz", "--config-file-name", "a.json"},
		{"version", "show", "--gallery-name", "g1", "--application-name", "a1", "-n", "1.0.0"},
		{"version", "update", "-r", "g1", "-a", "a1", "-n", "1.0.0", "--target-regions", "eastus westus=3 northeurope"},
	}
	want, got := catalogJSON(t, native), catalogJSON(t, az)
	for i := range want {
		if !reflect.DeepEqual(want[i], got[i]) {
			t.Errorf("vmapp %s\n gave %v\nvmapp %s\n gave %v", strings.Join(native[i], " "), want[i], strings.Join(az[i], " "), got[i])
		}
	}
}

// parsed builds the command tree, parses args as cobra does and resolves
// the aliases (cobra's Args step); it returns the flags given (by their
// native names) and the positional arguments the command's body gets.
func parsed(t *testing.T, args ...string) (map[string]string, []string, error) {
	t.Helper()
	c := &cli{stdout: io.Discard, stderr: io.Discard}
	cmd, rest, err := c.rootCmd().Find(args)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, nil, err
	}
	pos := cmd.Flags().Args()
	if err := cmd.Args(cmd, pos); err != nil {
		return nil, nil, err
	}
	flags := map[string]string{}
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if _, alias := f.Annotations[azAnnotation]; !alias {
			flags[f.Name] = f.Value.String()
		}
	})
	return flags, withPositional(cmd, pos), nil
}

// TestAzAliasesParse checks every alias of azAliases, on the commands of
// its kind, against the native spelling: the same flags and arguments.
func TestAzAliasesParse(t *testing.T) {
	for _, tc := range []struct{ native, az []string }{
		{[]string{"vm", "app", "set", "--vm", "vm1", "--app", "g/a/1.0.0", "--config-url", "https://x/c", "--order", "1", "--treat-failure-as-deployment-failure=true"},
			[]string{"vm", "app", "set", "--vm", "vm1", "--app-version-ids", "g/a/1.0.0", "--app-config-overrides", "https://x/c", "--order-applications", "--treat-deployment-as-failure", "true"}},
		{[]string{"vmss", "app", "set", "--vmss", "web", "--app", "g/a/latest", "--enable-automatic-upgrade", "--tag", "a=1", "--tag", "b=2"},
			[]string{"vmss", "app", "set", "--vmss", "web", "--app-version-ids", "g/a/latest", "--enable-automatic-upgrade", "--tags", "a=1 b=2"}},
		{[]string{"version", "create", "-g", "g", "-a", "a", "1.0.0", "--install", "i", "--remove", "r", "--package-url", "https://x/p", "--config-url", "https://x/c"},
			[]string{"version", "create", "--gallery-name", "g", "--application-name", "a", "-n", "1.0.0", "--install-command", "i", "--remove-command", "r", "--package-file-link", "https://x/p", "--default-file-link", "https://x/c"}},
		{[]string{"version", "update", "-g", "g", "-a", "a", "1.0.0", "--update", "u", "--end-of-life", "2030-01-01", "--target-region", "eastus=2", "--target-region", "westus"},
			[]string{"version", "update", "-r", "g", "-a", "a", "--version-name", "1.0.0", "--update-command", "u", "--end-of-life-date", "2030-01-01", "--target-regions", "eastus=2  westus"}},
		{[]string{"version", "watch", "-g", "g", "-a", "a", "1.0.0"}, []string{"version", "watch", "-r", "g", "--application-name", "a", "-n", "1.0.0"}},
		{[]string{"app", "delete", "-g", "g", "a", "--cascade"}, []string{"app", "delete", "-r", "g", "-n", "a", "--cascade"}},
		{[]string{"gallery", "update", "g", "--description", "d"}, []string{"gallery", "update", "-r", "g", "--description", "d"}},
		// The same value twice is no conflict.
		{[]string{"app", "show", "-g", "g", "a"}, []string{"app", "show", "-g", "g", "-r", "g", "a", "-n", "a"}},
	} {
		wf, wa, err := parsed(t, tc.native...)
		if err != nil {
			t.Fatalf("%v: %v", tc.native, err)
		}
		gf, ga, err := parsed(t, tc.az...)
		if err != nil {
			t.Fatalf("%v: %v", tc.az, err)
		}
		if !reflect.DeepEqual(wf, gf) || !reflect.DeepEqual(wa, ga) {
			t.Errorf("vmapp %s: %v %v\nvmapp %s: %v %v", strings.Join(tc.native, " "), wf, wa, strings.Join(tc.az, " "), gf, ga)
		}
	}
}

// TestAzAliasConflicts: az's -g is a resource group, vmapp's is --gallery;
// an az user's "-g rg -r gallery" is refused, not read as either.
func TestAzAliasConflicts(t *testing.T) {
	e := newEnv(t)
	e.fails(2, `--gallery-name/-r "g1" and --gallery "rg"`, "app", "show", "-g", "rg", "-r", "g1", "a")
	e.fails(2, "vmapp has no resource groups", "version", "create", "-g", "rg", "-r", "g1", "-a", "a", "-n", "1.0.0", "--install", "i", "--remove", "r")
	e.fails(2, `--version-name/-n "1.0.0" and the argument "2.0.0"`, "version", "show", "-g", "g", "-a", "a", "-n", "1.0.0", "2.0.0")
	e.fails(2, `--install-command "x" and --install "y"`, "version", "create", "-g", "g", "-a", "a", "1.0.0", "--install-command", "x", "--install", "y", "--remove", "r")
	e.fails(2, `--treat-deployment-as-failure "maybe"`, "vm", "app", "set", "--vm", "v", "--app", "g/a/1.0.0", "--treat-deployment-as-failure", "maybe")
	e.fails(2, `missing argument VERSION`, "version", "show", "-g", "g", "-a", "a")
	// Aliases stay out of the help.
	out := e.ok("version", "create", "--help")
	if strings.Contains(out, "install-command") || strings.Contains(out, "gallery-name") {
		t.Errorf("help lists the aliases:\n%s", out)
	}
}
