// Package s3 implements blob.Store on an S3-compatible server (MinIO) with
// minio-go. It is the only package in vmapp that imports minio-go.
//
// A Store is safe for concurrent use; it owns one HTTP transport tuned for
// many parallel large transfers to one host. Constructing a Store does not
// contact the server, so a store that is down does not keep vmappd from
// starting: its calls fail with errs.Unavailable until it is back.
package s3

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/topology"
)

// DefaultRegion is the signing region: MinIO's default when no
// MINIO_SITE_REGION is configured. Knowing it up front spares a bucket
// location request before the first call (and lets PresignGet work offline).
const DefaultRegion = "us-east-1"

const (
	defaultMaxAttempts = 3
	defaultPartSize    = 16 << 20
	defaultPutThreads  = 4
	maxKeyLen          = 1024
	maxObjectSize      = 5 << 40
)

// Option tunes a Store.
type Option func(*options)

type options struct {
	region      string
	maxAttempts int
	transport   http.RoundTripper
	partSize    uint64
	putThreads  uint
}

// WithRegion sets the signing region (default DefaultRegion).
func WithRegion(region string) Option { return func(o *options) { o.region = region } }

// WithMaxAttempts sets how many times one request is tried when it fails with
// a transient error (connection refused, 5xx, throttling) before the call
// returns errs.Unavailable; minio-go backs off between attempts. Default 3:
// the replicator and the clients have their own, longer, retry loops.
func WithMaxAttempts(n int) Option { return func(o *options) { o.maxAttempts = n } }

// WithTransport replaces the tuned HTTP transport (e.g. for TLS settings).
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithPutPartSize sets the part size Put uses for objects larger than one
// part (default 16 MiB; MinIO's minimum is 5 MiB), and how many parts it
// uploads at once (default 4).
func WithPutPartSize(partSize uint64, threads uint) Option {
	return func(o *options) { o.partSize, o.putThreads = partSize, threads }
}

// Store is one bucket on one S3-compatible endpoint.
type Store struct {
	client   *minio.Client
	core     minio.Core
	bucket   string
	endpoint string // URL without a trailing slash
	region   string
	partSize uint64
	threads  uint
}

var _ blob.Store = (*Store)(nil)

// New returns the store of a topology endpoint, with credentials read from
// the environment variables the endpoint names. It does not contact the
// server.
func New(ctx context.Context, e topology.Endpoint, opts ...Option) (*Store, error) {
	accessKey, secretKey, err := e.Credentials()
	if err != nil {
		return nil, errs.Wrap(errs.FailedPrecondition, err, "storage endpoint %s", e.URL)
	}
	return NewWithCredentials(e.URL, e.Bucket, accessKey, secretKey, opts...)
}

// NewWithCredentials returns the store of bucket on the server at rawURL
// (http(s)://host:port). It does not contact the server.
func NewWithCredentials(rawURL, bucket, accessKey, secretKey string, opts ...Option) (*Store, error) {
	o := options{region: DefaultRegion, maxAttempts: defaultMaxAttempts, partSize: defaultPartSize, putThreads: defaultPutThreads}
	for _, opt := range opts {
		opt(&o)
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, errs.New(errs.InvalidArgument, "url", "storage endpoint url %q: want http(s)://host:port", rawURL)
	}
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return nil, errs.New(errs.InvalidArgument, "bucket", "storage endpoint %s: bucket %q: %v", rawURL, bucket, err)
	}
	if accessKey == "" || secretKey == "" {
		return nil, errs.New(errs.InvalidArgument, "", "storage endpoint %s: an access key and a secret key are required", rawURL)
	}
	if o.partSize < blob.MinPartSize || o.partSize > blob.MaxPartSize {
		return nil, errs.New(errs.InvalidArgument, "", "put part size %d: want %d..%d bytes", o.partSize, blob.MinPartSize, int64(blob.MaxPartSize))
	}
	secure := u.Scheme == "https"
	rt := o.transport
	if rt == nil {
		if rt, err = newTransport(secure); err != nil {
			return nil, err
		}
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(accessKey, secretKey, ""),
		Secure:       secure,
		Transport:    rt,
		Region:       o.region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   max(o.maxAttempts, 1),
	})
	if err != nil {
		return nil, errs.Wrap(errs.InvalidArgument, err, "storage endpoint %s", rawURL)
	}
	return &Store{
		client:   client,
		core:     minio.Core{Client: client},
		bucket:   bucket,
		endpoint: u.Scheme + "://" + u.Host,
		region:   o.region,
		partSize: o.partSize,
		threads:  max(o.putThreads, 1),
	}, nil
}

