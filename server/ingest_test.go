package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/vmapp/vmapp/blob"
	"github.com/vmapp/vmapp/blob/blobtest"
	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	"github.com/vmapp/vmapp/internal/testkit/testnet"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server"
	"github.com/vmapp/vmapp/server/catalog"
	"github.com/vmapp/vmapp/server/daemon"
	"github.com/vmapp/vmapp/server/ingest"
	"github.com/vmapp/vmapp/state"
	"github.com/vmapp/vmapp/topology"
)

const (
	testPart   = 5 << 20 // the smallest part S3 allows: more parts per test file
	testBucket = "vmapp-eastus"
)

var (
	pkg  = pb.ArtifactKind_ARTIFACT_KIND_PACKAGE
	conf = pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION
)

// cluster is a real MinIO process as region eastus (and westus) and a
// vmappd server on a bbolt file in a temporary directory, wired as
// daemon.Run wires it.
type cluster struct {
	*env
	minio  *miniotest.Server
	stores daemon.Stores
	// faulty is eastus's store as ingest sees it: no faults unless a test
	// injects them.
	faulty *blobtest.Faulty
	ing    *ingest.Service
}

func newCluster(t *testing.T, opts ...miniotest.Option) *cluster {
	t.Helper()
	m := miniotest.Start(t, opts...)
	dir := t.TempDir()
	regions := filepath.Join(dir, "regions.yaml")
	yaml := fmt.Sprintf("regions:\n  - name: eastus\n    endpoints:\n      - {url: %q, bucket: %s}\n  - name: westus\n    endpoints:\n      - {url: %q, bucket: vmapp-westus}\n", m.Endpoint(), testBucket, m.Endpoint())
	if err := os.WriteFile(regions, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VMAPP_S3_ACCESS_KEY", m.AccessKey)
	t.Setenv("VMAPP_S3_SECRET_KEY", m.SecretKey)
	topo, err := topology.Load(regions)
	mustOK(t, err)
	stores, err := daemon.OpenStores(context.Background(), topo)
	mustOK(t, err)
	for _, eps := range stores {
		mustOK(t, eps[0].EnsureBucket(context.Background()))
	}
	c := &cluster{minio: m, stores: stores, faulty: blobtest.NewFaulty(stores["eastus"][0])}
	storeOf := func(region string, endpoint int) (blob.Store, error) {
		if region == "eastus" && endpoint == 0 {
			return c.faulty, nil
		}
		return stores.Get(region, endpoint)
	}
	db, err := state.Open(filepath.Join(dir, "vmapp.db"), state.Options{})
	mustOK(t, err)
	store := catalog.New(db, catalog.Options{
		Regions:         topo.Names(),
		FinalizeVersion: func(ctx context.Context, v *pb.GalleryApplicationVersion) error { return c.ing.DeleteObjects(ctx, v) },
	})
	c.ing = ingest.New(ingest.Options{Catalog: store, Store: storeOf, PartSize: testPart, Concurrency: 2})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	mustOK(t, err)
	gs := server.New(server.Options{Store: store, Topology: topo, Ingest: c.ing})
	go gs.Serve(lis)
	cl, err := client.New(lis.Addr().String(), client.Options{})
	mustOK(t, err)
	t.Cleanup(func() {
		cl.Close()
		gs.Stop()
		db.Close()
	})
	c.env = &env{t: t, store: store, c: cl, addr: lis.Addr().String()}
	return c
}

// slowClient is a client whose requests travel at bytesPerSec.
func (c *cluster) slowClient(bytesPerSec int) *client.Client {
	cl, err := client.New(c.addr, client.Options{DialOptions: []grpc.DialOption{grpc.WithContextDialer(testnet.SlowDialer(bytesPerSec))}})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// file writes size random bytes to a temporary file.
func file(t *testing.T, size int) (path, sum string, data []byte) {
	t.Helper()
	data = make([]byte, size)
	rand.Read(data)
	path = filepath.Join(t.TempDir(), "app.tar.gz")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return path, hex.EncodeToString(s[:]), data
}

// stored reads an object back from MinIO.
func (c *cluster) stored(key string) ([]byte, error) {
	obj, err := c.minio.Client(c.t).GetObject(context.Background(), testBucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// multiparts counts the bucket's unfinished multipart uploads.
func (c *cluster) multiparts() int {
	n := 0
	for u := range c.minio.Client(c.t).ListIncompleteUploads(context.Background(), testBucket, "", true) {
		if u.Err != nil {
			c.t.Fatal(u.Err)
		}
		n++
	}
	return n
}

func (c *cluster) newVersion(name string) {
	c.t.Helper()
	if _, err := c.c.Catalog.GetGallery(ctx(c.t), &pb.GetGalleryRequest{Gallery: "g"}); err != nil {
		c.gallery("g")
		c.app("g", "a")
	}
	c.version("g", "a", name)
}

func key(version string, k pb.ArtifactKind) string {
	return blob.SourceKey("default", "g", "a", version, k)
}

func TestUploadStoresVerifiesAndPublishes(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	path, sum, data := file(t, 3*testPart+12345) // three full parts and a short one
	cfgPath, cfgSum, cfgData := file(t, 1000)

	// The configuration first: the version waits for its package.
	v, err := c.c.Upload(ctx(t), "g", "a", "1.0.0", conf, cfgPath, client.UploadOptions{})
	mustOK(t, err)
	if v.ProvisioningState != "Creating" || v.DefaultConfiguration.GetSha256() != cfgSum {
		t.Fatalf("after the configuration: state %s, configuration %v", v.ProvisioningState, v.DefaultConfiguration)
	}
	var last atomic.Int64
	v, err = c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, path, client.UploadOptions{Progress: func(done, total int64) {
		if total != int64(len(data)) || done < last.Load() {
			t.Errorf("progress %d of %d after %d", done, total, last.Load())
		}
		last.Store(done)
	}})
	mustOK(t, err)
	if last.Load() != int64(len(data)) {
		t.Errorf("progress ended at %d, want %d", last.Load(), len(data))
	}
	a := v.Package
	if v.ProvisioningState != "Succeeded" || a.GetSha256() != sum || a.SizeBytes != int64(len(data)) || a.PieceSize != testPart || a.PieceCount != 4 || a.StoredTime == nil {
		t.Fatalf("version after upload: state %s, package %v", v.ProvisioningState, a)
	}
	if v.PublishingProfile.PublishedDate == nil {
		t.Error("no publishedDate")
	}
	got, err := c.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, err)
	if got.Version.Package.GetSha256() != sum {
		t.Fatalf("GetVersion package %v", got.Version.Package)
	}
	for k, want := range map[pb.ArtifactKind][]byte{pkg: data, conf: cfgData} {
		b, err := c.stored(key("1.0.0", k))
		if err != nil || !bytes.Equal(b, want) {
			t.Fatalf("stored %v: %d bytes, err %v; want %d bytes", k, len(b), err, len(want))
		}
	}
	if n := c.multiparts(); n != 0 {
		t.Errorf("%d multipart uploads left", n)
	}
	// The per-piece manifest matches the bytes.
	m, err := c.store.Manifest(context.Background(), "default", "g", "a", "1.0.0", pkg)
	mustOK(t, err)
	if len(m.PieceSha256) != 4 {
		t.Fatalf("manifest has %d pieces", len(m.PieceSha256))
	}
	for i, ps := range m.PieceSha256 {
		piece := data[i*testPart : min(len(data), (i+1)*testPart)]
		if s := sha256.Sum256(piece); !bytes.Equal(s[:], ps) {
			t.Fatalf("piece %d sha256 differs", i)
		}
	}

	// Sending the same file again (a lost response) returns the version;
	// a different one is refused: a version's content never changes.
	v, err = c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, path, client.UploadOptions{})
	mustOK(t, err)
	if v.Package.GetSha256() != sum {
		t.Fatalf("repeat upload: %v", v.Package)
	}
	other, _, _ := file(t, 100)
	_, err = c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, other, client.UploadOptions{})
	wantErr(t, err, codes.FailedPrecondition, "already has its package", "create a new version")

	// Deleting the version deletes its objects.
	_, err = c.c.Catalog.DeleteVersion(ctx(t), &pb.DeleteVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, err)
	mustOK(t, c.store.Reap(context.Background()))
	for _, k := range []pb.ArtifactKind{pkg, conf} {
		if _, err := c.stored(key("1.0.0", k)); err == nil {
			t.Errorf("%v still stored after the version was deleted", k)
		}
	}
}

