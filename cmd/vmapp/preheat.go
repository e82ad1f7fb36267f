package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// preheatCmd is `vmapp version preheat`.
func (c *cli) preheatCmd(ref *versionRef) *cobra.Command {
	var region, scaleSet string
	var machines int32
	var cancel bool
	cmd := &cobra.Command{
		Use:   "preheat --gallery G --app A VERSION|latest --region R (--machines N | --vmss S | --cancel)",
		Short: "Have machines of a region fetch a version into their peer caches before a rollout",
		Long: `Have machines of a region fetch a version's package into their agents' peer
caches before a rollout, so that the rollout's machines read it from them
rather than from the region's store: N machines of the region (those whose
agents serve peers first, then by name), or the instances of a scale set in
the region (those that join later too). A preheat replaces the version's
preheat in the region; --cancel ends it. Agents that serve no peers
(without --peer-listen) ignore it. 'vmapp version show' reports the
progress: machines holding the package whole and verified / chosen.`,
		Args: args("VERSION"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			if !cancel && machines == 0 && scaleSet == "" {
				return usagef("give --machines N, --vmss S or --cancel")
			}
			r, err := pb.NewDownloadServiceClient(cl.Conn()).Preheat(c.ctx, &pb.PreheatRequest{Gallery: ref.gallery, Application: ref.app,
				Version: args[0], Region: region, Machines: machines, ScaleSet: scaleSet, Cancel: cancel})
			if err != nil {
				return err
			}
			if c.structured() {
				return c.printJSON(r)
			}
			if cancel {
				_, err = fmt.Fprintf(c.stdout, "Preheat of %s/%s/%s in %s cancelled.\n", ref.gallery, ref.app, args[0], region)
				return err
			}
			st := r.Status
			_, err = fmt.Fprintf(c.stdout, "Preheating %s/%s/%s in %s on %d machines: %s\n", ref.gallery, ref.app, args[0], st.Region, st.Wanted, strings.Join(st.Machines, ", "))
			return err
		}),
	}
	ref.add(cmd)
	cmd.Flags().StringVar(&region, "region", "", "the region whose machines fetch the version (required)")
	_ = cmd.MarkFlagRequired("region")
	cmd.Flags().Int32Var(&machines, "machines", 0, "how many machines of the region")
	cmd.Flags().StringVar(&scaleSet, "vmss", "", "a scale set: its instances in the region")
	cmd.Flags().StringVar(&scaleSet, "scale-set", "", "the same as --vmss")
	_ = cmd.Flags().MarkHidden("scale-set")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "end the version's preheat in the region")
	cmd.MarkFlagsMutuallyExclusive("machines", "vmss", "scale-set", "cancel")
	return cmd
}

// writePreheatTable prints a version's preheats: REGION MACHINES HOLDING
// IN REGION.
func writePreheatTable(c *cli, ps []*pb.PreheatStatus) error {
	t := newTable(c.stdout, "PREHEAT REGION", "CHOSEN", "HOLDING", "HOLDING IN REGION")
	for _, p := range ps {
		chosen := strings.Join(p.Machines, ",")
		if p.ScaleSet != "" {
			chosen = "scale set " + p.ScaleSet + ": " + chosen
		}
		t.row(p.Region, chosen, fmt.Sprintf("%d/%d", p.Holding, p.Wanted), fmt.Sprint(p.HoldingInRegion))
	}
	return t.flush()
}
