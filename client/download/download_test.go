//go:build unix

package download_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/client/download"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

const pkgKind = pb.ArtifactKind_ARTIFACT_KIND_PACKAGE

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// randomData is size pseudo-random bytes.
func randomData(size int, seed uint64) []byte {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	b := make([]byte, size)
	r.Read(b)
	return b
}

// publish publishes data as g/a/version and waits until it is replicated.
func publish(t *testing.T, c *testcluster.Cluster, version string, data []byte, targets ...*pb.TargetRegion) {
	t.Helper()
	c.Publish(t, version, data, targets...)
	c.WaitState(t, version, "Completed")
}

func plan(t *testing.T, c *testcluster.Cluster, version, region string) *pb.DownloadPlan {
	t.Helper()
	r, err := pb.NewDownloadServiceClient(c.Client.Conn()).GetDownloadPlan(testCtx(t), &pb.GetDownloadPlanRequest{
		Gallery: "g", Application: "a", Version: version, Kind: pkgKind, Region: region,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r.Plan
}

// machineFor returns a machine ID whose first source in region is replica.
func machineFor(t *testing.T, p *pb.DownloadPlan, replica int32) string {
	t.Helper()
	for i := range 100 {
		id := fmt.Sprintf("machine-%d", i)
		if s := download.OrderSources(p, id)[0]; s.Replica == replica && !s.Fallback {
			return id
		}
	}
	t.Fatalf("no machine ID picks replica %d first", replica)
	return ""
}

// recorder is an http.RoundTripper that records the requests a download
// makes (instrumentation: the requests go to the real stores).
type recorder struct {
	base http.RoundTripper

	mu        sync.Mutex
	requests  int
	hosts     map[string]int   // requests per host
	served    map[string]int   // 206 responses per host
	asked     map[string]int64 // bytes of the Range headers per host
	statuses  map[int]int
	inFlight  int
	maxFlight int
	flights   []int // inFlight as each request was sent, in order

	// before, when set, runs before request n (1-based) is sent; an error
	// fails the request.
	before func(n int, req *http.Request) error
	// capBytesPerSec, when set, limits each response body's rate.
	capBytesPerSec float64
	// cut, when set, gives the bytes after which request n's response
	// body is cut off, its connection closed (0: never).
	cut func(n int) int64
}

func newRecorder() *recorder {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	return &recorder{base: tr, hosts: map[string]int{}, served: map[string]int{}, asked: map[string]int64{}, statuses: map[int]int{}}
}

func (r *recorder) client() *http.Client { return &http.Client{Transport: r} }

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.requests++
	n := r.requests
	r.hosts[req.URL.Host]++
	if first, last, ok := rangeOf(req); ok {
		r.asked[req.URL.Host] += last - first + 1
	}
	before := r.before
	r.mu.Unlock()
	if before != nil {
		if err := before(n, req); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	r.inFlight++
	r.maxFlight = max(r.maxFlight, r.inFlight)
	r.flights = append(r.flights, r.inFlight)
	r.mu.Unlock()
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		r.mu.Lock()
		r.inFlight--
		r.mu.Unlock()
		return nil, err
	}
	r.mu.Lock()
	r.statuses[resp.StatusCode]++
	if resp.StatusCode == http.StatusPartialContent {
		r.served[req.URL.Host]++
	}
	r.mu.Unlock()
	rb := &recordedBody{ReadCloser: resp.Body, r: r, start: time.Now()}
	if r.cut != nil {
		rb.cutAt = r.cut(n)
	}
	resp.Body = rb
	return resp, nil
}

func (r *recorder) count() (requests int, hosts, served map[string]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests, clone(r.hosts), clone(r.served)
}

// askedBytes is the bytes the requests' Range headers asked for, of every
// host.
func (r *recorder) askedBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, b := range r.asked {
		n += b
	}
	return n
}

// rangeOf parses a request's "Range: bytes=first-last".
func rangeOf(req *http.Request) (first, last int64, ok bool) {
	_, err := fmt.Sscanf(req.Header.Get("Range"), "bytes=%d-%d", &first, &last)
	return first, last, err == nil
}

func (r *recorder) max() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.maxFlight
}

// together holds each of the first n requests until all n were made: only
// n connections working at once get them all through. came returns how
// many of them were there together: n, or as many as had come when the
// first gave up waiting (after a minute, a guard: it then goes on).
func (r *recorder) together(n int) (came func() int) {
	var arrived, late atomic.Int32
	all := make(chan struct{})
	r.before = func(i int, _ *http.Request) error {
		if i > n {
			return nil
		}
		if arrived.Add(1) == int32(n) {
			close(all)
		}
		t := time.NewTimer(time.Minute)
		defer t.Stop()
		select {
		case <-all:
		case <-t.C:
			late.CompareAndSwap(0, arrived.Load())
		}
		return nil
	}
	return func() int {
		if l := late.Load(); l != 0 {
			return int(l)
		}
		return int(arrived.Load())
	}
}