func TestUploadRejectsBadInput(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	_, sum, _ := file(t, 10)
	begin := func(r *pb.BeginUploadRequest) error {
		if r.Gallery == "" {
			r.Gallery, r.Application, r.Version = "g", "a", "1.0.0"
		}
		_, err := c.c.Transfer.BeginUpload(ctx(t), r)
		return err
	}
	wantErr(t, begin(&pb.BeginUploadRequest{Kind: pkg, SizeBytes: 0, Sha256: sum}), codes.InvalidArgument, "The package of 'g/a/1.0.0' is empty.")
	c.wantFailed("1.0.0", "InvalidArgument", "The package of 'g/a/1.0.0' is empty.")
	wantErr(t, begin(&pb.BeginUploadRequest{Kind: pkg, SizeBytes: 2<<30 + 1, Sha256: sum}), codes.InvalidArgument, "too large: size = 2147483649", "'2 GB'")
	c.wantFailed("1.0.0", "InvalidArgument", "too large: size = 2147483649")
	wantErr(t, begin(&pb.BeginUploadRequest{Kind: conf, SizeBytes: 1<<30 + 1, Sha256: sum}), codes.InvalidArgument, "default configuration", "'1 GB'")
	wantErr(t, begin(&pb.BeginUploadRequest{Kind: pkg, SizeBytes: -1, Sha256: sum}), codes.InvalidArgument, "must be positive")
	wantErr(t, begin(&pb.BeginUploadRequest{Kind: pkg, SizeBytes: 10, Sha256: "abc"}), codes.InvalidArgument, "not a hex sha256")
	// Requests that say nothing about a file leave the reason alone.
	c.wantFailed("1.0.0", "InvalidArgument", "The default configuration of 'g/a/1.0.0' is too large")
	wantErr(t, begin(&pb.BeginUploadRequest{Kind: 0, SizeBytes: 10, Sha256: sum}), codes.InvalidArgument, "kind")
	wantErr(t, begin(&pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "9.9.9", Kind: pkg, SizeBytes: 10, Sha256: sum}), codes.NotFound, "9.9.9")
	wantErr(t, begin(&pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "latest", Kind: pkg, SizeBytes: 10, Sha256: sum}), codes.InvalidArgument, "latest")
	if n := c.multiparts(); n != 0 {
		t.Fatalf("refused uploads left %d multipart uploads", n)
	}

	// A file that doesn't match its declared sha256: DataLoss, nothing
	// published, nothing left in the store.
	path, _, _ := file(t, testPart+10)
	_, wrong, _ := file(t, 10)
	_, err := c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, path, client.UploadOptions{SHA256: wrong})
	wantErr(t, err, codes.DataLoss, "doesn't match its declared sha256", "Nothing was published")
	// The version is Failed, saying why.
	c.wantFailed("1.0.0", "DataLoss", "doesn't match its declared sha256")
	if _, err := c.stored(key("1.0.0", pkg)); err == nil {
		t.Fatal("an object was stored for a file with a bad sha256")
	}
	if n := c.multiparts(); n != 0 {
		t.Fatalf("%d multipart uploads left after a bad sha256", n)
	}

	// Chunks out of place.
	path, sum, data := file(t, 3000)
	b, err := c.c.Transfer.BeginUpload(ctx(t), &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, SizeBytes: 3000, Sha256: sum})
	mustOK(t, err)
	// A new upload makes the Failed version Creating again.
	if v := c.getVersion("1.0.0"); v.ProvisioningState != "Creating" || v.ProvisioningError != nil {
		t.Fatalf("after a new upload began: %s %v", v.ProvisioningState, v.ProvisioningError)
	}
	send := func(reqs ...*pb.UploadRequest) error {
		s, err := c.c.Transfer.Upload(ctx(t))
		mustOK(t, err)
		for _, r := range reqs {
			if s.Send(r) != nil {
				break
			}
		}
		_, err = s.CloseAndRecv()
		return err
	}
	wantErr(t, send(&pb.UploadRequest{SessionId: b.SessionId, Offset: 5, Data: data[5:10]}), codes.OutOfRange, "send from 0")
	wantErr(t, send(&pb.UploadRequest{SessionId: b.SessionId, Data: data[:10]}, &pb.UploadRequest{Offset: 20, Data: data[20:30]}), codes.InvalidArgument, "without gaps")
	wantErr(t, send(&pb.UploadRequest{SessionId: b.SessionId, Data: data}, &pb.UploadRequest{Offset: 3000, Data: []byte("x")}), codes.InvalidArgument, "more bytes were sent than the declared size 3000")
	wantErr(t, send(&pb.UploadRequest{Data: data}), codes.InvalidArgument, "sessionId is required")
	wantErr(t, send(&pb.UploadRequest{SessionId: "nope", Data: data}), codes.NotFound, "Upload session 'nope' doesn't exist")
	// Another tenant can't see the session.
	other, err := client.New(c.addr, client.Options{Tenant: "other"})
	mustOK(t, err)
	defer other.Close()
	s, err := other.Transfer.Upload(ctx(t))
	mustOK(t, err)
	s.Send(&pb.UploadRequest{SessionId: b.SessionId, Data: data})
	_, err = s.CloseAndRecv()
	wantErr(t, err, codes.NotFound, "doesn't exist")
	// A different file while the session is open is refused, then abort
	// lets it through.
	path2, sum2, _ := file(t, 4000)
	_, err = c.c.Transfer.BeginUpload(ctx(t), &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, SizeBytes: 4000, Sha256: sum2})
	wantErr(t, err, codes.FailedPrecondition, "Another upload of the package", b.SessionId, "abort it first: vmapp version upload --gallery g --app a 1.0.0 --abort")
	_, err = c.c.Transfer.AbortUpload(ctx(t), &pb.AbortUploadRequest{SessionId: b.SessionId})
	mustOK(t, err)
	if n := c.multiparts(); n != 0 {
		t.Fatalf("%d multipart uploads left after abort", n)
	}
	v2, err := c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, path2, client.UploadOptions{})
	mustOK(t, err)
	if v2.Package.GetSha256() != sum2 || v2.ProvisioningState != "Succeeded" || v2.ProvisioningError != nil {
		t.Fatalf("after the upload: %s %v, package %v", v2.ProvisioningState, v2.ProvisioningError, v2.Package)
	}
	_ = path
}

