//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// profiler takes a vmappd's profiles from its --metrics listener (started
// with --pprof) and summarizes them with `go tool pprof -top`.
type profiler struct {
	t       testing.TB
	bin     string // the vmappd binary, for symbols
	metrics string // its --metrics address
	dir     string
}

func newProfiler(t testing.TB, bin, metrics string) *profiler {
	return &profiler{t: t, bin: bin, metrics: metrics, dir: t.TempDir()}
}

// cpu starts a CPU profile of seconds; wait returns the file it was saved
// to ("" when it failed, said in the log).
func (p *profiler) cpu(ctx context.Context, seconds int) (wait func() string) {
	done := make(chan string, 1)
	go func() {
		done <- p.save(ctx, fmt.Sprintf("profile?seconds=%d", seconds), "cpu.pprof")
	}()
	return func() string { return <-done }
}

// allocs saves the allocation profile as it stands (every allocation since
// vmappd started).
func (p *profiler) allocs(ctx context.Context) string {
	return p.save(ctx, "allocs", "allocs.pprof")
}

func (p *profiler) save(ctx context.Context, query, name string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.metrics+"/debug/pprof/"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Logf("profile %s: %v", query, err)
		return ""
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		p.t.Logf("profile %s: %s: %s", query, resp.Status, b)
		return ""
	}
	path := filepath.Join(p.dir, name)
	f, err := os.Create(path)
	if err != nil {
		p.t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		p.t.Logf("profile %s: %v", query, err)
		return ""
	}
	return path
}

// top is `go tool pprof -top` of a saved profile: its header and the n
// entries with the most flat weight (for allocs, sample is alloc_space).
func (p *profiler) top(path string, n int, args ...string) []string {
	if path == "" {
		return nil
	}
	cmd := exec.Command("go", append(append([]string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", n)}, args...), p.bin, path)...)
	out, err := cmd.Output()
	if err != nil {
		p.t.Logf("go tool pprof %s: %v", path, err)
		return nil
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") || strings.HasPrefix(l, "Type:") {
			continue
		}
		lines = append(lines, strings.TrimRight(l, " "))
	}
	return lines
}
