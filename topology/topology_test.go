package topology

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
regions:
  - name: eastus
    endpoints:
      - url: http://127.0.0.1:9101
        bucket: vmapp-eastus
      - url: http://127.0.0.1:9102
        bucket: vmapp-eastus
        bandwidthMBps: 40
        egressMBps: 12.5
  - name: westus
    endpoints:
      - url: https://s3.example.net:443
        bucket: vmapp-westus
        credentialsEnv: WEST_S3
replication:
  concurrency: 8
  scrubInterval: 1h
`

func TestParseGood(t *testing.T) {
	topo, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(topo.Names(), ","); got != "eastus,westus" {
		t.Fatalf("names %s", got)
	}
	if r, ok := topo.Region("eastus"); !ok || len(r.Endpoints) != 2 || r.Endpoints[1].BandwidthMBps != 40 || r.Endpoints[1].Egress() != 12_500_000 || r.Endpoints[0].Egress() != 0 {
		t.Fatalf("eastus %+v %v", r, ok)
	}
	if !topo.Has("westus") || topo.Has("nowhere") {
		t.Fatal("Has")
	}
	if topo.Replication.Concurrency != 8 || topo.Replication.ScrubInterval != time.Hour {
		t.Fatalf("replication %+v", topo.Replication)
	}
}

// TestParseBad feeds each kind of mistake and checks the error names the
// field at fault.
func TestParseBad(t *testing.T) {
	region := func(name, url, bucket, extra string) string {
		return "  - name: " + name + "\n    endpoints:\n      - url: " + url + "\n        bucket: " + bucket + "\n" + extra
	}
	ok := region("eastus", "http://127.0.0.1:9101", "vmapp-eastus", "")
	for _, c := range []struct{ name, doc, want string }{
		{"empty", "", "EOF"},
		{"no regions", "regions: []\n", "at least one region"},
		{"unknown key", "regions:\n" + ok + "secretKey: hunter2\n", "field secretKey not found"},
		{"misspelt endpoint key", "regions:\n" + region("eastus", "http://127.0.0.1:9101", "vmapp-eastus", "        bandwith: 3\n"), "field bandwith not found"},
		{"bad region name", "regions:\n" + region("East-US", "http://127.0.0.1:9101", "vmapp-eastus", ""), `regions[0].name "East-US"`},
		{"region twice", "regions:\n" + ok + region("eastus", "http://127.0.0.1:9102", "vmapp-other", ""), `regions[1].name "eastus": listed twice`},
		{"no endpoints", "regions:\n  - name: eastus\n", "region eastus: at least one endpoint"},
		{"bad url", "regions:\n" + region("eastus", "ftp://127.0.0.1:9101", "vmapp-eastus", ""), "endpoints[0].url"},
		{"url without host", "regions:\n" + region("eastus", "http://", "vmapp-eastus", ""), "endpoints[0].url"},
		{"bad bucket", "regions:\n" + region("eastus", "http://127.0.0.1:9101", "Vmapp_East", ""), "endpoints[0].bucket"},
		{"negative endpoint bandwidth", "regions:\n" + region("eastus", "http://127.0.0.1:9101", "vmapp-eastus", "        bandwidthMBps: -1\n"), "endpoints[0].bandwidthMBps -1: must not be negative"},
		{"bad credentialsEnv", "regions:\n" + region("eastus", "http://127.0.0.1:9101", "vmapp-eastus", "        credentialsEnv: my-creds\n"), "endpoints[0].credentialsEnv"},
		{"bucket shared by two regions", "regions:\n" + ok + region("westus", "http://127.0.0.1:9101", "vmapp-eastus", ""), "already used by region eastus"},
		{"negative concurrency", "regions:\n" + ok + "replication:\n  concurrency: -2\n", "replication.concurrency -2"},
		{"negative endpointConcurrency", "regions:\n" + ok + "replication:\n  endpointConcurrency: -1\n", "replication.endpointConcurrency"},
		{"negative partConcurrency", "regions:\n" + ok + "replication:\n  partConcurrency: -1\n", "replication.partConcurrency"},
		{"negative endpoint egress", "regions:\n" + ok + region("westus", "http://127.0.0.1:9102", "vmapp-westus", "        egressMBps: -3\n"), "regions[1].endpoints[0].egressMBps -3 (region westus): must not be negative"},
		{"negative bandwidth", "regions:\n" + ok + "replication:\n  bandwidthMBps: -0.5\n", "replication.bandwidthMBps"},
		{"negative scrubInterval", "regions:\n" + ok + "replication:\n  scrubInterval: -1h\n", "replication.scrubInterval"},
		{"scrubInterval not a duration", "regions:\n" + ok + "replication:\n  scrubInterval: daily\n", "daily"},
		{"concurrency not a number", "regions:\n" + ok + "replication:\n  concurrency: many\n", "many"},
		{"deepScrubPeriod too short", "regions:\n" + ok + "replication:\n  deepScrubPeriod: 30s\n", "replication.deepScrubPeriod 30s: want at least 1m0s, or 0 to turn the deep scrub off"},
		{"deepScrubPeriod without a unit", "regions:\n" + ok + "replication:\n  deepScrubPeriod: 7\n", "cannot unmarshal !!int `7` into time.Duration"},
		{"negative deepScrubPeriod", "regions:\n" + ok + "replication:\n  deepScrubPeriod: -1h\n", "replication.deepScrubPeriod -1h0m0s"},
		{"deepScrubPeriod not a duration", "regions:\n" + ok + "replication:\n  deepScrubPeriod: weekly\n", "weekly"},
		{"negative deepScrubMBps", "regions:\n" + ok + "replication:\n  deepScrubMBps: -5\n", "replication.deepScrubMBps -5: must not be negative"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse: %v, want an error with %q", err, c.want)
			}
		})
	}
}

// TestDeepScrub: the deep scrub runs weekly at 10 MB/s unless the file
// says otherwise; a period of 0 turns it off.
func TestDeepScrub(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		period     time.Duration
		bps        float64
	}{
		{"defaults", "", 7 * 24 * time.Hour, 10e6},
		{"set", "replication:\n  deepScrubPeriod: 72h\n  deepScrubMBps: 2.5\n", 72 * time.Hour, 2.5e6},
		{"off", "replication:\n  deepScrubPeriod: 0s\n", 0, 10e6},
		{"only the rate", "replication:\n  deepScrubMBps: 40\n", 7 * 24 * time.Hour, 40e6},
	} {
		t.Run(c.name, func(t *testing.T) {
			topo, err := Parse([]byte("regions:\n  - name: eastus\n    endpoints: [{url: http://127.0.0.1:9101, bucket: vmapp-eastus}]\n" + c.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if p, bps := topo.Replication.DeepScrub(); p != c.period || bps != c.bps {
				t.Fatalf("deep scrub every %v at %v B/s, want %v at %v", p, bps, c.period, c.bps)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "regions file") {
		t.Fatalf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("regions: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad file: %v, want the path in the error", err)
	}
}

func TestCredentials(t *testing.T) {
	e := Endpoint{URL: "http://127.0.0.1:9101", CredentialsEnv: "VMAPP_TOPOTEST"}
	t.Setenv("VMAPP_TOPOTEST_ACCESS_KEY", "")
	t.Setenv("VMAPP_TOPOTEST_SECRET_KEY", "")
	if _, _, err := e.Credentials(); err == nil || !strings.Contains(err.Error(), "VMAPP_TOPOTEST_ACCESS_KEY") {
		t.Fatalf("unset: %v", err)
	}
	t.Setenv("VMAPP_TOPOTEST_ACCESS_KEY", "ak")
	t.Setenv("VMAPP_TOPOTEST_SECRET_KEY", "sk")
	if a, s, err := e.Credentials(); err != nil || a != "ak" || s != "sk" {
		t.Fatalf("set: %q %q %v", a, s, err)
	}
}
