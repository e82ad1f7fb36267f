package wire

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

type decoded struct{ got []byte }

func (d *decoded) DecodeWire(data mem.BufferSlice) error {
	d.got = data.Materialize()
	return nil
}

// TestCodec: gRPC's "proto" codec is this one; it sends Encoded pieces as
// they are (a message protobuf decodes), lets a Decoder take the frames,
// and gives every other message to protobuf.
func TestCodec(t *testing.T) {
	c := encoding.GetCodecV2("proto")
	if _, ok := c.(codec); !ok {
		t.Fatalf("the registered proto codec is %T", c)
	}
	data := bytes.Repeat([]byte("chunk"), 1000)
	head := protowire.AppendTag(nil, 2, protowire.VarintType)
	head = protowire.AppendVarint(head, 42)
	head = protowire.AppendTag(head, 3, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(len(data)))
	out, err := c.Marshal(Encoded{mem.SliceBuffer(head), mem.SliceBuffer(data)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || &out[1].ReadOnlyData()[0] != &data[0] {
		t.Fatal("the data was copied")
	}
	var m pb.UploadRequest
	if err := c.Unmarshal(out, &m); err != nil || m.Offset != 42 || !bytes.Equal(m.Data, data) {
		t.Fatalf("protobuf decoded %v (%v)", &m, err)
	}
	d := &decoded{}
	if err := c.Unmarshal(out, d); err != nil || !bytes.Equal(d.got, append(head, data...)) {
		t.Fatalf("the decoder got %d bytes (%v)", len(d.got), err)
	}
	std, err := c.Marshal(&pb.UploadRequest{SessionId: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := proto.Marshal(&pb.UploadRequest{SessionId: "s"}); !bytes.Equal(std.Materialize(), want) {
		t.Fatal("a message was not marshalled by protobuf")
	}
}

// TestCursorAcrossFrames: a varint and a field's bytes split across
// frames are read whole; a message cut short is an error.
func TestCursorAcrossFrames(t *testing.T) {
	b := protowire.AppendVarint(nil, 1<<40)
	b = append(b, "abcdef"...)
	var frames mem.BufferSlice
	for _, x := range b {
		frames = append(frames, mem.SliceBuffer([]byte{x}))
	}
	c := NewCursor(frames)
	v, err := c.Varint()
	if err != nil || v != 1<<40 {
		t.Fatalf("varint %d (%v)", v, err)
	}
	got, err := c.Bytes(6)
	if err != nil || len(got) != 6 || !c.Done() {
		t.Fatalf("bytes %q (%v)", got, err)
	}
	if _, err := c.Bytes(1); err == nil {
		t.Fatal("read past the end")
	}
	if _, err := NewCursor(mem.BufferSlice{mem.SliceBuffer([]byte{0x80})}).Varint(); err == nil {
		t.Fatal("a varint cut short was read")
	}
	if err := NewCursor(mem.BufferSlice{mem.SliceBuffer([]byte{0x01})}).Skip(1); err == nil {
		t.Fatal("a fixed64 cut short was skipped")
	}
}

// TestPool: a buffer put back is handed out again; one of another size
// is not kept.
func TestPool(t *testing.T) {
	p := NewPool(16, 1)
	b := p.Get(10)
	if len(*b) != 10 || cap(*b) != 16 {
		t.Fatalf("got len %d cap %d", len(*b), cap(*b))
	}
	p.Put(b)
	if again := p.Get(16); again != b || len(*again) != 16 {
		t.Fatal("the buffer put back was not reused")
	}
	other := make([]byte, 8)
	p.Put(&other)
	if got := p.Get(4); got == &other {
		t.Fatal("a buffer of another size was kept")
	}
}