func clone[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

type recordedBody struct {
	io.ReadCloser
	r      *recorder
	start  time.Time
	got    int64
	cutAt  int64
	closed bool
}

var errCut = errors.New("connection cut by the test")

func (b *recordedBody) Read(p []byte) (int, error) {
	if b.cutAt > 0 {
		if b.got >= b.cutAt {
			b.ReadCloser.Close() // the connection goes; the transport won't reuse it
			return 0, errCut
		}
		p = p[:min(int64(len(p)), b.cutAt-b.got)]
		n, err := b.ReadCloser.Read(p)
		b.got += int64(n)
		return n, err
	}
	if c := b.r.capBytesPerSec; c > 0 {
		p = p[:min(len(p), 32<<10)]
		n, err := b.ReadCloser.Read(p)
		b.got += int64(n)
		if wait := time.Until(b.start.Add(time.Duration(float64(b.got) / c * float64(time.Second)))); wait > 0 {
			time.Sleep(wait)
		}
		return n, err
	}
	return b.ReadCloser.Read(p)
}

func (b *recordedBody) Close() error {
	if !b.closed {
		b.closed = true
		b.r.mu.Lock()
		b.r.inFlight--
		b.r.mu.Unlock()
	}
	return b.ReadCloser.Close()
}

// checkDownloaded checks dest holds data and nothing is left beside it.
func checkDownloaded(t *testing.T, dest string, data []byte, p *pb.DownloadPlan) {
	t.Helper()
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(got)
	if !bytes.Equal(got, data) || hex.EncodeToString(sum[:]) != p.GetSha256() {
		t.Fatalf("%s: %d bytes, sha256 %x; want %d bytes, plan sha256 %s", dest, len(got), sum, len(data), p.GetSha256())
	}
	for _, s := range []string{download.PartialSuffix, download.StateSuffix, download.StateSuffix + ".tmp"} {
		if _, err := os.Stat(dest + s); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left: %v", dest+s, err)
		}
	}
}

func mustNotExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists (%v)", path, err)
	}
}

func wantClass(t *testing.T, err error, c errs.Class, substr string) {
	t.Helper()
	if !errs.Is(err, c) || !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %v (class %v), want %v with %q", err, errs.ClassOf(err), c, substr)
	}
	if strings.Contains(err.Error(), "X-Amz-") {
		t.Fatalf("error shows a presigned query: %v", err)
	}
}

// counter counts gRPC calls by method.
type counter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (c *counter) n(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls["/vmapp.v1.DownloadService/"+method]
}

// countingClient is a client of the cluster that counts its calls.
func countingClient(t *testing.T, c *testcluster.Cluster) (*client.Client, *counter) {
	cnt := &counter{calls: map[string]int{}}
	add := func(m string) {
		cnt.mu.Lock()
		cnt.calls[m]++
		cnt.mu.Unlock()
	}
	cl, err := client.New(c.Addr, client.Options{Token: c.AdminToken, DialOptions: []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			add(method)
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			add(method)
			return streamer(ctx, desc, cc, method, opts...)
		}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl, cnt
}

const size4 = 3*testcluster.PartSize + 12345 // 4 pieces

func TestDownload(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	data := randomData(size4, 1)
	publish(t, c, "1.0.0", data, testcluster.Target("eastus", 2), testcluster.Target("westus", 1))
	p := plan(t, c, "1.0.0", "eastus")
	if len(p.PieceSha256) != 4 || len(p.Sources) != 3 {
		t.Fatalf("plan: %d pieces, %d sources", len(p.PieceSha256), len(p.Sources))
	}

	// OrderSources rotates the region's replicas by FNV-1a of the machine.
	for _, id := range []string{"a", "b", "vm-0017", ""} {
		h := fnv.New32a()
		h.Write([]byte(id))
		order := download.OrderSources(p, id)
		if first := p.Sources[h.Sum32()%2]; order[0] != first || order[1] != p.Sources[1-h.Sum32()%2] || order[2] != p.Sources[2] || !order[2].Fallback {
			t.Fatalf("order for %q: %v", id, order)
		}
	}

	dir := t.TempDir()
	for _, replica := range []int32{0, 1} {
		id := machineFor(t, p, replica)
		rec := newRecorder()
		dest := filepath.Join(dir, fmt.Sprintf("pkg-%d", replica))
		var calls, last, total atomic.Int64
		var mono atomic.Bool
		mono.Store(true)
		got, err := c.Client.Download(testCtx(t), "g", "a", "latest", dest, download.Options{
			Region: "eastus", MachineID: id, HTTPClient: rec.client(),
			Progress: func(done, tot int64) {
				calls.Add(1)
				if done < last.Load() {
					mono.Store(false)
				}
				last.Store(done)
				total.Store(tot)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != "1.0.0" || got.SizeBytes != size4 {
			t.Fatalf("plan %v", got)
		}
		checkDownloaded(t, dest, data, got)
		n, hosts, served := rec.count()
		host := c.ReplicaServer("eastus", replica).Addr()
		if n != 4 || hosts[host] != 4 || served[host] != 4 {
			t.Fatalf("machine %s (replica %d at %s): %d requests, per host %v", id, replica, host, n, hosts)
		}
		if calls.Load() == 0 || last.Load() != size4 || total.Load() != size4 || !mono.Load() {
			t.Fatalf("progress: %d calls, last %d of %d, monotonic %v", calls.Load(), last.Load(), total.Load(), mono.Load())
		}
		t.Logf("machine %s read replica %d (%s): %v", id, replica, host, hosts)
	}

	// dest holds the artifact already: no request at all.
	rec := newRecorder()
	dest := filepath.Join(dir, "pkg-0")
	if _, err := c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus", HTTPClient: rec.client()}); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := rec.count(); n != 0 {
		t.Fatalf("%d requests for a file that is there", n)
	}
	// A different file at dest is replaced.
	os.WriteFile(dest, []byte("something else"), 0o644)
	got, err := c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "westus", HTTPClient: rec.client()})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	if _, hosts, _ := rec.count(); hosts[c.ReplicaServer("westus", 0).Addr()] != 4 {
		t.Fatalf("westus download: %v", hosts)
	}

	_, err = c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{})
	wantClass(t, err, errs.InvalidArgument, "region is required")
}