func (c *cluster) getVersion(name string) *pb.GalleryApplicationVersion {
	c.t.Helper()
	r, err := c.c.Catalog.GetVersion(ctx(c.t), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: name})
	mustOK(c.t, err)
	return r.Version
}

// wantFailed checks that a version is Failed without a package, its
// provisioningError of code and saying msg.
func (c *cluster) wantFailed(name, code, msg string) {
	c.t.Helper()
	v := c.getVersion(name)
	pe := v.ProvisioningError
	if v.ProvisioningState != "Failed" || v.Package != nil || pe.GetCode() != code || !strings.Contains(pe.GetMessage(), msg) || pe.GetTime() == nil {
		c.t.Fatalf("version %s: state %s, package %v, provisioningError %v; want Failed, %s, %q", name, v.ProvisioningState, v.Package, pe, code, msg)
	}
}

// TestUploadResumesAfterClientStops: a client cancelled mid-upload; the
// next upload of the same file starts where the session stands.
func TestUploadResumesAfterClientStops(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	path, sum, data := file(t, 6*testPart+1)
	slow := c.slowClient(20 << 20)
	cctx, cancel := context.WithCancel(context.Background())
	go func() {
		c.waitCommitted(t, "1.0.0", sum, int64(len(data)), 3*testPart)
		cancel()
	}()
	_, err := slow.Upload(cctx, "g", "a", "1.0.0", pkg, path, client.UploadOptions{})
	if err == nil {
		t.Fatal("the cancelled upload succeeded")
	}
	committed := c.committed(t, "1.0.0", sum, int64(len(data)))
	if committed < 3*testPart {
		t.Fatalf("after cancelling, %d bytes committed; %d were before", committed, 3*testPart)
	}
	var first int64 = -1
	v, err := c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, path, client.UploadOptions{Progress: func(done, _ int64) {
		if first < 0 {
			first = done
		}
	}})
	mustOK(t, err)
	if first != committed {
		t.Fatalf("the resumed upload started at %d, want the committed %d", first, committed)
	}
	if v.Package.GetSha256() != sum {
		t.Fatalf("package %v", v.Package)
	}
	if b, _ := c.stored(key("1.0.0", pkg)); !bytes.Equal(b, data) {
		t.Fatal("stored bytes differ")
	}
}

