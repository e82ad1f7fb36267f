package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// parseState maps --state, in any case, to a state agents report.
func parseState(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	for _, st := range pb.AppStates {
		if strings.EqualFold(s, st) {
			return st, nil
		}
	}
	return "", usagef("--state %q: must be one of %s", s, strings.Join(pb.AppStates, ", "))
}

func (c *cli) inventoryCmd() *cobra.Command {
	var app, region, state string
	cmd := &cobra.Command{
		Use:   "inventory [--app [GALLERY/]APPLICATION] [--region REGION] [--state STATE]",
		Short: "List the applications on every machine, as their agents reported them",
		Long: `List the applications on every machine as their agents last reported them:
MACHINE REGION VMSS APPLICATION VERSION STATE EXIT UPDATED. The filters
combine; --state is one of ` + strings.Join(pb.AppStates, ", ") + `.
-o json prints {"value": [...]} of inventory entries.`,
		Example: `  vmapp inventory --state failed
  vmapp inventory --app g1/myapp --region eastus`,
		Args: args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			st, err := parseState(state)
			if err != nil {
				return err
			}
			r, err := fleetClient(cl).ListInventory(c.ctx, &pb.ListInventoryRequest{Application: app, Region: region, State: st})
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSONList(c.stdout, r.Entries, "")
			}
			t := newTable(c.stdout, "MACHINE", "REGION", "VMSS", "APPLICATION", "VERSION", "STATE", "EXIT", "UPDATED")
			for _, e := range r.Entries {
				s := e.GetStatus()
				t.row(e.Machine, e.Region, e.ScaleSet, s.GetApplication(), s.GetVersion(), s.GetState(), formatExit(s), formatTime(statusTime(s)))
			}
			return t.flush()
		}),
	}
	cmd.Flags().StringVar(&app, "app", "", "only this application: GALLERY/APPLICATION or APPLICATION")
	cmd.Flags().StringVar(&region, "region", "", "only machines in this region")
	cmd.Flags().StringVar(&state, "state", "", "only applications in this state, e.g. Failed")
	return cmd
}