// A replica with corrupted bytes: the pieces come from the other one. The
// plan's chaining values check pieces and file in one pass; plans of
// artifacts stored before vmappd recorded them (no piece_chain, as an
// older vmappd sends) are checked with piece hashes and a whole-file pass.
func TestDownloadCorruptReplica(t *testing.T) {
	t.Run("chain", func(t *testing.T) { testCorruptReplica(t, false) })
	t.Run("piece hashes", func(t *testing.T) { testCorruptReplica(t, true) })
}

// planEdit is a client of the cluster that changes every plan it gets
// with edit, as a different vmappd would send it.
func planEdit(t *testing.T, c *testcluster.Cluster, edit func(*pb.DownloadPlan)) *client.Client {
	cl, _ := watchedClient(t, c, edit, false)
	return cl
}

// reportLog records a client's reports of damaged replicas and vmappd's
// answers.
type reportLog struct {
	mu      sync.Mutex
	reqs    []*pb.ReportReplicaDamageRequest
	replies []*pb.ReportReplicaDamageResponse
	errs    []error
}

// wait waits until n reports were answered, and returns the log.
func (l *reportLog) wait(t *testing.T, n int) ([]*pb.ReportReplicaDamageRequest, []*pb.ReportReplicaDamageResponse, []error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		l.mu.Lock()
		if len(l.replies) >= n {
			defer l.mu.Unlock()
			return slices.Clone(l.reqs), slices.Clone(l.replies), slices.Clone(l.errs)
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%d reports of damage never came", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// watchedClient is a client of the cluster that records its reports of
// damaged replicas, and changes every plan it gets with edit (nil: none).
// With refuse, its reports fail as a vmappd without ReportReplicaDamage
// would answer them.
func watchedClient(t *testing.T, c *testcluster.Cluster, edit func(*pb.DownloadPlan), refuse bool) (*client.Client, *reportLog) {
	log := &reportLog{}
	cl, err := client.New(c.Addr, client.Options{Token: c.AdminToken, DialOptions: []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			var err error
			if refuse && method == pb.DownloadService_ReportReplicaDamage_FullMethodName {
				err = status.Error(codes.Unimplemented, "method ReportReplicaDamage not implemented")
			} else {
				err = invoker(ctx, method, req, reply, cc, opts...)
			}
			switch r := reply.(type) {
			case *pb.GetDownloadPlanResponse:
				if r.Plan != nil && edit != nil {
					edit(r.Plan)
				}
			case *pb.ReportReplicaDamageResponse:
				log.mu.Lock()
				log.reqs, log.replies, log.errs = append(log.reqs, req.(*pb.ReportReplicaDamageRequest)), append(log.replies, r), append(log.errs, err)
				log.mu.Unlock()
			}
			return err
		}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl, log
}

// withoutChain is a client of the cluster that drops the plans' piece_chain,
// as a vmappd sends for artifacts stored before it was recorded.
func withoutChain(t *testing.T, c *testcluster.Cluster) *client.Client {
	return planEdit(t, c, func(p *pb.DownloadPlan) { p.PieceChain = nil })
}

// TestDownloadBadChain: a plan whose chaining values don't fit its pieces
// is refused before anything is fetched; one whose values are wrong fails
// every piece, and nothing appears at the final path.
func TestDownloadBadChain(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	publish(t, c, "1.0.0", randomData(size4, 7), testcluster.Target("eastus", 1))
	for _, tc := range []struct {
		name  string
		edit  func(*pb.DownloadPlan)
		class errs.Class
		want  string
	}{
		{"one value too few", func(p *pb.DownloadPlan) { p.PieceChain = p.PieceChain[1:] }, errs.Internal, "2 chaining values for 4 pieces"},
		{"a short value", func(p *pb.DownloadPlan) { p.PieceChain[1] = p.PieceChain[1][:31] }, errs.Internal, "piece 1's chaining value has 31 bytes"},
		{"a wrong value", func(p *pb.DownloadPlan) { p.PieceChain[0] = bytes.Repeat([]byte{7}, 32) }, errs.DataLoss, "chaining value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "pkg")
			_, err := planEdit(t, c, tc.edit).Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus"})
			wantClass(t, err, tc.class, tc.want)
			mustNotExist(t, dest)
		})
	}
}

func testCorruptReplica(t *testing.T, legacy bool) {
	c := testcluster.Start(t, testcluster.Options{})
	var edit func(*pb.DownloadPlan)
	if legacy {
		edit = func(p *pb.DownloadPlan) { p.PieceChain = nil }
	}
	cl, reports := watchedClient(t, c, edit, false)
	data := randomData(size4, 2)
	publish(t, c, "1.0.0", data, testcluster.Target("eastus", 2), testcluster.Target("westus", 1))
	corrupt := func(region string, replica int32, version string, size int) {
		t.Helper()
		_, err := c.ReplicaServer(region, replica).Client(t).PutObject(testCtx(t), c.Bucket[region], testcluster.ReplicaKey(version, replica),
			bytes.NewReader(randomData(size, 99)), int64(size), minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	corrupt("eastus", 0, "1.0.0", size4)
	p := plan(t, c, "1.0.0", "eastus")
	if len(p.PieceChain) != 3 || len(p.PieceChain[0]) != 32 {
		t.Fatalf("plan of 4 pieces has %d chaining values, want 3 of 32 bytes", len(p.PieceChain))
	}
	rec := newRecorder()
	dest := filepath.Join(t.TempDir(), "pkg")
	var logs bytes.Buffer
	got, err := cl.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{
		Region: "eastus", MachineID: machineFor(t, p, 0), HTTPClient: rec.client(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	_, hosts, served := rec.count()
	bad, good := c.ReplicaServer("eastus", 0).Addr(), c.ReplicaServer("eastus", 1).Addr()
	if hosts[bad] == 0 || served[good] != 4 || len(hosts) != 2 {
		t.Fatalf("requests per host %v, served %v (corrupted %s, sound %s)", hosts, served, bad, good)
	}
	// The corrupted replica is named in a warning, though the download
	// succeeded; no presigned query is.
	for _, want := range []string{"level=WARN", "source=eastus/0", "class=DataLoss", bad} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("the download's log lacks %q:\n%s", want, logs.String())
		}
	}
	blames := slices.ContainsFunc(strings.Split(logs.String(), "\n"), func(l string) bool {
		return strings.Contains(l, "level=WARN") && strings.Contains(l, "eastus/1")
	})
	if strings.Contains(logs.String(), "X-Amz-Signature") || blames {
		t.Fatalf("the download's log shows a signature or blames the sound replica:\n%s", logs.String())
	}
	t.Logf("corrupted replica tried %d times; sound one served %d pieces", hosts[bad], served[good])

	// The corrupted replica was reported, once; vmappd read the piece
	// back, found it damaged, and copies the replica again.
	reqs, replies, errors := reports.wait(t, 1)
	if r := reqs[0]; len(reqs) != 1 || r.Version != "1.0.0" || r.Region != "eastus" || r.Replica != 0 || r.Piece < 0 || r.Piece > 3 ||
		replies[0].GetVerdict() != pb.ReplicaVerdict_REPLICA_VERDICT_DAMAGED || errors[0] != nil {
		t.Fatalf("reports %v, answers %v, %v", reqs, replies, errors)
	}
	t.Logf("report: %v; vmappd: %v", reqs[0], replies[0])
	waitReplica(t, c, "eastus", 0, "1.0.0", data)

	// Every replica the machine can get corrupted, ReadRange too: DataLoss.
	// (A vmappd that takes no reports, or would copy the replica again
	// before the download gives up.)
	cl, reports = watchedClient(t, c, edit, true)
	small := randomData(testcluster.PartSize+10, 3)
	publish(t, c, "1.0.1", small, testcluster.Target("eastus", 1))
	corrupt("eastus", 0, "1.0.1", len(small))
	dest = filepath.Join(t.TempDir(), "pkg")
	_, err = cl.Download(testCtx(t), "g", "a", "1.0.1", dest, download.Options{Region: "eastus"})
	wantClass(t, err, errs.DataLoss, "sha256")
	mustNotExist(t, dest)
	t.Logf("all corrupted: %v", err)
	// A report that fails is no failure of the download's.
	if reqs, _, errors := reports.wait(t, 1); len(reqs) != 1 || status.Code(errors[0]) != codes.Unimplemented {
		t.Fatalf("reports %v, %v", reqs, errors)
	}
}

// waitReplica waits until replica i of version in region holds data.
func waitReplica(t *testing.T, c *testcluster.Cluster, region string, i int32, version string, data []byte) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		obj, err := c.ReplicaServer(region, i).Client(t).GetObject(testCtx(t), c.Bucket[region], testcluster.ReplicaKey(version, i), minio.GetObjectOptions{})
		var b []byte
		if err == nil {
			b, err = io.ReadAll(obj)
			obj.Close()
		}
		if err == nil && bytes.Equal(b, data) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %d of %s in %s never became sound: %d bytes, %v", i, version, region, len(b), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// One worker fetches consecutive pieces with one request. A run that hits
// a corrupted piece keeps the pieces it verified before it, and the rest
// come from the sound replica.
func TestDownloadRuns(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	const pieces = 6
	data := randomData(pieces*testcluster.PartSize-100, 6)
	publish(t, c, "1.0.0", data, testcluster.Target("eastus", 2))
	p := plan(t, c, "1.0.0", "eastus")

	rec := newRecorder()
	dest := filepath.Join(t.TempDir(), "pkg")
	got, err := c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{
		Region: "eastus", MachineID: machineFor(t, p, 0), Parallelism: 1, HTTPClient: rec.client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	if n, _, _ := rec.count(); n >= pieces || rec.askedBytes() != int64(len(data)) {
		t.Fatalf("%d requests asking for %d bytes, for %d pieces of %d bytes", n, rec.askedBytes(), pieces, len(data))
	}

	// Into tmpfs, another file system (direct I/O there or not, by kernel).
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		shm, err := os.MkdirTemp("/dev/shm", "vmapp-test")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(shm) })
		got, err := c.Client.Download(testCtx(t), "g", "a", "1.0.0", filepath.Join(shm, "pkg"), download.Options{Region: "eastus"})
		if err != nil {
			t.Fatal(err)
		}
		checkDownloaded(t, filepath.Join(shm, "pkg"), data, got)
	}

	// Piece 1 of replica 0 corrupted: a run from it fails there.
	bad := bytes.Clone(data)
	bad[testcluster.PartSize+7] ^= 1
	bad0, good := c.ReplicaServer("eastus", 0), c.ReplicaServer("eastus", 1)
	if _, err := bad0.Client(t).PutObject(testCtx(t), c.Bucket["eastus"], testcluster.ReplicaKey("1.0.0", 0),
		bytes.NewReader(bad), int64(len(bad)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	rec = newRecorder()
	dest = filepath.Join(t.TempDir(), "pkg")
	got, err = c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{
		Region: "eastus", MachineID: machineFor(t, p, 0), Parallelism: 1, HTTPClient: rec.client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	rec.mu.Lock()
	fromGood := rec.asked[good.Addr()]
	rec.mu.Unlock()
	if n := int64(len(data)) - testcluster.PartSize; fromGood != n {
		t.Fatalf("the sound replica was asked for %d bytes, want %d (all but piece 0, verified from the corrupted one); per host %v", fromGood, n, rec.asked)
	}

	// The first request's connection drops half way through its second
	// piece: piece 0 is kept, and no later request asks for it again.
	rec = newRecorder()
	rec.cut = func(n int) int64 {
		if n == 1 {
			return testcluster.PartSize * 3 / 2
		}
		return 0
	}
	var ranges []string
	rec.before = func(_ int, req *http.Request) error {
		ranges = append(ranges, req.Header.Get("Range"))
		if first, _, ok := rangeOf(req); ok && len(ranges) > 1 && first < testcluster.PartSize {
			return fmt.Errorf("piece 0 asked for again: %s", req.Header.Get("Range"))
		}
		return nil
	}
	var logs bytes.Buffer
	dest = filepath.Join(t.TempDir(), "pkg")
	got, err = c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{
		Region: "eastus", MachineID: machineFor(t, p, 1), Parallelism: 1, HTTPClient: rec.client(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	cutMsg := fmt.Sprintf("piece 1: %d of %d bytes: %v", testcluster.PartSize/2, testcluster.PartSize, errCut)
	if !strings.Contains(logs.String(), "class=Unavailable") || !strings.Contains(logs.String(), cutMsg) {
		t.Fatalf("no warning %q of the cut connection:\n%s", cutMsg, logs.String())
	}
	t.Logf("requests after a cut: %v", ranges)
}

// Stores down: the region's other replica, then other regions, then
// ReadRange serve.
func TestDownloadFailover(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	data := randomData(size4, 4)
	publish(t, c, "1.0.0", data, testcluster.Target("eastus", 2), testcluster.Target("westus", 1))
	p := plan(t, c, "1.0.0", "eastus")
	east0, east1, west := c.ReplicaServer("eastus", 0), c.ReplicaServer("eastus", 1), c.ReplicaServer("westus", 0)

	// The machine's first replica is down: the region's other one serves,
	// no other region is asked.
	east0.Stop(t)
	rec := newRecorder()
	dest := filepath.Join(t.TempDir(), "pkg")
	got, err := c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{
		Region: "eastus", MachineID: machineFor(t, p, 0), HTTPClient: rec.client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	_, hosts, served := rec.count()
	if hosts[east0.Addr()] == 0 || served[east1.Addr()] != 4 || hosts[west.Addr()] != 0 {
		t.Fatalf("requests per host %v, served %v", hosts, served)
	}

	// westus's only replica down: eastus's serve as fallbacks.
	west.Stop(t)
	rec = newRecorder()
	dest = filepath.Join(t.TempDir(), "pkg")
	got, err = c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "westus", HTTPClient: rec.client()})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	_, hosts, served = rec.count()
	if hosts[west.Addr()] < 4 || served[east1.Addr()] != 4 {
		t.Fatalf("requests per host %v, served %v", hosts, served)
	}
	t.Logf("westus down: requests per host %v", hosts)

	// The machine reaches no store at all: ReadRange through vmappd.
	east0.Restart(t)
	cl, cnt := countingClient(t, c)
	rec = newRecorder()
	rec.before = func(int, *http.Request) error { return errors.New("blocked by the test's firewall") }
	dest = filepath.Join(t.TempDir(), "pkg")
	got, err = cl.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus", HTTPClient: rec.client()})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	if n, _, _ := rec.count(); n != 4*3 || cnt.n("ReadRange") != 4 {
		t.Fatalf("%d requests, %d ReadRange calls", n, cnt.n("ReadRange"))
	}

	// Nothing at all in the region, ReadRange included: Unavailable, and
	// the message shows no presigned query.
	east1.Stop(t)
	east0.Stop(t)
	dest = filepath.Join(t.TempDir(), "pkg")
	_, err = c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "westus", Parallelism: 1})
	wantClass(t, err, errs.Unavailable, "every source failed")
	mustNotExist(t, dest)
	t.Logf("everything down: %v", err)
}

// A download stopped half way resumes without fetching its verified pieces
// again.
func TestDownloadResume(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	const pieces = 6
	data := randomData(pieces*testcluster.PartSize-7, 5)
	publish(t, c, "1.0.0", data, testcluster.Target("eastus", 2))
	dest := filepath.Join(t.TempDir(), "pkg")

	// Stopped at the first request for piece 2 or later: the pieces
	// before it are fetched, written and verified (one worker fetches in
	// order, maybe several pieces in one request).
	ctx, cancel := context.WithCancel(testCtx(t))
	rec := newRecorder()
	var k int64
	rec.before = func(_ int, req *http.Request) error {
		if first, _, ok := rangeOf(req); ok && first >= 2*testcluster.PartSize {
			k = first / testcluster.PartSize
			cancel()
			return context.Canceled
		}
		return nil
	}
	_, err := c.Client.Download(ctx, "g", "a", "1.0.0", dest, download.Options{Region: "eastus", Parallelism: 1, HTTPClient: rec.client()})
	wantClass(t, err, errs.Canceled, "resume")
	mustNotExist(t, dest)
	b, err := os.ReadFile(dest + download.StateSuffix)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		SHA256   string `json:"sha256"`
		Size     int64  `json:"size"`
		Verified []int  `json:"verified"`
	}
	if err := json.Unmarshal(b, &st); err != nil || k < 2 || int64(len(st.Verified)) != k || st.Size != int64(len(data)) {
		t.Fatalf("state %s after stopping at piece %d: %v", b, k, err)
	}
	if fi, err := os.Stat(dest + download.PartialSuffix); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("partial file: %v %v", fi, err)
	}

	rec = newRecorder()
	var first atomic.Int64
	first.Store(-1)
	got, err := c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus", HTTPClient: rec.client(),
		Progress: func(done, _ int64) { first.CompareAndSwap(-1, done) }})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	if n := rec.askedBytes(); n != int64(len(data))-k*testcluster.PartSize {
		t.Fatalf("the resumed download asked for %d bytes of %d with %d pieces verified", n, len(data), k)
	}
	if first.Load() != k*testcluster.PartSize {
		t.Fatalf("the resumed download started at %d bytes", first.Load())
	}

	// A state file of another artifact is ignored.
	os.Remove(dest)
	os.WriteFile(dest+download.PartialSuffix, make([]byte, len(data)), 0o644)
	os.WriteFile(dest+download.StateSuffix, []byte(`{"sha256":"00","size":1,"piece_size":1,"verified":[0,1,2,3,4,5]}`), 0o644)
	rec = newRecorder()
	got, err = c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus", HTTPClient: rec.client()})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	if n := rec.askedBytes(); n != int64(len(data)) {
		t.Fatalf("asked for %d bytes of %d", n, len(data))
	}

	// A state listing pieces the partial file doesn't hold (lost on a
	// crash): they are checked and fetched again.
	os.Remove(dest)
	os.WriteFile(dest+download.PartialSuffix, make([]byte, len(data)), 0o644)
	os.WriteFile(dest+download.StateSuffix, fmt.Appendf(nil, `{"sha256":%q,"size":%d,"piece_size":%d,"verified":[0,1,2,3,4,5]}`, got.Sha256, len(data), testcluster.PartSize), 0o644)
	rec = newRecorder()
	got, err = c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus", HTTPClient: rec.client()})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	if n := rec.askedBytes(); n != int64(len(data)) {
		t.Fatalf("asked for %d bytes of %d", n, len(data))
	}
}

