package download

import (
	"context"
	"io"

	"google.golang.org/grpc"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// vmappdSource reads through vmappd (DownloadService.ReadRange), which
// reads the region's replicas itself: for plans that aren't direct, and
// as the last resort of those that are.
type vmappdSource struct {
	svc pb.DownloadServiceClient
	t   target
}

func (t target) vmappd(svc pb.DownloadServiceClient) *vmappdSource {
	return &vmappdSource{svc: svc, t: t}
}

func (s *vmappdSource) Name() string   { return "ReadRange" }
func (s *vmappdSource) String() string { return "ReadRange" }

func (s *vmappdSource) ReadRange(ctx context.Context, off, n int64) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := s.svc.ReadRange(ctx, &pb.ReadRangeRequest{
		Gallery: s.t.gallery, Application: s.t.app, Version: s.t.version, Kind: s.t.kind, Region: s.t.region,
		Offset: off, Length: n,
	})
	if err != nil {
		cancel()
		return nil, classifyRPC(err)
	}
	return &streamReader{stream: stream, cancel: cancel, off: off, n: n, next: off}, nil
}

// classifyRPC classifies a ReadRange failure: those that won't get better
// end the download.
func classifyRPC(err error) error {
	err = errs.FromStatus(err)
	switch errs.ClassOf(err) {
	case errs.FailedPrecondition, errs.NotFound, errs.PermissionDenied, errs.Unauthenticated, errs.InvalidArgument:
		return fatal(err)
	}
	return err
}

// streamReader reads a ReadRange stream of the n bytes from off, checking
// that each message continues where the last one ended.
type streamReader struct {
	stream grpc.ServerStreamingClient[pb.ReadRangeResponse]
	cancel context.CancelFunc
	off, n int64
	next   int64  // the offset the next message must start at
	data   []byte // of the last message, not read yet
}

func (r *streamReader) Read(p []byte) (int, error) {
	for len(r.data) == 0 {
		m, err := r.stream.Recv()
		if err == io.EOF {
			return 0, io.EOF
		}
		if err != nil {
			return 0, classifyRPC(err)
		}
		if m.Offset != r.next || m.Offset+int64(len(m.Data)) > r.off+r.n {
			return 0, errs.New(errs.DataLoss, "", "ReadRange sent bytes %d+%d, expected from %d of %d+%d", m.Offset, len(m.Data), r.next, r.off, r.n)
		}
		r.next += int64(len(m.Data))
		r.data = m.Data
	}
	k := copy(p, r.data)
	r.data = r.data[k:]
	return k, nil
}

// Close ends the stream.
func (r *streamReader) Close() error {
	r.cancel()
	return nil
}
