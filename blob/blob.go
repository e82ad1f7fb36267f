// Package blob is vmapp's view of a regional object store: one bucket on one
// S3-compatible endpoint. The replicator, the ingest service and the download
// path talk to stores only through the Store interface; the S3 (MinIO)
// implementation lives in package blob/s3, the only package that imports
// minio-go.
//
// Every method takes a context first. Errors are classified with package
// errs, so callers decide what to do by class, never by message (package
// blob/blobtest checks a store against this contract):
//
//	errs.NotFound           the object, or the multipart upload, does not exist
//	errs.PermissionDenied   the store refused the credentials or the request
//	errs.Unavailable        the store could not be reached, timed out, or
//	                        answered with a server error: retry later
//	errs.ResourceExhausted  the store is full (or over quota)
//	errs.InvalidArgument    a bad key, range, part number or metadata
//	errs.FailedPrecondition the bucket does not exist, or the parts given to
//	                        CompleteMultipart do not match what was uploaded
//	errs.OutOfRange         a read starting past the end of the object
//	errs.DataLoss           bytes that don't match their checksum (PutPart's
//	                        sha256)
//	errs.Canceled, errs.DeadlineExceeded   the context ended
package blob

import (
	"context"
	"io"
	"net/url"
	"time"
)

// Info describes a stored object.
type Info struct {
	Key          string
	Size         int64
	ETag         string // without quotes
	LastModified time.Time
	// Metadata is the object's user metadata. Keys are case-insensitive in
	// the store and are returned in lower case.
	Metadata map[string]string
}

// Part is one uploaded part of a multipart upload.
type Part struct {
	Number int    // 1..MaxParts
	ETag   string // as returned by PutPart or ListParts
	Size   int64
}

// Limits of the S3 multipart protocol.
const (
	MaxParts        = 10000
	MinPartSize     = 5 << 20 // every part but the last
	MaxPartSize     = 5 << 30
	MaxPresignAge   = 7 * 24 * time.Hour
	MaxMetadataSize = 2 << 10 // total bytes of user metadata keys and values
)

// Store is one bucket on one storage endpoint.
type Store interface {
	// Endpoint names the store for logs and messages: its URL and bucket.
	Endpoint() string
	// EnsureBucket creates the bucket if it does not exist.
	EnsureBucket(ctx context.Context) error

	// Stat describes the object at key.
	Stat(ctx context.Context, key string) (Info, error)
	// Get reads length bytes of the object starting at offset; length -1
	// reads to the end. A range running past the end is cut short there;
	// one starting past the end is errs.OutOfRange. The caller closes the
	// reader. Read errors are classified like the methods' errors (a
	// connection lost mid-read is errs.Unavailable).
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
	// Put stores exactly size bytes read from r at key, replacing any object
	// there, with the given user metadata (may be nil).
	Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) (Info, error)
	// Delete removes the object at key; a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// CopyObject copies srcKey to dstKey inside the store, without the
	// data passing through the caller, keeping the source's metadata.
	CopyObject(ctx context.Context, dstKey, srcKey string) (Info, error)
	// PresignGet returns a URL anyone can GET (with ranges) for expiry,
	// at most MaxPresignAge.
	PresignGet(ctx context.Context, key string, expiry time.Duration) (*url.URL, error)

	// NewMultipart starts a multipart upload to key and returns its ID.
	NewMultipart(ctx context.Context, key string, meta map[string]string) (uploadID string, err error)
	// PutPart uploads exactly size bytes from r as part partNumber
	// (1..MaxParts), replacing an earlier upload of the same part. sha256,
	// when not nil, is the part's digest: the store refuses bytes that don't
	// match it, and the client need not hash them again.
	PutPart(ctx context.Context, key, uploadID string, partNumber int, r io.Reader, size int64, sha256 []byte) (Part, error)
	// PutPartCRC32C is PutPart with the part's CRC32C (Castagnoli) as the
	// checksum the store refuses bytes by: a check of the hop to the store
	// that costs the store almost nothing, where a sha256 costs it a pass
	// of sha256 over the bytes. For a caller that has checked the bytes
	// itself and keeps their sha256 (ingest).
	PutPartCRC32C(ctx context.Context, key, uploadID string, partNumber int, r io.Reader, size int64, crc uint32) (Part, error)
	// CopyPart makes part partNumber of the upload from length bytes of
	// the object srcKey in the same store, starting at offset, without the
	// data passing through the caller.
	CopyPart(ctx context.Context, key, uploadID string, partNumber int, srcKey string, offset, length int64) (Part, error)
	// ListParts lists the parts the store holds for the upload, in part
	// order: after a crash it tells what is left to upload.
	ListParts(ctx context.Context, key, uploadID string) ([]Part, error)
	// CompleteMultipart joins the parts, in part-number order, into the
	// object at key and ends the upload.
	CompleteMultipart(ctx context.Context, key, uploadID string, parts []Part) (Info, error)
	// AbortMultipart ends the upload and frees its parts. An upload that is
	// already gone (aborted, completed or unknown) is not an error.
	AbortMultipart(ctx context.Context, key, uploadID string) error
}

// Purger is a Store that can remove an object it can no longer read. MinIO
// refuses to delete an object whose metadata fails its checksum (xl.meta
// rotted on disk), and would refuse to write over it, but removes it by
// path when asked to.
type Purger interface {
	// Purge removes the object at key however damaged it is, and any
	// object whose key starts with key + "/".
	Purge(ctx context.Context, key string) error
}
