package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain runs main instead of the tests when the test binary is started
// by TestBadFlags as a vmapp-agent.
func TestMain(m *testing.M) {
	if os.Getenv("VMAPP_AGENT_RUN_MAIN") == "1" {
		os.Args = append([]string{"vmapp-agent"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestBadFlags(t *testing.T) {
	root, dir := t.TempDir(), t.TempDir()
	badTrust := filepath.Join(dir, "trust")
	if err := os.WriteFile(badTrust, []byte("# keys\nrequired 1\nRWQnot-a-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no flags", nil, "usage: vmapp-agent --vm NAME --root DIR"},
		{"no --vm", []string{"--root", root}, "usage: vmapp-agent"},
		{"no --root", []string{"--vm", "vm1"}, "usage: vmapp-agent"},
		{"stray argument", []string{"--vm", "vm1", "--root", root, "extra"}, "usage: vmapp-agent"},
		{"zero command timeout", []string{"--vm", "vm1", "--root", root, "--command-timeout", "0s"}, "--command-timeout 0s: must be positive"},
		{"negative retry base", []string{"--vm", "vm1", "--root", root, "--retry-base", "-1s"}, "--retry-base -1s: must be positive"},
		{"zero revoked retry", []string{"--vm", "vm1", "--root", root, "--revoked-retry", "0s"}, "--revoked-retry 0s: must be positive"},
		{"retry max under retry base", []string{"--vm", "vm1", "--root", root, "--retry-base", "1m", "--retry-max", "10s"}, "--retry-max 10s is shorter than --retry-base 1m0s"},
		{"command timeout not a duration", []string{"--vm", "vm1", "--root", root, "--command-timeout", "long"}, `invalid argument "long" for "--command-timeout" flag`},
		{"missing token file", []string{"--vm", "vm1", "--root", root, "--token-file", root + "/nope.token"}, "--token-file: token file " + root + "/nope.token: no such file or directory"},
		{"bad log format", []string{"--vm", "vm1", "--root", root, "--log-format", "xml"}, `invalid argument "xml" for "--log-format" flag: "xml" is not a log format: want text or json`},
		{"missing trust file", []string{"--vm", "vm1", "--root", root, "--trust-file", dir + "/nope"}, "--trust-file: open " + dir + "/nope"},
		{"bad download rate", []string{"--vm", "vm1", "--root", root, "--max-download-rate", "fast"}, `invalid argument "fast" for "--max-download-rate" flag: not a number of bytes per second`},
		{"negative upload rate", []string{"--vm", "vm1", "--root", root, "--max-upload-rate", "-5MB"}, `invalid argument "-5MB" for "--max-upload-rate" flag`},
		{"negative peer rate", []string{"--vm", "vm1", "--root", root, "--peer-max-rate", "-1MB"}, `invalid argument "-1MB" for "--peer-max-rate" flag`},
		{"no peer and peer listen", []string{"--vm", "vm1", "--root", root, "--no-peer", "--peer-listen", "127.0.0.1:0"}, "--no-peer and --peer-listen contradict each other"},
		{"bad cache max", []string{"--vm", "vm1", "--root", root, "--cache-max", "lots"}, `invalid argument "lots" for "--cache-max" flag: not a size`},
		{"cache max over 100%", []string{"--vm", "vm1", "--root", root, "--cache-max", "150%"}, "a percentage must be above 0 and at most 100"},
		{"malformed trust file", []string{"--vm", "vm1", "--root", root, "--trust-file", badTrust}, "--trust-file: " + badTrust + ": line 3: not a public key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], append([]string{}, c.args...)...)
			cmd.Env = append(os.Environ(), "VMAPP_AGENT_RUN_MAIN=1")
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), c.want) {
				t.Fatalf("err %v, output:\n%s\nwant exit 2 and %q", err, out, c.want)
			}
			if entries, _ := os.ReadDir(root); len(entries) != 0 {
				t.Fatalf("the agent wrote under --root before refusing its flags: %v", entries)
			}
		})
	}
}

// TestListenRefusals: addresses the agent can't listen on, or peers can't
// dial, stop it at start with exit 1 and the flag at fault.
func TestListenRefusals(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"peer listen on every address, none advertised", []string{"--peer-listen", "0.0.0.0:0"}, "names no address peers can dial: give the one they reach this machine at (--peer-advertise)"},
		{"peer listen not an address", []string{"--peer-listen", "nowhere"}, "peer listen: listen tcp: address nowhere: missing port in address"},
		{"metrics listen not an address", []string{"--metrics-listen", "nowhere"}, "--metrics-listen: listen tcp: address nowhere: missing port in address"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"--vm", "vm1", "--root", t.TempDir(), "--server", "127.0.0.1:1"}, c.args...)
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), "VMAPP_AGENT_RUN_MAIN=1")
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), c.want) {
				t.Fatalf("err %v, output:\n%s\nwant exit 1 and %q", err, out, c.want)
			}
		})
	}
}
