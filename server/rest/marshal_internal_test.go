package rest

import (
	"encoding/json"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

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
