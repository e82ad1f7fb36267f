package server

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// frames cuts b into pieces at random, as the transport's frames would.
func frames(r *rand.Rand, b []byte) mem.BufferSlice {
	var out mem.BufferSlice
	for len(b) > 0 {
		n := 1 + r.IntN(len(b))
		out = append(out, mem.SliceBuffer(bytes.Clone(b[:n])))
		b = b[n:]
	}
	return out
}

func chunkBytes(u *uploadChunk) []byte {
	var out []byte
	p := make([]byte, 7)
	for u.size() > 0 {
		n := u.read(p)
		out = append(out, p[:n]...)
	}
	return out
}

// TestUploadChunkDecodesAsProtobuf: an upload's chunk decoded in place
// from frames cut anywhere has the session, offset and data protobuf
// decodes from the same bytes, with unknown fields, fields out of order
// and repeated; truncated bytes are refused.
func TestUploadChunkDecodesAsProtobuf(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 100_000)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	std, _ := proto.Marshal(&pb.UploadRequest{SessionId: "s-1", Offset: 1 << 40, Data: data})
	var odd []byte // data first, an unknown varint and bytes field, offset given twice, negative last
	odd = protowire.AppendTag(odd, 3, protowire.BytesType)
	odd = protowire.AppendBytes(odd, data[:10])
	odd = protowire.AppendTag(odd, 9, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 300)
	odd = protowire.AppendTag(odd, 2, protowire.VarintType)
	odd = protowire.AppendVarint(odd, 5)
	odd = protowire.AppendTag(odd, 10, protowire.BytesType)
	odd = protowire.AppendBytes(odd, []byte("unknown"))
	odd = protowire.AppendTag(odd, 11, protowire.Fixed32Type)
	odd = protowire.AppendFixed32(odd, 7)
	odd = protowire.AppendTag(odd, 3, protowire.BytesType)
	odd = protowire.AppendBytes(odd, data)
	odd = protowire.AppendTag(odd, 2, protowire.VarintType)
	odd = protowire.AppendVarint(odd, uint64(1<<64-3)) // -3
	for _, b := range [][]byte{std, odd, nil} {
		want := &pb.UploadRequest{}
		if err := proto.Unmarshal(b, want); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			u := &uploadChunk{}
			if err := u.DecodeWire(frames(r, b)); err != nil {
				t.Fatal(err)
			}
			if u.sessionID != want.SessionId || u.offset != want.Offset || !bytes.Equal(chunkBytes(u), want.Data) {
				t.Fatalf("decoded session %q offset %d, want %q %d (data equal: see above)", u.sessionID, u.offset, want.SessionId, want.Offset)
			}
			if u.frames != nil {
				t.Fatal("frames still held after every byte was read")
			}
		}
	}
	for _, cut := range []int{1, len(std) / 2, len(std) - 1} {
		if err := (&uploadChunk{}).DecodeWire(frames(r, std[:cut])); err == nil {
			t.Fatalf("a chunk cut at %d of %d bytes was decoded", cut, len(std))
		}
	}
	bad := protowire.AppendTag(nil, 1, protowire.BytesType)
	bad = protowire.AppendBytes(bad, []byte{0xff, 0xfe})
	if err := (&uploadChunk{}).DecodeWire(frames(r, bad)); err == nil {
		t.Fatal("a session id that isn't UTF-8 was decoded")
	}
	if err := (&uploadChunk{}).DecodeWire(frames(r, protowire.AppendTag(nil, 4, protowire.StartGroupType))); err == nil {
		t.Fatal("a group was decoded")
	}
}
