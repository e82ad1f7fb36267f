package main

import (
	"strconv"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func (c *cli) regionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "region",
		Aliases: []string{"regions"},
		Short:   "List the regions vmappd replicates to",
		RunE:    group,
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the regions of vmappd's topology",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := cl.Catalog.ListRegions(c.ctx, &pb.ListRegionsRequest{})
			if err != nil {
				return err
			}
			if c.structured() {
				return printJSONList(c, r.Regions, "")
			}
			t := newTable(c.stdout, "NAME", "ENDPOINTS")
			for _, rg := range r.Regions {
				t.row(rg.Name, strconv.Itoa(int(rg.EndpointCount)))
			}
			return t.flush()
		}),
	}
	cmd.AddCommand(list)
	return cmd
}