// TestUploadSurvivesStoreRestart: MinIO stops mid-upload; the client keeps
// retrying and finishes once it is back, without starting over.
func TestUploadSurvivesStoreRestart(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	path, sum, data := file(t, 8*testPart)
	slow := c.slowClient(20 << 20)
	var starts []int64
	var last int64
	done := make(chan error, 1)
	var v *pb.GalleryApplicationVersion
	go func() {
		var err error
		v, err = slow.Upload(context.Background(), "g", "a", "1.0.0", pkg, path, client.UploadOptions{Progress: func(d, _ int64) {
			if d < last || len(starts) == 0 {
				starts = append(starts, d)
			}
			last = d
		}})
		done <- err
	}()
	c.waitCommitted(t, "1.0.0", sum, int64(len(data)), 2*testPart)
	c.minio.Stop(t)
	time.Sleep(2 * time.Second)
	c.minio.Restart(t)
	mustOK(t, <-done)
	if v.Package.GetSha256() != sum {
		t.Fatalf("package %v", v.Package)
	}
	if len(starts) < 2 || starts[1] < 2*testPart {
		t.Fatalf("upload attempts started at %v: want a resume from at least %d", starts, 2*testPart)
	}
	if b, _ := c.stored(key("1.0.0", pkg)); !bytes.Equal(b, data) {
		t.Fatal("stored bytes differ")
	}
}

// TestOneWriterPerSession: a second client uploading the same file while
// the first writes is told to wait (Aborted, retried by the client), and
// both end with the version.
func TestOneWriterPerSession(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	path, sum, data := file(t, 4*testPart)
	slow := c.slowClient(20 << 20)
	errc := make(chan error, 2)
	go func() {
		_, err := slow.Upload(context.Background(), "g", "a", "1.0.0", pkg, path, client.UploadOptions{})
		errc <- err
	}()
	c.waitCommitted(t, "1.0.0", sum, int64(len(data)), 1)
	b, err := c.c.Transfer.BeginUpload(ctx(t), &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, SizeBytes: int64(len(data)), Sha256: sum})
	mustOK(t, err)
	s, err := c.c.Transfer.Upload(ctx(t))
	mustOK(t, err)
	s.Send(&pb.UploadRequest{SessionId: b.SessionId, Offset: b.CommittedOffset, Data: data[b.CommittedOffset : b.CommittedOffset+10]})
	_, err = s.CloseAndRecv()
	wantErr(t, err, codes.Aborted, "being written by another stream")
	go func() {
		_, err := c.c.Upload(context.Background(), "g", "a", "1.0.0", pkg, path, client.UploadOptions{})
		errc <- err
	}()
	mustOK(t, <-errc)
	mustOK(t, <-errc)
}

