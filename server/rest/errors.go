package rest

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorBody is every error's body, as Azure's: the gRPC code's name
// ("NotFound", "InvalidArgument", ...), the message, and the request field
// at fault in its JSON name, when there is one.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is ErrorBody's content.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
}

// unknownField finds the field protojson refused in a request body.
var unknownField = regexp.MustCompile(`unknown field "([^"]+)"`)

// detail is the Azure-style form of a status.
func detail(st *status.Status) ErrorDetail {
	d := ErrorDetail{Code: st.Code().String(), Message: st.Message()}
	for _, x := range st.Details() {
		if br, ok := x.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
			d.Target = br.FieldViolations[0].Field
		}
	}
	if m := unknownField.FindStringSubmatch(d.Message); d.Target == "" && st.Code() == codes.InvalidArgument && m != nil {
		d.Target = m[1]
	}
	return d
}

// writeError answers with st's HTTP status (grpc-gateway's table of gRPC
// codes, but 412 for an ifMatch that doesn't match, as Azure answers a
// stale If-Match) and body.
func writeError(w http.ResponseWriter, st *status.Status) {
	d := detail(st)
	code := runtime.HTTPStatusFromCode(st.Code())
	if st.Code() == codes.FailedPrecondition && d.Target == "ifMatch" {
		code = http.StatusPreconditionFailed
	}
	writeStatus(w, code, d)
}

func writeStatus(w http.ResponseWriter, code int, d ErrorDetail) {
	h := w.Header()
	h.Del("Trailer")
	h.Del("Transfer-Encoding")
	h.Set("Content-Type", "application/json")
	if code == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="vmapp"`)
	}
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ErrorBody{d})
}

// handleError is the gateway's error handler: errors of calls, and of
// requests it could not turn into calls (bad JSON, unknown fields).
func handleError(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
	writeError(w, status.Convert(err))
}

// handleRouting answers requests that match no path or method.
func handleRouting(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
	d := ErrorDetail{Code: codes.NotFound.String(), Message: "no API path " + r.URL.Path + ": see /openapi.json"}
	switch code {
	case http.StatusMethodNotAllowed:
		d = ErrorDetail{Code: codes.Unimplemented.String(), Message: r.Method + " is not a method of " + r.URL.Path}
	case http.StatusBadRequest:
		d = ErrorDetail{Code: codes.InvalidArgument.String(), Message: "bad request path " + r.URL.Path}
	}
	writeStatus(w, code, d)
}
