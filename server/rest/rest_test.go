package rest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/vmapp/vmapp/internal/testkit/signtest"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
)

// api calls the REST API as curl would, and records which RPCs answered
// 200.
type api struct {
	t       *testing.T
	base    string
	covered map[string]bool
	tenant  string // sent as Vmapp-Tenant when set
	chunked bool   // send the body without a length
}

type reply struct {
	code   int
	header http.Header
	raw    []byte
	doc    map[string]any
}

func (a *api) do(method, path, token, body string) reply {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
		if a.chunked {
			rd = io.MultiReader(rd) // no length: sent chunked
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.tenant != "" {
		req.Header.Set("Vmapp-Tenant", a.tenant)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	r := reply{code: resp.StatusCode, header: resp.Header, raw: raw}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if err := d.Decode(&r.doc); err != nil {
		a.t.Fatalf("%s %s: %d, not a JSON object: %v: %s", method, path, resp.StatusCode, err, raw)
	}
	return r
}

// ok calls rpc's path and wants 200.
func (a *api) ok(rpc, method, path, token, body string) map[string]any {
	a.t.Helper()
	r := a.do(method, path, token, body)
	if r.code != http.StatusOK {
		a.t.Fatalf("%s (%s %s): %d %s", rpc, method, path, r.code, r.raw)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		a.t.Errorf("%s: Content-Type %q", rpc, ct)
	}
	a.covered[rpc] = true
	return r.doc
}

// fails calls and wants the HTTP status, the error code and target.
func (a *api) fails(method, path, token, body string, status int, code, target string) map[string]any {
	a.t.Helper()
	r := a.do(method, path, token, body)
	e, _ := r.doc["error"].(map[string]any)
	if r.code != status || e == nil || e["code"] != code || (target != "" && e["target"] != target) || e["message"] == "" {
		a.t.Fatalf("%s %s: want %d {code %s, target %q}, got %d %s", method, path, status, code, target, r.code, r.raw)
	}
	if len(r.doc) != 1 {
		a.t.Errorf("%s %s: the error body has more than error: %s", method, path, r.raw)
	}
	return e
}

// stream reads a streaming path's lines ({"result": ...}) until until
// says so, and returns the last result.
func (a *api) stream(rpc, path, token string, until func(map[string]any) bool) map[string]any {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s: %v", rpc, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		b, _ := io.ReadAll(resp.Body)
		a.t.Fatalf("%s (GET %s): %d %s %s", rpc, path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var line map[string]any
		d := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		d.UseNumber()
		if err := d.Decode(&line); err != nil {
			a.t.Fatalf("%s: a line that is not JSON: %v: %s", rpc, err, sc.Bytes())
		}
		res, ok := line["result"].(map[string]any)
		if !ok {
			a.t.Fatalf("%s: a line without result: %s", rpc, sc.Bytes())
		}
		if until(res) {
			a.covered[rpc] = true
			return res
		}
	}
	a.t.Fatalf("%s: the stream ended (%v) before what was waited for", rpc, sc.Err())
	return nil
}

// get walks a document by keys and list indexes.
func get(doc any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := doc.(map[string]any)
			doc = m[k]
		case int:
			l, _ := doc.([]any)
			if k >= len(l) {
				return nil
			}
			doc = l[k]
		}
	}
	return doc
}

func str(doc any, path ...any) string {
	s, _ := get(doc, path...).(string)
	return s
}

// annotated lists the RPCs that have a REST path (a google.api.http
// option), as "Service.Method".
func annotated(t *testing.T) []string {
	var out []string
	protoregistry.GlobalFiles.RangeFilesByPackage("vmapp.v1", func(f protoreflect.FileDescriptor) bool {
		for i := range f.Services().Len() {
			s := f.Services().Get(i)
			for j := range s.Methods().Len() {
				m := s.Methods().Get(j)
				if r, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule); r != nil && r.GetPattern() != nil {
					out = append(out, string(s.Name())+"."+string(m.Name()))
				}
			}
		}
		return true
	})
	if len(out) < 40 {
		t.Fatalf("only %d RPCs have paths: %v", len(out), out)
	}
	return out
}