func TestUploadExpires(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	_, sum, _ := file(t, 100)
	b, err := c.c.Transfer.BeginUpload(ctx(t), &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, SizeBytes: 100, Sha256: sum})
	mustOK(t, err)
	if n := c.multiparts(); n != 1 {
		t.Fatalf("%d multipart uploads, want 1", n)
	}
	// The janitor, at a time past the TTL.
	mustOK(t, c.ing.Expire(context.Background(), b.ExpireTime.AsTime().Add(time.Second)))
	if n := c.multiparts(); n != 0 {
		t.Fatalf("%d multipart uploads left after expiry", n)
	}
	s, err := c.c.Transfer.Upload(ctx(t))
	mustOK(t, err)
	s.Send(&pb.UploadRequest{SessionId: b.SessionId})
	_, err = s.CloseAndRecv()
	wantErr(t, err, codes.NotFound, "expired")
	// The version is not left Creating: it is Failed, saying why.
	c.wantFailed("1.0.0", "DeadlineExceeded", "The upload of the package of 'g/a/1.0.0' made no progress for 24h0m0s and was discarded (0 bytes had been stored)")
}

func TestUploadCompressed(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	c.version("g", "a", "1.0.1")
	for i, comp := range []string{"zstd", "s2"} {
		cl, err := client.New(c.addr, client.Options{Compressor: comp})
		mustOK(t, err)
		defer cl.Close()
		// Half text, half random: compressible and not.
		path, sum, _ := file(t, testPart)
		f, _ := os.OpenFile(path, os.O_WRONLY, 0)
		f.Write(bytes.Repeat([]byte("vmapp "), testPart/12))
		f.Close()
		sum = fileSum(t, path)
		v, err := cl.Upload(ctx(t), "g", "a", []string{"1.0.0", "1.0.1"}[i], pkg, path, client.UploadOptions{})
		mustOK(t, err)
		if v.Package.GetSha256() != sum {
			t.Fatalf("%s: package %v", comp, v.Package)
		}
	}
	_, err := client.New(c.addr, client.Options{Compressor: "lz4"})
	wantErr(t, err, codes.InvalidArgument, "lz4")
}

func fileSum(t *testing.T, path string) string {
	s, _, err := client.FileSHA256(path)
	mustOK(t, err)
	return s
}

func TestImportFromURL(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	_, sum, data := file(t, 2*testPart+7)
	mc := c.minio.Client(t)
	c.minio.MakeBucket(t, "source")
	_, err := mc.PutObject(context.Background(), "source", "app.tar.gz", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{})
	mustOK(t, err)
	_, err = mc.PutObject(context.Background(), "source", "empty", bytes.NewReader(nil), 0, minio.PutObjectOptions{})
	mustOK(t, err)
	presign := func(object string) string {
		u, err := mc.PresignedGetObject(context.Background(), "source", object, time.Hour, nil)
		mustOK(t, err)
		return u.String()
	}
	imp := func(url, sha string) (*pb.GalleryApplicationVersion, error) {
		return c.c.Import(ctx(t), "g", "a", "1.0.0", pkg, url, sha)
	}

	// Each failed import makes the version Failed with its error.
	_, err = imp(presign("missing"), "")
	wantErr(t, err, codes.NotFound, "doesn't exist", "?(query redacted)")
	if strings.Contains(err.Error(), "X-Amz-Signature") {
		t.Fatalf("the error shows the signature: %v", err)
	}
	c.wantFailed("1.0.0", "NotFound", "doesn't exist")
	if pe := c.getVersion("1.0.0").ProvisioningError; strings.Contains(pe.Message, "X-Amz-Signature") {
		t.Fatalf("provisioningError shows the signature: %v", pe)
	}
	_, err = imp(presign("empty"), "")
	wantErr(t, err, codes.InvalidArgument, "is empty")
	c.wantFailed("1.0.0", "InvalidArgument", "is empty")
	_, err = imp(strings.Replace(presign("app.tar.gz"), "X-Amz-Signature=", "X-Amz-Signature=00", 1), "")
	wantErr(t, err, codes.PermissionDenied, "The SAS isn't valid")
	c.wantFailed("1.0.0", "PermissionDenied", "The SAS isn't valid")
	_, err = imp("http://127.0.0.1:1/app.tar.gz", "")
	wantErr(t, err, codes.Unavailable, "can't be accessed", "connection refused")
	c.wantFailed("1.0.0", "Unavailable", "connection refused")
	_, err = imp("http://no-such-host.invalid/app.tar.gz", "")
	wantErr(t, err, codes.Unavailable, "can't be accessed")
	_, err = imp("ftp://example.com/x", "")
	wantErr(t, err, codes.InvalidArgument, "isn't a valid http(s) URL")
	c.wantFailed("1.0.0", "Unavailable", "can't be accessed") // a malformed request is no failed import
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(int64(2<<30)+1))
		w.WriteHeader(http.StatusOK)
	}))
	defer big.Close()
	_, err = imp(big.URL+"/big", "")
	wantErr(t, err, codes.InvalidArgument, "too large: size = 2147483649")
	c.wantFailed("1.0.0", "InvalidArgument", "too large: size = 2147483649")
	_, wrong, _ := file(t, 10)
	_, err = imp(presign("app.tar.gz"), wrong)
	wantErr(t, err, codes.DataLoss, "doesn't match")
	c.wantFailed("1.0.0", "DataLoss", "doesn't match")
	if n := c.multiparts(); n != 0 {
		t.Fatalf("%d multipart uploads left by refused imports", n)
	}

	v, err := imp(presign("app.tar.gz"), sum)
	mustOK(t, err)
	if v.ProvisioningState != "Succeeded" || v.ProvisioningError != nil || v.Package.GetSha256() != sum || v.Package.SizeBytes != int64(len(data)) {
		t.Fatalf("imported: %s %v %v", v.ProvisioningState, v.ProvisioningError, v.Package)
	}
	if !strings.HasPrefix(v.PublishingProfile.GetSource().GetMediaLink(), "http://"+c.minio.Addr()+"/source/app.tar.gz?") {
		t.Fatalf("mediaLink %q does not record the import's URL", v.PublishingProfile.GetSource().GetMediaLink())
	}
	if b, _ := c.stored(key("1.0.0", pkg)); !bytes.Equal(b, data) {
		t.Fatal("stored bytes differ")
	}
}

