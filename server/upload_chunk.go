package server

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc/mem"

	"github.com/vmapp/vmapp/internal/wire"
)

// uploadChunk is an UploadRequest decoded in place (wire.Decoder): its
// data stays in the transport's buffers, referenced, until it is read out,
// rather than copied into a message by protobuf and then again into the
// part being stored. It decodes what protobuf does: the fields in any
// order, a field given twice taken last (data: its last occurrence),
// unknown fields skipped.
type uploadChunk struct {
	sessionID string
	offset    int64
	data      [][]byte        // views of frames
	frames    mem.BufferSlice // referenced while data is unread
}

func (u *uploadChunk) DecodeWire(frames mem.BufferSlice) error {
	c := wire.NewCursor(frames)
	for !c.Done() {
		num, typ, err := c.Tag()
		if err != nil {
			return err
		}
		switch {
		case num == 1 && typ == 2:
			b, err := lengthDelimited(c)
			if err != nil {
				return err
			}
			s := string(join(b))
			if !utf8.ValidString(s) {
				return fmt.Errorf("UploadRequest.session_id: invalid UTF-8")
			}
			u.sessionID = s
		case num == 2 && typ == 0:
			v, err := c.Varint()
			if err != nil {
				return err
			}
			u.offset = int64(v)
		case num == 3 && typ == 2:
			if u.data, err = lengthDelimited(c); err != nil {
				return err
			}
		default:
			if err := c.Skip(typ); err != nil {
				return err
			}
		}
	}
	if len(u.data) > 0 {
		frames.Ref()
		u.frames = frames
	}
	return nil
}

func lengthDelimited(c *wire.Cursor) ([][]byte, error) {
	n, err := c.Varint()
	if err != nil {
		return nil, err
	}
	return c.Bytes(n)
}

func join(bs [][]byte) []byte {
	if len(bs) == 1 {
		return bs[0]
	}
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// size is the number of data bytes not read yet.
func (u *uploadChunk) size() int {
	n := 0
	for _, b := range u.data {
		n += len(b)
	}
	return n
}

// read copies data into p, and gives the frames back once it is all read.
func (u *uploadChunk) read(p []byte) int {
	n := 0
	for n < len(p) && len(u.data) > 0 {
		k := copy(p[n:], u.data[0])
		n += k
		if u.data[0] = u.data[0][k:]; len(u.data[0]) == 0 {
			u.data = u.data[1:]
		}
	}
	if len(u.data) == 0 {
		u.release()
	}
	return n
}

// release gives the frames back to the transport's pool.
func (u *uploadChunk) release() {
	if u.frames != nil {
		u.frames.Free()
		u.frames = nil
	}
	u.data = nil
}
