//go:build linux

package testnet_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/internal/testkit/testnet"
)

// TestNet: a host of a test network reads 1 MiB from a server of the
// root namespace listening on RootIP, across the bridge and its shaped
// link, whose counters count it; namespaces a run killed left behind
// (by the name prefix and a process gone) are removed, and the network's
// own when the test ends.
func TestNet(t *testing.T) {
	const size = 1 << 20
	var names []string
	t.Run("read", func(t *testing.T) {
		n := testnet.New(t)
		h := n.AddHost(testnet.Shape{Rate: "200mbit", Burst: "256kb", Latency: "50ms"})
		names = append(names, h.Name)
		l, err := net.Listen("tcp", n.RootIP()+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write(bytes.Repeat([]byte{'x'}, size))
			c.Close()
		}()
		_, port, _ := net.SplitHostPort(l.Addr().String())
		out, err := h.Command("bash", "-c", fmt.Sprintf("cat < /dev/tcp/%s/%s | wc -c", n.RootIP(), port)).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != strconv.Itoa(size) {
			t.Fatalf("the host read %s bytes, want %d", got, size)
		}
		_, rx, err := h.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if rx < size {
			t.Fatalf("the host's link received %d bytes, fewer than the %d read", rx, size)
		}
	})
	if len(names) == 0 {
		return // skipped
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); bytes.Contains(out, []byte(names[0])) {
		t.Fatalf("namespace %s is left after its test:\n%s", names[0], out)
	}

	// A namespace of a process gone (no such pid) is removed; one of a
	// process that runs (this one) is not.
	dead := 1 << 22 // above pid_max's largest value
	if _, err := os.Stat(fmt.Sprint("/proc/", dead)); err == nil {
		t.Skip("pid", dead, "exists")
	}
	staleNS := fmt.Sprintf("%s%d-br", testnet.NetnsPrefix, dead)
	liveNS := fmt.Sprintf("%s%d-x", testnet.NetnsPrefix, os.Getpid())
	for _, ns := range []string{staleNS, liveNS} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	defer exec.Command("ip", "netns", "del", liveNS).Run()
	testnet.RemoveStale(t)
	out, _ := exec.Command("ip", "netns", "list").Output()
	if bytes.Contains(out, []byte(staleNS)) || !bytes.Contains(out, []byte(liveNS)) {
		t.Fatalf("after RemoveStale:\n%s", out)
	}
}
