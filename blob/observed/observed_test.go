package observed_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/blob/blobtest"
	"github.com/vmapp/vmapp/blob/observed"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/metricstest"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
)

// TestObserved: a store wrapped by observed passes the blob.Store
// conformance suite on real MinIO (it changes nothing it passes on), and
// counts as errors only what says the store is in trouble: an injected
// Unavailable and MinIO stopped count; an object not found, a range past
// the end and a call its caller cancelled don't. A Purger stays one.
func TestObserved(t *testing.T) {
	srv := miniotest.Start(t)
	newStore := blobtest.Buckets(srv, "observed")
	t.Run("conformance", func(t *testing.T) {
		e := observed.NewErrors(nil)
		blobtest.Run(t, func(t *testing.T) blob.Store { return e.Wrap(newStore(t), "eastus", "0") })
	})

	reg := prometheus.NewRegistry()
	faulty := blobtest.NewFaulty(newStore(t))
	st := observed.NewErrors(reg).Wrap(faulty, "eastus", "1")
	count := func() float64 {
		return metricstest.Value(t, reg, "vmapp_store_errors_total", map[string]string{"region": "eastus", "endpoint": "1"})
	}
	if _, ok := st.(blob.Purger); !ok {
		t.Error("a Purger wrapped is no longer one")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := st.Stat(ctx, "missing"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("Stat of a missing object: %v", err)
	}
	if _, err := st.Get(ctx, "missing", 0, -1); err == nil {
		t.Fatal("Get of a missing object worked")
	}
	cancelled, stop := context.WithCancel(ctx)
	stop()
	if _, err := st.Stat(cancelled, "missing"); err == nil {
		t.Fatal("Stat with a cancelled context worked")
	}
	if n := count(); n != 0 {
		t.Fatalf("%v errors counted for answers about objects and a cancelled call", n)
	}
	faulty.Inject(&blobtest.Fault{Op: blobtest.OpPut, Times: 1, Err: errs.New(errs.Unavailable, "", "injected")})
	if err := st.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, "x", nil, 0, nil); !errs.Is(err, errs.Unavailable) {
		t.Fatalf("Put with a fault: %v", err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%v errors counted after one Unavailable", n)
	}
	srv.Stop(t)
	if _, err := st.Stat(ctx, "missing"); err == nil {
		t.Fatal("Stat worked with MinIO stopped")
	}
	if n := count(); n != 2 {
		t.Fatalf("%v errors counted after MinIO stopped, want 2", n)
	}
}
