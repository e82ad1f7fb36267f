package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/vmapp/vmapp/errs"
)

// TestClassify covers replies that a test cannot easily make a real MinIO
// give (a full drive, a server error, a throttle); the integration tests in
// s3_test.go cover the rest against a real server.
func TestClassify(t *testing.T) {
	st, err := NewWithCredentials("http://127.0.0.1:9000", "vmapp-test", "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	reply := func(code string, status int) error {
		return minio.ErrorResponse{Code: code, StatusCode: status, Message: "server message"}
	}
	refused := &url.Error{Op: "Get", URL: "http://127.0.0.1:9000/x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		err   error
		class errs.Class
	}{
		{"storage full", nil, reply("XMinioStorageFull", 507), errs.ResourceExhausted},
		{"507 without a known code", nil, reply("Mystery", 507), errs.ResourceExhausted},
		{"bucket quota", nil, reply("XMinioAdminBucketQuotaExceeded", 400), errs.ResourceExhausted},
		{"no such key", nil, reply("NoSuchKey", 404), errs.NotFound},
		{"no such upload", nil, reply("NoSuchUpload", 404), errs.NotFound},
		{"404 without a code", nil, reply("", 404), errs.NotFound},
		{"no such bucket", nil, reply("NoSuchBucket", 404), errs.FailedPrecondition},
		{"access denied", nil, reply("AccessDenied", 403), errs.PermissionDenied},
		{"bad signature", nil, reply("SignatureDoesNotMatch", 403), errs.PermissionDenied},
		{"403 without a known code", nil, reply("Mystery", 403), errs.PermissionDenied},
		{"slow down", nil, reply("SlowDownWrite", 503), errs.Unavailable},
		{"not initialized", nil, reply("XMinioServerNotInitialized", 503), errs.Unavailable},
		{"internal error", nil, reply("InternalError", 500), errs.Unavailable},
		{"502 without a code", nil, reply("", 502), errs.Unavailable},
		{"sha256 mismatch", nil, reply("XAmzContentSHA256Mismatch", 400), errs.DataLoss},
		{"invalid part", nil, reply("InvalidPart", 400), errs.FailedPrecondition},
		{"invalid range", nil, reply("InvalidRange", 416), errs.OutOfRange},
		{"unknown 400", nil, reply("Mystery", 400), errs.Internal},
		{"wrapped reply", nil, fmt.Errorf("context: %w", reply("NoSuchKey", 404)), errs.NotFound},
		{"connection refused", nil, refused, errs.Unavailable},
		{"connection reset", nil, &url.Error{Op: "Get", URL: "u", Err: syscall.ECONNRESET}, errs.Unavailable},
		{"reply cut short", nil, io.ErrUnexpectedEOF, errs.Unavailable},
		{"server closed the connection", nil, &url.Error{Op: "Put", URL: "u", Err: io.EOF}, errs.Unavailable},
		{"timeout", nil, &url.Error{Op: "Get", URL: "u", Err: timeoutErr{}}, errs.Unavailable},
		{"dns", nil, &url.Error{Op: "Get", URL: "u", Err: &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}}, errs.Unavailable},
		{"caller's reader failed", nil, &url.Error{Op: "Put", URL: "u", Err: errs.New(errs.Unavailable, "", "source region down")}, errs.Unavailable},
		{"caller's context canceled", canceled, &url.Error{Op: "Get", URL: "u", Err: context.Canceled}, errs.Canceled},
		{"other", nil, errors.New("something else"), errs.Internal},
	} {
		ctx := tc.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		got := st.classify(ctx, tc.err, "stat %s", st.where("k"))
		if !errs.Is(got, tc.class) {
			t.Errorf("%s: %v classified %v, want %v", tc.name, got, errs.ClassOf(got), tc.class)
		}
		if !errors.Is(got, tc.err) && !errors.Is(got, context.Canceled) {
			t.Errorf("%s: %v does not wrap the cause", tc.name, got)
		}
	}
	if st.classify(context.Background(), nil, "x") != nil {
		t.Error("classify(nil) != nil")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