// newTransport is minio-go's transport tuned for throughput to one host:
// many idle connections kept per host (the replicator and ingest run many
// part uploads and ranged reads in parallel) and large socket buffers.
func newTransport(secure bool) (*http.Transport, error) {
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, errs.Wrap(errs.Internal, err, "storage transport")
	}
	tr.DialContext = dialer().DialContext
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 256
	tr.IdleConnTimeout = 90 * time.Second
	tr.WriteBufferSize = 256 << 10
	tr.ReadBufferSize = 256 << 10
	// A server-side copy or the completion of a large multipart upload may
	// take a while before the first response byte; the caller's context
	// bounds the whole call.
	tr.ResponseHeaderTimeout = 5 * time.Minute
	return tr, nil
}

// Endpoint is the store's URL and bucket, e.g. http://127.0.0.1:9000/vmapp-eastus.
func (s *Store) Endpoint() string { return s.endpoint + "/" + s.bucket }

// Bucket is the store's bucket.
func (s *Store) Bucket() string { return s.bucket }

func (s *Store) where(key string) string { return s.Endpoint() + "/" + key }

// EnsureBucket creates the bucket if it does not exist.
func (s *Store) EnsureBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return s.classify(ctx, err, "check bucket %s", s.Endpoint())
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
	switch code(err) {
	case "":
		if err == nil {
			return nil
		}
	case "BucketAlreadyOwnedByYou", "BucketAlreadyExists": // made by a concurrent caller
		if ok, err2 := s.client.BucketExists(ctx, s.bucket); err2 == nil && ok {
			return nil
		}
	}
	return s.classify(ctx, err, "create bucket %s", s.Endpoint())
}

// Stat describes the object at key.
func (s *Store) Stat(ctx context.Context, key string) (blob.Info, error) {
	if err := checkKey("key", key); err != nil {
		return blob.Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return blob.Info{}, s.classify(ctx, err, "stat %s", s.where(key))
	}
	return infoOf(key, oi), nil
}

func infoOf(key string, oi minio.ObjectInfo) blob.Info {
	meta := make(map[string]string, len(oi.UserMetadata))
	for k, v := range oi.UserMetadata {
		meta[strings.ToLower(k)] = v
	}
	return blob.Info{Key: key, Size: oi.Size, ETag: oi.ETag, LastModified: oi.LastModified, Metadata: meta}
}

// Get reads length bytes of the object at key from offset; length -1 reads
// to the end. A range running past the end of the object is cut short at
// the end; one starting past the end is errs.OutOfRange.
func (s *Store) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := checkKey("key", key); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, errs.New(errs.InvalidArgument, "offset", "read %s: offset %d is negative", s.where(key), offset)
	}
	if length < -1 {
		return nil, errs.New(errs.InvalidArgument, "length", "read %s: length %d: want -1 (to the end) or at least 0", s.where(key), length)
	}
	if length == 0 { // an HTTP range cannot be empty
		return s.emptyAt(ctx, key, offset)
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		opts.SetRange(offset, offset+length-1)
	case offset > 0:
		opts.SetRange(offset, 0)
	}
	body, _, _, err := s.core.GetObject(ctx, s.bucket, key, opts)
	if code(err) == "InvalidRange" {
		// Reading at the very end (or anything of an empty object) is an
		// empty read, not an error.
		return s.emptyAt(ctx, key, offset)
	}
	if err != nil {
		return nil, s.classify(ctx, err, "read %s", s.where(key))
	}
	return &reader{ReadCloser: body, ctx: ctx, s: s, key: key}, nil
}

