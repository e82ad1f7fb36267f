package client

import (
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
)

// A vmappd cluster is reached through any of its nodes: Servers parses
// "host:port[,host:port...]", and New spreads calls over the nodes
// (round robin, so agents' streams spread too) and retries a call a node
// couldn't take (Unavailable: down, cut off from the majority, or between
// leaders) on another. A single name that resolves to several addresses
// ("dns:///vmappd.internal:7443") works the same way.

// serversScheme is the scheme of targets listing several nodes.
const serversScheme = "vmapp-servers"

// serviceConfig balances calls over the nodes and retries those a node
// refused as Unavailable, up to 5 attempts, on the others. Aborted (a
// write whose outcome is unknown) is not retried.
const serviceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{}],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// Servers splits a --server value into node addresses; each must be
// host:port.
func Servers(list string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "://") {
			if len(strings.Split(list, ",")) > 1 {
				return nil, fmt.Errorf("server %q: a target with a scheme can't be listed with others", s)
			}
			return []string{s}, nil
		}
		if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
			return nil, fmt.Errorf("server %q: want host:port", s)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no server address given")
	}
	return out, nil
}

// target is the gRPC target of a list of servers, and the dial options it
// needs.
func target(list string) (string, []grpc.DialOption, error) {
	servers, err := Servers(list)
	if err != nil {
		return "", nil, err
	}
	opts := []grpc.DialOption{grpc.WithDefaultServiceConfig(serviceConfig)}
	if len(servers) == 1 {
		return servers[0], opts, nil
	}
	return serversScheme + ":///" + strings.Join(servers, ","), append(opts, grpc.WithResolvers(serversBuilder{})), nil
}

// serversBuilder resolves "vmapp-servers:///a,b,c" to its addresses, each
// verified by TLS against its own host name.
type serversBuilder struct{}

func (serversBuilder) Scheme() string { return serversScheme }

func (serversBuilder) Build(t resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	var addrs []resolver.Address
	for _, s := range strings.Split(t.Endpoint(), ",") {
		host, _, _ := net.SplitHostPort(s)
		addrs = append(addrs, resolver.Address{Addr: s, ServerName: host})
	}
	return nopResolver{}, cc.UpdateState(resolver.State{Addresses: addrs})
}

type nopResolver struct{}

func (nopResolver) ResolveNow(resolver.ResolveNowOptions) {}
func (nopResolver) Close()                                {}
