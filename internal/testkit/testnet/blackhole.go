package testnet

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Blackholer makes a loopback server vanish without a word, as a killed
// container's address or a pulled cable does: its packets are dropped
// both ways (iptables), so a connection to it gets neither data nor a
// reset, only silence. It needs root and iptables: without them the test
// is skipped, saying so.
type Blackholer struct {
	t     *testing.T
	mu    sync.Mutex
	rules [][]string
}

// NewBlackholer checks that the packets of a test can be dropped. Call it
// before the test starts the work it will cut.
func NewBlackholer(t *testing.T) *Blackholer {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("blackholing a server needs root (iptables)")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("blackholing a server needs iptables: not found")
	}
	if out, err := exec.Command("iptables", "-w", "-L", "INPUT", "-n").CombinedOutput(); err != nil {
		t.Skipf("iptables can't list INPUT: %v: %s", err, out)
	}
	b := &Blackholer{t: t}
	t.Cleanup(b.restore)
	return b
}

// Drop drops every packet to and from addr (host:port on loopback) from
// now until the test ends. It may be called from any goroutine.
func (b *Blackholer) Drop(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	for _, dir := range []string{"--dport", "--sport"} {
		rule := []string{"INPUT", "-i", "lo", "-p", "tcp", "-s", host, dir, port, "-j", "DROP"}
		if out, err := exec.Command("iptables", append([]string{"-w", "-I"}, rule...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables -I %s: %v: %s", strings.Join(rule, " "), err, out)
		}
		b.mu.Lock()
		b.rules = append(b.rules, rule)
		b.mu.Unlock()
	}
	return nil
}

func (b *Blackholer) restore() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, rule := range b.rules {
		if out, err := exec.Command("iptables", append([]string{"-w", "-D"}, rule...)...).CombinedOutput(); err != nil {
			b.t.Errorf("iptables -D %s: %v: %s", strings.Join(rule, " "), err, out)
		}
	}
}