// emptyAt returns an empty reader when offset is within or at the end of the
// object at key.
func (s *Store) emptyAt(ctx context.Context, key string, offset int64) (io.ReadCloser, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	if offset > info.Size {
		return nil, errs.New(errs.OutOfRange, "offset", "read %s: offset %d is past the end of the object (%d bytes)", s.where(key), offset, info.Size)
	}
	return io.NopCloser(strings.NewReader("")), nil
}

// reader classifies the errors of an object body, so a connection lost in
// the middle of a read is errs.Unavailable like any other.
type reader struct {
	io.ReadCloser
	ctx context.Context
	s   *Store
	key string
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.classify(r.ctx, err, "read %s", r.s.where(r.key))
	}
	return n, err
}

// Put stores size bytes read from r at key with the given user metadata.
// Objects larger than one part are uploaded as parallel parts.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) (blob.Info, error) {
	if err := checkKey("key", key); err != nil {
		return blob.Info{}, err
	}
	if size < 0 || size > maxObjectSize {
		return blob.Info{}, errs.New(errs.InvalidArgument, "size", "write %s: size %d: want 0..%d bytes", s.where(key), size, int64(maxObjectSize))
	}
	um, err := userMetadata(meta)
	if err != nil {
		return blob.Info{}, err
	}
	ui, err := s.client.PutObject(ctx, s.bucket, key, r, size, minio.PutObjectOptions{
		UserMetadata: um,
		PartSize:     s.partSize,
		NumThreads:   s.threads,
	})
	if err != nil {
		return blob.Info{}, s.classify(ctx, err, "write %s", s.where(key))
	}
	return blob.Info{Key: key, Size: size, ETag: ui.ETag, LastModified: ui.LastModified, Metadata: lowerKeys(meta)}, nil
}

// Delete removes the object at key; a missing object (or bucket) is not an
// error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey("key", key); err != nil {
		return err
	}
	err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	switch code(err) {
	case "NoSuchKey", "NoSuchBucket":
		return nil
	}
	return s.classify(ctx, err, "delete %s", s.where(key))
}

// Purge removes the object at key even when the server can't read its
// metadata, with MinIO's force delete (which takes the key's whole path,
// objects under key/ too). Other S3 servers ignore the header: it is then a
// Delete.
func (s *Store) Purge(ctx context.Context, key string) error {
	if err := checkKey("key", key); err != nil {
		return err
	}
	err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{ForceDelete: true})
	switch code(err) {
	case "NoSuchKey", "NoSuchBucket":
		return nil
	}
	return s.classify(ctx, err, "purge %s", s.where(key))
}

// CopyObject copies srcKey to dstKey on the server, keeping the metadata.
// One request copies objects up to 5 GiB, more than vmapp's largest package.
func (s *Store) CopyObject(ctx context.Context, dstKey, srcKey string) (blob.Info, error) {
	if err := checkKey("dstKey", dstKey); err != nil {
		return blob.Info{}, err
	}
	if err := checkKey("srcKey", srcKey); err != nil {
		return blob.Info{}, err
	}
	if dstKey == srcKey {
		return blob.Info{}, errs.New(errs.InvalidArgument, "dstKey", "copy %s onto itself", s.where(srcKey))
	}
	_, err := s.client.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: s.bucket, Object: dstKey},
		minio.CopySrcOptions{Bucket: s.bucket, Object: srcKey})
	if err != nil {
		return blob.Info{}, s.classify(ctx, err, "copy %s to %s", s.where(srcKey), dstKey)
	}
	return s.Stat(ctx, dstKey)
}

// PresignGet returns a URL that reads the object at key, with or without a
// Range header, until expiry passes. It does not contact the server.
func (s *Store) PresignGet(ctx context.Context, key string, expiry time.Duration) (*url.URL, error) {
	if err := checkKey("key", key); err != nil {
		return nil, err
	}
	if expiry < time.Second || expiry > blob.MaxPresignAge {
		return nil, errs.New(errs.InvalidArgument, "expiry", "presign %s: expiry %v: want 1s..%v", s.where(key), expiry, blob.MaxPresignAge)
	}
	u, err := s.client.PresignedGetObject(ctx, s.bucket, key, expiry, nil)
	if err != nil {
		return nil, s.classify(ctx, err, "presign %s", s.where(key))
	}
	return u, nil
}

