package rest_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/vmapp/vmapp/server/rest"
)

// TestOpenAPI: /openapi.json is served, names every path and method the
// protos' annotations give (make lint regenerates it and compares it with
// the committed file), and types 64-bit integers as the API writes them.
func TestOpenAPI(t *testing.T) {
	l := rest.NewLocal()
	defer l.Close()
	conn, err := l.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	g, err := rest.New(conn, rest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	g.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %v", w.Code, w.Header())
	}
	var doc struct {
		Swagger     string
		Info        struct{ Title string }
		Paths       map[string]map[string]any
		Definitions map[string]struct {
			Properties map[string]struct{ Type, Format string }
		}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Swagger != "2.0" || doc.Info.Title != "vmapp REST API" {
		t.Fatalf("swagger %q, title %q", doc.Swagger, doc.Info.Title)
	}
	// Path templates as the document writes them: {field} (its JSON name
	// for nested fields) and {field=*/*} as {field}.
	vars := regexp.MustCompile(`\{([^}=]+)(=[^}]*)?\}`)
	n := 0
	for _, name := range annotated(t) {
		svc, method, _ := strings.Cut(name, ".")
		r := httpRule(t, svc, method)
		for _, b := range append([]*annotations.HttpRule{r}, r.GetAdditionalBindings()...) {
			verb, path := binding(b)
			path = vars.ReplaceAllStringFunc(path, func(v string) string {
				f := vars.FindStringSubmatch(v)[1]
				return "{" + camelPath(f) + "}"
			})
			if _, ok := doc.Paths[path][verb]; !ok {
				t.Errorf("%s: %s %s is not in /openapi.json", name, verb, path)
			}
			n++
		}
	}
	if p := doc.Definitions["v1Artifact"].Properties["sizeBytes"]; p.Type != "integer" || p.Format != "int64" {
		t.Errorf("Artifact.sizeBytes: %+v, want an int64 integer", p)
	}
	t.Logf("%d bindings found in /openapi.json", n)
}

// httpRule is Service.Method's google.api.http option.
func httpRule(t *testing.T, svc, method string) *annotations.HttpRule {
	t.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName("vmapp.v1." + svc + "." + method))
	if err != nil {
		t.Fatal(err)
	}
	return proto.GetExtension(d.Options(), annotations.E_Http).(*annotations.HttpRule)
}

func binding(r *annotations.HttpRule) (verb, path string) {
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return "get", p.Get
	case *annotations.HttpRule_Put:
		return "put", p.Put
	case *annotations.HttpRule_Post:
		return "post", p.Post
	case *annotations.HttpRule_Delete:
		return "delete", p.Delete
	case *annotations.HttpRule_Patch:
		return "patch", p.Patch
	}
	return "", ""
}

// camelPath is a field path's JSON names: scale_set.name -> scaleSet.name.
func camelPath(p string) string {
	parts := strings.Split(p, ".")
	for i, s := range parts {
		words := strings.Split(s, "_")
		for j := 1; j < len(words); j++ {
			words[j] = strings.ToUpper(words[j][:1]) + words[j][1:]
		}
		parts[i] = strings.Join(words, "")
	}
	return strings.Join(parts, ".")
}
