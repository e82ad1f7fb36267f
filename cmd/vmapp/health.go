package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
)

// healthTimeout bounds the health check of one node.
const healthTimeout = 10 * time.Second

// healthCmd asks every node of --server whether it serves, through the
// gRPC health service (open to callers without a token): the check a
// container's health check or a load balancer makes. A cluster node says
// NOT_SERVING while it knows no leader.
func (c *cli) healthCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "Check that every vmappd of --server serves (exit 1 if one does not)",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			servers, err := client.Servers(c.server)
			if err != nil {
				return usagef("--server: %v", err)
			}
			o, err := c.options()
			if err != nil {
				return err
			}
			type node struct {
				Server string `json:"server"`
				Status string `json:"status"`
			}
			var nodes []node
			var down []string
			for _, s := range servers {
				st := c.health(s, o)
				nodes = append(nodes, node{s, st})
				if st != healthpb.HealthCheckResponse_SERVING.String() {
					down = append(down, s)
				}
			}
			if c.structured() {
				err = c.printIndented(nodes)
			} else {
				t := newTable(c.stdout, "SERVER", "STATUS")
				for _, n := range nodes {
					t.row(n.Server, n.Status)
				}
				err = t.flush()
			}
			if err == nil && len(down) > 0 {
				err = runError{errs.New(errs.Unavailable, "server", "not serving: %s", strings.Join(down, ", "))}
			}
			return err
		},
	}
}

// health is the health status of the vmappd at addr, or the error that
// kept it from answering.
func (c *cli) health(addr string, o client.Options) string {
	cl, err := client.New(addr, o)
	if err != nil {
		return err.Error()
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(c.ctx, healthTimeout)
	defer cancel()
	r, err := healthpb.NewHealthClient(cl.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err.Error()
	}
	return r.Status.String()
}
