package console_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// site is the console of a real vmappd (daemon.New, as the binary) on real
// MinIO processes, reached over HTTP.
type site struct {
	t   *testing.T
	c   *testcluster.Cluster
	ui  string
	ctx context.Context
}

func newSite(t *testing.T) *site {
	if testing.Short() {
		t.Skip("runs MinIO")
	}
	c := testcluster.Start(t, testcluster.Options{HTTP: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return &site{t: t, c: c, ui: "http://" + c.Daemon.HTTPAddr().String() + "/ui/", ctx: ctx}
}

// token creates a token of role and returns its credential.
func (s *site) token(role pb.Role) string {
	s.t.Helper()
	res, err := pb.NewAccessServiceClient(s.c.Client.Conn()).CreateToken(s.ctx, &pb.CreateTokenRequest{Name: role.Label(), Role: role})
	if err != nil {
		s.t.Fatal(err)
	}
	return res.Secret
}

// do sends a request with credential's cookie (none if ""), not following
// redirects, and returns the status, the body and the headers.
func (s *site) do(method, path, credential string, form url.Values, header ...string) (int, string, http.Header) {
	s.t.Helper()
	req, err := http.NewRequestWithContext(s.ctx, method, s.ui+path, strings.NewReader(form.Encode()))
	if err != nil {
		s.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if credential != "" {
		req.AddCookie(&http.Cookie{Name: "vmapp_token", Value: credential})
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := cl.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return res.StatusCode, string(b), res.Header
}

// TestSignIn: without a cookie a page sends the browser to sign in (and
// back); a wrong token, an empty one, a bad tenant and a machine's
// credential are refused with a sentence; a person's token sets an
// HttpOnly, SameSite=Strict cookie that opens the pages.
func TestSignIn(t *testing.T) {
	s := newSite(t)
	code, _, h := s.do("GET", "inventory?state=Failed", "", nil)
	if code != http.StatusSeeOther || h.Get("Location") != "/ui/signin?next="+url.QueryEscape("/ui/inventory?state=Failed") {
		t.Fatalf("anonymous: %d to %q", code, h.Get("Location"))
	}
	fl := pb.NewFleetServiceClient(s.c.Client.Conn())
	m, err := fl.CreateMachine(s.ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "vm1", Region: "eastus", OsType: "Linux"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ form url.Values }{
		"empty":       {url.Values{"token": {" "}}},
		"wrong":       {url.Values{"token": {"tok_aaaaaaaaaaaaaaaaaaaa.nope"}}},
		"bad tenant":  {url.Values{"token": {s.c.AdminToken}, "tenant": {"Not A Tenant!"}}},
		"machine's":   {url.Values{"token": {m.AgentToken}}},
		"not a token": {url.Values{"token": {"hello"}}},
	} {
		code, body, h := s.do("POST", "signin", "", tc.form)
		if code != http.StatusUnauthorized || !strings.Contains(body, `id="signin-error"`) || h.Get("Set-Cookie") != "" {
			t.Errorf("%s token: %d, cookie %q\n%s", name, code, h.Get("Set-Cookie"), body)
		}
	}
	reader := s.token(pb.Role_ROLE_READER)
	code, _, h = s.do("POST", "signin", "", url.Values{"token": {reader}, "next": {"/ui/machines"}})
	ck := h.Get("Set-Cookie")
	if code != http.StatusSeeOther || h.Get("Location") != "/ui/machines" || !strings.Contains(ck, "HttpOnly") || !strings.Contains(ck, "SameSite=Strict") {
		t.Fatalf("sign-in: %d to %q, cookie %q", code, h.Get("Location"), ck)
	}
	if _, _, h := s.do("POST", "signin", "", url.Values{"token": {reader}, "next": {"//elsewhere.example/"}}); h.Get("Location") != "/ui/" {
		t.Errorf("sign-in sent the browser to %q", h.Get("Location"))
	}
	code, body, _ := s.do("GET", "machines", reader, nil)
	if code != http.StatusOK || !strings.Contains(body, `href="/ui/machines/vm1"`) || !strings.Contains(body, "Reader") {
		t.Fatalf("machines as a Reader: %d\n%s", code, body)
	}
}

// TestAuthorization: a Reader is shown no repair and refused one through
// the API's rules; a Contributor repairs; a POST from another origin is
// refused; a gallery a token can't read is refused with the API's reason.
func TestAuthorization(t *testing.T) {
	s := newSite(t)
	s.c.Publish(t, "1.0.0", []byte("package"), testcluster.Target("eastus", 1))
	s.c.WaitState(t, "1.0.0", pb.ReplicationCompleted)
	reader, contributor := s.token(pb.Role_ROLE_READER), s.token(pb.Role_ROLE_CONTRIBUTOR)
	const version = "galleries/g/applications/a/versions/1.0.0"
	_, body, _ := s.do("GET", version, reader, nil)
	if strings.Contains(body, "/repair") || !strings.Contains(body, `id="matrix"`) {
		t.Fatalf("a Reader's version page:\n%s", body)
	}
	if _, body, _ := s.do("GET", version, contributor, nil); !strings.Contains(body, `id="repair"`) {
		t.Fatalf("a Contributor's version page has no repair:\n%s", body)
	}
	code, body, _ := s.do("POST", version+"/repair", reader, url.Values{}, "Origin", strings.TrimSuffix(s.ui, "/ui/"))
	if code != http.StatusForbidden || !strings.Contains(body, "needs the Contributor role") {
		t.Fatalf("a Reader's repair: %d\n%s", code, body)
	}
	code, _, _ = s.do("POST", version+"/repair", contributor, url.Values{}, "Origin", "http://elsewhere.example", "Sec-Fetch-Site", "cross-site")
	if code != http.StatusForbidden {
		t.Fatalf("a cross-origin repair: %d", code)
	}
	code, body, _ = s.do("POST", version+"/repair", contributor, url.Values{"deep": {"1"}}, "Origin", strings.TrimSuffix(s.ui, "/ui/"))
	if code != http.StatusOK || !strings.Contains(body, "1 replicas found sound; 0 being copied again") {
		t.Fatalf("a Contributor's repair: %d\n%s", code, body)
	}
	code, body, _ = s.do("GET", "galleries/nope", reader, nil)
	if code != http.StatusNotFound || !strings.Contains(body, "Not found") || !strings.Contains(body, "<code>gallery</code>") {
		t.Fatalf("a missing gallery: %d\n%s", code, body)
	}
	code, body, _ = s.do("POST", "retry", reader, url.Values{"application": {"g/a"}}, "Origin", strings.TrimSuffix(s.ui, "/ui/"))
	if code != http.StatusBadRequest || !strings.Contains(body, "name a machine or a scale set") {
		t.Fatalf("a retry without a target: %d\n%s", code, body)
	}
}

// TestReplicationEvents reads the matrix's event stream of a version
// replicated already: one status with every region Completed, then done.
func TestReplicationEvents(t *testing.T) {
	s := newSite(t)
	s.c.Publish(t, "1.0.0", []byte("package"), testcluster.Target("eastus", 2), testcluster.Target("westus", 1))
	s.c.WaitState(t, "1.0.0", pb.ReplicationCompleted)
	req, _ := http.NewRequestWithContext(s.ctx, "GET", s.ui+"galleries/g/applications/a/versions/1.0.0/replication", nil)
	req.AddCookie(&http.Cookie{Name: "vmapp_token", Value: s.c.AdminToken})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	var events, data []string
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if e, ok := strings.CutPrefix(line, "event: "); ok {
			events = append(events, e)
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			data = append(data, d)
		}
	}
	if strings.Join(events, ",") != "status,done" {
		t.Fatalf("events %v", events)
	}
	for _, want := range []string{`"state":"Completed"`, `data-region=\"westus\"`, "Replica 1"} {
		if !strings.Contains(data[0], want) {
			t.Errorf("the status event lacks %s: %s", want, data[0])
		}
	}
	// Without a session the stream is refused, not redirected.
	req, _ = http.NewRequestWithContext(s.ctx, "GET", s.ui+"galleries/g/applications/a/versions/1.0.0/replication", nil)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("an anonymous stream: %d", res.StatusCode)
	}
}
