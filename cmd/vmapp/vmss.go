package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func (c *cli) vmssCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "vmss",
		Aliases: []string{"scaleset", "scalesets", "scale-set", "scale-sets"},
		Short:   "Manage virtual machine scale sets and their application profiles",
		Long: `Manage virtual machine scale sets. The applications in a scale set's profile
go to every instance (vmapp vm create --vmss NAME) along with the instance's
own.`,
		RunE: group,
	}

	var name, region, osType string
	create := &cobra.Command{
		Use:     "create --name NAME --region REGION --os linux|windows",
		Short:   "Create a scale set",
		Example: "  vmapp vmss create --name web --region eastus --os linux",
		Args:    maxOneArg(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			n, err := nameFlagOrArg(name, args)
			if err != nil {
				return err
			}
			os, err := parseOS(osType)
			if err != nil {
				return err
			}
			r, err := fleetClient(cl).CreateScaleSet(c.ctx, &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: n, Region: region, OsType: os}})
			if err != nil {
				return err
			}
			return c.printScaleSet(r.ScaleSet)
		}),
	}
	create.Flags().StringVar(&name, "name", "", "name of the scale set")
	create.Flags().StringVar(&region, "region", "", "region of the scale set and its instances (required)")
	create.Flags().StringVar(&osType, "os", "", "OS type of its instances: linux or windows (required)")
	_ = create.MarkFlagRequired("region")
	_ = create.MarkFlagRequired("os")

	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a scale set and its application profile",
		Args:  args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := fleetClient(cl).GetScaleSet(c.ctx, &pb.GetScaleSetRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return c.printScaleSet(r.ScaleSet)
		}),
	}

	var page pageFlags
	list := &cobra.Command{
		Use:   "list [--top N] [--skip-token TOKEN]",
		Short: "List scale sets",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			fl := fleetClient(cl)
			items, next, err := listAll(cmd, &page, func(size int32, token string) ([]*pb.ScaleSet, string, error) {
				r, err := fl.ListScaleSets(c.ctx, &pb.ListScaleSetsRequest{PageSize: size, PageToken: token})
				return r.GetScaleSets(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			if c.structured() {
				return printJSONList(c, items, next)
			}
			t := newTable(c.stdout, "NAME", "REGION", "OS", "INSTANCES", "APPLICATIONS")
			for _, ss := range items {
				t.row(ss.Name, ss.Region, ss.OsType, strconv.Itoa(int(ss.InstanceCount)), strconv.Itoa(len(ss.GetApplicationProfile().GetGalleryApplications())))
			}
			err = t.flush()
			printNextToken(c.stdout, next)
			return err
		}),
	}
	page.add(list)

	var cascade bool
	del := &cobra.Command{
		Use:   "delete NAME [--cascade]",
		Short: "Delete a scale set",
		Long: `Delete a scale set. One with instances can only be deleted with --cascade,
which deletes them too.`,
		Args: args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := fleetClient(cl).DeleteScaleSet(c.ctx, &pb.DeleteScaleSetRequest{Name: args[0], Cascade: cascade})
			if err != nil {
				return err
			}
			if c.structured() {
				return c.printJSON(r)
			}
			return printDeleted(c.stdout, "Scale set", args[0], "")
		}),
	}
	del.Flags().BoolVar(&cascade, "cascade", false, "also delete the scale set's instances")

	cmd.AddCommand(create, show, list, del, c.profileAppCmd(vmssTarget))
	return cmd
}

func (c *cli) printScaleSet(ss *pb.ScaleSet) error {
	if c.structured() {
		return c.printJSON(ss)
	}
	d := newDetails(c.stdout)
	d.add("Name", ss.Name)
	d.add("Region", ss.Region)
	d.add("OS type", ss.OsType)
	d.add("Instances", strconv.Itoa(int(ss.InstanceCount)))
	d.add("Profile etag", ss.GetApplicationProfile().GetEtag())
	d.add("Tenant", ss.Tenant)
	d.add("Etag", ss.Etag)
	d.add("Created", formatTime(ss.CreateTime))
	d.add("Updated", formatTime(ss.UpdateTime))
	if err := d.flush(); err != nil {
		return err
	}
	if len(ss.GetApplicationProfile().GetGalleryApplications()) == 0 {
		return nil
	}
	fmt.Fprintln(c.stdout)
	return writeProfileTable(c.stdout, ss.ApplicationProfile)
}
