package rest

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"sync"

	"github.com/vmapp/vmapp/internal/buildinfo"
)

// openAPI is the document protoc-gen-openapiv2 generates from the protos
// (make proto; make lint checks it is up to date).
//
//go:embed vmapp.swagger.json
var openAPI []byte

// served is openAPI as /openapi.json serves it: one title and vmappd's
// version for the merged files' first, and its 64-bit integers typed as
// the API writes them, numbers (protoc-gen-openapiv2 types them as
// strings, protojson's form).
var served = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		return nil, err
	}
	if m, ok := doc.(map[string]any); ok {
		m["info"] = map[string]any{"title": "vmapp REST API", "version": buildinfo.Get().Version,
			"description": "vmappd's REST/JSON API, generated from its gRPC services. Authorization: Bearer <token>. Errors: {\"error\": {\"code\", \"message\", \"target\"}}."}
	}
	return json.MarshalIndent(int64sAsIntegers(doc), "", "  ")
})

// int64sAsIntegers retypes every {"type": "string", "format": "int64"} (or
// uint64) schema in v as an integer.
func int64sAsIntegers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if f, _ := x["format"].(string); x["type"] == "string" && (f == "int64" || f == "uint64") {
			x["type"] = "integer"
		}
		for k, e := range x {
			x[k] = int64sAsIntegers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = int64sAsIntegers(e)
		}
	}
	return v
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	b, err := served()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
