package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/wire"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// UploadOptions tune Upload.
type UploadOptions struct {
	// Progress, when set, is called as bytes are sent: done counts the bytes
	// the server holds or has been sent, of total.
	Progress func(done, total int64)
	// Attempts is how many times an interrupted upload is resumed before
	// giving up; 0 means 20.
	Attempts int
	// SHA256 is the file's hex sha256 when the caller knows it already.
	SHA256 string
}

// retryable reports whether an upload attempt that failed with err can be
// resumed: the transport broke, vmappd or the store was unavailable, or the
// previous attempt still held the session. A full store (ResourceExhausted)
// is not retried: it needs an operator.
func retryable(err error) bool {
	switch errs.ClassOf(err) {
	case errs.Unavailable, errs.Aborted, errs.Internal, errs.DeadlineExceeded, errs.Canceled:
		return true
	}
	return false
}

// FileSHA256 hashes a file.
func FileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// CheckFile checks, before anything is sent, that the file at path can be
// a version's artifact of kind k: a readable regular file of 1 byte to
// k.MaxSize() bytes, as vmappd requires. It returns the file's size.
func CheckFile(path string, k pb.ArtifactKind) (int64, error) {
	f, size, err := openArtifact(path, k)
	if err != nil {
		return 0, err
	}
	f.Close()
	return size, nil
}

// openArtifact opens the file at path for reading after CheckFile's checks.
// It looks before it opens: opening a FIFO would wait for a writer.
func openArtifact(path string, k pb.ArtifactKind) (*os.File, int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, unreadable(path, err)
	}
	if err := checkStat(path, k, st); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, unreadable(path, err)
	}
	return f, st.Size(), nil
}

func unreadable(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is in the message already
	}
	return errs.Wrap(errs.InvalidArgument, err, "%s can't be read", path)
}

func checkStat(path string, k pb.ArtifactKind, st fs.FileInfo) error {
	switch {
	case st.IsDir():
		return errs.New(errs.InvalidArgument, "", "%s is a directory, not a file", path)
	case !st.Mode().IsRegular():
		return errs.New(errs.InvalidArgument, "", "%s is not a regular file (%s)", path, st.Mode().Type())
	case st.Size() == 0:
		return errs.New(errs.InvalidArgument, "", "%s is empty: a %s has at least 1 byte", path, k.Label())
	case st.Size() > k.MaxSize():
		return errs.New(errs.InvalidArgument, "", "%s has %d bytes: a %s has at most %d bytes (%d GiB)", path, st.Size(), k.Label(), k.MaxSize(), k.MaxSize()>>30)
	}
	return nil
}

