//go:build linux

package testnet

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// NetnsPrefix starts the name of every network namespace and link a Net
// makes, followed by the test process's id: "vmtn<pid>-br", "vmtn<pid>-h3".
// New removes those of processes that no longer run (a run killed before
// its cleanup).
const NetnsPrefix = "vmtn"

// Net is a test network of Linux network namespaces: a bridge in a
// namespace of its own (so that no firewall of the root namespace, such as
// Docker's, sees the bridged traffic), the root namespace on it through a
// veth link (RootIP: servers the test runs itself listen there), and
// hosts, each in a namespace of its own on a veth link to the bridge
// whose both ends are shaped by tc's tbf (the host's sending and its
// receiving). It needs root and iproute2 (ip, tc): without them New skips
// the test, saying why. Everything it made is removed when the test ends.
type Net struct {
	t      testing.TB
	id     string // NetnsPrefix + pid
	br     string // the bridge's namespace
	subnet string // "10.213.K."
	hosts  int
}

// Host is a network namespace on the test network.
type Host struct {
	// Name is its namespace's name.
	Name string
	// IP is its address on the test network.
	IP string
	// Link is its end of its veth link to the bridge ("eth0").
	Link string
}

// Shape is tc's tbf parameters: rate, burst, latency, as tc writes them
// ("200mbit", "256kb", "50ms").
type Shape struct{ Rate, Burst, Latency string }

var staleNS = regexp.MustCompile(`^` + NetnsPrefix + `(\d+)-`)

// New makes a test network, removing what runs of processes now gone left.
func New(t testing.TB) *Net {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("network namespaces need iproute2: %s not found", tool)
		}
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("ip netns is not available: %v: %s", err, out)
	}
	RemoveStale(t)
	n := &Net{t: t, id: NetnsPrefix + strconv.Itoa(os.Getpid())}
	n.br = n.id + "-br"
	t.Cleanup(n.remove)
	// A /24 of 10.213/16 no address of the machine is in.
	addrs, _ := exec.Command("ip", "-o", "-4", "addr").CombinedOutput()
	for k := os.Getpid() % 200; ; k = (k + 1) % 250 {
		if s := fmt.Sprintf("10.213.%d.", k); !bytes.Contains(addrs, []byte(" "+s)) {
			n.subnet = s
			break
		}
	}
	if err := n.run("ip", "netns", "add", n.br); err != nil {
		t.Skipf("ip netns add: %v", err)
	}
	n.must("ip", "-n", n.br, "link", "set", "lo", "up")
	n.must("ip", "-n", n.br, "link", "add", "br0", "type", "bridge")
	n.must("ip", "-n", n.br, "link", "set", "br0", "up")
	n.must("ip", "link", "add", n.id, "type", "veth", "peer", "name", "up0", "netns", n.br)
	n.must("ip", "-n", n.br, "link", "set", "up0", "master", "br0", "up")
	n.must("ip", "addr", "add", n.RootIP()+"/24", "dev", n.id)
	n.must("ip", "link", "set", n.id, "up")
	return n
}

// RootIP is the root namespace's address on the test network.
func (n *Net) RootIP() string { return n.subnet + "1" }

// RootLink is the root namespace's end of its link to the bridge.
func (n *Net) RootLink() string { return n.id }

// AddHost makes a namespace on the test network whose link sends and
// receives at most as shape says (tbf on both of its ends).
func (n *Net) AddHost(shape Shape) *Host {
	n.t.Helper()
	i := n.hosts
	n.hosts++
	if i >= 240 {
		n.t.Fatal("a test network holds at most 240 hosts")
	}
	h := &Host{Name: fmt.Sprintf("%s-h%d", n.id, i), IP: fmt.Sprintf("%s%d", n.subnet, 10+i), Link: "eth0"}
	brEnd := fmt.Sprintf("h%d", i)
	n.must("ip", "netns", "add", h.Name)
	n.must("ip", "-n", h.Name, "link", "set", "lo", "up")
	n.must("ip", "-n", n.br, "link", "add", brEnd, "type", "veth", "peer", "name", h.Link, "netns", h.Name)
	n.must("ip", "-n", n.br, "link", "set", brEnd, "master", "br0", "up")
	n.must("ip", "-n", h.Name, "addr", "add", h.IP+"/24", "dev", h.Link)
	n.must("ip", "-n", h.Name, "link", "set", h.Link, "up")
	tbf := []string{"root", "tbf", "rate", shape.Rate, "burst", shape.Burst, "latency", shape.Latency}
	n.must("tc", append([]string{"-n", h.Name, "qdisc", "add", "dev", h.Link}, tbf...)...)
	n.must("tc", append([]string{"-n", n.br, "qdisc", "add", "dev", brEnd}, tbf...)...)
	return h
}

// Command is exec.Command of name in h's namespace (ip netns exec, which
// execs it: the process is name's).
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// Bytes returns what h's link sent and received so far (its counters).
func (h *Host) Bytes() (tx, rx int64, err error) { return linkBytes(h.Name, h.Link) }

// RootBytes returns what the root namespace's link sent to the test
// network and received from it so far.
func (n *Net) RootBytes() (tx, rx int64, err error) { return linkBytes("", n.id) }

// linkBytes reads a link's counters in namespace ns ("": the root's) from
// the namespace's own sysfs (ip netns exec mounts it).
func linkBytes(ns, link string) (tx, rx int64, err error) {
	cmd := []string{"cat", "/sys/class/net/" + link + "/statistics/tx_bytes", "/sys/class/net/" + link + "/statistics/rx_bytes"}
	if ns != "" {
		cmd = append([]string{"ip", "netns", "exec", ns}, cmd...)
	}
	out, err := exec.Command(cmd[0], cmd[1:]...).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %v", strings.Join(cmd, " "), err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("%s: %q", strings.Join(cmd, " "), out)
	}
	tx, _ = strconv.ParseInt(f[0], 10, 64)
	rx, _ = strconv.ParseInt(f[1], 10, 64)
	return tx, rx, nil
}

func (n *Net) run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (n *Net) must(name string, args ...string) {
	n.t.Helper()
	if err := n.run(name, args...); err != nil {
		n.t.Fatal(err)
	}
}

// remove ends the processes left in the namespaces and deletes them
// (with them their links, and so the root's).
func (n *Net) remove() {
	for i := n.hosts - 1; i >= 0; i-- {
		removeNS(fmt.Sprintf("%s-h%d", n.id, i))
	}
	removeNS(n.br)
	exec.Command("ip", "link", "del", n.id).Run() // gone with the bridge's namespace already, normally
}

// removeNS kills what still runs in namespace ns, then deletes it.
func removeNS(ns string) {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	exec.Command("ip", "netns", "del", ns).Run()
}

// RemoveStale deletes the namespaces (with the processes in them) and
// root links a Net of a process that no longer runs left behind.
func RemoveStale(t testing.TB) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	gone := func(pid string) bool {
		_, err := os.Stat("/proc/" + pid)
		return os.IsNotExist(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if m := staleNS.FindStringSubmatch(f[0]); m != nil && gone(m[1]) {
			t.Logf("removing network namespace %s, left by process %s", f[0], m[1])
			removeNS(f[0])
		}
	}
	links, _ := exec.Command("ip", "-o", "link", "show").Output()
	root := regexp.MustCompile(`^\d+: (` + NetnsPrefix + `(\d+))[@:]`)
	for _, line := range strings.Split(string(links), "\n") {
		if m := root.FindStringSubmatch(line); m != nil && gone(m[2]) {
			exec.Command("ip", "link", "del", m[1]).Run()
		}
	}
}
