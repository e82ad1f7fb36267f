package blobtest

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/vmapp/vmapp/blob/s3"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
)

// Buckets returns a maker of S3 stores on srv, each on a bucket of its
// own (prefix-1, prefix-2, …), made before it is returned.
func Buckets(srv *miniotest.Server, prefix string) func(t *testing.T) *s3.Store {
	var n atomic.Int32
	return func(t *testing.T) *s3.Store {
		t.Helper()
		st, err := s3.NewWithCredentials(srv.Endpoint(), fmt.Sprintf("%s-%d", prefix, n.Add(1)), srv.AccessKey, srv.SecretKey)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.EnsureBucket(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		return st
	}
}
