package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	"github.com/vmapp/vmapp/server"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/state"
	"github.com/vmapp/vmapp/topology"
)

const regionsYAML = `regions:
  - name: eastus
    endpoints:
      - {url: "http://127.0.0.1:9", bucket: vmapp-eastus}
  - name: westus
    endpoints:
      - {url: "http://127.0.0.1:9", bucket: vmapp-westus}
      - {url: "http://127.0.0.2:9", bucket: vmapp-westus}
  - name: northeurope
    endpoints:
      - {url: "http://127.0.0.1:9", bucket: vmapp-northeurope}
`

// env is a real vmappd (catalog on a bbolt file, gRPC on a loopback port)
// that the CLI talks to.
type env struct {
	t     *testing.T
	addr  string
	store *catalog.Store
	// tokenFile, when set, holds the credential the CLI calls with.
	tokenFile string
}

// clusterEnv is an env on a testcluster, calling as its operator.
func clusterEnv(t *testing.T, c *testcluster.Cluster) *env {
	f := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(f, []byte(c.AdminToken), 0o600); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, addr: c.Addr, store: c.Catalog, tokenFile: f}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvWith(t, nil)
}

// newEnvWith is newEnv with vmappd's transport credentials (nil:
// plaintext).
func newEnvWith(t *testing.T, creds credentials.TransportCredentials) *env {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "regions.yaml")
	if err := os.WriteFile(path, []byte(regionsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := state.Open(filepath.Join(dir, "vmapp.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store := catalog.New(db, catalog.Options{Regions: topo.Names()})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := server.New(server.Options{Store: store, Topology: topo, Creds: creds})
	go gs.Serve(lis)
	t.Cleanup(func() {
		gs.Stop()
		db.Close()
	})
	return &env{t: t, addr: lis.Addr().String(), store: store}
}

func (e *env) reap() {
	e.t.Helper()
	if err := e.store.Reap(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// result is one run of the CLI.
type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("vmapp %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// vmapp runs the CLI against the env's server.
func (e *env) vmapp(args ...string) result {
	e.t.Helper()
	args = append([]string{"--server", e.addr}, args...)
	if e.tokenFile != "" {
		args = append([]string{"--token-file", e.tokenFile}, args...)
	}
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{args: args, code: code, stdout: out.String(), stderr: errb.String()}
}

// ok runs the CLI and fails the test unless it exits 0.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.vmapp(args...)
	if r.code != 0 || r.stderr != "" {
		e.t.Fatalf("want success, got %v", r)
	}
	return r.stdout
}

// fails runs the CLI and checks its exit code and that stderr holds want.
func (e *env) fails(code int, want string, args ...string) result {
	e.t.Helper()
	r := e.vmapp(args...)
	if r.code != code || !strings.Contains(r.stderr, want) {
		e.t.Fatalf("want exit %d and stderr containing %q, got %v", code, want, r)
	}
	if r.stdout != "" {
		e.t.Errorf("stdout not empty on error: %q", r.stdout)
	}
	return r
}

// okJSON runs the CLI with -o json and decodes its output.
func (e *env) okJSON(args ...string) map[string]any {
	e.t.Helper()
	out := e.ok(append([]string{"-o", "json"}, args...)...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		e.t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	return m
}

// at walks a decoded JSON value: at(m, "publishingProfile", "targetRegions", 0).
func at(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// fieldOf finds "Key: value" in show output.
func fieldOf(t *testing.T, out, key string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `:\s+(.*)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q line in:\n%s", key, out)
	}
	return strings.TrimSpace(m[1])
}

func future() string { return time.Now().AddDate(1, 0, 0).UTC().Format(time.DateOnly) }

func TestGalleryLifecycle(t *testing.T) {
	e := newEnv(t)
	out := e.ok("gallery", "create", "g1", "--location", "eastus", "--description", "first")
	if fieldOf(t, out, "Name") != "g1" || fieldOf(t, out, "Location") != "eastus" || fieldOf(t, out, "Provisioning state") != "Succeeded" {
		t.Fatalf("create output:\n%s", out)
	}
	out = e.ok("gallery", "show", "g1")
	if fieldOf(t, out, "Description") != "first" {
		t.Fatalf("show output:\n%s", out)
	}
	e.ok("gallery", "create", "g2", "--location", "westus")
	out = e.ok("gallery", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !regexp.MustCompile(`^g1\s+eastus\s+Succeeded\s+first$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^g2\s+westus\s+Succeeded\s+-$`).MatchString(lines[2]) {
		t.Fatalf("list output:\n%s", out)
	}
	js := e.okJSON("gallery", "list")
	if v, _ := js["value"].([]any); len(v) != 2 || at(js, "value", 0, "name") != "g1" || at(js, "value", 1, "location") != "westus" {
		t.Fatalf("list json: %v", js)
	}
	if _, ok := js["nextPageToken"]; ok {
		t.Fatalf("a full list printed a next page token: %v", js)
	}

	g := e.okJSON("gallery", "show", "g1")
	etag := g["etag"].(string)
	g = e.okJSON("gallery", "update", "g1", "--description", "second", "--if-match", etag)
	if g["description"] != "second" || g["location"] != "eastus" || g["etag"] == etag {
		t.Fatalf("update: %v", g)
	}
	// A stale etag.
	e.fails(1, "error: FailedPrecondition: ", "gallery", "update", "g1", "--description", "third", "--if-match", etag)
	e.fails(1, "error: FailedPrecondition: ", "gallery", "delete", "g1", "--if-match", etag)
	// Immutable.
	e.fails(1, "error: InvalidArgument: Changing property 'gallery.location' isn't allowed.", "gallery", "update", "g1", "--location", "westus")
	e.fails(2, "nothing to update", "gallery", "update", "g1")

	out = e.ok("gallery", "delete", "g2")
	if !strings.Contains(out, "Gallery 'g2'") {
		t.Fatalf("delete output: %q", out)
	}
	e.reap()
	e.fails(1, "error: NotFound: Gallery 'g2' doesn't exist.", "gallery", "show", "g2")
}

func TestApplicationLifecycle(t *testing.T) {
	e := newEnv(t)
	e.ok("gallery", "create", "g", "--location", "westus")
	eol := future()
	// No --location: the gallery's.
	a := e.okJSON("app", "create", "--gallery", "g", "myapp", "--os", "LINUX", "--description", "d", "--eula", "eula text",
		"--privacy-statement-uri", "https://example.com/p", "--release-note-uri", "https://example.com/r", "--end-of-life", eol)
	if a["supportedOSType"] != "Linux" || a["location"] != "westus" || a["privacyStatementUri"] != "https://example.com/p" ||
		a["releaseNoteUri"] != "https://example.com/r" || !strings.HasPrefix(a["endOfLifeDate"].(string), eol) || a["eula"] != "eula text" {
		t.Fatalf("create json: %v", a)
	}
	out := e.ok("app", "create", "-g", "g", "winapp", "--os", "Windows", "--location", "eastus")
	if fieldOf(t, out, "Supported OS type") != "Windows" || fieldOf(t, out, "Location") != "eastus" {
		t.Fatalf("create output:\n%s", out)
	}
	out = e.ok("app", "show", "--gallery", "g", "myapp")
	if fieldOf(t, out, "End of life") != eol || fieldOf(t, out, "Gallery") != "g" {
		t.Fatalf("show output:\n%s", out)
	}
	out = e.ok("app", "list", "--gallery", "g")
	if !regexp.MustCompile(`(?m)^myapp\s+Linux\s+westus\s+Succeeded\s+`+eol+`\s+d$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^winapp\s+Windows\s+eastus\s+Succeeded\s+-\s+-$`).MatchString(out) {
		t.Fatalf("list output:\n%s", out)
	}

	// Only the flags given are updated.
	a = e.okJSON("app", "update", "--gallery", "g", "myapp", "--description", "new")
	if a["description"] != "new" || a["eula"] != "eula text" || a["endOfLifeDate"] == nil {
		t.Fatalf("update: %v", a)
	}
	// --end-of-life "" clears the date.
	a = e.okJSON("app", "update", "--gallery", "g", "myapp", "--end-of-life", "")
	if _, ok := a["endOfLifeDate"]; ok || a["description"] != "new" {
		t.Fatalf("update: %v", a)
	}
	e.fails(1, "error: InvalidArgument: Changing property 'galleryApplication.properties.supportedOSType' isn't allowed.",
		"app", "update", "--gallery", "g", "myapp", "--os", "windows")
	e.fails(1, "error: FailedPrecondition: ", "app", "update", "--gallery", "g", "myapp", "--description", "x", "--if-match", "stale")

	e.fails(1, "error: AlreadyExists: ", "app", "create", "--gallery", "g", "myapp", "--os", "linux")
	e.fails(1, "error: NotFound: Gallery 'nope' doesn't exist.", "app", "create", "--gallery", "nope", "x", "--os", "linux", "--location", "eastus")
	e.fails(1, "error: NotFound: Gallery 'nope' doesn't exist.", "app", "list", "--gallery", "nope")
	e.fails(1, "error: InvalidArgument: ", "app", "create", "--gallery", "g", "a+b", "--os", "linux")
	e.fails(2, `--os "bsd": must be linux or windows`, "app", "create", "--gallery", "g", "bsd", "--os", "bsd")
	e.fails(2, `required flag(s) "os" not set`, "app", "create", "--gallery", "g", "noos")
	e.fails(2, `--end-of-life "31/01/2027"`, "app", "create", "--gallery", "g", "x", "--os", "linux", "--end-of-life", "31/01/2027")

	// A gallery with applications needs --cascade.
	e.fails(1, "error: FailedPrecondition: ", "gallery", "delete", "g")
	out = e.ok("app", "delete", "--gallery", "g", "winapp")
	if !strings.Contains(out, "Application 'g/winapp'") {
		t.Fatalf("delete output: %q", out)
	}
	e.ok("gallery", "delete", "g", "--cascade")
}

func TestVersionLifecycle(t *testing.T) {
	e := newEnv(t)
	e.ok("gallery", "create", "g", "--location", "eastus")
	e.ok("app", "create", "--gallery", "g", "app", "--os", "linux")

	eol := future()
	v := e.okJSON("version", "create", "--gallery", "g", "--app", "app", "1.0.0", "--location", "eastus",
		"--install", "sh install.sh", "--remove", "sh remove.sh", "--update", "sh update.sh",
		"--target-region", "eastus=3", "--target-region", "westus", "--target-region", "northeurope==Premium_LRS",
		"--replica-count", "2", "--end-of-life", eol, "--package-file-name", "app.tgz", "--config-file-name", "app.json",
		"--reboot-behavior", "Rerun", "--storage-account-type", "Standard_ZRS", "--allow-deletion-of-replicated-locations")
	for path, want := range map[string]any{
		"name":     "1.0.0",
		"location": "eastus",
		"publishingProfile.manageActions.install":                  "sh install.sh",
		"publishingProfile.manageActions.remove":                   "sh remove.sh",
		"publishingProfile.manageActions.update":                   "sh update.sh",
		"publishingProfile.targetRegions.0.name":                   "eastus",
		"publishingProfile.targetRegions.0.regionalReplicaCount":   3.0,
		"publishingProfile.targetRegions.1.name":                   "westus",
		"publishingProfile.targetRegions.1.regionalReplicaCount":   nil,
		"publishingProfile.targetRegions.2.storageAccountType":     "Premium_LRS",
		"publishingProfile.replicaCount":                           2.0,
		"publishingProfile.storageAccountType":                     "Standard_ZRS",
		"publishingProfile.settings.packageFileName":               "app.tgz",
		"publishingProfile.settings.configFileName":                "app.json",
		"publishingProfile.settings.scriptBehaviorAfterReboot":     "Rerun",
		"safetyProfile.allowDeletionOfReplicatedLocations":         true,
		"provisioningState":                                        "Creating",
		"publishingProfile.excludeFromLatest":                      nil, // false is not printed
		"publishingProfile.endOfLifeDate":                          eol + "T00:00:00Z",
		"publishingProfile.source":                                 nil,
		"publishingProfile.targetRegions.0.regional_replica_count": nil, // camelCase only
	} {
		var p []any
		for _, s := range strings.Split(path, ".") {
			if n, err := fmt.Sscan(s, new(int)); err == nil && n == 1 && s[0] >= '0' && s[0] <= '9' {
				var i int
				fmt.Sscan(s, &i)
				p = append(p, i)
			} else {
				p = append(p, s)
			}
		}
		if got := at(v, p...); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}

	// Defaults: flags left out leave the fields to the server.
	out := e.ok("version", "create", "--gallery", "g", "--app", "app", "1.0.1", "--install", "i", "--remove", "r")
	for key, want := range map[string]string{
		"Name": "1.0.1", "Location": "eastus", "Target regions": "eastus", "Storage account type": "Standard_LRS",
		"Script behavior after reboot": "None", "Provisioning state": "Creating", "Package size": "none (not uploaded yet)",
		"Install": "i", "Remove": "r", "Exclude from latest": "false",
	} {
		if got := fieldOf(t, out, key); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	if strings.Contains(out, "Replica count") || strings.Contains(out, "Update:") {
		t.Errorf("unset fields printed:\n%s", out)
	}

	out = e.ok("version", "show", "--gallery", "g", "--app", "app", "1.0.0")
	if fieldOf(t, out, "Target regions") != "eastus=3,westus,northeurope==Premium_LRS" || fieldOf(t, out, "Replica count") != "2" ||
		fieldOf(t, out, "End of life") != eol {
		t.Fatalf("show output:\n%s", out)
	}
	out = e.ok("version", "list", "-g", "g", "-a", "app")
	if !regexp.MustCompile(`(?m)^1\.0\.0\s+eastus\s+Creating\s+\S+\s+eastus=3,westus,northeurope==Premium_LRS\s+-\s+false$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^1\.0\.1\s+eastus\s+Creating\s+\S+\s+eastus\s+-\s+false$`).MatchString(out) {
		t.Fatalf("list output:\n%s", out)
	}

	// The update mask holds only the flags given: --exclude-from-latest
	// leaves the install command (immutable, and not sent) alone.
	before := e.okJSON("version", "show", "--gallery", "g", "--app", "app", "1.0.0")
	v = e.okJSON("version", "update", "--gallery", "g", "--app", "app", "1.0.0", "--exclude-from-latest", "--if-match", before["etag"].(string))
	if at(v, "publishingProfile", "excludeFromLatest") != true || at(v, "publishingProfile", "manageActions", "install") != "sh install.sh" ||
		at(v, "publishingProfile", "replicaCount") != 2.0 || at(v, "publishingProfile", "settings", "packageFileName") != "app.tgz" ||
		len(at(v, "publishingProfile", "targetRegions").([]any)) != 3 || at(v, "publishingProfile", "endOfLifeDate") == nil {
		t.Fatalf("update changed fields outside the mask: %v", v)
	}
	v = e.okJSON("version", "update", "--gallery", "g", "--app", "app", "1.0.0", "--exclude-from-latest=false", "--target-region", "eastus,westus=5", "--replica-count", "1")
	if at(v, "publishingProfile", "excludeFromLatest") != nil || at(v, "publishingProfile", "targetRegions", 1, "regionalReplicaCount") != 5.0 ||
		len(at(v, "publishingProfile", "targetRegions").([]any)) != 2 || at(v, "publishingProfile", "replicaCount") != 1.0 {
		t.Fatalf("update: %v", v)
	}
	// A stale etag.
	r := e.fails(1, "error: FailedPrecondition: ", "version", "update", "--gallery", "g", "--app", "app", "1.0.0", "--exclude-from-latest", "--if-match", before["etag"].(string))
	if !strings.Contains(r.stderr, "not "+before["etag"].(string)) {
		t.Errorf("stale etag message: %s", r.stderr)
	}
	// Immutable properties.
	e.fails(1, "error: InvalidArgument: Changing property 'galleryApplicationVersion.properties.publishingProfile.manageActions.install' isn't allowed.\n",
		"version", "update", "--gallery", "g", "--app", "app", "1.0.0", "--install", "other.sh")
	e.fails(1, "Changing property 'galleryApplicationVersion.properties.publishingProfile.settings.packageFileName' isn't allowed.",
		"version", "update", "--gallery", "g", "--app", "app", "1.0.0", "--package-file-name", "x")
	// The same value is fine.
	e.ok("version", "update", "--gallery", "g", "--app", "app", "1.0.0", "--install", "sh install.sh")
	e.fails(2, "nothing to update", "version", "update", "--gallery", "g", "--app", "app", "1.0.0")

	// latest: 1.0.1 (1.0.0 is no longer excluded, but lower).
	if v := e.okJSON("version", "show", "--gallery", "g", "--app", "app", "latest"); v["name"] != "1.0.1" {
		t.Fatalf("latest = %v", v["name"])
	}

	// Errors.
	e.fails(1, "error: InvalidArgument: The gallery application version name '1.0' is invalid.",
		"version", "create", "--gallery", "g", "--app", "app", "1.0", "--install", "i", "--remove", "r")
	e.fails(1, "error: AlreadyExists: Gallery application version 'g/app/1.0.0' already exists.",
		"version", "create", "--gallery", "g", "--app", "app", "1.0.0", "--install", "i", "--remove", "r", "--location", "eastus")
	e.fails(1, "error: NotFound: Gallery application version 'g/app/9.9.9' doesn't exist.", "version", "show", "--gallery", "g", "--app", "app", "9.9.9")
	e.fails(1, "error: InvalidArgument: The value 11 of parameter", "version", "create", "--gallery", "g", "--app", "app", "2.0.0",
		"--install", "i", "--remove", "r", "--target-region", "eastus=11")
	e.fails(1, "error: InvalidArgument: Region 'mars'", "version", "create", "--gallery", "g", "--app", "app", "2.0.0",
		"--install", "i", "--remove", "r", "--location", "mars")
	for _, bad := range []string{"eastus=x", "=3", "eastus=1=Premium_LRS=x", "eastus=1=", "eastus,"} {
		e.fails(2, "--target-region", "version", "create", "--gallery", "g", "--app", "app", "2.0.0",
			"--install", "i", "--remove", "r", "--target-region", bad)
	}
	e.fails(2, `required flag(s) "install", "remove" not set`, "version", "create", "--gallery", "g", "--app", "app", "2.0.0")
	e.fails(2, "--sha256 needs --package", "version", "create", "--gallery", "g", "--app", "app", "2.0.0", "--install", "i", "--remove", "r", "--sha256", "00")
	e.fails(2, "[package package-url] were all set", "version", "upload", "--gallery", "g", "--app", "app", "1.0.0", "--package", "f", "--package-url", "https://x/y")
	e.fails(2, "at least one of the flags", "version", "upload", "--gallery", "g", "--app", "app", "1.0.0")
	// Nothing was created by the failed commands.
	if js := e.okJSON("version", "list", "--gallery", "g", "--app", "app"); len(js["value"].([]any)) != 2 {
		t.Fatalf("versions: %v", js)
	}

	out = e.ok("version", "delete", "--gallery", "g", "--app", "app", "1.0.1")
	if out != "Version 'g/app/1.0.1': Deleting\n" {
		t.Fatalf("delete output: %q", out)
	}
	e.reap()
	e.fails(1, "error: NotFound: ", "version", "show", "--gallery", "g", "--app", "app", "1.0.1")
	e.fails(1, "error: FailedPrecondition: ", "app", "delete", "--gallery", "g", "app")
	e.ok("app", "delete", "--gallery", "g", "app", "--cascade")
}

func TestPaging(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		e.ok("gallery", "create", fmt.Sprintf("g%d", i), "--location", "eastus")
	}
	e.ok("app", "create", "--gallery", "g0", "app", "--os", "windows")
	for i := range 5 {
		e.ok("app", "create", "--gallery", "g1", fmt.Sprintf("a%d", i), "--os", "windows")
		e.ok("version", "create", "--gallery", "g0", "--app", "app", fmt.Sprintf("1.0.%d", i), "--install", "i", "--remove", "r")
	}

	// Two at a time, following the printed token.
	var names []string
	token := ""
	for pages := 1; ; pages++ {
		args := []string{"gallery", "list", "--top", "2"}
		if token != "" {
			args = append(args, "--skip-token", token)
		}
		js := e.okJSON(args...)
		for _, g := range js["value"].([]any) {
			names = append(names, g.(map[string]any)["name"].(string))
		}
		next, _ := js["nextPageToken"].(string)
		if next == "" {
			if pages != 3 {
				t.Errorf("%d pages, want 3", pages)
			}
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		token = next
	}
	if strings.Join(names, ",") != "g0,g1,g2,g3,g4" {
		t.Fatalf("paged names: %v", names)
	}
	// Table output prints the token after the rows.
	out := e.ok("gallery", "list", "--top", "2")
	if !regexp.MustCompile(`^NAME.*\ng0 .*\ng1 .*\n\nMore: continue with --skip-token \S+\n$`).MatchString(out) {
		t.Fatalf("table page:\n%s", out)
	}

	// Without --top, every page (the server's default page is larger
	// than 5, so this checks the loop through the server's own pages too).
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"gallery", "list"}, 5},
		{[]string{"app", "list", "--gallery", "g1"}, 5},
		{[]string{"version", "list", "--gallery", "g0", "--app", "app"}, 5},
	} {
		js := e.okJSON(tc.args...)
		if n := len(js["value"].([]any)); n != tc.want {
			t.Errorf("%v: %d items, want %d", tc.args, n, tc.want)
		}
	}
	js := e.okJSON("app", "list", "--gallery", "g1", "--top", "3")
	if len(js["value"].([]any)) != 3 || js["nextPageToken"] == nil {
		t.Fatalf("app page: %v", js)
	}
	// --skip-token without --top lists the rest.
	js = e.okJSON("app", "list", "--gallery", "g1", "--skip-token", js["nextPageToken"].(string))
	if len(js["value"].([]any)) != 2 || at(js, "value", 0, "name") != "a3" || js["nextPageToken"] != nil {
		t.Fatalf("app last page: %v", js)
	}
	// --top past the end: everything, and no token.
	js = e.okJSON("version", "list", "--gallery", "g0", "--app", "app", "--top", "50")
	if len(js["value"].([]any)) != 5 || js["nextPageToken"] != nil {
		t.Fatalf("version list --top 50: %v", js)
	}
	// The flags' names before --top and --skip-token still work, with a
	// warning.
	js = e.okJSON("gallery", "list", "--top", "4")
	r := e.vmapp("-o", "json", "gallery", "list", "--page-size", "4", "--page-token", js["nextPageToken"].(string))
	if r.code != 0 || !strings.Contains(r.stdout, `"g4"`) || strings.Contains(r.stdout, `"g3"`) || !strings.Contains(r.stderr, "warning: --page-size is deprecated: use --top") {
		t.Fatalf("gallery list --page-size/--page-token: %v", r)
	}
	e.fails(2, "--top 0: want at least 1", "gallery", "list", "--top", "0")
	e.fails(1, "pageToken", "app", "list", "--gallery", "g1", "--skip-token", "not-a-token")
}

func TestListAllPages(t *testing.T) {
	e := newEnv(t)
	// More galleries than the server's default page (100).
	for i := range 105 {
		e.ok("gallery", "create", fmt.Sprintf("g%03d", i), "--location", "eastus")
	}
	js := e.okJSON("gallery", "list")
	if n := len(js["value"].([]any)); n != 105 {
		t.Fatalf("%d galleries, want 105", n)
	}
	out := e.ok("gallery", "list")
	if n := strings.Count(out, "\n"); n != 106 {
		t.Fatalf("%d lines, want 106", n)
	}
}

func TestRegionList(t *testing.T) {
	e := newEnv(t)
	out := e.ok("region", "list")
	if !regexp.MustCompile(`^NAME\s+ENDPOINTS\neastus\s+1\nwestus\s+2\nnortheurope\s+1\n$`).MatchString(out) {
		t.Fatalf("region list:\n%s", out)
	}
	js := e.okJSON("region", "list")
	if at(js, "value", 1, "name") != "westus" || at(js, "value", 1, "endpointCount") != 2.0 {
		t.Fatalf("region json: %v", js)
	}
}

func TestUsageErrors(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"gallery", "create", "g", "--location", "eastus", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"gallery", "create", "--location", "eastus"}, "missing argument NAME"},
		{[]string{"gallery", "create"}, "missing argument NAME"},
		{[]string{"gallery", "show", "a", "b"}, `unexpected argument "b"`},
		{[]string{"gallery", "create", "g"}, `required flag(s) "location" not set`},
		{[]string{"gallery", "frobnicate"}, `unknown command "frobnicate" for "vmapp gallery"`},
		{[]string{"gallery"}, `"vmapp gallery" needs a subcommand`},
		{[]string{"bogus"}, `unknown command "bogus" for "vmapp"`},
		{[]string{}, `"vmapp" needs a subcommand`},
		{[]string{"-o", "xml", "region", "list"}, `--output "xml": must be table, json, yaml or tsv`},
		{[]string{"--compress", "gzip", "region", "list"}, `--compress "gzip"`},
		{[]string{"gallery", "list", "--top", "x"}, `invalid argument "x" for "--top"`},
		{[]string{"version", "create", "-g", "g", "-a", "a", "1.0.0", "--install", "i", "--remove", "r", "--replica-count", "many"}, `invalid argument "many"`},
	} {
		r := e.vmapp(tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, "error: "+tc.want) || !strings.Contains(r.stderr, "--help' for usage.") {
			t.Errorf("want exit 2 with %q and a usage hint, got %v", tc.want, r)
		}
	}
	if out := e.ok("version", "create", "--help"); !strings.Contains(out, "--target-region") {
		t.Errorf("help:\n%s", out)
	}
}

func TestGlobalFlags(t *testing.T) {
	e := newEnv(t)
	e.ok("--compress", "zstd", "gallery", "create", "g", "--location", "eastus")
	e.ok("--compress", "s2", "gallery", "show", "g")
	// Tenants are separate.
	e.fails(1, "error: NotFound: ", "--tenant", "other", "gallery", "show", "g")
	e.ok("--tenant", "other", "gallery", "create", "g", "--location", "westus")
	if g := e.okJSON("--tenant", "other", "gallery", "show", "g"); g["location"] != "westus" || g["tenant"] != "other" {
		t.Fatalf("tenant gallery: %v", g)
	}
	t.Setenv("VMAPP_TENANT", "other")
	t.Setenv("VMAPP_SERVER", e.addr)
	var out, errb bytes.Buffer
	if code := run([]string{"-o", "json", "gallery", "show", "g"}, &out, &errb); code != 0 || !strings.Contains(out.String(), `"location": "westus"`) {
		t.Fatalf("env VMAPP_SERVER/VMAPP_TENANT: exit %d\n%s%s", code, out.String(), errb.String())
	}
	// No server there.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := lis.Addr().String()
	lis.Close()
	out.Reset()
	errb.Reset()
	if code := run([]string{"--server", dead, "gallery", "list"}, &out, &errb); code != 1 || !strings.HasPrefix(errb.String(), "error: Unavailable: ") {
		t.Fatalf("dead server: exit %d, stderr %q", code, errb.String())
	}
}

func TestUploadWithoutIngest(t *testing.T) {
	e := newEnv(t)
	e.ok("gallery", "create", "g", "--location", "eastus")
	e.ok("app", "create", "--gallery", "g", "app", "--os", "linux")
	pkg := filepath.Join(t.TempDir(), "app.tgz")
	if err := os.WriteFile(pkg, []byte("package"), 0o600); err != nil {
		t.Fatal(err)
	}
	// This server has no TransferService: the version is created, the upload
	// fails, and the user is told how to finish it.
	r := e.vmapp("version", "create", "--gallery", "g", "--app", "app", "1.0.0", "--install", "i", "--remove", "r", "--package", pkg)
	if r.code != 1 || !strings.Contains(r.stderr, "error: Unimplemented: ") || !strings.Contains(r.stderr, "vmapp version upload --gallery g --app app 1.0.0") {
		t.Fatalf("create --package: %v", r)
	}
	e.ok("version", "show", "--gallery", "g", "--app", "app", "1.0.0")
	e.fails(2, "error: --package: ", "version", "upload", "--gallery", "g", "--app", "app", "1.0.0", "--package", filepath.Join(t.TempDir(), "missing"))
	e.fails(1, "error: Unimplemented: ", "version", "upload", "--gallery", "g", "--app", "app", "1.0.0", "--config-url", "https://example.com/c.json")
}

// TestVersion: --version prints the build.
func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "vmapp version ") || !strings.Contains(out.String(), "commit") {
		t.Fatalf("vmapp --version: exit %d, %q %q", code, out.String(), errOut.String())
	}
}