// TestEveryPath calls every RPC that has a REST path over HTTP against a
// real vmappd with real MinIO stores, as an Owner, a Contributor, a
// Reader, a machine and nobody, and checks the answers: resources in
// Azure's camelCase with 64-bit integers as numbers, lists, streams
// (replication status until Completed, a machine's goal state), and each
// error class with its HTTP status and Azure-style body.
func TestEveryPath(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{HTTP: true})
	a := &api{t: t, base: c.HTTPURL, covered: map[string]bool{}}
	owner := c.AdminToken
	pkg := bytes.Repeat([]byte("rest api "), 100_000)
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "pkg", time.Time{}, bytes.NewReader(pkg))
	}))
	defer src.Close()

	// Tokens: an Owner makes a Contributor and a Reader.
	a.ok("AccessService.WhoAmI", "GET", "/whoami", owner, "")
	contrib := str(a.ok("AccessService.CreateToken", "POST", "/tokens", owner, `{"name":"ci","role":"ROLE_CONTRIBUTOR"}`), "secret")
	rd := a.ok("AccessService.CreateToken", "POST", "/tokens", owner, `{"name":"viewer","role":"ROLE_READER"}`)
	reader, readerID := str(rd, "secret"), str(rd, "token", "id")
	if contrib == "" || reader == "" || readerID == "" {
		t.Fatalf("CreateToken answered no secret or id: %v", rd)
	}
	if str(a.ok("AccessService.WhoAmI", "GET", "/whoami", reader, ""), "token", "role") != "ROLE_READER" {
		t.Fatal("WhoAmI with the Reader's token doesn't say Reader")
	}
	if l, _ := get(a.ok("AccessService.ListTokens", "GET", "/tokens", owner, ""), "tokens").([]any); len(l) < 2 {
		t.Fatalf("ListTokens: %v", l)
	}

	// Catalog: the Contributor publishes, the Reader reads.
	a.ok("CatalogService.ListRegions", "GET", "/locations", reader, "")
	g := a.ok("CatalogService.CreateGallery", "PUT", "/galleries/demo", contrib, `{"location":"eastus","description":"made over REST"}`)
	if str(g, "gallery", "name") != "demo" || str(g, "gallery", "provisioningState") != "Succeeded" {
		t.Fatalf("CreateGallery: %v", g)
	}
	a.ok("CatalogService.GetGallery", "GET", "/galleries/demo", reader, "")
	if l, _ := get(a.ok("CatalogService.ListGalleries", "GET", "/galleries", reader, ""), "galleries").([]any); len(l) != 1 {
		t.Fatalf("ListGalleries: %v", l)
	}
	if d := str(a.ok("CatalogService.UpdateGallery", "PATCH", "/galleries/demo", contrib, `{"description":"patched"}`), "gallery", "description"); d != "patched" {
		t.Fatalf("UpdateGallery: description %q", d)
	}
	a.ok("CatalogService.CreateApplication", "PUT", "/galleries/demo/applications/hello", contrib, `{"location":"eastus","supportedOSType":"Linux"}`)
	a.ok("CatalogService.GetApplication", "GET", "/galleries/demo/applications/hello", reader, "")
	a.ok("CatalogService.ListApplications", "GET", "/galleries/demo/applications", reader, "")
	a.ok("CatalogService.UpdateApplication", "PATCH", "/galleries/demo/applications/hello", contrib, `{"description":"hi"}`)
	a.ok("CatalogService.CreateVersion", "PUT", "/galleries/demo/applications/hello/versions/1.0.0", contrib,
		`{"location":"eastus","publishingProfile":{"manageActions":{"install":"install.sh","remove":"remove.sh"},
		  "targetRegions":[{"name":"eastus","regionalReplicaCount":2},{"name":"westus","regionalReplicaCount":1}],
		  "customActions":[{"name":"flush","script":"flush.sh","parameters":[{"name":"level","required":true}]}]}}`)
	a.ok("TransferService.Import", "POST", "/galleries/demo/applications/hello/versions/1.0.0/import", contrib,
		fmt.Sprintf(`{"kind":"ARTIFACT_KIND_PACKAGE","url":%q}`, src.URL+"/pkg"))
	st := a.stream("ReplicationService.WatchReplication", "/galleries/demo/applications/hello/versions/1.0.0/replicationStatus", reader,
		func(r map[string]any) bool { return str(r, "status", "aggregatedState") == "Completed" })
	// A region's bytes: its replicas' (int64: a number, not a string).
	if n, ok := get(st, "status", "summary", 0, "bytesTotal").(json.Number); !ok {
		t.Fatalf("bytesTotal (int64) is not a number: %#v", get(st, "status", "summary", 0, "bytesTotal"))
	} else if b, err := n.Int64(); err != nil || b == 0 || b%int64(len(pkg)) != 0 {
		t.Fatalf("bytesTotal %s: not a multiple of the package's %d bytes", n, len(pkg))
	}
	v := a.ok("CatalogService.GetVersion", "GET", "/galleries/demo/applications/hello/versions/1.0.0", reader, "")
	if n, ok := get(v, "version", "package", "sizeBytes").(json.Number); !ok || n.String() != fmt.Sprint(len(pkg)) {
		t.Fatalf("package.sizeBytes (int64) not the number %d: %#v", len(pkg), get(v, "version", "package", "sizeBytes"))
	}
	a.ok("CatalogService.ListVersions", "GET", "/galleries/demo/applications/hello/versions", reader, "")
	a.ok("CatalogService.UpdateVersion", "PATCH", "/galleries/demo/applications/hello/versions/1.0.0", contrib, `{"publishingProfile":{"excludeFromLatest":false}}`)
	a.ok("ReplicationService.RepairVersion", "POST", "/galleries/demo/applications/hello/versions/1.0.0/repair", contrib, `{"deep":false}`)

	// Signing: the Owner trusts keys, the Contributor signs.
	k1, k2 := signtest.Key(t), signtest.Key(t)
	a.ok("SigningService.AddTrustedKey", "POST", "/galleries/demo/trustPolicy/keys", owner, fmt.Sprintf(`{"publicKey":%q,"name":"release"}`, k1.Public().String()))
	a.ok("SigningService.AddTrustedKey", "POST", "/galleries/demo/trustPolicy/keys", owner, fmt.Sprintf(`{"publicKey":%q,"name":"spare"}`, k2.Public().String()))
	a.ok("SigningService.GetTrustPolicy", "GET", "/galleries/demo/trustPolicy", reader, "")
	a.ok("SigningService.SetRequiredSignatures", "PUT", "/galleries/demo/trustPolicy/requiredSignatures", owner, `{"requiredSignatures":1}`)
	req := signtest.Request(t, c.Client, k1, "demo", "hello", "1.0.0", &pb.VersionSignatures{Sequence: 1})
	a.ok("SigningService.SignVersion", "POST", "/galleries/demo/applications/hello/versions/1.0.0/signatures", contrib, fmt.Sprintf(`{"sequence":1,"signature":%q}`, req.Signature))
	a.ok("SigningService.GetVersionSignatures", "GET", "/galleries/demo/applications/hello/versions/1.0.0/signatures", reader, "")
	k3 := signtest.Key(t)
	rot, err := sign.Sign(k1, &sign.Rotation{Old: k1.Public(), New: k3.Public()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.ok("SigningService.RotateTrustedKey", "POST", "/galleries/demo/trustPolicy/rotate", owner, fmt.Sprintf(`{"rotation":{"oldPublicKey":%q,"newPublicKey":%q},"signatures":[%q]}`,
		k1.Public().String(), k3.Public().String(), rot.Encode()))
	rev, err := sign.Sign(k2, &sign.Revocation{Key: k2.Public(), Reason: "lost"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.ok("SigningService.RevokeTrustedKey", "POST", "/galleries/demo/trustPolicy/revoke", owner, fmt.Sprintf(`{"revocation":{"publicKey":%q,"reason":"lost"},"signatures":[%q]}`,
		k2.Public().String(), rev.Encode()))
	k4 := signtest.Key(t)
	a.ok("SigningService.AddTrustedKey", "POST", "/galleries/demo/trustPolicy/keys", owner, fmt.Sprintf(`{"publicKey":%q,"name":"temp"}`, k4.Public().String()))
	a.ok("SigningService.RemoveTrustedKey", "DELETE", "/galleries/demo/trustPolicy/keys/"+k4.ID.String(), owner, "")
	// The rotation left the version's signature by a replaced key: the
	// gallery stops requiring signatures, so that it can be deployed.
	a.ok("SigningService.SetRequiredSignatures", "PUT", "/galleries/demo/trustPolicy/requiredSignatures", owner, `{"requiredSignatures":0}`)

	// Fleet: machines and scale sets, profiles, the inventory, a goal state.
	m := a.ok("FleetService.CreateMachine", "PUT", "/machines/vm1", contrib, `{"region":"eastus","osType":"Linux"}`)
	agent := str(m, "agentToken")
	if agent == "" {
		t.Fatalf("CreateMachine: no agentToken: %v", m)
	}
	a.ok("FleetService.GetMachine", "GET", "/machines/vm1", reader, "")
	a.ok("FleetService.ListMachines", "GET", "/machines", reader, "")
	a.ok("FleetService.CreateScaleSet", "PUT", "/scaleSets/web", contrib, `{"region":"westus","osType":"Linux"}`)
	a.ok("FleetService.GetScaleSet", "GET", "/scaleSets/web", reader, "")
	a.ok("FleetService.ListScaleSets", "GET", "/scaleSets", reader, "")
	ref := "/subscriptions/x/resourceGroups/y/providers/Microsoft.Compute/galleries/demo/applications/hello/versions/1.0.0"
	p := a.ok("FleetService.SetApplication", "POST", "/machines/vm1/applicationProfile/applications", contrib, fmt.Sprintf(`{"packageReferenceId":%q,"order":1}`, ref))
	if l, _ := get(p, "applicationProfile", "galleryApplications").([]any); len(l) != 1 {
		t.Fatalf("SetApplication: %v", p)
	}
	a.ok("FleetService.SetApplication", "POST", "/scaleSets/web/applicationProfile/applications", contrib, fmt.Sprintf(`{"packageReferenceId":%q}`, ref))
	a.ok("FleetService.RetryApplication", "POST", "/machines/vm1/applicationProfile/applications/demo/hello/retry", contrib, "")
	gs := a.stream("FleetService.WatchGoalState", "/machines/vm1/goalState", agent, func(r map[string]any) bool {
		return str(r, "goalState", "applications", 0, "application") == "hello"
	})
	if n, ok := get(gs, "goalState", "applications", 0, "retry").(json.Number); !ok || n.String() != "1" {
		t.Fatalf("the goal state's retry (int64) is not the number 1: %v", gs)
	}
	a.ok("FleetService.ListInventory", "GET", "/inventory?application=demo/hello", reader, "")
	// Deploying needs read access only (as in Azure): Readers deploy too,
	// but not a token of one gallery, nor a machine's.
	scoped := str(a.ok("AccessService.CreateToken", "POST", "/tokens", owner, `{"name":"demo-only","role":"ROLE_CONTRIBUTOR","gallery":"demo"}`), "secret")
	actionsAndPreheat(t, a, contrib, reader, agent, scoped)
	rollouts(t, a, src.URL+"/pkg", contrib, reader, agent, scoped)
	a.ok("FleetService.RemoveApplication", "DELETE", "/scaleSets/web/applicationProfile/applications/demo/hello", contrib, "")
	// A new agent token replaces (revokes) the one CreateMachine gave.
	if agent = str(a.ok("AccessService.IssueAgentToken", "POST", "/machines/vm1/agentToken", owner, ""), "agentToken"); agent == "" {
		t.Fatal("IssueAgentToken: no agentToken")
	}

	// Shares.
	a.ok("AccessService.ShareGallery", "PUT", "/galleries/demo/shares/partner", owner, "")
	a.ok("AccessService.ListShares", "GET", "/galleries/demo/shares", owner, "")
	a.ok("AccessService.UnshareGallery", "DELETE", "/galleries/demo/shares/partner", owner, "")

	a.ok("ClusterService.GetClusterStatus", "GET", "/cluster", owner, "")

	// Vmapp-Tenant: the operator's token acts in another tenant; the
	// Contributor's (of the default tenant) may not.
	a.tenant = "other"
	a.ok("CatalogService.CreateGallery", "PUT", "/galleries/elsewhere", owner, `{"location":"westus"}`)
	if l, _ := get(a.ok("CatalogService.ListGalleries", "GET", "/galleries", owner, ""), "galleries").([]any); len(l) != 1 || str(l, 0, "name") != "elsewhere" {
		t.Fatalf("the galleries of tenant other: %v", l)
	}
	a.fails("GET", "/galleries/elsewhere", contrib, "", http.StatusForbidden, "PermissionDenied", "")
	a.tenant = "bad tenant!"
	a.fails("GET", "/galleries", owner, "", http.StatusBadRequest, "InvalidArgument", "tenant")
	a.tenant = ""
	a.fails("GET", "/galleries/elsewhere", owner, "", http.StatusNotFound, "NotFound", "")

	errorClasses(t, a, owner, contrib, reader, agent)

	// Deletions, last.
	a.ok("FleetService.DeleteMachine", "DELETE", "/machines/vm1", contrib, "")
	a.ok("FleetService.DeleteScaleSet", "DELETE", "/scaleSets/web", contrib, "")
	a.ok("CatalogService.DeleteVersion", "DELETE", "/galleries/demo/applications/hello/versions/1.0.0", contrib, "")
	a.ok("CatalogService.DeleteApplication", "DELETE", "/galleries/demo/applications/hello?cascade=true", contrib, "")
	a.ok("CatalogService.DeleteGallery", "DELETE", "/galleries/demo?cascade=true", contrib, "")
	a.ok("AccessService.RevokeToken", "DELETE", "/tokens/"+readerID, owner, "")
	a.fails("GET", "/galleries", reader, "", http.StatusUnauthorized, "Unauthenticated", "")

	for _, rpc := range annotated(t) {
		if !a.covered[rpc] {
			t.Errorf("%s has a REST path that no request of this test called with success", rpc)
		}
	}
}

// grpcOnly are the RPCs without a REST path, and why: every other RPC of
// the services the gateway serves must have one (TestEveryRPCDecided).
var grpcOnly = map[string]string{
	"FleetService.ReportStatus":           "the agent's report",
	"FleetService.ReportActionResult":     "the agent's report",
	"TransferService.BeginUpload":         "uploads stream chunks over gRPC (the CLI's upload); Import takes a URL",
	"TransferService.Upload":              "a client stream",
	"TransferService.AbortUpload":         "of an upload session, gRPC's",
	"ClusterService.AddNode":              "membership changes: the operator's CLI",
	"ClusterService.RemoveNode":           "membership changes: the operator's CLI",
	"ClusterService.SaveSnapshot":         "a stream of the state's bytes: the operator's CLI",
	"DownloadService.GetDownloadPlan":     "the agents'",
	"DownloadService.ReadRange":           "the agents'",
	"DownloadService.ReportReplicaDamage": "the agents'",
	"DownloadService.Announce":            "the agents'",
	"DownloadService.ReportPeer":          "the agents'",
}

// TestEveryRPCDecided fails when an RPC of a service the REST API serves
// has neither a path nor a reason to be gRPC only: a new RPC must decide.
func TestEveryRPCDecided(t *testing.T) {
	paths := map[string]bool{}
	for _, rpc := range annotated(t) {
		paths[rpc] = true
	}
	served := map[string]bool{}
	for rpc := range paths {
		served[strings.Split(rpc, ".")[0]] = true
	}
	protoregistry.GlobalFiles.RangeFilesByPackage("vmapp.v1", func(f protoreflect.FileDescriptor) bool {
		for i := range f.Services().Len() {
			s := f.Services().Get(i)
			for j := range s.Methods().Len() {
				rpc := string(s.Name()) + "." + string(s.Methods().Get(j).Name())
				if _, ok := grpcOnly[rpc]; served[string(s.Name())] && !paths[rpc] && !ok {
					t.Errorf("%s has no REST path: annotate it (google.api.http) or say why it is gRPC only (grpcOnly)", rpc)
				}
				if _, ok := grpcOnly[rpc]; ok && paths[rpc] {
					t.Errorf("%s has a REST path but is listed gRPC only", rpc)
				}
			}
		}
		return true
	})
}

// actionsAndPreheat runs a custom action on vm1 and lists it, and preheats
// the version in eastus, with each one's errors.
func actionsAndPreheat(t *testing.T, a *api, contrib, reader, agent, scoped string) {
	const run = "/machines/vm1/applicationProfile/applications/demo/hello/actions/flush/run"
	r := a.ok("FleetService.RunAction", "POST", run, contrib, `{"parameters":[{"name":"level","value":"3"}]}`)
	id := str(r, "runs", 0, "id")
	if id == "" || str(r, "runs", 0, "state") != "Pending" || str(r, "runs", 0, "machine") != "vm1" {
		t.Fatalf("RunAction: %v", r)
	}
	a.fails("POST", run, contrib, `{}`, http.StatusBadRequest, "InvalidArgument", "parameters")
	a.fails("POST", run, contrib, `{"parameters":[{"name":"level","value":"3"},{"name":"colour","value":"red"}]}`, http.StatusBadRequest, "InvalidArgument", "parameters")
	a.fails("POST", "/machines/vm1/applicationProfile/applications/demo/hello/actions/nope/run", contrib, `{}`, http.StatusBadRequest, "InvalidArgument", "action")
	a.fails("POST", "/machines/ghost/applicationProfile/applications/demo/hello/actions/flush/run", contrib, `{}`, http.StatusNotFound, "NotFound", "")
	for _, tok := range []string{agent, scoped} {
		a.fails("POST", run, tok, `{"parameters":[{"name":"level","value":"3"}]}`, http.StatusForbidden, "PermissionDenied", "")
	}
	a.fails("POST", run, "", `{}`, http.StatusUnauthorized, "Unauthenticated", "")
	a.fails("POST", "/scaleSets/web/applicationProfile/applications/demo/hello/actions/flush/run", contrib, `{"parameters":[{"name":"level","value":"3"}]}`,
		http.StatusBadRequest, "FailedPrecondition", "target") // no instances
	l := a.ok("FleetService.ListActionRuns", "GET", "/machines/vm1/actionRuns?application=demo/hello", reader, "")
	if str(l, "runs", 0, "id") != id || get(l, "runs", 1) != nil {
		t.Fatalf("ListActionRuns: want the one run %s: %v", id, l)
	}
	a.ok("FleetService.ListActionRuns", "GET", "/scaleSets/web/actionRuns", reader, "")
	a.fails("GET", "/machines/vm1/actionRuns", "", "", http.StatusUnauthorized, "Unauthenticated", "")
	a.fails("GET", "/machines/vm1/actionRuns", scoped, "", http.StatusForbidden, "PermissionDenied", "")

	const pre = "/galleries/demo/applications/hello/versions/1.0.0/preheat"
	p := a.ok("DownloadService.Preheat", "POST", pre, reader, `{"region":"eastus","machines":1}`)
	if str(p, "status", "region") != "eastus" || str(p, "status", "machines", 0) != "vm1" {
		t.Fatalf("Preheat: %v", p)
	}
	a.fails("POST", pre, contrib, `{"region":"eastus","machines":5}`, http.StatusBadRequest, "FailedPrecondition", "machines")
	a.fails("POST", pre, contrib, `{"machines":1}`, http.StatusBadRequest, "InvalidArgument", "region")
	a.fails("POST", pre, scoped, `{"region":"eastus","machines":1}`, http.StatusForbidden, "PermissionDenied", "")
	a.fails("POST", pre, agent, `{"region":"eastus","machines":1}`, http.StatusForbidden, "PermissionDenied", "")
	a.fails("POST", pre, contrib, `{"region":"eastus","machines":1,"scaleSet":"web"}`, http.StatusBadRequest, "InvalidArgument", "scaleSet")
	a.fails("POST", "/galleries/demo/applications/hello/versions/9.9.9/preheat", contrib, `{"region":"eastus","machines":1}`, http.StatusNotFound, "NotFound", "")
	if v := a.ok("CatalogService.GetVersion", "GET", "/galleries/demo/applications/hello/versions/1.0.0", reader, ""); str(v, "version", "preheat", 0, "region") != "eastus" {
		t.Fatalf("GetVersion shows no preheat: %v", get(v, "version", "preheat"))
	}
	a.ok("DownloadService.Preheat", "POST", pre, contrib, `{"region":"eastus","cancel":true}`)
}

// rollouts publishes 2.0.0 and rolls it out to vm1 (whose agent never
// reports, so that the rollout stays Running): pause (a Reader may
// deploy), resume, watch, abort, with each one's errors.
func rollouts(t *testing.T, a *api, pkgURL, contrib, reader, agent, scoped string) {
	const v2 = "/galleries/demo/applications/hello/versions/2.0.0"
	a.ok("CatalogService.CreateVersion", "PUT", v2, contrib,
		`{"location":"eastus","publishingProfile":{"manageActions":{"install":"install.sh","remove":"remove.sh"},"targetRegions":[{"name":"eastus"}]}}`)
	a.ok("TransferService.Import", "POST", v2+"/import", contrib, fmt.Sprintf(`{"kind":"ARTIFACT_KIND_PACKAGE","url":%q}`, pkgURL))
	a.stream("ReplicationService.WatchReplication", v2+"/replicationStatus", reader,
		func(r map[string]any) bool { return str(r, "status", "aggregatedState") == "Completed" })

	const body = `{"application":"demo/hello","version":"2.0.0","target":{"machines":{"region":"eastus"}},"waves":["100%"],"soak":"600s"}`
	a.fails("PUT", "/rollouts/r1", scoped, body, http.StatusForbidden, "PermissionDenied", "")
	a.fails("PUT", "/rollouts/r1", agent, body, http.StatusForbidden, "PermissionDenied", "")
	a.fails("PUT", "/rollouts/r1", contrib, `{"application":"demo/hello","target":{"machines":{}}}`, http.StatusBadRequest, "InvalidArgument", "version")
	a.fails("PUT", "/rollouts/r1", contrib, `{"application":"demo/hello","version":"2.0.0","target":{"machines":{"region":"westus"}}}`, http.StatusBadRequest, "InvalidArgument", "target")
	a.fails("PUT", "/rollouts/r1", contrib, `{"application":"demo/hello","version":"2.0.0","soak":"2s","target":{"machines":{}},"colour":1}`, http.StatusBadRequest, "InvalidArgument", "colour")
	r := a.ok("RolloutService.CreateRollout", "PUT", "/rollouts/r1", contrib, body)
	if str(r, "rollout", "state") != "Running" || str(r, "rollout", "machines", 0, "name") != "vm1" || str(r, "rollout", "soak") != "600s" {
		t.Fatalf("CreateRollout: %v", r)
	}
	a.fails("PUT", "/rollouts/r1", contrib, body, http.StatusConflict, "AlreadyExists", "")
	a.ok("RolloutService.GetRollout", "GET", "/rollouts/r1", reader, "")
	if l, _ := get(a.ok("RolloutService.ListRollouts", "GET", "/rollouts?pageSize=10", reader, ""), "rollouts").([]any); len(l) != 1 {
		t.Fatalf("ListRollouts: %v", l)
	}
	a.fails("GET", "/rollouts/nope", reader, "", http.StatusNotFound, "NotFound", "name")
	a.fails("GET", "/rollouts?pageSize=-1", reader, "", http.StatusBadRequest, "InvalidArgument", "pageSize")
	a.fails("GET", "/rollouts", "", "", http.StatusUnauthorized, "Unauthenticated", "")
	a.fails("GET", "/rollouts/r1", scoped, "", http.StatusForbidden, "PermissionDenied", "")
	a.fails("GET", "/rollouts/r1/watch", scoped, "", http.StatusForbidden, "PermissionDenied", "")
	a.fails("POST", "/rollouts/r1/pause", scoped, "", http.StatusForbidden, "PermissionDenied", "")
	if s := str(a.ok("RolloutService.PauseRollout", "POST", "/rollouts/r1/pause", reader, ""), "rollout", "state"); s != "Paused" {
		t.Fatalf("PauseRollout: state %s", s)
	}
	a.stream("RolloutService.WatchRollout", "/rollouts/r1/watch", reader, func(r map[string]any) bool { return str(r, "rollout", "state") == "Paused" })
	a.fails("POST", "/rollouts/r1/resume", agent, "", http.StatusForbidden, "PermissionDenied", "")
	if s := str(a.ok("RolloutService.ResumeRollout", "POST", "/rollouts/r1/resume", contrib, ""), "rollout", "state"); s != "Running" {
		t.Fatalf("ResumeRollout: state %s", s)
	}
	a.fails("POST", "/rollouts/r1/abort", scoped, "", http.StatusForbidden, "PermissionDenied", "")
	a.ok("RolloutService.AbortRollout", "POST", "/rollouts/r1/abort", contrib, "")
	// The watch of a rollout that can't move any more sends its state and
	// ends.
	if r := a.do("GET", "/rollouts/r1/watch", reader, ""); r.code != http.StatusOK || str(r.doc, "result", "rollout", "state") != "Aborted" || bytes.Count(bytes.TrimSpace(r.raw), []byte("\n")) != 0 {
		t.Fatalf("the watch of an aborted rollout: %d %s", r.code, r.raw)
	}
	a.fails("POST", "/rollouts/r1/resume", contrib, "", http.StatusBadRequest, "FailedPrecondition", "name")
	a.fails("POST", "/rollouts/nope/pause", contrib, "", http.StatusNotFound, "NotFound", "name")
}

// errorClasses checks each error class's HTTP status and body, the
// authorization of each role, and requests the gateway refuses itself.
func errorClasses(t *testing.T, a *api, owner, contrib, reader, agent string) {
	const g = "/galleries/demo"
	// Authentication and authorization.
	e := a.do("GET", g, "", "")
	if e.code != http.StatusUnauthorized || !strings.HasPrefix(e.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no token: %d %v %s", e.code, e.header, e.raw)
	}
	a.fails("GET", g, "", "", http.StatusUnauthorized, "Unauthenticated", "authorization")
	a.fails("GET", g, "not-a-token", "", http.StatusUnauthorized, "Unauthenticated", "")
	a.fails("PUT", "/galleries/other", reader, `{"location":"eastus"}`, http.StatusForbidden, "PermissionDenied", "")
	a.fails("PATCH", g, reader, `{"description":"no"}`, http.StatusForbidden, "PermissionDenied", "")
	a.fails("POST", "/tokens", contrib, `{"name":"x","role":"ROLE_READER"}`, http.StatusForbidden, "PermissionDenied", "")
	a.fails("POST", g+"/trustPolicy/keys", contrib, `{"publicKey":"x"}`, http.StatusForbidden, "PermissionDenied", "")
	a.fails("GET", "/galleries", agent, "", http.StatusForbidden, "PermissionDenied", "")
	a.fails("GET", "/cluster", contrib, "", http.StatusForbidden, "PermissionDenied", "")

	// The classes of the calls' errors.
	a.fails("GET", "/galleries/nope", reader, "", http.StatusNotFound, "NotFound", "")
	a.fails("PUT", g, contrib, `{"location":"eastus"}`, http.StatusConflict, "AlreadyExists", "")
	a.fails("PUT", "/galleries/mars", contrib, `{"location":"mars"}`, http.StatusBadRequest, "InvalidArgument", "location")
	a.fails("PUT", "/galleries/bad%20name", contrib, `{"location":"eastus"}`, http.StatusBadRequest, "InvalidArgument", "gallery")
	a.fails("DELETE", g, contrib, "", http.StatusBadRequest, "FailedPrecondition", "")
	a.fails("PATCH", g+"?ifMatch=stale", contrib, `{"description":"x"}`, http.StatusPreconditionFailed, "FailedPrecondition", "")
	a.fails("GET", "/machines/vm1/goalState", agent+"x", "", http.StatusUnauthorized, "Unauthenticated", "")

	// What the gateway refuses before any call.
	a.fails("PUT", "/galleries/x", contrib, `{"location":`, http.StatusBadRequest, "InvalidArgument", "")
	a.fails("PUT", "/galleries/x", contrib, `["location"]`, http.StatusBadRequest, "InvalidArgument", "")
	a.fails("PUT", "/galleries/x", contrib, `{"location":"eastus","colour":"red"}`, http.StatusBadRequest, "InvalidArgument", "colour")
	a.fails("PUT", "/galleries/x", contrib, `{"location":7}`, http.StatusBadRequest, "InvalidArgument", "")
	big := `{"description":"` + strings.Repeat("x", 2<<20) + `"}`
	a.fails("PATCH", g, contrib, big, http.StatusRequestEntityTooLarge, "InvalidArgument", "")
	a.chunked = true
	a.fails("PATCH", g, contrib, big, http.StatusRequestEntityTooLarge, "InvalidArgument", "")
	a.ok("CatalogService.UpdateGallery", "PATCH", g, contrib, `{"description":"patched"}`) // chunked, small
	a.chunked = false
	a.fails("GET", "/nowhere", reader, "", http.StatusNotFound, "NotFound", "")
	a.fails("POST", "/galleries", contrib, `{}`, http.StatusMethodNotAllowed, "Unimplemented", "")
	// Nothing refused was stored.
	if d := str(a.ok("CatalogService.GetGallery", "GET", g, reader, ""), "gallery", "description"); d != "patched" {
		t.Fatalf("after refused changes the gallery's description is %q", d)
	}
	a.fails("GET", "/galleries/x", reader, "", http.StatusNotFound, "NotFound", "")
}
