// Package ingest stores packages and configurations in a version's source
// region: chunked, resumable, verified uploads, and imports from a URL.
//
// An upload is a session recorded in the catalog that maps onto a multipart
// upload in the source store. Bytes arrive in order; every part (one piece
// of the download manifest, PartSize bytes) is hashed and stored, and once
// stored it is committed to the catalog with the running sha256 state, so
// that after a dropped connection, a killed vmappd or a restarted store the
// upload resumes from the last committed part. Parts upload concurrently
// (Concurrency at a time) while the next ones are received; they commit in
// order. The whole-file sha256 is compared with the declared one before the
// multipart upload is completed: on a mismatch nothing is published.
//
// Verification is total, and the store does none of the hashing: vmappd
// hashes every byte it receives into the whole file's sha256 (and the
// part's own sha256, the manifest's, which downloads, the replicator and
// the deep scrub check stored bytes against) before the part is sent, and
// publishes only when that sha256 is the declared one. What is left is the
// hop from vmappd's memory to the store: each part goes with its CRC32C,
// which the store checks before it keeps the part (a part changed on the
// way is refused, DataLoss, and nothing commits), then CompleteMultipart
// joins the parts by the ETags the store returned, and the object's size is
// checked. A sha256 as the part's signed payload, as before, made the store
// hash every byte once more: the third sha256 pass of an upload on the
// machine, where CRC32C costs it almost nothing.
package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/shachain"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/state"
)

// Defaults. The size limits are pb.MaxPackageSize and
// pb.MaxConfigurationSize (ArtifactKind.MaxSize), which clients check too.
const (
	// DefaultPartSize is the multipart part size and the manifest's piece size.
	DefaultPartSize = 8 << 20
	// DefaultChunkSize is the UploadRequest.data size clients are told to use.
	DefaultChunkSize = 1 << 20
	// DefaultConcurrency is the number of parts stored at once per upload.
	DefaultConcurrency = 2
	// DefaultSessionTTL is how long a session lives without progress.
	DefaultSessionTTL = 24 * time.Hour

	metaSHA256 = "Vmapp-Sha256"
)

// Options configure a Service.
type Options struct {
	Catalog *catalog.Store
	// Store returns the store of a region's endpoint.
	Store func(region string, endpoint int) (blob.Store, error)
	// PartSize is the part and piece size; at least 5 MiB (S3's minimum part).
	PartSize    int64
	Concurrency int
	SessionTTL  time.Duration
	HTTPClient  *http.Client
	Logger      *slog.Logger
}

// Service runs uploads and imports.
type Service struct {
	cat         *catalog.Store
	store       func(region string, endpoint int) (blob.Store, error)
	partSize    int64
	concurrency int
	ttl         time.Duration
	http        *http.Client
	log         *slog.Logger
	busy        sync.Map // session id -> struct{}: one writer per session
	bufs        sync.Pool
}

// New returns a Service.
func New(o Options) *Service {
	s := &Service{cat: o.Catalog, store: o.Store, partSize: o.PartSize, concurrency: o.Concurrency, ttl: o.SessionTTL, http: o.HTTPClient, log: o.Logger}
	if s.partSize == 0 {
		s.partSize = DefaultPartSize
	}
	if s.concurrency <= 0 {
		s.concurrency = DefaultConcurrency
	}
	if s.ttl == 0 {
		s.ttl = DefaultSessionTTL
	}
	if s.http == nil {
		s.http = &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: time.Minute}}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.bufs.New = func() any { b := make([]byte, s.partSize); return &b }
	return s
}

func checkKind(k pb.ArtifactKind) error {
	if k != pb.ArtifactKind_ARTIFACT_KIND_PACKAGE && k != pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION {
		return errs.New(errs.InvalidArgument, "kind", "kind must be ARTIFACT_KIND_PACKAGE or ARTIFACT_KIND_CONFIGURATION, not %v", k)
	}
	return nil
}