// NewMultipart starts a multipart upload to key.
func (s *Store) NewMultipart(ctx context.Context, key string, meta map[string]string) (string, error) {
	if err := checkKey("key", key); err != nil {
		return "", err
	}
	um, err := userMetadata(meta)
	if err != nil {
		return "", err
	}
	id, err := s.core.NewMultipartUpload(ctx, s.bucket, key, minio.PutObjectOptions{UserMetadata: um})
	if err != nil {
		return "", s.classify(ctx, err, "start a multipart upload to %s", s.where(key))
	}
	return id, nil
}

// PutPart uploads size bytes from r as part partNumber. On plain HTTP the
// part is sent with a streaming SHA-256 signature, so the server rejects
// bytes changed on the way.
func (s *Store) PutPart(ctx context.Context, key, uploadID string, partNumber int, r io.Reader, size int64, sum []byte) (blob.Part, error) {
	var opts minio.PutObjectPartOptions
	if sum != nil {
		// The signed payload digest: the server checks the bytes against
		// it, and minio-go skips its own streaming signature (which would
		// hash the bytes again).
		opts.Sha256Hex, opts.DisableContentSha256 = hex.EncodeToString(sum), true
	}
	return s.putPart(ctx, key, uploadID, partNumber, r, size, opts)
}

// PutPartCRC32C uploads size bytes from r as part partNumber with an
// unsigned payload and their CRC32C in x-amz-checksum-crc32c, which the
// server checks.
func (s *Store) PutPartCRC32C(ctx context.Context, key, uploadID string, partNumber int, r io.Reader, size int64, crc uint32) (blob.Part, error) {
	sum := binary.BigEndian.AppendUint32(nil, crc)
	opts := minio.PutObjectPartOptions{DisableContentSha256: true, CustomHeader: http.Header{}}
	opts.CustomHeader.Set("X-Amz-Checksum-Crc32c", base64.StdEncoding.EncodeToString(sum))
	return s.putPart(ctx, key, uploadID, partNumber, r, size, opts)
}

