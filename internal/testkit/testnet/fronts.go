package testnet

import (
	"net"
	"strings"
	"sync"
	"testing"
)

// Fronts puts a counting proxy in front of each store endpoint a test
// cluster starts (as its Front option): on host (an IP), capped at
// bytesPerSec (0: no cap), closed when the test ends.
type Fronts struct {
	t      testing.TB
	host   string
	rate   int64
	region string

	mu      sync.Mutex
	proxies []*Proxy
}

// NewFronts returns Fronts whose Egress counts region's endpoints.
func NewFronts(t testing.TB, host string, bytesPerSec int64, region string) *Fronts {
	return &Fronts{t: t, host: host, rate: bytesPerSec, region: region}
}

// Front is a test cluster's Front: the URL of a new proxy to endpoint.
func (f *Fronts) Front(region string, _ int, endpoint string) string {
	p, err := NewProxyOn(net.JoinHostPort(f.host, "0"), strings.TrimPrefix(endpoint, "http://"), f.rate)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { p.Close() })
	if region == f.region {
		f.mu.Lock()
		f.proxies = append(f.proxies, p)
		f.mu.Unlock()
	}
	return "http://" + p.Addr()
}

// Egress is the bytes the region's endpoints sent through their proxies.
func (f *Fronts) Egress() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := int64(0)
	for _, p := range f.proxies {
		n += p.Egress()
	}
	return n
}