// TestImportWithoutLength: a server that streams without Content-Length
// (chunked): the limits are enforced while streaming.
func TestImportWithoutLength(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	_, _, data := file(t, testPart+3)
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		for b := data; len(b) > 0; b = b[min(len(b), 1<<20):] {
			w.Write(b[:min(len(b), 1<<20)])
			w.(http.Flusher).Flush()
		}
	}))
	defer src.Close()
	v, err := c.c.Import(ctx(t), "g", "a", "1.0.0", conf, src.URL+"/cfg", "")
	mustOK(t, err)
	if v.DefaultConfiguration.GetSizeBytes() != int64(len(data)) {
		t.Fatalf("configuration %v", v.DefaultConfiguration)
	}
}

func TestUploadDiskFull(t *testing.T) {
	c := newCluster(t, miniotest.WithDiskSize(24<<20))
	c.newVersion("1.0.0")
	path, _, _ := file(t, 40<<20)
	_, err := c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, path, client.UploadOptions{Attempts: 1})
	wantErr(t, err, codes.ResourceExhausted, "region eastus")
	v, gerr := c.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	mustOK(t, gerr)
	if v.Version.Package != nil {
		t.Fatal("a package was published on a full disk")
	}
}

// committed returns the session's committed offset, asking as a client
// would (BeginUpload of the same file returns the open session).
func (c *cluster) committed(t *testing.T, version, sum string, size int64) int64 {
	t.Helper()
	b, err := c.c.Transfer.BeginUpload(ctx(t), &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: version, Kind: pkg, SizeBytes: size, Sha256: sum})
	mustOK(t, err)
	return b.CommittedOffset
}

