package s3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"

	"github.com/vmapp/vmapp/errs"
)

// codeClass maps S3 and MinIO error codes (the Code element of an error
// reply, or MinIO's x-minio-error-code header on a HEAD reply) to classes.
// A code not listed here is classified by its HTTP status (statusClass).
var codeClass = map[string]errs.Class{
	// Missing things.
	"NoSuchKey":     errs.NotFound,
	"NoSuchUpload":  errs.NotFound,
	"NoSuchVersion": errs.NotFound,
	// The bucket is part of the configuration: EnsureBucket makes it.
	"NoSuchBucket": errs.FailedPrecondition,

	// Refused credentials or request.
	"AccessDenied":                      errs.PermissionDenied,
	"InvalidAccessKeyId":                errs.PermissionDenied,
	"SignatureDoesNotMatch":             errs.PermissionDenied,
	"AllAccessDisabled":                 errs.PermissionDenied,
	"AccountProblem":                    errs.PermissionDenied,
	"InvalidToken":                      errs.PermissionDenied,
	"InvalidTokenId":                    errs.PermissionDenied,
	"ExpiredToken":                      errs.PermissionDenied,
	"RequestTimeTooSkewed":              errs.PermissionDenied,
	"AuthorizationHeaderMalformed":      errs.PermissionDenied,
	"AuthorizationParametersError":      errs.PermissionDenied,
	"AuthorizationQueryParametersError": errs.PermissionDenied,
	"UnauthorizedAccess":                errs.PermissionDenied,
	"XMinioInvalidIAMCredentials":       errs.PermissionDenied,
	"InvalidRegion":                     errs.PermissionDenied,
	"XMinioInsecureClientRequest":       errs.PermissionDenied,

	// A full store.
	"XMinioAdminBucketQuotaExceeded": errs.ResourceExhausted,
	"XMinioStorageFull":              errs.ResourceExhausted,
	"MaxVersionsExceeded":            errs.ResourceExhausted,

	// A server that is down, starting, overloaded or failing: retry later.
	"InternalError":                      errs.Unavailable,
	"ServiceUnavailable":                 errs.Unavailable,
	"SlowDown":                           errs.Unavailable,
	"SlowDownRead":                       errs.Unavailable,
	"SlowDownWrite":                      errs.Unavailable,
	"ServerBusy":                         errs.Unavailable,
	"TooManyRequests":                    errs.Unavailable,
	"RequestTimeout":                     errs.Unavailable,
	"ClientDisconnected":                 errs.Unavailable,
	"IncompleteBody":                     errs.Unavailable,
	"XMinioServerNotInitialized":         errs.Unavailable,
	"XMinioIAMNotInitialized":            errs.Unavailable,
	"XMinioBucketMetadataNotInitialized": errs.Unavailable,
	"XMinioBackendDown":                  errs.Unavailable,

	// Bytes that do not match their checksum, in transit or at rest.
	"BadDigest":                   errs.DataLoss,
	"XAmzContentSHA256Mismatch":   errs.DataLoss,
	"XAmzContentChecksumMismatch": errs.DataLoss,
	"XMinioObjectTampered":        errs.DataLoss,

	// The parts given to CompleteMultipart do not match the upload's.
	"InvalidPart":                   errs.FailedPrecondition,
	"InvalidPartOrder":              errs.FailedPrecondition,
	"EntityTooSmall":                errs.FailedPrecondition,
	"PreconditionFailed":            errs.FailedPrecondition,
	"XMinioObjectExistsAsDirectory": errs.FailedPrecondition,
	"MethodNotAllowed":              errs.FailedPrecondition,

	"InvalidRange": errs.OutOfRange,

	// Requests the server refuses as malformed.

	"InvalidArgument":         errs.InvalidArgument,
	"InvalidRequest":          errs.InvalidArgument,
	"InvalidPartNumber":       errs.InvalidArgument,
	"InvalidBucketName":       errs.InvalidArgument,
	"InvalidObjectName":       errs.InvalidArgument,
	"XMinioInvalidObjectName": errs.InvalidArgument,
	"KeyTooLongError":         errs.InvalidArgument,
	"EntityTooLarge":          errs.InvalidArgument,
	"MetadataTooLarge":        errs.InvalidArgument,
	"MissingContentLength":    errs.InvalidArgument,
	"UnexpectedEOF":           errs.InvalidArgument, // minio-go: the reader ended before size bytes

	"BucketAlreadyOwnedByYou": errs.AlreadyExists,
	"BucketAlreadyExists":     errs.AlreadyExists,

	"NotImplemented": errs.Unimplemented,
}

func statusClass(status int) errs.Class {
	switch {
	case status == http.StatusNotFound:
		return errs.NotFound
	case status == http.StatusForbidden || status == http.StatusUnauthorized:
		return errs.PermissionDenied
	case status == http.StatusInsufficientStorage:
		return errs.ResourceExhausted
	case status == http.StatusRequestedRangeNotSatisfiable:
		return errs.OutOfRange
	case status == http.StatusTooManyRequests || status == http.StatusRequestTimeout:
		return errs.Unavailable
	case status == http.StatusNotImplemented:
		return errs.Unimplemented
	case status >= 500:
		return errs.Unavailable
	}
	return errs.Internal
}

// code is the S3 error code of err, or "".
func code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

// classify turns an error from minio-go into a classified error naming the
// operation (format and args) and the store. The class comes from, in
// order: an already classified cause (a reader handed to Put that failed),
// the caller's context having ended, the S3 error code or HTTP status of the
// server's reply, or a transport failure (connection refused or reset,
// timeout, a reply cut short), which is Unavailable. Anything else is
// Internal. Messages are never inspected.
func (s *Store) classify(ctx context.Context, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	var ce *errs.Error
	if errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", what, err)
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) && (er.Code != "" || er.StatusCode != 0) {
		c, ok := codeClass[er.Code]
		if !ok {
			c = statusClass(er.StatusCode)
		}
		// MinIO notices a full disk late: the write that runs out of space
		// fails as InternalError with the cause in the message.
		if er.Code == "InternalError" && strings.Contains(er.Message, "no space left on device") {
			return errs.Wrap(errs.ResourceExhausted, err, "%s: the store at %s is out of space", what, s.endpoint)
		}
		if er.Code == "NoSuchBucket" {
			return errs.Wrap(c, err, "%s: bucket %s does not exist on %s", what, s.bucket, s.endpoint)
		}
		return errs.Wrap(c, err, "%s", what)
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return errs.Wrap(errs.FailedPrecondition, err, "%s: the TLS certificate of %s is not trusted", what, s.endpoint)
	}
	if transportFailure(err) {
		return errs.Wrap(errs.Unavailable, err, "%s: storage endpoint %s is unavailable", what, s.endpoint)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// transportFailure reports whether err is the network failing under a
// request: the server unreachable, the connection refused, reset or timed
// out, or a reply cut short.
func transportFailure(err error) bool {
	var (
		opErr  *net.OpError
		dnsErr *net.DNSError
		netErr net.Error
		urlErr *url.Error
	)
	switch {
	case errors.As(err, &opErr), errors.As(err, &dnsErr):
		return true
	case errors.As(err, &netErr) && netErr.Timeout():
		return true
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ETIMEDOUT):
		return true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return true
	case errors.As(err, &urlErr):
		// The request did not get a reply (e.g. the server closed the
		// connection: EOF).
		return true
	}
	return false
}
