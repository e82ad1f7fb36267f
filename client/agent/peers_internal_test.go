package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// The cache past its bound: the least recently used versions go (served
// counts as use), never the one just added nor one protect keeps; what is
// left is found again by a new agent on the same root.
func TestCacheEviction(t *testing.T) {
	root := t.TempDir()
	now := time.Unix(1000, 0)
	p, err := newPeers(root, slog.New(slog.DiscardHandler), nil, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	p.max = 300
	protected := (cacheEntry{Gallery: "g", Application: "a", Version: "1", Kind: "PACKAGE"}).key()
	p.protect = func(k string) bool { return k == protected }
	add := func(version string) {
		t.Helper()
		now = now.Add(time.Minute)
		path := filepath.Join(root, "pkg-"+version)
		if err := os.WriteFile(path, make([]byte, 100), 0o600); err != nil {
			t.Fatal(err)
		}
		plan := &pb.DownloadPlan{Gallery: "g", Application: "a", Version: version, Kind: pb.ArtifactKind_ARTIFACT_KIND_PACKAGE,
			Sha256: "sha-" + version, SizeBytes: 100}
		if err := p.add(plan, "", path); err != nil {
			t.Fatal(err)
		}
	}
	versions := func(p *peers) []string {
		var out []string
		for _, h := range p.held() {
			out = append(out, h.Version)
		}
		sort.Strings(out)
		return out
	}
	for _, v := range []string{"1", "2", "3"} {
		add(v)
	}
	// 2 is used again (served): 3 is now the least recently used but 1,
	// which is protected.
	now = now.Add(time.Minute)
	p.mu.Lock()
	p.used[(cacheEntry{Gallery: "g", Application: "a", Version: "2", Kind: "PACKAGE"}).key()] = now
	p.mu.Unlock()
	add("4")
	if got := versions(p); len(got) != 3 || got[0] != "1" || got[1] != "2" || got[2] != "4" {
		t.Fatalf("after adding 4 past the bound: %v, want [1 2 4]", got)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "sha-3")); !os.IsNotExist(err) {
		t.Fatalf("3's file is left: %v", err)
	}
	// The installed copies are untouched.
	if _, err := os.Stat(filepath.Join(root, "pkg-3")); err != nil {
		t.Fatal(err)
	}
	again, err := newPeers(root, slog.New(slog.DiscardHandler), nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(again); len(got) != 3 {
		t.Fatalf("a new agent finds %v", got)
	}
}