// Upload stores the file at path as a version's package or default
// configuration. It resumes where the server's session stands, so a killed
// client, a dropped connection or a restarted vmappd costs at most the parts
// in flight; it retries on its own with backoff. A file that changes size
// while it is hashed or sent fails the upload (FailedPrecondition), and
// nothing is published.
func (c *Client) Upload(ctx context.Context, gallery, app, version string, kind pb.ArtifactKind, path string, o UploadOptions) (*pb.GalleryApplicationVersion, error) {
	f, size, err := openArtifact(path, kind)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sum := o.SHA256
	if sum == "" {
		var n int64
		if sum, n, err = FileSHA256(path); err != nil {
			return nil, errs.Wrap(errs.InvalidArgument, err, "read %s", path)
		}
		if n != size {
			return nil, changed(path, size, n)
		}
	}
	attempts := o.Attempts
	if attempts == 0 {
		attempts = 20
	}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		v, err := c.uploadOnce(ctx, gallery, app, version, kind, f, size, sum, o.Progress)
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil || !retryable(err) || attempt >= attempts {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// changed is the error for a file that no longer has the size it was
// measured with.
func changed(path string, measured, now int64) error {
	return errs.New(errs.FailedPrecondition, "", "%s changed while it was being uploaded: it had %d bytes, now %d; nothing was published", path, measured, now)
}

func (c *Client) uploadOnce(ctx context.Context, gallery, app, version string, kind pb.ArtifactKind, f *os.File, size int64, sum string, progress func(int64, int64)) (*pb.GalleryApplicationVersion, error) {
	begin, err := c.Transfer.BeginUpload(ctx, &pb.BeginUploadRequest{
		Gallery: gallery, Application: app, Version: version, Kind: kind, SizeBytes: size, Sha256: sum,
	})
	if err != nil {
		return nil, err
	}
	if begin.Version != nil { // stored already
		if progress != nil {
			progress(size, size)
		}
		return begin.Version, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Transfer.Upload(ctx)
	if err != nil {
		return nil, err
	}
	chunk := int64(begin.ChunkSize)
	if chunk <= 0 {
		chunk = 1 << 20
	}
	pool := wire.NewPool(int(chunk), 4)
	off := begin.CommittedOffset
	if progress != nil {
		progress(off, size)
	}
	first := true
	for off < size || first {
		buf := pool.Get(int(min(chunk, size-off)))
		n, err := f.ReadAt(*buf, off)
		if errors.Is(err, io.EOF) { // it ends before the size measured
			return nil, changed(f.Name(), size, off+int64(n))
		}
		if err != nil {
			return nil, errs.Wrap(errs.InvalidArgument, err, "read %s", f.Name())
		}
		session := ""
		if first {
			session, first = begin.SessionId, false
		}
		if err := stream.SendMsg(uploadRequest(session, off, buf, pool)); err != nil {
			// The server ended the stream: its reason comes with CloseAndRecv.
			break
		}
		off += int64(n)
		if progress != nil {
			progress(off, size)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, errs.FromStatus(err)
	}
	return resp.Version, nil
}

// AbortUpload discards the open upload session of a version's artifact and
// the bytes it stored (NotFound when there is none). A session still held
// by the stream of a client that just went away is retried a few times,
// until vmappd lets it go.
func (c *Client) AbortUpload(ctx context.Context, gallery, app, version string, kind pb.ArtifactKind) (*pb.AbortUploadResponse, error) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		r, err := c.Transfer.AbortUpload(ctx, &pb.AbortUploadRequest{Gallery: gallery, Application: app, Version: version, Kind: kind})
		if !errs.Is(err, errs.Aborted) || attempt == 8 {
			return r, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

// Import asks vmappd to pull a version's artifact from url (http(s), e.g. a
// presigned S3 URL); sum, when set, is the hex sha256 it must have.
func (c *Client) Import(ctx context.Context, gallery, app, version string, kind pb.ArtifactKind, url, sum string) (*pb.GalleryApplicationVersion, error) {
	r, err := c.Transfer.Import(ctx, &pb.ImportRequest{Gallery: gallery, Application: app, Version: version, Kind: kind, Url: url, Sha256: sum})
	if err != nil {
		return nil, err
	}
	if r.Version == nil {
		return nil, fmt.Errorf("import returned no version")
	}
	return r.Version, nil
}

// uploadRequest is an UploadRequest in protobuf's wire form whose data is
// the pooled buffer itself (gRPC gives it back to pool once written), not
// a copy made by marshalling.
func uploadRequest(session string, offset int64, data *[]byte, pool *wire.Pool) wire.Encoded {
	var h []byte
	if session != "" {
		h = protowire.AppendTag(h, 1, protowire.BytesType)
		h = protowire.AppendString(h, session)
	}
	if offset != 0 {
		h = protowire.AppendTag(h, 2, protowire.VarintType)
		h = protowire.AppendVarint(h, uint64(offset))
	}
	if len(*data) == 0 {
		return wire.Encoded{mem.SliceBuffer(h)}
	}
	h = protowire.AppendTag(h, 3, protowire.BytesType)
	h = protowire.AppendVarint(h, uint64(len(*data)))
	return wire.Encoded{mem.SliceBuffer(h), mem.NewBuffer(data, pool)}
}
