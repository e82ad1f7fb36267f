//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/miniotest"
	"github.com/vmapp/vmapp/internal/testkit/testnet"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// peersStoreRate caps the region's store in the peers scenario (bytes per
// second, all machines together).
const peersStoreRate = 100e6

// TestPeers: machines of one scale set (100, QUICK 10), each a real
// vmapp-agent process on loopback, take one version (256 MiB, QUICK
// 32 MiB) at once from a store capped at 100 MB/s behind a proxy that
// counts what it sends: first with --no-peer (every byte from the store:
// the baseline), then serving each other (--peer-listen). The figures:
// how long until every machine holds the verified package, each way, and
// their ratio (the goal: 5 times faster with peers); what the store sent
// per package; and results/peers-convergence.png, the machines complete
// over time, both ways.
func TestPeers(t *testing.T) {
	machines, size := 100, int64(256<<20)
	if quick {
		machines, size = 10, 32<<20
	}
	m := miniotest.Start(t)
	px, err := testnet.NewCappedProxy(hostPort(t, m.Endpoint()), peersStoreRate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	regions := filepath.Join(t.TempDir(), "regions.yaml")
	if err := os.WriteFile(regions, fmt.Appendf(nil, "regions:\n  - name: %s\n    endpoints:\n      - {url: %q, bucket: vmapp-eastus}\n", dlRegion, "http://"+px.Addr()), 0o600); err != nil {
		t.Fatal(err)
	}
	vmappdBin, agentBin := buildCmd(t, "vmappd"), buildCmd(t, "vmapp-agent")
	path := randomFile(t, size)
	sum, _, err := client.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 60*time.Minute)
	d := startVmappd(t, vmappdBin, regions, "VMAPP_S3_ACCESS_KEY="+m.AccessKey, "VMAPP_S3_SECRET_KEY="+m.SecretKey)
	c := publishOne(t, ctx, d, path, sum)
	os.Remove(path)
	fl := pb.NewFleetServiceClient(c.Conn())

	// wave gives the version to machines agents of scale set set, run with
	// flags, and returns when each one's file appeared (seconds after the
	// version was given) and what the store sent meanwhile.
	wave := func(set string, flags ...string) (done []float64, sent int64) {
		if _, err := fl.CreateScaleSet(ctx, &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: set, Region: dlRegion, OsType: "Linux"}}); err != nil {
			t.Fatal(err)
		}
		var files, logs []string
		var procs []*exec.Cmd
		defer func() {
			for _, p := range procs {
				p.Process.Kill()
				p.Wait()
			}
		}()
		for i := range machines {
			name := fmt.Sprintf("%s-%d", set, i)
			r, err := fl.CreateMachine(ctx, &pb.CreateMachineRequest{Machine: &pb.Machine{Name: name, ScaleSet: set}})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			token := filepath.Join(dir, "agent.token")
			if err := os.WriteFile(token, []byte(r.AgentToken+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			root := filepath.Join(dir, "root")
			files = append(files, filepath.Join(root, dlGallery, dlApp, dlVersion, dlApp))
			logf, err := os.Create(filepath.Join(dir, "agent.log"))
			if err != nil {
				t.Fatal(err)
			}
			logs = append(logs, logf.Name())
			cmd := exec.Command(agentBin, append([]string{"--server", d.addr, "--vm", name, "--token-file", token, "--root", root, "--log-level", "info"}, flags...)...)
			cmd.Stderr = logf
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			logf.Close()
			procs = append(procs, cmd)
		}
		// Every agent holds its goal-state stream (and serves peers)
		// before the version is given.
		for _, l := range logs {
			for {
				b, _ := os.ReadFile(l)
				if strings.Contains(string(b), "goal-state stream open") {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("an agent never opened its goal-state stream: %s", l)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		before := px.Egress()
		start := time.Now()
		if _, err := fl.SetApplication(ctx, &pb.SetApplicationRequest{Target: &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: set}},
			Application: &pb.VMGalleryApplication{PackageReferenceId: dlGallery + "/" + dlApp + "/" + dlVersion}}); err != nil {
			t.Fatal(err)
		}
		left := slices.Clone(files)
		for len(left) > 0 {
			left = slices.DeleteFunc(left, func(f string) bool {
				fi, err := os.Stat(f) // appears verified, renamed into place
				if err != nil || fi.Size() != size {
					return false
				}
				done = append(done, time.Since(start).Seconds())
				return true
			})
			if ctx.Err() != nil {
				t.Fatalf("%s: %d machines never got the package", set, len(left))
			}
			time.Sleep(50 * time.Millisecond)
		}
		return done, px.Egress() - before
	}

	without, sentWithout := wave("nopeer", "--no-peer")
	with, sentWith := wave("peer", "--peer-listen", "127.0.0.1:0")
	tWithout, tWith := without[len(without)-1], with[len(with)-1]
	res := Result{
		"machines":                   machines,
		"bytes":                      size,
		"storeMBps":                  peersStoreRate / 1e6,
		"withoutPeersSeconds":        round(tWithout, 2),
		"withPeersSeconds":           round(tWith, 2),
		"speedup":                    round(tWithout/tWith, 2),
		"storeEgressPackagesWithout": round(float64(sentWithout)/float64(size), 2),
		"storeEgressPackagesWith":    round(float64(sentWith)/float64(size), 2),
		"vmapp":                      fmt.Sprintf("with peers: %d machines in %.1f s, store sent %.2f packages", machines, tWith, float64(sentWith)/float64(size)),
		"baseline":                   fmt.Sprintf("--no-peer: %.1f s, store sent %.2f packages", tWithout, float64(sentWithout)/float64(size)),
		"ratio":                      round(tWithout/tWith, 2),
		"notes":                      fmt.Sprintf("%d MiB to %d agents, store capped at %.0f MB/s; ratio is the speed-up (goal 5), results/peers-convergence.png", size>>20, machines, peersStoreRate/1e6),
	}
	report.Scenarios["peers"] = res
	t.Logf("%v", res)
	curve := func(done []float64) (xs, ys []float64) {
		xs, ys = []float64{0}, []float64{0}
		for i, s := range done {
			xs, ys = append(xs, s), append(ys, float64(i+1))
		}
		return xs, ys
	}
	wx, wy := curve(with)
	nx, ny := curve(without)
	if err := writePlot(filepath.Join("results", "peers-convergence.png"), fmt.Sprintf("%d machines take %d MiB, store at %.0f MB/s", machines, size>>20, peersStoreRate/1e6),
		"seconds after the version was given", "machines holding the package", []series{
			{name: "with peers", xs: wx, ys: wy, color: plotBlue, step: true},
			{name: "--no-peer", xs: nx, ys: ny, color: plotOrange, step: true},
		}, func(p *plot.Plot) { p.Y.Min = 0 }); err != nil {
		t.Fatal(err)
	}
}