// Two downloads into one dest: the second is refused while the first runs.
func TestDownloadSameDest(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	data := randomData(size4, 11)
	publish(t, c, "1.0.0", data, testcluster.Target("eastus", 1))
	dest := filepath.Join(t.TempDir(), "pkg")
	started, release := make(chan struct{}), make(chan struct{})
	rec := newRecorder()
	rec.before = func(n int, _ *http.Request) error {
		if n == 1 {
			close(started)
			<-release
		}
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus", Parallelism: 1, HTTPClient: rec.client()})
		errc <- err
	}()
	<-started
	_, err := c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus"})
	close(release)
	wantClass(t, err, errs.Aborted, "another download into "+dest)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, plan(t, c, "1.0.0", "eastus"))
}

// Presigned URLs that expired: Download asks for a new plan.
func TestDownloadExpiredURLs(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{URLExpiry: time.Second})
	data := randomData(size4, 6)
	publish(t, c, "1.0.0", data, testcluster.Target("eastus", 2))
	cl, cnt := countingClient(t, c)
	rec := newRecorder()
	rec.before = func(n int, _ *http.Request) error {
		if n == 2 { // its URL expires on the way
			time.Sleep(1500 * time.Millisecond)
		}
		return nil
	}
	dest := filepath.Join(t.TempDir(), "pkg")
	got, err := cl.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus", Parallelism: 1, HTTPClient: rec.client()})
	if err != nil {
		t.Fatal(err)
	}
	checkDownloaded(t, dest, data, got)
	rec.mu.Lock()
	forbidden := rec.statuses[http.StatusForbidden]
	rec.mu.Unlock()
	if plans := cnt.n("GetDownloadPlan"); plans < 2 || forbidden < 1 {
		t.Fatalf("%d plans, %d responses 403", plans, forbidden)
	}
	t.Logf("%d plans, %d responses 403", cnt.n("GetDownloadPlan"), forbidden)
}