// checkSize refuses a declared size of a file the version can't take: empty
// or too large.
func checkSize(what string, k pb.ArtifactKind, size int64) error {
	switch {
	case size == 0:
		return errs.New(errs.InvalidArgument, "sizeBytes", "The %s %s is empty.", k.Label(), what)
	case size > k.MaxSize():
		return errs.New(errs.InvalidArgument, "sizeBytes", "The %s %s is too large: size = %d. The maximum size allowed is %s.", k.Label(), what, size, sizeLabel(k))
	}
	return nil
}

func sizeLabel(k pb.ArtifactKind) string {
	if k == pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION {
		return "'1 GB' (1073741824 bytes)"
	}
	return "'2 GB' (2147483648 bytes)"
}

func checkSHA(field, sum string) error {
	if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
		return errs.New(errs.InvalidArgument, field, "%s '%s' is not a hex sha256 (64 hex digits)", field, sum)
	}
	return nil
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Begin opens a session for a version's artifact, or returns the open one
// when it is for the same file (same size and sha256). A declared file the
// version can't take (empty, too large) makes it Failed; a session opened
// for a Failed version makes it Creating again.
func (s *Service) Begin(ctx context.Context, tenant string, r *pb.BeginUploadRequest) (*pb.BeginUploadResponse, error) {
	if err := checkKind(r.Kind); err != nil {
		return nil, err
	}
	if err := checkSHA("sha256", r.Sha256); err != nil {
		return nil, err
	}
	what := fmt.Sprintf("of '%s/%s/%s'", r.Gallery, r.Application, r.Version)
	if r.SizeBytes < 0 {
		return nil, errs.New(errs.InvalidArgument, "sizeBytes", "sizeBytes %d of the %s %s must be positive", r.SizeBytes, r.Kind.Label(), what)
	}
	v, err := s.cat.UploadTarget(ctx, tenant, r.Gallery, r.Application, r.Version, r.Kind)
	if errs.Is(err, errs.FailedPrecondition) {
		// Idempotent: the file is stored already (an earlier attempt
		// finished but its response was lost).
		if got, gerr := s.cat.GetVersion(ctx, tenant, r.Gallery, r.Application, r.Version); gerr == nil {
			if a := state.ArtifactOf(got, r.Kind); a != nil && a.SizeBytes == r.SizeBytes && a.Sha256 == r.Sha256 {
				return &pb.BeginUploadResponse{CommittedOffset: a.SizeBytes, Version: got}, nil
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if err := checkSize(what, r.Kind, r.SizeBytes); err != nil {
		return nil, s.failed(ctx, v, err)
	}
	sess, err := s.cat.FindUpload(ctx, tenant, r.Gallery, r.Application, r.Version, r.Kind)
	if err != nil {
		return nil, err
	}
	if sess == nil {
		if sess, err = s.newSession(ctx, tenant, v, r.Kind, r.SizeBytes, r.Sha256, ""); errs.Is(err, errs.FailedPrecondition) {
			// Another Begin of the same artifact won the race: resume its
			// session when it is for the same file.
			sess, err = s.cat.FindUpload(ctx, tenant, r.Gallery, r.Application, r.Version, r.Kind)
			if err == nil && sess == nil {
				err = errs.New(errs.Aborted, "", "the upload session of the %s %s changed while it was opened; try again", r.Kind.Label(), what)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if sess.SizeBytes != r.SizeBytes || sess.Sha256 != r.Sha256 {
		return nil, state.UploadInProgress("sha256", sess)
	}
	if err := s.retrying(ctx, v); err != nil {
		return nil, err
	}
	return &pb.BeginUploadResponse{
		SessionId: sess.Id, CommittedOffset: sess.CommittedOffset, ChunkSize: DefaultChunkSize,
		ExpireTime: sess.ExpireTime, PartSize: sess.PartSize,
	}, nil
}

// failed records err as the reason the ingest into v failed for good (see
// catalog.FailIngest) and returns err. A caller that went away (ctx done)
// is no failure: its session waits to be resumed, or expires.
func (s *Service) failed(ctx context.Context, v *pb.GalleryApplicationVersion, err error) error {
	if ctx.Err() != nil {
		return err
	}
	if ferr := s.cat.FailIngest(ctx, v.Tenant, v.Gallery, v.Application, v.Name, err); ferr != nil && !errs.Is(ferr, errs.NotFound) {
		s.log.Warn("recording a failed upload on its version", "version", v.Gallery+"/"+v.Application+"/"+v.Name, "tenant", v.Tenant, "err", ferr)
	}
	return err
}

// retrying makes a Failed version Creating again: an upload or import of it
// is under way.
func (s *Service) retrying(ctx context.Context, v *pb.GalleryApplicationVersion) error {
	if v.ProvisioningState != pb.ProvisioningFailed {
		return nil
	}
	return s.cat.RetryIngest(ctx, v.Tenant, v.Gallery, v.Application, v.Name)
}

// newSession starts a multipart upload in the version's source store and
// records the session; when another client recorded one first, its own
// multipart upload is aborted.
func (s *Service) newSession(ctx context.Context, tenant string, v *pb.GalleryApplicationVersion, k pb.ArtifactKind, size int64, sum, url string) (*statepb.UploadSession, error) {
	st, err := s.store(v.Location, 0)
	if err != nil {
		return nil, err
	}
	key := blob.SourceKey(tenant, v.Gallery, v.Application, v.Name, k)
	// Not cancelled half-way: an upload the store made must be recorded, or
	// nothing would ever abort it.
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	uploadID, err := st.NewMultipart(nctx, key, nil)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("start the upload in region %s: %w", v.Location, err)
	}
	now := time.Now()
	sess := &statepb.UploadSession{
		Id: newID(), Tenant: tenant, Gallery: v.Gallery, Application: v.Application, Version: v.Name, Kind: k,
		SizeBytes: size, Sha256: sum, SourceUrl: url, Region: v.Location, ObjectKey: key, MultipartId: uploadID,
		PartSize: s.partSize, CreateTime: timestamppb.New(now), UpdateTime: timestamppb.New(now), ExpireTime: timestamppb.New(now.Add(s.ttl)),
	}
	if err := s.cat.CreateUpload(ctx, sess); err != nil {
		s.abortQuietly(sess)
		return nil, err
	}
	s.log.Info("upload session opened", "session", sess.Id, "tenant", tenant, "version", v.Gallery+"/"+v.Application+"/"+v.Name, "kind", k.Label(), "size", size)
	return sess, nil
}

func (s *Service) abortQuietly(sess *statepb.UploadSession) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := s.store(sess.Region, int(sess.Endpoint))
	if err == nil {
		err = st.AbortMultipart(ctx, sess.ObjectKey, sess.MultipartId)
	}
	if err != nil && !errs.Is(err, errs.NotFound) {
		s.log.Warn("aborting a multipart upload failed; the store's own cleanup will remove it", "session", sess.Id, "err", err)
	}
}

// lock claims the session for one writer.
func (s *Service) lock(tenant, id string) (func(), error) {
	if _, busy := s.busy.LoadOrStore(id, struct{}{}); busy {
		return nil, errs.New(errs.Aborted, "sessionId", "Upload session '%s' is being written by another stream: only one client can upload a file at a time.", id)
	}
	return func() { s.busy.Delete(id) }, nil
}

// session reads a session of the tenant's.
func (s *Service) session(ctx context.Context, tenant, id string) (*statepb.UploadSession, error) {
	sess, err := s.cat.GetUpload(ctx, id)
	if err == nil && sess.Tenant != tenant {
		return nil, errs.New(errs.NotFound, "sessionId", "Upload session '%s' doesn't exist: it completed, was aborted or expired. Begin the upload again.", id)
	}
	return sess, err
}

// Write stores the bytes of session id. open is called with the session's
// committed offset and returns the bytes from there on.
func (s *Service) Write(ctx context.Context, tenant, id string, open func(offset int64, kind pb.ArtifactKind) (io.Reader, error)) (*pb.GalleryApplicationVersion, error) {
	if id == "" {
		return nil, errs.New(errs.InvalidArgument, "sessionId", "sessionId is required in the first message: call BeginUpload first")
	}
	unlock, err := s.lock(tenant, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	sess, err := s.session(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	r, err := open(sess.CommittedOffset, sess.Kind)
	if err != nil {
		return nil, err
	}
	v, err := s.write(ctx, sess, r)
	if errs.Is(err, errs.DataLoss) {
		// The bytes don't match the declared file: final, even when the
		// client has gone since.
		err = s.failed(context.WithoutCancel(ctx), sessionVersion(sess), err)
	}
	return v, err
}

// sessionVersion names the version a session is for.
func sessionVersion(sess *statepb.UploadSession) *pb.GalleryApplicationVersion {
	return &pb.GalleryApplicationVersion{Tenant: sess.Tenant, Gallery: sess.Gallery, Application: sess.Application, Name: sess.Version}
}

// Abort discards a session and its stored parts: the one r names by id, or
// the open session of r's artifact. The version keeps its state.
func (s *Service) Abort(ctx context.Context, tenant string, r *pb.AbortUploadRequest) (*pb.AbortUploadResponse, error) {
	id, err := s.sessionToAbort(ctx, tenant, r)
	if err != nil {
		return nil, err
	}
	unlock, err := s.lock(tenant, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	sess, err := s.session(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	s.abortQuietly(sess)
	if err := s.cat.DeleteUpload(ctx, id); err != nil {
		return nil, err
	}
	s.log.Info("upload session aborted", "session", sess.Id, "tenant", tenant, "version", sess.Gallery+"/"+sess.Application+"/"+sess.Version, "kind", sess.Kind.Label(), "committed", sess.CommittedOffset)
	return &pb.AbortUploadResponse{SessionId: sess.Id, Kind: sess.Kind, CommittedOffset: sess.CommittedOffset, SizeBytes: sess.SizeBytes, Sha256: sess.Sha256}, nil
}

// sessionToAbort is the id of the session r names.
func (s *Service) sessionToAbort(ctx context.Context, tenant string, r *pb.AbortUploadRequest) (string, error) {
	byArtifact := r.Gallery != "" || r.Application != "" || r.Version != "" || r.Kind != pb.ArtifactKind_ARTIFACT_KIND_UNSPECIFIED
	switch {
	case r.SessionId != "" && byArtifact:
		return "", errs.New(errs.InvalidArgument, "sessionId", "name the session to abort by sessionId, or by gallery, application, version and kind; not both")
	case r.SessionId != "":
		return r.SessionId, nil
	}
	if err := checkKind(r.Kind); err != nil {
		return "", err
	}
	if r.Version == catalog.Latest {
		return "", errs.New(errs.InvalidArgument, "version", "name the version whose upload to abort; 'latest' is only for reading")
	}
	if _, err := s.cat.GetVersion(ctx, tenant, r.Gallery, r.Application, r.Version); err != nil {
		return "", err
	}
	sess, err := s.cat.FindUpload(ctx, tenant, r.Gallery, r.Application, r.Version, r.Kind)
	if err != nil {
		return "", err
	}
	if sess == nil {
		return "", errs.New(errs.NotFound, "kind", "No upload of the %s of '%s/%s/%s' is in progress.", r.Kind.Label(), r.Gallery, r.Application, r.Version)
	}
	return sess.Id, nil
}

type partJob struct {
	part  *statepb.Part
	buf   *[]byte
	state []byte
	done  chan error
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// partTimeout bounds the store's handling of one part.
const partTimeout = 5 * time.Minute

// write reads r (positioned at the committed offset) to the end of the file,
// storing and committing parts, then verifies and publishes the artifact.
//
// At most Concurrency parts are between "being received" and "committed",
// so an interrupted upload resends at most Concurrency parts.
func (s *Service) write(ctx context.Context, sess *statepb.UploadSession, r io.Reader) (*pb.GalleryApplicationVersion, error) {
	st, err := s.store(sess.Region, int(sess.Endpoint))
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if len(sess.Sha256State) > 0 {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(sess.Sha256State); err != nil {
			return nil, fmt.Errorf("session %s: restore sha256 state: %w", sess.Id, err)
		}
	}
	// Parts already received are stored and committed even when the client
	// goes away: that is what the next attempt resumes from.
	partCtx := context.WithoutCancel(ctx)
	slots := make(chan struct{}, s.concurrency)
	jobs := make(chan *partJob, s.concurrency)
	var failed atomic.Bool
	committed := make(chan error, 1)
	final := sess
	go func() {
		var err error
		for j := range jobs {
			if e := <-j.done; err == nil && e != nil {
				err = e
			}
			if err == nil {
				var next *statepb.UploadSession
				if next, err = s.cat.CommitPart(partCtx, sess.Id, j.part, j.state, s.ttl); err == nil {
					final = next
				}
			}
			if err != nil {
				failed.Store(true)
			}
			s.bufs.Put(j.buf)
			<-slots
		}
		committed <- err
	}()

	readErr := s.readParts(partCtx, sess, r, h, st, slots, jobs, &failed)
	close(jobs)
	if err := <-committed; err != nil {
		return nil, fmt.Errorf("store the %s of '%s/%s/%s' in region %s: %w", sess.Kind.Label(), sess.Gallery, sess.Application, sess.Version, sess.Region, err)
	}
	if readErr != nil {
		return nil, readErr
	}
	return s.finish(ctx, final, h)
}

// readParts reads r a part at a time, once a slot is free, and starts
// storing each part; the committer frees the slot once the part is committed.
func (s *Service) readParts(ctx context.Context, sess *statepb.UploadSession, r io.Reader, h hash.Hash, st blob.Store, slots chan struct{}, jobs chan<- *partJob, failed *atomic.Bool) error {
	off := sess.CommittedOffset
	number := int32(len(sess.Parts))
	limit := sess.Kind.MaxSize()
	for {
		n := sess.PartSize
		if sess.SizeBytes >= 0 {
			n = min(n, sess.SizeBytes-off)
		}
		if n == 0 {
			break
		}
		slots <- struct{}{}
		if failed.Load() {
			<-slots
			return nil
		}
		buf := s.bufs.Get().(*[]byte)
		got, err := io.ReadFull(r, (*buf)[:n])
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			s.bufs.Put(buf)
			<-slots
			return err
		}
		if err != nil && sess.SizeBytes >= 0 {
			s.bufs.Put(buf)
			<-slots
			return errs.New(errs.Aborted, "", "the upload stream ended at byte %d of %d: resume it to send the rest", off+int64(got), sess.SizeBytes)
		}
		if got == 0 { // the end of an import of unknown size
			s.bufs.Put(buf)
			<-slots
			break
		}
		if off+int64(got) > limit {
			s.bufs.Put(buf)
			<-slots
			return errs.New(errs.InvalidArgument, "url", "The %s is too large: more than %d bytes. The maximum size allowed is %s.", sess.Kind.Label(), limit, sizeLabel(sess.Kind))
		}
		data := (*buf)[:got]
		h.Write(data)
		state, err := h.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return err
		}
		number++
		j := &partJob{part: &statepb.Part{Number: number, SizeBytes: int64(got), Chain: shachain.Value(h)}, buf: buf, state: state, done: make(chan error, 1)}
		go func() {
			sum := sha256.Sum256(data)
			j.part.Sha256 = sum[:]
			pctx, cancel := context.WithTimeout(ctx, partTimeout)
			defer cancel()
			// The store checks the hop by the part's CRC32C, not its sha256:
			// see the package doc.
			p, err := st.PutPartCRC32C(pctx, sess.ObjectKey, sess.MultipartId, int(j.part.Number), bytes.NewReader(data), int64(len(data)), crc32.Checksum(data, castagnoli))
			if errs.Is(err, errs.DataLoss) {
				// Changed on the way to the store, not the client's bytes:
				// the upload resumes from the last committed part.
				err = errs.Wrap(errs.Aborted, err, "part %d changed on its way to the store, which refused it; resume the upload", j.part.Number)
			}
			j.part.Etag = p.ETag
			j.done <- err
		}()
		jobs <- j
		off += int64(got)
		if int64(got) < n { // short read: the end of an import of unknown size
			break
		}
	}
	if sess.SizeBytes >= 0 {
		// Nothing may follow the declared size.
		var one [1]byte
		if n, _ := r.Read(one[:]); n > 0 {
			return errs.New(errs.InvalidArgument, "data", "more bytes were sent than the declared size %d", sess.SizeBytes)
		}
	}
	return nil
}

// pieceChain returns the download plan's piece_chain: every part's chaining
// value but the last's. Nil unless every one of them was recorded.
func pieceChain(parts []*statepb.Part) [][]byte {
	if len(parts) == 0 {
		return nil
	}
	chain := make([][]byte, 0, len(parts)-1)
	for _, p := range parts[:len(parts)-1] {
		if p.Chain == nil {
			return nil
		}
		chain = append(chain, p.Chain)
	}
	return chain
}

// finish checks the sha256, completes the multipart upload, checks the
// stored object and records the artifact on the version.
func (s *Service) finish(ctx context.Context, sess *statepb.UploadSession, h hash.Hash) (*pb.GalleryApplicationVersion, error) {
	what := fmt.Sprintf("%s of '%s/%s/%s'", sess.Kind.Label(), sess.Gallery, sess.Application, sess.Version)
	sum := hex.EncodeToString(h.Sum(nil))
	if sess.CommittedOffset == 0 {
		s.abortQuietly(sess)
		s.cat.DeleteUpload(ctx, sess.Id)
		return nil, errs.New(errs.InvalidArgument, "url", "The %s is empty.", what)
	}
	if sess.Sha256 != "" && sum != sess.Sha256 {
		s.abortQuietly(sess)
		if err := s.cat.DeleteUpload(ctx, sess.Id); err != nil {
			return nil, err
		}
		return nil, errs.New(errs.DataLoss, "sha256", "The %s doesn't match its declared sha256: received %d bytes with sha256 %s, not %s. Nothing was published; upload it again.", what, sess.CommittedOffset, sum, sess.Sha256)
	}
	st, err := s.store(sess.Region, int(sess.Endpoint))
	if err != nil {
		return nil, err
	}
	parts := make([]blob.Part, len(sess.Parts))
	manifest := &statepb.Manifest{PieceSize: sess.PartSize, Region: sess.Region, Endpoint: sess.Endpoint, ObjectKey: sess.ObjectKey, SizeBytes: sess.CommittedOffset, Sha256: sum}
	for i, p := range sess.Parts {
		parts[i] = blob.Part{Number: int(p.Number), ETag: p.Etag, Size: p.SizeBytes}
		manifest.PieceSha256 = append(manifest.PieceSha256, p.Sha256)
		manifest.PieceEtag = append(manifest.PieceEtag, p.Etag)
	}
	manifest.PieceChain = pieceChain(sess.Parts)
	_, err = st.CompleteMultipart(ctx, sess.ObjectKey, sess.MultipartId, parts)
	if err != nil && !errs.Is(err, errs.NotFound) { // NotFound: completed before a crash
		return nil, fmt.Errorf("complete the %s in region %s: %w", what, sess.Region, err)
	}
	info, err := st.Stat(ctx, sess.ObjectKey)
	if err != nil {
		return nil, fmt.Errorf("check the stored %s in region %s: %w", what, sess.Region, err)
	}
	if info.Size != sess.CommittedOffset {
		return nil, errs.New(errs.DataLoss, "", "The stored %s has %d bytes, not the %d received.", what, info.Size, sess.CommittedOffset)
	}
	manifest.ObjectEtag = info.ETag
	a := &pb.Artifact{SizeBytes: sess.CommittedOffset, Sha256: sum, PieceSize: sess.PartSize, PieceCount: int32(len(sess.Parts))}
	v, err := s.cat.FinishUpload(ctx, sess.Id, a, manifest)
	if err != nil {
		return nil, err
	}
	s.log.Info("artifact stored", "session", sess.Id, "what", what, "size", a.SizeBytes, "sha256", sum, "region", sess.Region)
	return v, nil
}
