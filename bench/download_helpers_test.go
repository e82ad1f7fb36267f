//go:build bench

package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/client/download"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// wanProxy is an in-process toxiproxy in front of one MinIO server.
type wanProxy struct {
	proxy *toxiproxy.Proxy
	addr  string // host:port it listens on
}

// startWANProxy starts a toxiproxy TCP proxy on a free loopback port in
// front of upstream (host:port), with no toxics yet.
func startWANProxy(t testing.TB, upstream string) *wanProxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "minio", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy: %v", err)
	}
	t.Cleanup(p.Stop)
	return &wanProxy{proxy: p, addr: p.Listen}
}

// addToxic adds one toxic (toxiproxy's JSON form) to the proxy: it applies
// to every connection, open or new.
func (w *wanProxy) addToxic(t testing.TB, name, typ, stream string, attrs map[string]int64) {
	t.Helper()
	var a []string
	for k, v := range attrs {
		a = append(a, fmt.Sprintf("%q: %d", k, v))
	}
	js := fmt.Sprintf(`{"name": %q, "type": %q, "stream": %q, "toxicity": 1, "attributes": {%s}}`, name, typ, stream, strings.Join(a, ", "))
	if _, err := w.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		t.Fatalf("toxic %s: %v", js, err)
	}
}

// hostPort is the host:port of an http:// URL.
func hostPort(t testing.TB, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// publishOne creates bench/app/1.0.0 (one replica in eastus) on the vmappd
// d, uploads path as its package and waits until replication is
// Completed. It returns a client of that vmappd.
func publishOne(t testing.TB, ctx context.Context, d *vmappd, path, sum string) *client.Client {
	t.Helper()
	c, err := client.New(d.addr, client.Options{Token: d.token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	mustDo(t, func() error {
		_, err := c.Catalog.CreateGallery(ctx, &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: dlGallery, Location: dlRegion}})
		return err
	}, func() error {
		_, err := c.Catalog.CreateApplication(ctx, &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: dlGallery, Name: dlApp, Location: dlRegion, SupportedOsType: "Linux"}})
		return err
	}, func() error {
		_, err := c.Catalog.CreateVersion(ctx, &pb.CreateVersionRequest{Version: &pb.GalleryApplicationVersion{
			Gallery: dlGallery, Application: dlApp, Name: dlVersion, Location: dlRegion,
			PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "i", Remove: "r"}, ReplicaCount: proto.Int32(1)},
		}})
		return err
	})
	if _, err := c.Upload(ctx, dlGallery, dlApp, dlVersion, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, path, client.UploadOptions{SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	for {
		r, err := c.Catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: dlGallery, Application: dlApp, Version: dlVersion})
		if err != nil {
			t.Fatal(err)
		}
		st := r.Version.GetReplicationStatus()
		if st.GetAggregatedState() == pb.ReplicationCompleted {
			return c
		}
		if ctx.Err() != nil {
			t.Fatalf("replication did not complete: %v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// downloadPlan asks vmappd for a download plan in region; the plan's first
// source is the region's first replica.
func downloadPlan(t testing.TB, ctx context.Context, c *client.Client, region string) *pb.DownloadPlan {
	t.Helper()
	r, err := pb.NewDownloadServiceClient(c.Conn()).GetDownloadPlan(ctx, &pb.GetDownloadPlanRequest{
		Gallery: dlGallery, Application: dlApp, Version: dlVersion, Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Region: region,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := r.GetPlan()
	if !p.GetDirect() || len(p.GetSources()) == 0 || p.Sources[0].Fallback {
		t.Fatalf("the download plan has no direct source in %s: %v", region, p)
	}
	return p
}

// procRun is one timed run of a download command.
type procRun struct {
	took     time.Duration
	maxRSS   int64         // the process's peak RSS (VmHWM, sampled every 20ms)
	maxConns int           // most TCP connections it held to the store at once
	conns    int           // distinct TCP connections it opened to the store
	cpu      time.Duration // user + system time of the process
}

// runDownload runs a download command, times it (process start to exit)
// and checks that it wrote size bytes to out; the output, and anything the
// command left beside it, is removed afterwards. The command's peak RSS and
// its established TCP connections to port are sampled while it runs
// (getrusage's ru_maxrss won't do: exec keeps the high-water mark of the
// forking process, this one).
func runDownload(t testing.TB, name string, argv []string, out string, size int64, port int) procRun {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	s := sampleProc(cmd.Process.Pid, port)
	err := cmd.Wait()
	took := time.Since(start)
	r := procRun{took: took}
	if cmd.ProcessState != nil {
		r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	r.maxConns, r.conns, r.maxRSS = s.stop()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, buf.Bytes())
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Size() != size {
		t.Fatalf("%s wrote %v (%v), want %d bytes\n%s", name, fi, err, size, buf.Bytes())
	}
	for _, p := range []string{out, out + download.PartialSuffix, out + download.StateSuffix, out + ".aria2"} {
		os.Remove(p)
	}
	return r
}

// procSampler watches a process: its resident set high-water mark every
// 20ms, and every 100ms its established TCP connections to a port (its
// socket inodes in /proc/PID/fd matched with /proc/net/tcp; reading those
// every 10ms slowed a 1 GiB loopback download down by 0.2-0.3s). The
// connections are kept alive between pieces, so the coarser sampling sees
// them all.
type procSampler struct {
	pid, port int
	done      chan struct{}
	wg        sync.WaitGroup
	max       int
	seen      map[string]bool // local addresses
	hwm       int64
}

func sampleProc(pid, port int) *procSampler {
	s := &procSampler{pid: pid, port: port, done: make(chan struct{}), seen: map[string]bool{}}
	s.wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			if h := peakRSS(s.pid); h > 0 { // 0 once it exited
				s.hwm = h
			}
			if i%5 == 0 {
				s.sampleConns()
			}
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	})
	return s
}

// stop ends the sampling and returns the most connections seen at once,
// the distinct connections seen and the last VmHWM read.
func (s *procSampler) stop() (maxOpen, distinct int, hwm int64) {
	close(s.done)
	s.wg.Wait()
	return s.max, len(s.seen), s.hwm
}

func (s *procSampler) sampleConns() {
	if s.port == 0 {
		return
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", s.pid))
	if err != nil {
		return
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", s.pid), fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	if len(inodes) == 0 {
		return
	}
	wantPort := fmt.Sprintf(":%04X", s.port)
	open := map[string]bool{} // reading the tables may repeat a line
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || fl[3] != "01" || !strings.HasSuffix(fl[2], wantPort) || !inodes[fl[9]] {
				continue
			}
			open[fl[1]] = true
			s.seen[fl[1]] = true
		}
		f.Close()
	}
	s.max = max(s.max, len(open))
}

// portOf is the port of a host:port.
func portOf(t testing.TB, hp string) int {
	t.Helper()
	i := strings.LastIndexByte(hp, ':')
	p, err := strconv.Atoi(hp[i+1:])
	if err != nil {
		t.Fatalf("no port in %q", hp)
	}
	return p
}

// libraryDownload downloads the version once with client.Download (the
// code the CLI runs; parallelism 0 adapts) in this process, through
// an HTTP transport that notes every ranged GET, and splits its time:
// fetchSeconds from the start until the last piece's body was closed,
// finishSeconds from then to Download's return (the whole-file sha256
// check, fsync, rename). fileSHA256Seconds hashes the finished file once
// more (from the page cache): finishSeconds minus it is about the fsync.
// requestTTFBMs is the mean time from sending a piece's GET to its
// response headers: the time a connection idles per piece.
func libraryDownload(t testing.TB, ctx context.Context, c *client.Client, out string, size int64, parallelism int) Result {
	t.Helper()
	tr := newTraceTransport()
	start := time.Now()
	plan, err := c.Download(ctx, dlGallery, dlApp, dlVersion, out, client.DownloadOptions{
		Region: dlRegion, MachineID: "bench", Parallelism: parallelism, HTTPClient: &http.Client{Transport: tr},
	})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("library download: %v", err)
	}
	hashStart := time.Now()
	sum, n, err := client.FileSHA256(out)
	hashTook := time.Since(hashStart)
	if err != nil || n != size || sum != plan.Sha256 {
		t.Fatalf("library download wrote %d bytes with sha256 %s (%v), want %d, %s", n, sum, err, size, plan.Sha256)
	}
	for _, p := range []string{out, out + download.PartialSuffix, out + download.StateSuffix} {
		os.Remove(p)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	fetch := tr.lastEnd.Sub(start)
	r := Result{
		"seconds":                 round(took.Seconds(), 2),
		"MBps":                    mbps(size, took),
		"fetchSeconds":            round(fetch.Seconds(), 2),
		"fetchMBps":               mbps(size, fetch),
		"finishSeconds":           round((took - fetch).Seconds(), 2),
		"fileSHA256Seconds":       round(hashTook.Seconds(), 2),
		"requests":                tr.requests,
		"connections":             int(tr.dials.Load()),
		"maxInFlight":             tr.maxInFlight,
		"maxInFlightAfterSeconds": round(tr.maxAt.Sub(start).Seconds(), 2),
	}
	if tr.requests > 0 {
		r["requestTTFBMs"] = round(float64(tr.ttfb.Milliseconds())/float64(tr.requests), 1)
	}
	t.Logf("library, parallelism %d: %.2fs (%.0f MB/s): fetch %.2fs (%.0f MB/s), finish %.2fs (sha256 of the file alone %.2fs); %d requests, mean TTFB %v ms, %d connections, at most %d in flight (after %.2fs)",
		parallelism, took.Seconds(), r["MBps"], fetch.Seconds(), r["fetchMBps"], (took - fetch).Seconds(), hashTook.Seconds(), tr.requests, r["requestTTFBMs"], tr.dials.Load(), tr.maxInFlight, tr.maxAt.Sub(start).Seconds())
	return r
}

// traceTransport is the client's default transport (16 idle connections
// per host), noting requests, time to headers, bodies in flight and when
// the last one ended.
type traceTransport struct {
	base  *http.Transport
	dials atomic.Int64

	mu          sync.Mutex
	requests    int
	ttfb        time.Duration
	inFlight    int
	maxInFlight int
	maxAt       time.Time
	lastEnd     time.Time
}

func newTraceTransport() *traceTransport {
	tr := &traceTransport{}
	b := http.DefaultTransport.(*http.Transport).Clone()
	b.MaxIdleConnsPerHost = 16
	b.ResponseHeaderTimeout = 30 * time.Second
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	b.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		tr.dials.Add(1)
		return d.DialContext(ctx, network, addr)
	}
	tr.base = b
	return tr
}

func (tr *traceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t0 := time.Now()
	tr.mu.Lock()
	tr.inFlight++
	if tr.inFlight > tr.maxInFlight {
		tr.maxInFlight, tr.maxAt = tr.inFlight, t0
	}
	tr.mu.Unlock()
	resp, err := tr.base.RoundTrip(req)
	tr.mu.Lock()
	tr.requests++
	tr.ttfb += time.Since(t0)
	tr.mu.Unlock()
	if err != nil {
		tr.end()
		return nil, err
	}
	resp.Body = &tracedBody{ReadCloser: resp.Body, tr: tr}
	return resp, nil
}

func (tr *traceTransport) end() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.inFlight--
	tr.lastEnd = time.Now()
}

type tracedBody struct {
	io.ReadCloser
	tr   *traceTransport
	once sync.Once
}

func (b *tracedBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.tr.end)
	return err
}

// diskDirectWriteMBps is the rate at which the disk under dir takes writes
// that bypass the page cache: dd of 256 MiB with oflag=direct, then an
// fsync. Downloads are measured against it.
func diskDirectWriteMBps(dir string) (float64, error) {
	f := filepath.Join(dir, "vmapp-bench-dd.bin")
	defer os.Remove(f)
	start := time.Now()
	out, err := exec.Command("dd", "if=/dev/zero", "of="+f, "bs=1M", "count=256", "oflag=direct", "conv=fsync").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("dd oflag=direct: %v: %s", err, out)
	}
	return mbps(256<<20, time.Since(start)), nil
}