// vmappd proxies downloads: ReadRange, verified the same way.
func TestDownloadProxied(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{ProxyDownloads: true})
	data := randomData(size4, 7)
	publish(t, c, "1.0.0", data, testcluster.Target("eastus", 2))
	cl, cnt := countingClient(t, c)
	rec := newRecorder()
	dest := filepath.Join(t.TempDir(), "pkg")
	got, err := cl.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus", HTTPClient: rec.client()})
	if err != nil {
		t.Fatal(err)
	}
	if got.Direct || len(got.Sources) != 0 {
		t.Fatalf("plan %v", got)
	}
	checkDownloaded(t, dest, data, got)
	if n, _, _ := rec.count(); n != 0 || cnt.n("ReadRange") != 4 {
		t.Fatalf("%d HTTP requests, %d ReadRange calls", n, cnt.n("ReadRange"))
	}
}

func TestDownloadNotInRegion(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	publish(t, c, "1.0.0", randomData(1000, 8), testcluster.Target("eastus", 1))
	dest := filepath.Join(t.TempDir(), "pkg")
	_, err := c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "westus"})
	wantClass(t, err, errs.FailedPrecondition, "isn't available in westus region")
	mustNotExist(t, dest)
	mustNotExist(t, dest+download.PartialSuffix)
	_, err = c.Client.Download(testCtx(t), "g", "a", "9.9.9", dest, download.Options{Region: "eastus"})
	wantClass(t, err, errs.NotFound, "")
}