func (c *cluster) waitCommitted(t *testing.T, version, sum string, size, atLeast int64) {
	deadline := time.Now().Add(time.Minute)
	for c.committed(t, version, sum, size) < atLeast {
		if time.Now().After(deadline) {
			t.Errorf("%d bytes never committed", atLeast)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFailedVersion: a version whose ingest failed is Failed (not Creating
// forever), isn't latest, can take a new upload (Creating again, then
// Succeeded), and can be deleted and its name used again.
func TestFailedVersion(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	path, _, _ := file(t, 1000)
	_, err := c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, path, client.UploadOptions{})
	mustOK(t, err)
	c.version("g", "a", "1.1.0")
	latest := func() string {
		t.Helper()
		return c.getVersion("latest").Name
	}
	if got := latest(); got != "1.1.0" {
		t.Fatalf("latest = %s before the failure, want 1.1.0", got)
	}
	_, err = c.c.Import(ctx(t), "g", "a", "1.1.0", pkg, "http://127.0.0.1:1/app.tgz", "")
	wantErr(t, err, codes.Unavailable, "connection refused")
	c.wantFailed("1.1.0", "Unavailable", "connection refused")
	l, err := c.c.Catalog.ListVersions(ctx(t), &pb.ListVersionsRequest{Gallery: "g", Application: "a"})
	mustOK(t, err)
	if got := l.Versions[1]; got.Name != "1.1.0" || got.ProvisioningState != "Failed" || got.ProvisioningError.GetCode() != "Unavailable" {
		t.Fatalf("listed: %v", got)
	}
	if got := latest(); got != "1.0.0" {
		t.Fatalf("latest = %s, want 1.0.0: a Failed version isn't latest", got)
	}
	// A Failed version has no replicas: its target regions change freely.
	_, err = c.c.Catalog.UpdateVersion(ctx(t), &pb.UpdateVersionRequest{
		Version:    &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "1.1.0", PublishingProfile: &pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{{Name: "eastus"}, {Name: "westus"}}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"publishing_profile.target_regions"}},
	})
	mustOK(t, err)
	_, err = c.c.Catalog.UpdateVersion(ctx(t), &pb.UpdateVersionRequest{
		Version:    &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "1.1.0", PublishingProfile: &pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{{Name: "eastus"}}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"publishing_profile.target_regions"}},
	})
	mustOK(t, err)
	c.wantFailed("1.1.0", "Unavailable", "connection refused")

	// A new upload: Creating while it runs, Succeeded once stored.
	v, err := c.c.Upload(ctx(t), "g", "a", "1.1.0", pkg, path, client.UploadOptions{Progress: func(done, total int64) {
		if done == 0 {
			if v := c.getVersion("1.1.0"); v.ProvisioningState != "Creating" || v.ProvisioningError != nil {
				t.Errorf("while uploading again: %s %v", v.ProvisioningState, v.ProvisioningError)
			}
		}
	}})
	mustOK(t, err)
	if v.ProvisioningState != "Succeeded" || v.ProvisioningError != nil {
		t.Fatalf("after the new upload: %s %v", v.ProvisioningState, v.ProvisioningError)
	}
	if got := latest(); got != "1.1.0" {
		t.Fatalf("latest = %s, want 1.1.0", got)
	}

	// A Failed version is deleted like any other, and its name is free.
	c.version("g", "a", "1.2.0")
	_, sum, _ := file(t, 10)
	_, err = c.c.Transfer.BeginUpload(ctx(t), &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "1.2.0", Kind: pkg, SizeBytes: 3 << 30, Sha256: sum})
	wantErr(t, err, codes.InvalidArgument, "too large")
	c.wantFailed("1.2.0", "InvalidArgument", "too large")
	_, err = c.c.Catalog.DeleteVersion(ctx(t), &pb.DeleteVersionRequest{Gallery: "g", Application: "a", Version: "1.2.0"})
	mustOK(t, err)
	c.reap()
	_, err = c.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "1.2.0"})
	wantErr(t, err, codes.NotFound, "doesn't exist")
	if v := c.version("g", "a", "1.2.0"); v.ProvisioningState != "Creating" || v.ProvisioningError != nil {
		t.Fatalf("1.2.0 created again: %s %v", v.ProvisioningState, v.ProvisioningError)
	}
}

// TestAbortUploadByArtifact: an interrupted upload is aborted by naming the
// version and kind, without its session id; then another file goes in.
func TestAbortUploadByArtifact(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	path, sum, data := file(t, 2*testPart+10)
	// An upload that stopped after its first part.
	b, err := c.c.Transfer.BeginUpload(ctx(t), &pb.BeginUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg, SizeBytes: int64(len(data)), Sha256: sum})
	mustOK(t, err)
	sctx, cancel := context.WithCancel(ctx(t))
	s, err := c.c.Transfer.Upload(sctx)
	mustOK(t, err)
	for off := 0; off <= testPart; off += 1 << 20 {
		mustOK(t, s.Send(&pb.UploadRequest{SessionId: b.SessionId, Offset: int64(off), Data: data[off : off+1<<20]}))
	}
	c.waitCommitted(t, "1.0.0", sum, int64(len(data)), testPart)
	cancel()

	other, otherSum, _ := file(t, 3000)
	_, err = c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, other, client.UploadOptions{})
	wantErr(t, err, codes.FailedPrecondition, "Another upload of the package of 'g/a/1.0.0' is in progress", b.SessionId, fmt.Sprintf("%d bytes stored of %d", testPart, len(data)),
		"abort it first: vmapp version upload --gallery g --app a 1.0.0 --abort")

	abort := func(r *pb.AbortUploadRequest) (*pb.AbortUploadResponse, error) {
		return c.c.Transfer.AbortUpload(ctx(t), r)
	}
	_, err = abort(&pb.AbortUploadRequest{SessionId: b.SessionId, Gallery: "g", Application: "a", Version: "1.0.0", Kind: pkg})
	wantErr(t, err, codes.InvalidArgument, "not both")
	_, err = abort(&pb.AbortUploadRequest{Gallery: "g", Application: "a", Version: "latest", Kind: pkg})
	wantErr(t, err, codes.InvalidArgument, "'latest'")
	_, err = abort(&pb.AbortUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0"})
	wantErr(t, err, codes.InvalidArgument, "kind")
	_, err = abort(&pb.AbortUploadRequest{Gallery: "g", Application: "a", Version: "9.9.9", Kind: pkg})
	wantErr(t, err, codes.NotFound, "'g/a/9.9.9' doesn't exist")
	_, err = abort(&pb.AbortUploadRequest{Gallery: "g", Application: "a", Version: "1.0.0", Kind: conf})
	wantErr(t, err, codes.NotFound, "No upload of the default configuration of 'g/a/1.0.0' is in progress.")
	// Another tenant can't name it.
	o, err := client.New(c.addr, client.Options{Tenant: "other"})
	mustOK(t, err)
	defer o.Close()
	_, err = o.AbortUpload(ctx(t), "g", "a", "1.0.0", pkg)
	wantErr(t, err, codes.NotFound)
	if n := c.multiparts(); n != 1 {
		t.Fatalf("%d multipart uploads after refused aborts, want 1", n)
	}

	// The client retries while vmappd still holds the stream that was cut.
	r, err := c.c.AbortUpload(ctx(t), "g", "a", "1.0.0", pkg)
	mustOK(t, err)
	if r.SessionId != b.SessionId || r.Kind != pkg || r.CommittedOffset != testPart || r.SizeBytes != int64(len(data)) || r.Sha256 != sum {
		t.Fatalf("aborted %v", r)
	}
	if n := c.multiparts(); n != 0 {
		t.Fatalf("%d multipart uploads left after abort", n)
	}
	if v := c.getVersion("1.0.0"); v.ProvisioningState != "Creating" {
		t.Fatalf("state after abort: %s, want Creating (an abort is no failure)", v.ProvisioningState)
	}
	_, err = c.c.AbortUpload(ctx(t), "g", "a", "1.0.0", pkg)
	wantErr(t, err, codes.NotFound, "No upload of the package of 'g/a/1.0.0' is in progress.")
	v, err := c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, other, client.UploadOptions{})
	mustOK(t, err)
	if v.Package.GetSha256() != otherSum {
		t.Fatalf("package %v", v.Package)
	}
	_ = path
}

