package wire

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec wrapped here
	"google.golang.org/grpc/mem"
)

// The "proto" codec, registered in place of gRPC's own (which it calls for
// every other message), lets two kinds of message skip protobuf's copies,
// where a process handles the same bytes in bulk:
//
//   - Encoded is a message already in protobuf's wire form, sent as it is:
//     the goal state of a scale set's machines is encoded once per change
//     and sent on every stream; an upload's chunk goes out as a small
//     header and the file's bytes, never copied into one buffer.
//   - A Decoder decodes itself from the received frames: an upload's chunk
//     keeps references to the transport's buffers instead of protobuf's
//     copy of its bytes (see server's uploadChunk).
//
// Both produce and accept the bytes protobuf does, so the other side needs
// no such codec.
type codec struct{ proto encoding.CodecV2 }

// Encoded is a message in protobuf's wire form, in pieces sent one after
// the other (none copied). gRPC frees each piece once it is written (a
// pooled buffer goes back to its pool then): a sender must not change a
// piece after sending it.
type Encoded mem.BufferSlice

// Decoder is a message that decodes itself from the frames it arrived in.
// It may keep the frames (data.Ref()) after it returns.
type Decoder interface {
	DecodeWire(data mem.BufferSlice) error
}

func init() {
	encoding.RegisterCodecV2(codec{proto: encoding.GetCodecV2("proto")})
}

func (c codec) Name() string { return "proto" }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	e, ok := v.(Encoded)
	if !ok {
		return c.proto.Marshal(v)
	}
	return mem.BufferSlice(e), nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if d, ok := v.(Decoder); ok {
		return d.DecodeWire(data)
	}
	return c.proto.Unmarshal(data, v)
}

// errTruncated is a message that ends inside a field.
var errTruncated = errors.New("protobuf message truncated")

// Cursor reads a protobuf message that lies in several buffers (a
// message's frames) without joining them.
type Cursor struct {
	bufs [][]byte
	i, o int // the next byte: bufs[i][o]
}

// NewCursor reads data from its start.
func NewCursor(data mem.BufferSlice) *Cursor {
	c := &Cursor{}
	for _, b := range data {
		if d := b.ReadOnlyData(); len(d) > 0 {
			c.bufs = append(c.bufs, d)
		}
	}
	return c
}

// Done tells whether every byte was read.
func (c *Cursor) Done() bool { return c.i == len(c.bufs) }

func (c *Cursor) byte() (byte, error) {
	if c.Done() {
		return 0, errTruncated
	}
	b := c.bufs[c.i][c.o]
	if c.o++; c.o == len(c.bufs[c.i]) {
		c.i, c.o = c.i+1, 0
	}
	return b, nil
}

// Varint reads a base-128 varint.
func (c *Cursor) Varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		b, err := c.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("protobuf varint overflows 64 bits")
}

// Tag reads a field's number and wire type.
func (c *Cursor) Tag() (num int, typ int, err error) {
	v, err := c.Varint()
	return int(v >> 3), int(v & 7), err
}

// Bytes takes the next n bytes: views of the buffers, in order (not
// copied).
func (c *Cursor) Bytes(n uint64) ([][]byte, error) {
	var out [][]byte
	for n > 0 {
		if c.Done() {
			return nil, errTruncated
		}
		b := c.bufs[c.i][c.o:]
		if uint64(len(b)) > n {
			b = b[:n]
		}
		out = append(out, b)
		n -= uint64(len(b))
		if c.o += len(b); c.o == len(c.bufs[c.i]) {
			c.i, c.o = c.i+1, 0
		}
	}
	return out, nil
}

// Skip passes over a field of wire type typ.
func (c *Cursor) Skip(typ int) error {
	var err error
	switch typ {
	case 0: // varint
		_, err = c.Varint()
	case 1: // fixed64
		_, err = c.Bytes(8)
	case 2: // length-delimited
		var n uint64
		if n, err = c.Varint(); err == nil {
			_, err = c.Bytes(n)
		}
	case 5: // fixed32
		_, err = c.Bytes(4)
	default:
		err = fmt.Errorf("protobuf wire type %d not supported here", typ)
	}
	return err
}

// Pool is a free list of buffers of one size (mem.BufferPool), for
// messages whose pieces go out as Encoded: gRPC puts a buffer back once
// it has written it.
type Pool struct {
	size int
	free chan *[]byte
}

// NewPool keeps up to n buffers of size bytes.
func NewPool(size, n int) *Pool { return &Pool{size: size, free: make(chan *[]byte, n)} }

// Get returns a buffer of length bytes (at most the pool's size).
func (p *Pool) Get(length int) *[]byte {
	select {
	case b := <-p.free:
		*b = (*b)[:length]
		return b
	default:
		b := make([]byte, length, p.size)
		return &b
	}
}

// Put gives a buffer back.
func (p *Pool) Put(b *[]byte) {
	if cap(*b) != p.size {
		return
	}
	select {
	case p.free <- b:
	default:
	}
}
