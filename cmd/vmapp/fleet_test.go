package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// lineMatching finds the line of out that matches re.
func lineMatching(t *testing.T, out, re string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + re + `$`).FindString(out)
	if m == "" {
		t.Fatalf("no line matching %q in:\n%s", re, out)
	}
	return m
}

// TestFleetEndToEnd drives machines, scale sets, their profiles and the
// inventory through the CLI against a whole deployment (MinIO regions,
// replicator, fleet).
func TestFleetEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO processes")
	}
	c := testcluster.Start(t, testcluster.Options{})
	c.Publish(t, "1.0.0", []byte("package one"), testcluster.Target("eastus", 1), testcluster.Target("westus", 1))
	c.WaitState(t, "1.0.0", "Completed")
	e := clusterEnv(t, c)

	// Scale sets and machines.
	out := e.ok("vmss", "create", "--name", "web", "--region", "westus", "--os", "linux")
	if fieldOf(t, out, "Name") != "web" || fieldOf(t, out, "Region") != "westus" || fieldOf(t, out, "OS type") != "Linux" || fieldOf(t, out, "Instances") != "0" {
		t.Fatalf("vmss create:\n%s", out)
	}
	out = e.ok("vm", "create", "--name", "vm1", "--region", "eastus", "--os", "linux")
	if fieldOf(t, out, "Name") != "vm1" || fieldOf(t, out, "OS type") != "Linux" || fieldOf(t, out, "Provisioning state") != "Succeeded" ||
		fieldOf(t, out, "Agent connected") != "false" || fieldOf(t, out, "Last report") != "never" {
		t.Fatalf("vm create:\n%s", out)
	}
	// The agent credential is shown once, under the machine.
	if !regexp.MustCompile(`agent token \(shown once, keep it secret\):\ntok_[a-z2-7]{20}\.\S+\n$`).MatchString(out) {
		t.Fatalf("vm create shows no agent token:\n%s", out)
	}
	e.ok("vm", "create", "win1", "--region", "eastus", "--os", "Windows")
	e.ok("vm", "create", "--name", "ne1", "--region", "northeurope", "--os", "linux")
	// Instances inherit region and OS.
	// In JSON the credential goes to a file, never to stdout.
	tokFile := filepath.Join(t.TempDir(), "web-0.token")
	m := e.okJSON("vm", "create", "--name", "web-0", "--vmss", "web", "--agent-token-file", tokFile)
	if m["region"] != "westus" || m["osType"] != "Linux" || m["scaleSet"] != "web" {
		t.Fatalf("instance: %v", m)
	}
	if fi, err := os.Stat(tokFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	if tok, err := client.ReadTokenFile(tokFile); err != nil || !strings.HasPrefix(tok, "tok_") || strings.Contains(fmt.Sprint(m), tok) {
		t.Fatalf("token file holds %q (%v); JSON %v", tok, err, m)
	}
	r := e.vmapp("-o", "json", "vm", "create", "--name", "web-9", "--vmss", "web")
	if r.code != 0 || strings.Contains(r.stdout, "tok_") || !strings.Contains(r.stderr, "pass --agent-token-file") {
		t.Fatalf("JSON vm create without a token file: %v", r)
	}
	e.ok("vm", "delete", "web-9")
	e.ok("vm", "create", "--name", "web-1", "--vmss", "web", "--os", "linux")
	e.fails(1, "error: InvalidArgument: machine 'web-2' is in region eastus but scale set 'web' is in westus", "vm", "create", "--name", "web-2", "--vmss", "web", "--region", "eastus")
	e.fails(1, "error: NotFound: ", "vm", "create", "--name", "x", "--vmss", "nope")
	e.fails(1, "error: AlreadyExists: Machine 'vm1' already exists.", "vm", "create", "--name", "vm1", "--region", "eastus", "--os", "linux")
	e.fails(1, "error: InvalidArgument: region 'mars'", "vm", "create", "--name", "x", "--region", "mars", "--os", "linux")
	e.fails(2, `--os "bsd": must be linux or windows`, "vm", "create", "--name", "x", "--region", "eastus", "--os", "bsd")
	e.fails(2, "missing --region", "vm", "create", "--name", "x", "--os", "linux")

	out = e.ok("vm", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !regexp.MustCompile(`^NAME\s+REGION\s+OS\s+VMSS\s+STATE\s+AGENT\s+APPLICATIONS\s+LAST-REPORT$`).MatchString(lines[0]) {
		t.Fatalf("vm list:\n%s", out)
	}
	lineMatching(t, out, `web-0\s+westus\s+Linux\s+web\s+Succeeded\s+never\s+0\s+-`)
	js := e.okJSON("vm", "list", "--vmss", "web")
	if v, _ := js["value"].([]any); len(v) != 2 || at(js, "value", 0, "name") != "web-0" || at(js, "value", 1, "name") != "web-1" {
		t.Fatalf("vm list --vmss: %v", js)
	}
	out = e.ok("vmss", "list")
	lineMatching(t, out, `web\s+westus\s+Linux\s+2\s+0`)

	// Set an application on a machine, with the profile's etag.
	vm1 := e.okJSON("vm", "show", "vm1")
	etag := at(vm1, "applicationProfile", "etag").(string)
	cfg := filepath.Join(t.TempDir(), "cfg.json")
	if err := os.WriteFile(cfg, []byte(`{"port": 8080}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out = e.ok("vm", "app", "set", "--vm", "vm1", "--app", "g/a/latest", "--order", "2", "--config", cfg,
		"--treat-failure-as-deployment-failure", "--enable-automatic-upgrade", "--tag", "team=web", "--tag", "env=prod", "--if-match", etag)
	lineMatching(t, out, `PACKAGE-REFERENCE\s+ORDER\s+RESOLVED\s+AUTO-UPGRADE\s+TREAT-FAILURE\s+TAGS`)
	lineMatching(t, out, `g/a/latest\s+2\s+1\.0\.0\s+true\s+true\s+env=prod,team=web`)
	newEtag := fieldOf(t, out, "Etag")
	if newEtag == etag {
		t.Fatalf("the etag did not change:\n%s", out)
	}
	// A stale etag.
	e.fails(1, "error: FailedPrecondition: the application profile of machine 'vm1' has etag", "vm", "app", "set", "--vm", "vm1", "--app", "g/a/1.0.0", "--if-match", etag)
	e.fails(1, "error: FailedPrecondition: ", "vm", "app", "remove", "--vm", "vm1", "--app", "g/a", "--if-match", etag)

	js = e.okJSON("vm", "app", "list", "--vm", "vm1")
	if at(js, "etag") != newEtag || at(js, "value", 0, "packageReferenceId") != "g/a/latest" || at(js, "value", 0, "order") != 2.0 ||
		at(js, "value", 0, "resolvedVersion") != "1.0.0" || at(js, "value", 0, "enableAutomaticUpgrade") != true ||
		at(js, "value", 0, "treatFailureAsDeploymentFailure") != true || at(js, "value", 0, "tags", "team") != "web" ||
		at(js, "value", 0, "configuration") != "eyJwb3J0IjogODA4MH0=" {
		t.Fatalf("app list json: %v", js)
	}
	// Setting it again replaces the entry as a whole; without --order no
	// order is sent.
	js = e.okJSON("vm", "app", "set", "--vm", "vm1", "--app", "g/a/1.0.0", "--config-url", "https://example.com/cfg.json", "--treat-failure-as-deployment-failure")
	if at(js, "galleryApplications", 0, "packageReferenceId") != "g/a/1.0.0" || at(js, "galleryApplications", 0, "order") != nil ||
		at(js, "galleryApplications", 0, "configurationReference") != "https://example.com/cfg.json" || at(js, "galleryApplications", 0, "tags") != nil || at(js, "etag") == newEtag {
		t.Fatalf("app set json: %v", js)
	}
	out = e.ok("vm", "app", "list", "--vm", "vm1")
	lineMatching(t, out, `g/a/1\.0\.0\s+-\s+1\.0\.0\s+false\s+true\s+-`)

	// The seeds' rejections.
	e.fails(1, "error: NotFound: The platform image g/nope/1.0.0 isn't available.", "vm", "app", "set", "--vm", "vm1", "--app", "g/nope/1.0.0")
	e.fails(1, "error: NotFound: The platform image g/a/9.9.9 isn't available.", "vm", "app", "set", "--vm", "vm1", "--app", "g/a/9.9.9")
	e.fails(1, "error: FailedPrecondition: Current VM Application Version g/a/1.0.0 supports OS Linux, while current OSDisk's OS is Windows.", "vm", "app", "set", "--vm", "win1", "--app", "g/a/1.0.0")
	e.fails(1, "error: FailedPrecondition: The gallery application version 'g/a/1.0.0' isn't available in northeurope region.", "vm", "app", "set", "--vm", "ne1", "--app", "g/a/1.0.0")
	e.fails(1, "error: NotFound: Machine 'nope' doesn't exist.", "vm", "app", "set", "--vm", "nope", "--app", "g/a/1.0.0")
	e.fails(1, "error: InvalidArgument: packageReferenceId 'g/a' is invalid", "vm", "app", "set", "--vm", "vm1", "--app", "g/a")
	// Usage errors.
	e.fails(2, `--tag "team": want KEY=VALUE`, "vm", "app", "set", "--vm", "vm1", "--app", "g/a/1.0.0", "--tag", "team")
	e.fails(2, "[config config-url]", "vm", "app", "set", "--vm", "vm1", "--app", "g/a/1.0.0", "--config", cfg, "--config-url", "https://example.com/c")
	e.fails(2, `--app "g/a/1.0.0": want GALLERY/APPLICATION`, "vm", "app", "remove", "--vm", "vm1", "--app", "g/a/1.0.0")
	e.fails(2, `required flag(s) "vm" not set`, "vm", "app", "list")

	// A scale set's profile: instances get it; they can't add another
	// version of the same application.
	out = e.ok("vmss", "app", "set", "--vmss", "web", "--app", "g/a/1.0.0", "--order", "1")
	lineMatching(t, out, `g/a/1\.0\.0\s+1\s+1\.0\.0\s+false\s+false\s+-`)
	e.fails(1, "error: InvalidArgument: More than one VM Application was specified with the same packageReferenceId", "vm", "app", "set", "--vm", "web-0", "--app", "g/a/1.0.0")
	out = e.ok("vm", "app", "list", "--vm", "web-0")
	if !strings.Contains(out, "From scale set 'web': g/a/1.0.0") {
		t.Fatalf("instance's app list:\n%s", out)
	}
	out = e.ok("vmss", "show", "web")
	if fieldOf(t, out, "Instances") != "2" || fieldOf(t, out, "Profile etag") == "" {
		t.Fatalf("vmss show:\n%s", out)
	}
	lineMatching(t, out, `g/a/1\.0\.0\s+1\s+1\.0\.0\s+false\s+false\s+-`)
	js = e.okJSON("vmss", "app", "list", "--vmss", "web")
	if v, _ := js["value"].([]any); len(v) != 1 || at(js, "value", 0, "order") != 1.0 {
		t.Fatalf("vmss app list json: %v", js)
	}

	// What the agents report (their RPC, called here directly).
	fl := pb.NewFleetServiceClient(c.Client.Conn())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	if _, err := fl.ReportStatus(ctx, &pb.ReportStatusRequest{Machine: "vm1", InstanceView: &pb.InstanceView{
		AgentVersion: "0.1.0", BootId: "boot-1", AppliedGeneration: 7,
		Applications: []*pb.ApplicationStatus{{
			Application: "g/a", Version: "1.0.0", State: "Failed", Operation: "install", Reason: "install exited with 3",
			ExitCode: 3, OutputTail: "unpacking\nboom: disk full\n", BytesDone: 11, BytesTotal: 11, Attempts: 1,
			StartTime: timestamppb.New(start), EndTime: timestamppb.New(start.Add(time.Minute)), TreatFailureAsDeploymentFailure: true,
		}},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.ReportStatus(ctx, &pb.ReportStatusRequest{Machine: "web-0", InstanceView: &pb.InstanceView{
		BootId: "boot-2",
		Applications: []*pb.ApplicationStatus{{
			Application: "g/a", Version: "1.0.0", State: "Downloading", Operation: "install", BytesDone: 512, BytesTotal: 2048,
			StartTime: timestamppb.New(start),
		}},
	}}); err != nil {
		t.Fatal(err)
	}

	out = e.ok("vm", "show", "vm1")
	if fieldOf(t, out, "Provisioning state") != "Failed" || fieldOf(t, out, "Agent connected") != "false" || fieldOf(t, out, "Boot id") != "boot-1" ||
		fieldOf(t, out, "Agent version") != "0.1.0" || fieldOf(t, out, "Applied generation") != "7" || fieldOf(t, out, "Profile") != "g/a/1.0.0" {
		t.Fatalf("vm show:\n%s", out)
	}
	if _, err := time.Parse(time.RFC3339, fieldOf(t, out, "Last report")); err != nil {
		t.Fatalf("last report: %v\n%s", err, out)
	}
	lineMatching(t, out, `APPLICATION\s+VERSION\s+STATE\s+HEALTH\s+PROGRESS\s+EXIT\s+OPERATION\s+UPDATED\s+REASON`)
	lineMatching(t, out, `g/a\s+1\.0\.0\s+Failed\s+-\s+100% \(11 B/11 B\)\s+3\s+install\s+2026-05-01T12:01:00Z\s+install exited with 3`)
	if !strings.Contains(out, "Output of g/a install (1.0.0, exit 3):\n  unpacking\n  boom: disk full\n") {
		t.Fatalf("vm show output tail:\n%s", out)
	}
	js = e.okJSON("vm", "show", "vm1")
	if at(js, "provisioningState") != "Failed" || at(js, "instanceView", "bootId") != "boot-1" || at(js, "instanceView", "applications", 0, "exitCode") != 3.0 ||
		at(js, "instanceView", "appliedGeneration") != 7.0 {
		t.Fatalf("vm show json: %v", js)
	}
	out = e.ok("vm", "show", "web-0")
	lineMatching(t, out, `g/a\s+1\.0\.0\s+Downloading\s+-\s+25% \(512 B/2\.0 KiB\)\s+-\s+install\s+2026-05-01T12:00:00Z\s+-`)
	if strings.Contains(out, "Output of") {
		t.Fatalf("output tail of an application that didn't fail:\n%s", out)
	}
	out = e.ok("vm", "list")
	lineMatching(t, out, `vm1\s+eastus\s+Linux\s+-\s+Failed\s+disconnected\s+1\s+\S+`)

	// The inventory.
	out = e.ok("inventory")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^MACHINE\s+REGION\s+VMSS\s+APPLICATION\s+VERSION\s+STATE\s+EXIT\s+UPDATED$`).MatchString(lines[0]) {
		t.Fatalf("inventory:\n%s", out)
	}
	lineMatching(t, out, `vm1\s+eastus\s+-\s+g/a\s+1\.0\.0\s+Failed\s+3\s+2026-05-01T12:01:00Z`)
	lineMatching(t, out, `web-0\s+westus\s+web\s+g/a\s+1\.0\.0\s+Downloading\s+-\s+2026-05-01T12:00:00Z`)
	out = e.ok("inventory", "--state", "failed")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "vm1 ") {
		t.Fatalf("inventory --state failed:\n%s", out)
	}
	js = e.okJSON("inventory", "--region", "westus", "--app", "a")
	if v, _ := js["value"].([]any); len(v) != 1 || at(js, "value", 0, "machine") != "web-0" || at(js, "value", 0, "scaleSet") != "web" ||
		at(js, "value", 0, "status", "state") != "Downloading" {
		t.Fatalf("inventory json: %v", js)
	}
	js = e.okJSON("inventory", "--app", "g/other")
	if v, ok := js["value"].([]any); !ok || len(v) != 0 {
		t.Fatalf("empty inventory json: %v", js)
	}
	out = e.ok("inventory", "--vmss", "web", "--version", "1.0.0")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "web-0 ") {
		t.Fatalf("inventory --vmss web --version 1.0.0:\n%s", out)
	}
	if v, _ := e.okJSON("inventory", "--version", "1.0.1")["value"].([]any); len(v) != 0 {
		t.Fatalf("inventory --version 1.0.1: %v", v)
	}
	e.fails(2, `--state "broken": must be one of`, "inventory", "--state", "broken")
	// One entry at a time: --top, then --skip-token from where it stopped.
	js = e.okJSON("inventory", "--top", "1")
	if v, _ := js["value"].([]any); len(v) != 1 || at(js, "value", 0, "machine") != "vm1" || js["nextPageToken"] == nil {
		t.Fatalf("inventory --top 1: %v", js)
	}
	js = e.okJSON("inventory", "--skip-token", js["nextPageToken"].(string))
	if v, _ := js["value"].([]any); len(v) != 1 || at(js, "value", 0, "machine") != "web-0" || js["nextPageToken"] != nil {
		t.Fatalf("inventory --skip-token: %v", js)
	}

	// Retry, then remove.
	js = e.okJSON("vm", "app", "retry", "--vm", "vm1", "--app", "g/a")
	if at(js, "galleryApplications", 0, "retry") != 1.0 {
		t.Fatalf("retry json: %v", js)
	}
	e.fails(1, "error: NotFound: Application 'g/b' isn't in the application profile of machine 'vm1'.", "vm", "app", "retry", "--vm", "vm1", "--app", "g/b")
	out = e.ok("vm", "app", "remove", "--vm", "vm1", "--app", "g/a")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "PACKAGE-REFERENCE") || !strings.HasPrefix(lines[2], "Etag: ") {
		t.Fatalf("remove:\n%s", out)
	}
	e.fails(1, "error: NotFound: Application 'g/a' isn't in the application profile of machine 'vm1'.", "vm", "app", "remove", "--vm", "vm1", "--app", "g/a")
	js = e.okJSON("vm", "app", "list", "--vm", "vm1")
	if v, ok := js["value"].([]any); !ok || len(v) != 0 || js["etag"] == "" {
		t.Fatalf("empty profile json: %v", js)
	}
	e.ok("vmss", "app", "remove", "--vmss", "web", "--app", "g/a")

	// Deletes.
	e.fails(1, "error: FailedPrecondition: Scale set 'web' has 2 instances", "vmss", "delete", "web")
	if out := e.ok("vmss", "delete", "web", "--cascade"); out != "Scale set 'web': Deleted\n" {
		t.Fatalf("vmss delete: %q", out)
	}
	e.fails(1, "error: NotFound: Machine 'web-0' doesn't exist.", "vm", "show", "web-0")
	if out := e.ok("vm", "delete", "vm1"); out != "Machine 'vm1': Deleted\n" {
		t.Fatalf("vm delete: %q", out)
	}
	if out := e.ok("-o", "json", "vm", "delete", "win1"); strings.TrimSpace(out) != "{}" {
		t.Fatalf("vm delete json: %q", out)
	}
	e.fails(1, "error: NotFound: Machine 'vm1' doesn't exist.", "vm", "delete", "vm1")
	e.fails(1, "error: NotFound: Scale set 'web' doesn't exist.", "vmss", "show", "web")
	out = e.ok("vm", "list")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "ne1 ") {
		t.Fatalf("vm list after deletes:\n%s", out)
	}
}

