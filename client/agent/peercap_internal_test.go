package agent

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vmapp/vmapp/client/download"
	"github.com/vmapp/vmapp/internal/grant"
	"github.com/vmapp/vmapp/internal/ratecap"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// fakeClock is a cap's clock that moves only when the cap waits.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
	return ctx.Err()
}

// Config.PeerMaxRate: each asking machine gets a cap of its own, counted
// on the cap's clock: the bytes served to it took their size over the
// rate (less the bucket's first burst), however many machines ask at
// once; the caps go when their requests end.
func TestPeerMaxRate(t *testing.T) {
	const rate, size = 1 << 20, 4 << 20
	p, err := newPeers(t.TempDir(), slog.New(slog.DiscardHandler), nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var clocks []*fakeClock
	p.newCap = func() *ratecap.Cap {
		c := &fakeClock{t: time.Unix(0, 0)}
		mu.Lock()
		clocks = append(clocks, c)
		mu.Unlock()
		return ratecap.NewWithClock(rate, c.now, c.sleep)
	}
	signer, err := grant.FromClusterKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	p.keys = []ed25519.PublicKey{signer.Public()}
	path := filepath.Join(t.TempDir(), "pkg")
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	plan := &pb.DownloadPlan{Gallery: "g", Application: "a", Version: "1", Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, Sha256: "sha", SizeBytes: size}
	if err := p.add(plan, "", path); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	defer srv.Close()
	get := func(machine string) error {
		g, err := signer.Sign(grant.New("default", machine, "default", "g", "a", "1", pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, time.Now()))
		if err != nil {
			return err
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL+download.PeerPath+"?gallery=g&application=a&version=1&kind=PACKAGE", nil)
		req.Header.Set("Authorization", download.GrantScheme+" "+g)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || n != size {
			return fmt.Errorf("%s: %s, %d bytes, %v", machine, resp.Status, n, err)
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, m := range []string{"vm-1", "vm-2", "vm-3"} {
		wg.Go(func() { errs <- get(m) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	burst := max(64<<10, rate/20)
	want := time.Duration(float64(size-burst) / rate * float64(time.Second))
	if len(clocks) != 3 {
		t.Fatalf("%d caps for 3 machines", len(clocks))
	}
	for i, c := range clocks {
		if took := c.now().Sub(time.Unix(0, 0)); took < want-time.Millisecond || took > want+time.Millisecond {
			t.Errorf("machine %d: %d bytes took %v on its cap's clock; want %v", i, size, took, want)
		}
	}
	p.mu.Lock()
	left := len(p.perPeer)
	p.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d caps kept after the requests ended", left)
	}
}
