package main

import (
	"io"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/internal/cobracmd/cobracmdtest"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
)

// complete runs `vmapp __complete args...` (what the shell scripts run on
// <Tab>) against the env's vmappd: the names offered, and the directive.
func (e *env) complete(args ...string) ([]string, string) {
	e.t.Helper()
	r := e.vmapp(append([]string{"__complete"}, args...)...)
	if r.code != 0 {
		e.t.Fatalf("want success, got %v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	return lines[:len(lines)-1], lines[len(lines)-1]
}

// TestCompletion: the names of galleries, applications, versions and
// machines are completed from a whole deployment, with the connection
// flags given on the command line.
func TestCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO processes")
	}
	e := clusterEnv(t, testcluster.Start(t, testcluster.Options{}))
	e.ok("gallery", "create", "g1", "--location", "eastus")
	e.ok("gallery", "create", "other", "--location", "eastus")
	e.ok("app", "create", "--gallery", "g1", "app1", "--os", "linux")
	e.ok("version", "create", "--gallery", "g1", "--app", "app1", "1.0.0", "--location", "eastus", "--install", "i", "--remove", "r")
	e.ok("vm", "create", "--name", "vm1", "--region", "eastus", "--os", "linux")
	const noFiles = ":4" // cobra.ShellCompDirectiveNoFileComp
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"gallery", "show", ""}, []string{"g1", "other"}},
		{[]string{"gallery", "delete", "o"}, []string{"other"}},
		{[]string{"gallery", "show", "g1", ""}, nil}, // the name is given
		{[]string{"app", "list", "--gallery", ""}, []string{"g1", "other"}},
		{[]string{"app", "show", "--gallery", "g1", ""}, []string{"app1"}},
		{[]string{"app", "show", "--gallery", "other", ""}, nil},
		{[]string{"version", "show", "--gallery", "g1", "--app", ""}, []string{"app1"}},
		{[]string{"version", "show", "--gallery", "g1", "--app", "app1", ""}, []string{"1.0.0"}},
		// No --gallery yet: cobra offers the required flag.
		{[]string{"version", "show", "--app", "app1", ""}, []string{"--gallery\tgallery name (required)", "-g\tgallery name (required)"}},
		{[]string{"vm", "show", ""}, []string{"vm1"}},
		{[]string{"vm", "app", "set", "--vm", ""}, []string{"vm1"}},
	} {
		names, directive := e.complete(tc.args...)
		if !slices.Equal(names, tc.want) || directive != noFiles {
			t.Errorf("__complete %q: %q %s, want %q %s", tc.args, names, directive, tc.want, noFiles)
		}
	}
	// vmappd unreachable: no names, the error directive, exit 0 (the
	// shell goes on).
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	e.addr = dead.Addr().String()
	if names, directive := e.complete("gallery", "show", ""); len(names) != 0 || directive != ":5" {
		t.Errorf("__complete against nothing: %q %s, want no names and :5 (error, no files)", names, directive)
	}
}

func TestCommandLine(t *testing.T) {
	cobracmdtest.Check(t, func() *cobra.Command {
		c := &cli{stdout: io.Discard, stderr: io.Discard, ctx: t.Context()}
		return c.rootCmd()
	}, "vmapp-gallery-create.1", "vmapp-vm-app-set.1", "vmapp-version-upload.1")
}
