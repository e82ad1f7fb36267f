package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var restRE = regexp.MustCompile(`msg="HTTP listening: the REST API, and the web console at /ui/" addr=(\S+)`)

// TestRESTOverMutualTLS runs the real vmappd with mutual TLS and
// --http-listen: the REST API takes the same certificates and tokens as
// gRPC, over HTTP/2; a client without a certificate is answered only with
// a token (browsers sign in to the console on this listener), one with a
// certificate of another CA not at all, plaintext not at all; a machine
// credential bound to a certificate (--tls-bind-machines) is refused: the
// gateway's in-process calls carry none.
func TestRESTOverMutualTLS(t *testing.T) {
	bin, f, dir, regions := tlsSetup(t)
	p := start(t, bin, filepath.Join(dir, "data"), regions, "--tls-cert", f.path("server.pem"), "--tls-key", f.path("server-key.pem"),
		"--tls-client-ca", f.path("ca.pem"), "--tls-bind-machines", "--http-listen", "127.0.0.1:0")
	m := restRE.FindStringSubmatch(p.output())
	if m == nil {
		p.waitLog(t, `msg="HTTP listening`)
		m = restRE.FindStringSubmatch(p.output())
	}
	base := "https://" + m[1]
	httpsClient := func(cert string) *http.Client {
		tc := tlsConfig(t, f.path("ca.pem"), "", "")
		if cert != "" {
			tc = tlsConfig(t, f.path("ca.pem"), f.path(cert+".pem"), f.path(cert+"-key.pem"))
		}
		return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}}
	}
	call := func(c *http.Client, method, path, token, body string) (*http.Response, map[string]any, error) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s %s: %d, not JSON: %s", method, path, resp.StatusCode, raw)
		}
		return resp, doc, nil
	}

	op := httpsClient("operator")
	resp, doc, err := call(op, "GET", "/locations", p.token, "")
	if err != nil || resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" {
		t.Fatalf("GET /locations with the operator's certificate and token: %v %v %v", resp, doc, err)
	}
	if regions, _ := doc["regions"].([]any); len(regions) != 2 {
		t.Fatalf("GET /locations: %v", doc)
	}
	if resp, _, err := call(op, "GET", "/openapi.json", "", ""); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json over mutual TLS: %v %v", resp, err)
	}
	if resp, doc, err := call(op, "GET", "/locations", "", ""); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the operator's certificate without a token: %v %v %v", resp, doc, err)
	}

	// Without a client certificate: the token decides. With one of another
	// CA, or in plaintext: no answer from the API.
	noCert := httpsClient("")
	if resp, doc, err := call(noCert, "GET", "/locations", p.token, ""); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("a client without a certificate, with the operator's token: %v %v %v", resp, doc, err)
	}
	if resp, doc, err := call(noCert, "GET", "/locations", "", ""); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a client without a certificate or a token: %v %v %v", resp, doc, err)
	}
	otherCA := &http.Client{Timeout: time.Minute, Transport: &http.Transport{ForceAttemptHTTP2: true,
		TLSClientConfig: tlsConfig(t, f.path("ca.pem"), f.opath("operator.pem"), f.opath("operator-key.pem"))}}
	if _, _, err := call(otherCA, "GET", "/locations", p.token, ""); err == nil {
		t.Error("a client with a certificate of another CA was answered")
	}
	plain := &http.Client{Timeout: time.Minute}
	if resp, err := plain.Get("http://" + m[1] + "/locations"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(body), "regions") {
			t.Errorf("a plaintext request: %d %s", resp.StatusCode, body)
		}
	}

	// A machine's bound credential, even over its own certificate, is
	// refused: REST calls carry no client certificate to the gRPC edge.
	resp, doc, err = call(op, "PUT", "/machines/vm1", p.token, `{"region":"eastus","osType":"Linux"}`)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /machines/vm1: %v %v %v", resp, doc, err)
	}
	agentToken, _ := doc["agentToken"].(string)
	resp, doc, err = call(httpsClient("vm1"), "GET", "/machines/vm1/goalState", agentToken, "")
	if e, _ := doc["error"].(map[string]any); err != nil || resp.StatusCode != http.StatusForbidden || e["code"] != "PermissionDenied" {
		t.Fatalf("vm1's bound credential over REST: %v %v %v", resp, doc, err)
	}
}
