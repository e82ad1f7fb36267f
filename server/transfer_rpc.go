package server

import (
	"context"
	"errors"
	"io"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/replicator"
	"github.com/vmapp/vmapp/server/ingest"
	"github.com/vmapp/vmapp/state"
)

type transferServer struct {
	pb.UnimplementedTransferServiceServer
	ingest *ingest.Service
	repl   *replicator.Replicator // may be nil
	m      *edgeMetrics
}

func (s *transferServer) BeginUpload(ctx context.Context, r *pb.BeginUploadRequest) (*pb.BeginUploadResponse, error) {
	return s.ingest.Begin(ctx, tenantOf(ctx), r)
}

func (s *transferServer) Upload(stream pb.TransferService_UploadServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return errs.New(errs.InvalidArgument, "sessionId", "the upload stream is empty: send the session id and the first chunk")
	}
	if err != nil {
		return err
	}
	var kind pb.ArtifactKind
	var cr *chunkReader
	v, err := s.ingest.Write(ctx, tenantOf(ctx), first.SessionId, func(committed int64, k pb.ArtifactKind) (io.Reader, error) {
		kind = k
		if first.Offset != committed {
			return nil, errs.New(errs.OutOfRange, "offset", "the first chunk starts at offset %d, but the session has %d bytes committed: send from %d", first.Offset, committed, committed)
		}
		cr = newChunkReader(stream, first, s.m.uploadBytes)
		return cr, nil
	})
	if cr != nil {
		cr.Close()
	}
	if err != nil {
		return err
	}
	resp, err := decorated(s.repl, &pb.UploadResponse{CommittedOffset: state.ArtifactOf(v, kind).GetSizeBytes(), Version: v}, nil, true, v)
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}

func (s *transferServer) AbortUpload(ctx context.Context, r *pb.AbortUploadRequest) (*pb.AbortUploadResponse, error) {
	return s.ingest.Abort(ctx, tenantOf(ctx), r)
}

func (s *transferServer) Import(ctx context.Context, r *pb.ImportRequest) (*pb.ImportResponse, error) {
	v, err := s.ingest.Import(ctx, tenantOf(ctx), r)
	return decorated(s.repl, &pb.ImportResponse{Version: v}, err, true, v)
}

// chunkReader reads the data of an upload stream, checking that each chunk
// starts where the previous one ended. The chunks after the first (which
// the authorizer saw as an UploadRequest) are decoded in place
// (uploadChunk): their bytes are copied once, from the transport's frames
// into the part being stored.
type chunkReader struct {
	stream pb.TransferService_UploadServer
	next   *uploadChunk // the chunk being read, if any
	offset int64        // file offset of next's first unread byte
	bytes  prometheus.Counter
}

func newChunkReader(stream pb.TransferService_UploadServer, first *pb.UploadRequest, bytes prometheus.Counter) *chunkReader {
	next := &uploadChunk{sessionID: first.SessionId, offset: first.Offset}
	if len(first.Data) > 0 {
		next.data = [][]byte{first.Data}
	}
	return &chunkReader{stream: stream, next: next, offset: first.Offset, bytes: bytes}
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for r.next == nil || r.next.size() == 0 {
		m := &uploadChunk{}
		if err := r.stream.RecvMsg(m); err != nil {
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, errs.Wrap(errs.Aborted, err, "the upload stream broke at byte %d", r.offset)
		}
		if m.offset != r.offset {
			m.release()
			return 0, errs.New(errs.InvalidArgument, "offset", "a chunk starts at offset %d, but the previous one ended at %d: chunks must be sent in order without gaps", m.offset, r.offset)
		}
		r.next = m
	}
	n := r.next.read(p)
	r.offset += int64(n)
	r.bytes.Add(float64(n))
	return n, nil
}

// Close gives back the frames of a chunk not read to its end.
func (r *chunkReader) Close() {
	if r.next != nil {
		r.next.release()
	}
}
