package rest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestMarshalChunks: a stream's chunks are {"result": ...} in pbjson's
// form (64-bit integers as numbers; keys in order, as the CLI prints), and the error that ends a stream is
// the same Azure-style body as a call's, with the field at fault.
func TestMarshalChunks(t *testing.T) {
	m := newMarshaler()
	b, err := m.Marshal(map[string]any{"result": &pb.WatchReplicationResponse{Status: &pb.ReplicationStatus{
		AggregatedState: "Replicating", Summary: []*pb.RegionalReplicationStatus{{Region: "eastus", BytesDone: 5, BytesTotal: 1 << 40}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"result":{"status":{"aggregatedState":"Replicating","summary":[{"bytesDone":5,"bytesTotal":1099511627776,"region":"eastus"}]}}}`; string(b) != want {
		t.Fatalf("result chunk:\n got %s\nwant %s", b, want)
	}
	st, _ := status.New(codes.NotFound, "Gallery 'g' doesn't exist.").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "gallery"}}})
	b, err = m.Marshal(map[string]proto.Message{"error": st.Proto()})
	if err != nil {
		t.Fatal(err)
	}
	var got ErrorBody
	if err := json.Unmarshal(b, &got); err != nil || got.Error != (ErrorDetail{Code: "NotFound", Message: "Gallery 'g' doesn't exist.", Target: "gallery"}) {
		t.Fatalf("error chunk: %s (%v)", b, err)
	}
}

// TestErrorStatus: every error class's HTTP status and body code, as
// vmappd's classes (errs) reach the gateway as gRPC codes.
func TestErrorStatus(t *testing.T) {
	for _, tc := range []struct {
		class  errs.Class
		field  string
		status int
	}{
		{errs.InvalidArgument, "location", http.StatusBadRequest},
		{errs.OutOfRange, "", http.StatusBadRequest},
		{errs.FailedPrecondition, "", http.StatusBadRequest},
		{errs.FailedPrecondition, "ifMatch", http.StatusPreconditionFailed},
		{errs.Unauthenticated, "authorization", http.StatusUnauthorized},
		{errs.PermissionDenied, "", http.StatusForbidden},
		{errs.NotFound, "gallery", http.StatusNotFound},
		{errs.AlreadyExists, "", http.StatusConflict},
		{errs.Aborted, "", http.StatusConflict},
		{errs.ResourceExhausted, "", http.StatusTooManyRequests},
		{errs.Unimplemented, "", http.StatusNotImplemented},
		{errs.Unavailable, "", http.StatusServiceUnavailable},
		{errs.DeadlineExceeded, "", http.StatusGatewayTimeout},
		{errs.Internal, "", http.StatusInternalServerError},
		{errs.DataLoss, "", http.StatusInternalServerError},
	} {
		w := httptest.NewRecorder()
		handleError(context.Background(), nil, nil, w, nil, errs.ToStatus(errs.New(tc.class, tc.field, "what went wrong")))
		var got ErrorBody
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		msg := "what went wrong"
		if tc.class == errs.Internal {
			msg = "internal error" // the cause stays in vmappd's log
		}
		want := ErrorDetail{Code: tc.class.Code().String(), Message: msg, Target: tc.field}
		if w.Code != tc.status || got.Error != want || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%v (field %q): %d %s, want %d %+v", tc.class, tc.field, w.Code, w.Body, tc.status, want)
		}
	}
}