func (s *Store) putPart(ctx context.Context, key, uploadID string, partNumber int, r io.Reader, size int64, opts minio.PutObjectPartOptions) (blob.Part, error) {
	if err := checkUpload(key, uploadID); err != nil {
		return blob.Part{}, err
	}
	if partNumber < 1 || partNumber > blob.MaxParts {
		return blob.Part{}, errs.New(errs.InvalidArgument, "partNumber", "upload part %d of %s: want a part number in 1..%d", partNumber, s.where(key), blob.MaxParts)
	}
	if size < 0 || size > blob.MaxPartSize {
		return blob.Part{}, errs.New(errs.InvalidArgument, "size", "upload part %d of %s: size %d: want 0..%d bytes", partNumber, s.where(key), size, int64(blob.MaxPartSize))
	}
	ra, inMemory := r.(io.ReaderAt)
	if !inMemory {
		// A stream: minio-go can't rewind it, so it makes one attempt.
		p, err := s.core.PutObjectPart(ctx, s.bucket, key, uploadID, partNumber, r, size, opts)
		if err != nil {
			return blob.Part{}, s.classify(ctx, err, "upload part %d of %s", partNumber, s.where(key))
		}
		return blob.Part{Number: p.PartNumber, ETag: p.ETag, Size: size}, nil
	}
	// net/http may go on reading a request body after the response came
	// (RoundTrip closes it in its own time), and minio-go retries by
	// seeking the same reader: a retry could race with the last attempt's
	// reads, and the caller's buffer be read after PutPart returned. So
	// each attempt reads its own section of r through a body that is shut
	// before the next attempt, and before PutPart returns.
	for attempt := 1; ; attempt++ {
		body := &partBody{r: io.NewSectionReader(ra, 0, size)}
		p, err := s.core.PutObjectPart(ctx, s.bucket, key, uploadID, partNumber, body, size, opts)
		body.shut()
		if err == nil {
			return blob.Part{Number: p.PartNumber, ETag: p.ETag, Size: size}, nil
		}
		err = s.classify(ctx, err, "upload part %d of %s", partNumber, s.where(key))
		if attempt == partAttempts || errs.ClassOf(err) != errs.Unavailable {
			return blob.Part{}, err
		}
		select {
		case <-ctx.Done():
			return blob.Part{}, err
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

// partAttempts is how many times PutPart sends an in-memory part while the
// store is Unavailable.
const partAttempts = 3

// partBody reads a part for one attempt, until shut: then, whoever still
// reads gets an error, and the bytes behind it are no longer touched.
type partBody struct {
	mu   sync.Mutex
	r    io.Reader
	done bool
}

func (b *partBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return 0, io.ErrClosedPipe
	}
	return b.r.Read(p)
}

// shut waits for a read in flight (from memory: short) and ends the body.
func (b *partBody) shut() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
}

// CopyPart copies a range of srcKey into part partNumber on the server
// (UploadPartCopy).
func (s *Store) CopyPart(ctx context.Context, key, uploadID string, partNumber int, srcKey string, offset, length int64) (blob.Part, error) {
	if err := checkUpload(key, uploadID); err != nil {
		return blob.Part{}, err
	}
	if err := checkKey("srcKey", srcKey); err != nil {
		return blob.Part{}, err
	}
	if partNumber < 1 || partNumber > blob.MaxParts {
		return blob.Part{}, errs.New(errs.InvalidArgument, "partNumber", "copy part %d of %s: want a part number in 1..%d", partNumber, s.where(key), blob.MaxParts)
	}
	if offset < 0 || length < 1 || length > blob.MaxPartSize {
		return blob.Part{}, errs.New(errs.InvalidArgument, "length", "copy part %d of %s: range %d+%d: want offset >= 0 and 1..%d bytes", partNumber, s.where(key), offset, length, int64(blob.MaxPartSize))
	}
	p, err := s.core.CopyObjectPart(ctx, s.bucket, srcKey, s.bucket, key, uploadID, partNumber, offset, length, nil)
	if err != nil {
		return blob.Part{}, s.classify(ctx, err, "copy %s bytes %d+%d to part %d of %s", s.where(srcKey), offset, length, partNumber, s.where(key))
	}
	return blob.Part{Number: p.PartNumber, ETag: strings.Trim(p.ETag, `"`), Size: length}, nil
}

// ListParts lists the parts the server holds for the upload, in part order.
func (s *Store) ListParts(ctx context.Context, key, uploadID string) ([]blob.Part, error) {
	if err := checkUpload(key, uploadID); err != nil {
		return nil, err
	}
	var parts []blob.Part
	marker := 0
	for {
		res, err := s.core.ListObjectParts(ctx, s.bucket, key, uploadID, marker, 1000)
		if err != nil {
			return nil, s.classify(ctx, err, "list the parts of the upload to %s", s.where(key))
		}
		for _, p := range res.ObjectParts {
			parts = append(parts, blob.Part{Number: p.PartNumber, ETag: trimETag(p.ETag), Size: p.Size})
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			break
		}
		marker = res.NextPartNumberMarker
	}
	slices.SortFunc(parts, func(a, b blob.Part) int { return a.Number - b.Number })
	return parts, nil
}

// CompleteMultipart joins the parts into the object at key. The parts may
// be given in any order; each number at most once.
func (s *Store) CompleteMultipart(ctx context.Context, key, uploadID string, parts []blob.Part) (blob.Info, error) {
	if err := checkUpload(key, uploadID); err != nil {
		return blob.Info{}, err
	}
	if len(parts) == 0 || len(parts) > blob.MaxParts {
		return blob.Info{}, errs.New(errs.InvalidArgument, "parts", "complete the upload to %s: %d parts: want 1..%d", s.where(key), len(parts), blob.MaxParts)
	}
	sorted := slices.Clone(parts)
	slices.SortFunc(sorted, func(a, b blob.Part) int { return a.Number - b.Number })
	complete := make([]minio.CompletePart, len(sorted))
	for i, p := range sorted {
		if p.Number < 1 || p.Number > blob.MaxParts || p.ETag == "" {
			return blob.Info{}, errs.New(errs.InvalidArgument, "parts", "complete the upload to %s: part %d with etag %q: want a number in 1..%d and an etag", s.where(key), p.Number, p.ETag, blob.MaxParts)
		}
		if i > 0 && sorted[i-1].Number == p.Number {
			return blob.Info{}, errs.New(errs.InvalidArgument, "parts", "complete the upload to %s: part %d is listed twice", s.where(key), p.Number)
		}
		complete[i] = minio.CompletePart{PartNumber: p.Number, ETag: p.ETag}
	}
	if _, err := s.core.CompleteMultipartUpload(ctx, s.bucket, key, uploadID, complete, minio.PutObjectOptions{}); err != nil {
		return blob.Info{}, s.classify(ctx, err, "complete the upload to %s", s.where(key))
	}
	return s.Stat(ctx, key)
}

// AbortMultipart ends the upload and frees its parts. Like Delete it is
// idempotent: an upload that is already gone (aborted, completed, or never
// there) is not an error. MinIO answers so itself; S3 says NoSuchUpload.
func (s *Store) AbortMultipart(ctx context.Context, key, uploadID string) error {
	if err := checkUpload(key, uploadID); err != nil {
		return err
	}
	err := s.core.AbortMultipartUpload(ctx, s.bucket, key, uploadID)
	if code(err) == "NoSuchUpload" {
		return nil
	}
	return s.classify(ctx, err, "abort the upload to %s", s.where(key))
}

func trimETag(etag string) string { return strings.Trim(etag, `"`) }

// checkKey rejects keys S3 or MinIO would refuse or read differently: empty,
// too long, not UTF-8, with control characters, or with empty, "." or ".."
// path segments.
func checkKey(field, key string) error {
	bad := func(why string) error {
		return errs.New(errs.InvalidArgument, field, "object key %q: %s", key, why)
	}
	if err := s3utils.CheckValidObjectName(key); err != nil {
		return bad(err.Error())
	}
	if len(key) > maxKeyLen {
		return bad(fmt.Sprintf("longer than %d bytes", maxKeyLen))
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return bad("contains a control character")
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return bad(`want "/"-separated segments that are not empty, "." or ".."`)
		}
	}
	return nil
}

