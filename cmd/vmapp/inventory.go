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
	var app, region, state, version, scaleSet string
	var page pageFlags
	cmd := &cobra.Command{
		Use:   "inventory [--app [GALLERY/]APPLICATION] [--version V] [--region REGION] [--vmss S] [--state STATE] [--top N] [--skip-token TOKEN]",
		Short: "List the applications on every machine, as their agents reported them",
		Long: `List the applications on every machine as their agents last reported them:
MACHINE REGION VMSS APPLICATION VERSION STATE EXIT UPDATED. The filters
combine; --state is one of ` + strings.Join(pb.AppStates, ", ") + `.
-o json prints {"value": [...]} of inventory entries. --top N lists at
most N entries and prints the token to continue from with --skip-token.`,
		Example: `  vmapp inventory --state failed
  vmapp inventory --app g1/myapp --region eastus
  vmapp inventory --app g1/myapp --version 1.0.1 --vmss web`,
		Args: args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			st, err := parseState(state)
			if err != nil {
				return err
			}
			entries, next, err := listAll(cmd, &page, func(size int32, token string) ([]*pb.InventoryEntry, string, error) {
				r, err := fleetClient(cl).ListInventory(c.ctx, &pb.ListInventoryRequest{Application: app, Region: region, State: st,
					Version: version, ScaleSet: scaleSet, PageSize: size, PageToken: token})
				return r.GetEntries(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			if c.structured() {
				return printJSONList(c, entries, next)
			}
			t := newTable(c.stdout, "MACHINE", "REGION", "VMSS", "APPLICATION", "VERSION", "STATE", "EXIT", "UPDATED")
			for _, e := range entries {
				s := e.GetStatus()
				t.row(e.Machine, e.Region, e.ScaleSet, s.GetApplication(), s.GetVersion(), s.GetState(), formatExit(s), formatTime(statusTime(s)))
			}
			err = t.flush()
			printNextToken(c.stdout, next)
			return err
		}),
	}
	cmd.Flags().StringVar(&app, "app", "", "only this application: GALLERY/APPLICATION or APPLICATION")
	cmd.Flags().StringVar(&region, "region", "", "only machines in this region")
	cmd.Flags().StringVar(&version, "version", "", "only this version, as the agents reported it (exactly, e.g. 1.0.1)")
	cmd.Flags().StringVar(&scaleSet, "vmss", "", "only the instances of this scale set")
	cmd.Flags().StringVar(&state, "state", "", "only applications in this state, e.g. Failed")
	page.add(cmd)
	return cmd
}