// Environment of the child process of TestDownloadNoSpace.
const (
	envNoSpaceAddr  = "VMAPP_TEST_NOSPACE_ADDR"
	envNoSpaceToken = "VMAPP_TEST_NOSPACE_TOKEN"
	envNoSpaceDir   = "VMAPP_TEST_NOSPACE_DIR"
	noSpaceOK       = "NOSPACE-CHILD-OK"
)

// A disk too small for the artifact: ResourceExhausted before any byte is
// fetched. The download runs in a child process with a 4 MiB tmpfs, mounted
// in its own user and mount namespace.
func TestDownloadNoSpace(t *testing.T) {
	if out, err := exec.Command("unshare", "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs -o size=1m x /tmp").CombinedOutput(); err != nil {
		t.Skipf("needs unprivileged user and mount namespaces: %v: %s", err, bytes.TrimSpace(out))
	}
	c := testcluster.Start(t, testcluster.Options{})
	publish(t, c, "1.0.0", randomData(12<<20, 9), testcluster.Target("eastus", 1))
	dir := t.TempDir()
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--mount",
		"sh", "-c", `mount -t tmpfs -o size=4m vmapp-test "$1" && shift && exec "$@"`, "sh", dir,
		os.Args[0], "-test.run=^TestDownloadNoSpaceChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envNoSpaceAddr+"="+c.Addr, envNoSpaceDir+"="+dir, envNoSpaceToken+"="+c.AdminToken)
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil || !bytes.Contains(out, []byte(noSpaceOK)) {
		t.Fatalf("child: %v", err)
	}
}