func checkUpload(key, uploadID string) error {
	if err := checkKey("key", key); err != nil {
		return err
	}
	if uploadID == "" {
		return errs.New(errs.InvalidArgument, "uploadId", "multipart upload to %q: the upload ID is empty", key)
	}
	return nil
}

// userMetadata validates user metadata and returns it as minio-go user
// metadata. Keys are letters, digits and '-' and are sent in lower case
// (HTTP headers are case-insensitive); values are printable ASCII, which is
// all an HTTP header keeps unchanged.
func userMetadata(meta map[string]string) (map[string]string, error) {
	if len(meta) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(meta))
	total := 0
	for k, v := range meta {
		if k == "" || strings.IndexFunc(k, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-')
		}) >= 0 {
			return nil, errs.New(errs.InvalidArgument, "metadata", "metadata key %q: want letters, digits and '-'", k)
		}
		if strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0 || strings.TrimSpace(v) != v {
			return nil, errs.New(errs.InvalidArgument, "metadata", "metadata %s value %q: want printable ASCII without leading or trailing spaces", k, v)
		}
		lk := strings.ToLower(k)
		if _, dup := out["x-amz-meta-"+lk]; dup {
			return nil, errs.New(errs.InvalidArgument, "metadata", "metadata key %q is given twice (keys are case-insensitive)", k)
		}
		total += len(lk) + len(v)
		// The x-amz-meta- prefix makes every key user metadata, even ones
		// such as content-type that minio-go would otherwise send as
		// standard headers.
		out["x-amz-meta-"+lk] = v
	}
	if total > blob.MaxMetadataSize {
		return nil, errs.New(errs.InvalidArgument, "metadata", "metadata is %d bytes: at most %d are allowed", total, blob.MaxMetadataSize)
	}
	return out, nil
}

func lowerKeys(meta map[string]string) map[string]string {
	out := make(map[string]string, len(meta))
	for k, v := range meta {
		out[strings.ToLower(k)] = v
	}
	return out
}