// TestFleetUsageErrors needs no fleet: usage errors are found before any
// call.
func TestFleetUsageErrors(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"vm", "create", "--region", "eastus", "--os", "linux"}, "missing --name"},
		{[]string{"vm", "create", "--name", "a", "b", "--region", "eastus", "--os", "linux"}, "give the name as --name or as an argument, not both"},
		{[]string{"vm", "create", "a", "b"}, `unexpected argument "b"`},
		{[]string{"vm", "create", "--name", "a"}, "missing --region and --os"},
		{[]string{"vm", "create", "--name", "a", "--vmss", "web", "--os", "bsd"}, `--os "bsd"`},
		{[]string{"vmss", "create", "--name", "web", "--region", "eastus", "--os", "bsd"}, `--os "bsd"`},
		{[]string{"vmss", "create", "--name", "web", "--os", "linux"}, `required flag(s) "region" not set`},
		{[]string{"vm", "show"}, "missing argument NAME"},
		{[]string{"vm", "app", "set", "--vm", "a"}, `required flag(s) "app" not set`},
		{[]string{"vm", "app", "set", "--vm", "a", "--app", "g/a/1", "--tag", "=v"}, `--tag "=v": want KEY=VALUE`},
		{[]string{"vm", "app", "set", "--vm", "a", "--app", "g/a/1", "--tag", "k=1", "--tag", "k=2"}, `--tag "k=2": tag "k" is given twice`},
		{[]string{"vm", "app", "set", "--vm", "a", "--app", "g/a/1", "--order", "first"}, `invalid argument "first"`},
		{[]string{"vmss", "app", "set", "--vmss", "a", "--app", "g/a/1", "--config", "x", "--config-url", "https://x/c"}, "if any flags in the group [config config-url] are set"},
		{[]string{"vmss", "app", "retry", "--vmss", "a", "--app", "a"}, `--app "a": want GALLERY/APPLICATION`},
		{[]string{"vmss", "app", "list", "--vm", "a"}, "unknown flag: --vm"},
		{[]string{"vm", "app"}, `"vmapp vm app" needs a subcommand`},
		{[]string{"inventory", "--state", "done"}, `--state "done"`},
		{[]string{"inventory", "x"}, `unexpected argument "x"`},
	} {
		r := e.vmapp(tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, "error: "+tc.want) || !strings.Contains(r.stderr, "--help' for usage.") {
			t.Errorf("want exit 2 with %q and a usage hint, got %v", tc.want, r)
		}
	}
	// A local file that can't be read is a run error.
	e.fails(1, "error: InvalidArgument: --config: ", "vm", "app", "set", "--vm", "a", "--app", "g/a/1", "--config", filepath.Join(t.TempDir(), "missing"))
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, make([]byte, pb.MaxInlineConfigSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	e.fails(1, "at most 1048576 can be given inline; serve it over http(s) and use --config-url", "vm", "app", "set", "--vm", "a", "--app", "g/a/1", "--config", big)
	// This server has no FleetService.
	e.fails(1, "error: Unimplemented: ", "vm", "list")
	if out := e.ok("vm", "app", "set", "--help"); !strings.Contains(out, "--treat-failure-as-deployment-failure") || !strings.Contains(out, "vmapp vm app set --vm NAME") {
		t.Errorf("help:\n%s", out)
	}
}

func TestFormatStatus(t *testing.T) {
	for _, tc := range []struct {
		s              *pb.ApplicationStatus
		progress, exit string
	}{
		{&pb.ApplicationStatus{State: "Pending"}, "", ""},
		{&pb.ApplicationStatus{State: "Downloading", BytesDone: 1 << 20, BytesTotal: 4 << 20}, "25% (1.0 MiB/4.0 MiB)", ""},
		{&pb.ApplicationStatus{State: "Installed", EndTime: timestamppb.Now()}, "", "0"},
		{&pb.ApplicationStatus{State: "Failed", ExitCode: 1}, "", "1"},
	} {
		if p, x := formatProgress(tc.s), formatExit(tc.s); p != tc.progress || x != tc.exit {
			t.Errorf("%v: progress %q exit %q, want %q %q", tc.s, p, x, tc.progress, tc.exit)
		}
	}
	tags, err := parseTags([]string{"b=2", "a=x=y", "c="})
	if err != nil || formatTags(tags) != "a=x=y,b=2,c=" {
		t.Fatalf("tags %v %v", tags, err)
	}
}
