package rest

import (
	"encoding/json"
	"io"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/internal/pbjson"
)

// marshaler writes messages as the CLI's -o json does (pbjson: Azure's
// camelCase, 64-bit integers as numbers) and reads request bodies with
// protojson, refusing unknown fields.
type marshaler struct {
	runtime.JSONPb
}

func newMarshaler() *marshaler {
	return &marshaler{runtime.JSONPb{UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false}}}
}

// Marshal writes a message, a stream's chunk ({"result": message}) or its
// error ({"error": {code, message, target}}).
func (m *marshaler) Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case proto.Message:
		return pbjson.Marshal(x)
	case map[string]any:
		if r, ok := x["result"].(proto.Message); ok && len(x) == 1 {
			b, err := pbjson.Marshal(r)
			if err != nil {
				return nil, err
			}
			return json.Marshal(map[string]json.RawMessage{"result": b})
		}
	case map[string]proto.Message:
		if st, ok := x["error"].(*spb.Status); ok && len(x) == 1 {
			return json.Marshal(ErrorBody{detail(status.FromProto(st))})
		}
	}
	return m.JSONPb.Marshal(v)
}

// NewEncoder writes what Marshal does, one value a line.
func (m *marshaler) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		b, err := m.Marshal(v)
		if err == nil {
			_, err = w.Write(append(b, '\n'))
		}
		return err
	})
}

// ContentType is JSON's.
func (m *marshaler) ContentType(any) string { return "application/json" }

// StreamContentType is newline-delimited JSON's: a stream answers one
// {"result": ...} object a line as they come.
func (m *marshaler) StreamContentType(any) string { return "application/x-ndjson" }