func TestDownloadNoSpaceChild(t *testing.T) {
	addr, dir := os.Getenv(envNoSpaceAddr), os.Getenv(envNoSpaceDir)
	if addr == "" {
		t.Skip("run by TestDownloadNoSpace")
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil || fs.Blocks*uint64(fs.Bsize) > 8<<20 {
		t.Fatalf("%s is not the small tmpfs: %v, %d bytes", dir, err, fs.Blocks*uint64(fs.Bsize))
	}
	cl, err := client.New(addr, client.Options{Token: os.Getenv(envNoSpaceToken)})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := newRecorder()
	dest := filepath.Join(dir, "pkg")
	_, err = cl.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus", HTTPClient: rec.client()})
	wantClass(t, err, errs.ResourceExhausted, fmt.Sprintf("no space left on device for %s (%d bytes)", dest, 12<<20))
	mustNotExist(t, dest)
	mustNotExist(t, dest+download.PartialSuffix)
	if n, _, _ := rec.count(); n != 0 {
		t.Fatalf("%d requests before the disk was found too small", n)
	}
	t.Log(err)
	fmt.Println(noSpaceOK)
}

// Parallelism: a fixed number of connections, or adaptive: 8 at first,
// never more than 16. The test asserts only what holds however fast the
// machine is: how many connections come together (counted, not timed), and
// never more than allowed. When the adaptive pool steps up or back is
// TestAdaptive's, on a clock of its own; how fast it downloads is make
// bench's.
func TestDownloadParallelism(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	data := randomData(24*testcluster.PartSize, 10)
	publish(t, c, "1.0.0", data, testcluster.Target("eastus", 1))
	dir := t.TempDir()
	for _, tc := range []struct {
		name          string
		par           int
		together, max int
	}{
		{"fixed-1", 1, 1, 1},
		{"fixed-3", 3, 3, 3},
		{"adaptive", 0, 8, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			came := rec.together(tc.together)
			dest := filepath.Join(dir, tc.name)
			got, err := c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus", Parallelism: tc.par, HTTPClient: rec.client()})
			if err != nil {
				t.Fatal(err)
			}
			checkDownloaded(t, dest, data, got)
			if n := came(); n != tc.together || rec.max() > tc.max {
				t.Fatalf("%d of the first %d requests came together (want all), at most %d in flight (want %d at most)", n, tc.together, rec.max(), tc.max)
			}
			t.Logf("%d requests, at most %d in flight", len(rec.flights), rec.max())
		})
	}
}