// TestUploadFileShrinks: a file cut short while it is uploaded fails the
// upload with an error naming it, and nothing is published.
func TestUploadFileShrinks(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	path, _, _ := file(t, 3*testPart)
	var cut atomic.Bool
	_, err := c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, path, client.UploadOptions{Progress: func(done, _ int64) {
		if done >= 2<<20 && !cut.Swap(true) {
			if err := os.Truncate(path, 3<<20); err != nil {
				t.Error(err)
			}
		}
	}})
	wantErr(t, err, codes.FailedPrecondition, path+" changed while it was being uploaded: it had 15728640 bytes, now 3145728", "nothing was published")
	if !cut.Load() {
		t.Fatal("the file was never cut")
	}
	if v := c.getVersion("1.0.0"); v.Package != nil {
		t.Fatalf("a package was published: %v", v.Package)
	}
	if _, err := c.stored(key("1.0.0", pkg)); err == nil {
		t.Fatal("an object was stored for a file that shrank")
	}
}

// TestUploadPartChangedOnTheWay: a part changed between vmappd and the
// store is refused by the store (its CRC32C) and sent again: the upload
// resumes and publishes the right bytes. A store that keeps receiving
// changed bytes fails the upload as Aborted (resumable), and the version
// is not Failed: the client's file was sound.
func TestUploadPartChangedOnTheWay(t *testing.T) {
	c := newCluster(t)
	c.newVersion("1.0.0")
	path, sum, data := file(t, 2*testPart+100)
	once := &blobtest.Fault{Op: blobtest.OpPutPart, After: 1, Times: 1, Corrupt: true}
	c.faulty.Inject(once)
	v, err := c.c.Upload(ctx(t), "g", "a", "1.0.0", pkg, path, client.UploadOptions{})
	mustOK(t, err)
	if once.Hits() != 1 || v.ProvisioningState != "Succeeded" || v.Package.GetSha256() != sum {
		t.Fatalf("%d parts changed; version %s, package %v", once.Hits(), v.ProvisioningState, v.Package)
	}
	if b, err := c.stored(key("1.0.0", pkg)); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("stored: %d bytes, %v; want the %d bytes sent", len(b), err, len(data))
	}

	c.newVersion("2.0.0")
	c.faulty.Inject(&blobtest.Fault{Op: blobtest.OpPutPart, Corrupt: true})
	_, err = c.c.Upload(ctx(t), "g", "a", "2.0.0", pkg, path, client.UploadOptions{Attempts: 2})
	wantErr(t, err, codes.Aborted, "changed on its way to the store")
	got, err := c.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "a", Version: "2.0.0"})
	mustOK(t, err)
	if got.Version.ProvisioningState != "Creating" || got.Version.Package != nil {
		t.Fatalf("after refused parts: state %s, package %v", got.Version.ProvisioningState, got.Version.Package)
	}
}
