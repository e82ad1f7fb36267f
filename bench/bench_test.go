//go:build bench

// The benchmark harness: `make bench` (or `make bench QUICK=1`) runs these
// scenarios against real processes — MinIO, the vmappd binary — and writes
// bench/results/latest.json and latest.md. Every figure is a ratio against
// a baseline measured in the same run, next to the absolute values. See
// bench/README.md for the JSON keys.
package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/server/daemon"
)

// quick is `make bench QUICK=1`: smaller sizes, a smoke run.
var quick = os.Getenv("QUICK") != "" && os.Getenv("QUICK") != "0"

// Result is one scenario's figures.
type Result map[string]any

// Report is latest.json.
type Report struct {
	Date      string            `json:"date"`
	Commit    string            `json:"commit"`
	Quick     bool              `json:"quick"`
	Machine   Machine           `json:"machine"`
	Scenarios map[string]Result `json:"scenarios"`
}

// Machine describes where the figures were measured.
type Machine struct {
	Cores       int    `json:"cores"`
	MemoryBytes int64  `json:"memoryBytes"`
	GOOS        string `json:"goos"`
	GOARCH      string `json:"goarch"`
	GoVersion   string `json:"goVersion"`
	// DiskDirectWriteMBps is the temporary directory's disk writing with
	// O_DIRECT (dd), measured as the run starts.
	DiskDirectWriteMBps float64 `json:"diskDirectWriteMBps"`
}

// diskRate is Machine.DiskDirectWriteMBps (0: dd failed).
var diskRate float64

var report = Report{Scenarios: map[string]Result{}}

func TestMain(m *testing.M) {
	// No download.RaiseProcsForDirectIO here, though the CLI and the agent
	// call it: this process plays 100 machines at once in the fleet
	// scenario, and its extra Ps took CPU from vmappd on the same 2 cores
	// (ReportStatus p99 during the downloads 57 ms → 459 ms).
	var err error
	if diskRate, err = diskDirectWriteMBps(os.TempDir()); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	code := m.Run()
	if len(report.Scenarios) > 0 {
		if err := writeReport(); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// reportPath is latest.json, relative to bench/.
const reportPath = "results/latest.json"

// writeReport writes latest.json and latest.md: the scenarios that ran,
// each marked with this run's date, commit and quick, and those of the
// existing latest.json that did not run this time, as they were.
func writeReport() error {
	report.Date = time.Now().UTC().Format(time.RFC3339)
	report.Quick = quick
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		report.Commit = strings.TrimSpace(string(out))
		// results/ doesn't count: a scenario's plot is written before this.
		if out, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)bench/results").Output(); len(out) > 0 {
			report.Commit += "-dirty"
		}
	}
	report.Machine = Machine{Cores: runtime.NumCPU(), MemoryBytes: memTotal(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, GoVersion: runtime.Version(), DiskDirectWriteMBps: diskRate}
	for _, r := range report.Scenarios {
		r["date"], r["commit"], r["quick"] = report.Date, report.Commit, report.Quick
	}
	var old Report
	if b, err := os.ReadFile(reportPath); err == nil {
		if err := json.Unmarshal(b, &old); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v; its scenarios are not kept\n", reportPath, err)
		}
	}
	for name, r := range old.Scenarios {
		if _, ran := report.Scenarios[name]; ran {
			continue
		}
		if _, ok := r["date"]; !ok { // written before scenarios had their own
			r["date"], r["commit"], r["quick"] = old.Date, old.Commit, old.Quick
		}
		report.Scenarios[name] = r
	}
	if err := os.MkdirAll(filepath.Dir(reportPath), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(reportPath, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(filepath.Dir(reportPath), "latest.md"), []byte(markdown()), 0o644)
}

func markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# vmapp bench — %s, commit %s%s\n\n", report.Date, report.Commit, map[bool]string{true: " (QUICK)"}[report.Quick])
	fmt.Fprintf(&b, "Machine: %d cores, %.1f GiB, %s/%s, %s; disk %.0f MB/s with O_DIRECT (dd).\n\n", report.Machine.Cores, float64(report.Machine.MemoryBytes)/(1<<30), report.Machine.GOOS, report.Machine.GOARCH, report.Machine.GoVersion, report.Machine.DiskDirectWriteMBps)
	b.WriteString("Each row's run is the run that measured it: a row of an earlier run is kept while its scenario does not run again.\n\n")
	b.WriteString("| scenario | run | vmapp | baseline | ratio (vmapp / baseline) | notes |\n|---|---|---|---|---|---|\n")
	for _, name := range slices.Sorted(maps.Keys(report.Scenarios)) {
		r := report.Scenarios[name]
		run := fmt.Sprintf("%v, %v", r["date"], r["commit"])
		if r["quick"] == true {
			run += ", QUICK"
		}
		if r["date"] != report.Date {
			run += " (earlier run)"
		}
		fmt.Fprintf(&b, "| %s | %s | %v | %v | %v | %v |\n", name, run, r["vmapp"], r["baseline"], r["ratio"], r["notes"])
	}
	return b.String()
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// peakRSS is a process's resident set high-water mark (VmHWM), in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuSeconds is a process's user + system CPU time so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

// randomFile writes size pseudo-random (incompressible) bytes.
func randomFile(t testing.TB, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "package.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src := rand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(f, src, size); err != nil {
		t.Fatal(err)
	}
	return path
}

// buildCmd builds one of ./cmd/... into a temporary directory.
func buildCmd(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	// Built in the product's module (the repository root), with its
	// go.mod and go.sum: bench's module lacks the sums of what only the
	// binaries import (cobra).
	build := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	return bin
}

var servingRE = regexp.MustCompile(`msg="vmappd serving" addr=(\S+)`)

// vmappd is a running vmappd process.
type vmappd struct {
	cmd  *exec.Cmd
	addr string
	// tokenFile is its bootstrap operator token (DATA/admin.token); token
	// the token itself.
	tokenFile, token string
}

// startVmappd runs the vmappd binary on regions and waits until it serves.
func startVmappd(t testing.TB, bin, regions string, env ...string) *vmappd {
	t.Helper()
	return startVmappdArgs(t, bin, regions, nil, env...)
}

// startVmappdArgs is startVmappd with extra command-line arguments, such as
// --metrics ADDR.
func startVmappdArgs(t testing.TB, bin, regions string, args []string, env ...string) *vmappd {
	t.Helper()
	return startVmappdOn(t, bin, filepath.Join(t.TempDir(), "data"), regions, args, env...)
}

// startVmappdOn is startVmappdArgs on the data directory data, whose
// parent gets the log.
func startVmappdOn(t testing.TB, bin, data, regions string, args []string, env ...string) *vmappd {
	t.Helper()
	d := launchVmappd(t, bin, data, regions, args, env...)
	var err error
	if d.token, err = client.ReadTokenFile(d.tokenFile); err != nil {
		t.Fatal(err)
	}
	return d
}

// launchVmappd is startVmappdOn without reading the operator token: a
// cluster node that joins has none.
func launchVmappd(t testing.TB, bin, data, regions string, args []string, env ...string) *vmappd {
	t.Helper()
	dir := filepath.Dir(data)
	cmd := exec.Command(bin, append([]string{"--data", data, "--regions", regions, "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(dir, "vmappd.log"))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	cmd.Stderr = io.MultiWriter(logf, pw)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); pw.Close(); logf.Close() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		return &vmappd{cmd: cmd, addr: a, tokenFile: filepath.Join(data, daemon.AdminTokenFile)}
	case <-time.After(30 * time.Second):
		t.Fatalf("vmappd did not start; log in %s", logf.Name())
	}
	return nil
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func round(f float64, places int) float64 {
	p := 1.0
	for range places {
		p *= 10
	}
	return float64(int64(f*p+0.5)) / p
}

func mbps(bytes int64, d time.Duration) float64 { return round(float64(bytes)/d.Seconds()/1e6, 1) }