// Figures for the report, not a check: VMAPP_DOWNLOAD_FIGURES=1 go test
// -run TestDownloadFigures -v ./client/
func TestDownloadFigures(t *testing.T) {
	if os.Getenv("VMAPP_DOWNLOAD_FIGURES") == "" {
		t.Skip("set VMAPP_DOWNLOAD_FIGURES=1 to measure")
	}
	c := testcluster.Start(t, testcluster.Options{})
	const pieces = 40
	data := randomData(pieces*testcluster.PartSize, 12)
	publish(t, c, "1.0.0", data, testcluster.Target("eastus", 1))
	dir := t.TempDir()
	run := func(name string, par int, capRate float64) {
		best := time.Hour
		var conns int
		for i := range 3 {
			rec := newRecorder()
			rec.capBytesPerSec = capRate
			dest := filepath.Join(dir, fmt.Sprint("f", i))
			start := time.Now()
			if _, err := c.Client.Download(testCtx(t), "g", "a", "1.0.0", dest, download.Options{Region: "eastus", Parallelism: par, HTTPClient: rec.client()}); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < best {
				best, conns = d, rec.max()
			}
			os.Remove(dest)
			if capRate > 0 {
				break
			}
		}
		t.Logf("%-28s %8v %7.1f MiB/s, up to %d connections", name, best.Round(time.Millisecond), float64(len(data))/(1<<20)/best.Seconds(), conns)
	}
	for _, par := range []int{1, 4, 16, 0} {
		run(fmt.Sprintf("loopback parallelism %d", par), par, 0)
	}
	for _, par := range []int{4, 16, 0} {
		run(fmt.Sprintf("8 MiB/s/conn parallelism %d", par), par, 8<<20)
	}
}
