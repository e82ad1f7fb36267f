package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// galleryFields are the flags that set gallery properties.
var galleryFields = []field[*pb.Gallery]{
	stringField("location", "location", func(g *pb.Gallery, v string) { g.Location = v }),
	stringField("description", "description", func(g *pb.Gallery, v string) { g.Description = v }),
}

func addGalleryFlags(cmd *cobra.Command) {
	cmd.Flags().String("location", "", "region of the gallery (immutable)")
	cmd.Flags().String("description", "", "description of the gallery")
}

func (c *cli) galleryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "gallery",
		Aliases: []string{"galleries"},
		Short:   "Manage galleries (Microsoft.Compute/galleries)",
		RunE:    group,
	}
	create := &cobra.Command{
		Use:     "create NAME --location REGION [--description TEXT]",
		Short:   "Create a gallery",
		Example: "  vmapp gallery create mygallery --location eastus --description 'team apps'",
		Args:    args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			g := &pb.Gallery{Name: args[0]}
			if _, err := applyFlags(g, cmd.Flags(), galleryFields); err != nil {
				return err
			}
			r, err := cl.Catalog.CreateGallery(c.ctx, &pb.CreateGalleryRequest{Gallery: g})
			if err != nil {
				return err
			}
			return c.printGallery(r.Gallery)
		}),
	}
	addGalleryFlags(create)
	_ = create.MarkFlagRequired("location")

	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a gallery",
		Args:  args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := cl.Catalog.GetGallery(c.ctx, &pb.GetGalleryRequest{Gallery: args[0]})
			if err != nil {
				return err
			}
			return c.printGallery(r.Gallery)
		}),
	}

	var page pageFlags
	list := &cobra.Command{
		Use:   "list [--top N] [--skip-token TOKEN]",
		Short: "List galleries",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			items, next, err := listAll(cmd, &page, func(size int32, token string) ([]*pb.Gallery, string, error) {
				r, err := cl.Catalog.ListGalleries(c.ctx, &pb.ListGalleriesRequest{PageSize: size, PageToken: token})
				return r.GetGalleries(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			if c.structured() {
				return printJSONList(c, items, next)
			}
			t := newTable(c.stdout, "NAME", "LOCATION", "STATE", "DESCRIPTION")
			for _, g := range items {
				t.row(g.Name, g.Location, g.ProvisioningState, g.Description)
			}
			err = t.flush()
			printNextToken(c.stdout, next)
			return err
		}),
	}
	page.add(list)

	var ifMatch string
	update := &cobra.Command{
		Use:   "update NAME [--description TEXT] [--if-match ETAG]",
		Short: "Update the properties of a gallery given as flags",
		Long: `Update a gallery. Only the properties given as flags are sent (the update
mask); vmappd refuses changes to immutable ones such as --location.`,
		Args: args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			g := &pb.Gallery{Name: args[0]}
			paths, err := applyFlags(g, cmd.Flags(), galleryFields)
			if err != nil {
				return err
			}
			if len(paths) == 0 {
				return usagef("nothing to update: give at least one of %s", flagNames(galleryFields))
			}
			r, err := cl.Catalog.UpdateGallery(c.ctx, &pb.UpdateGalleryRequest{
				Gallery: g, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}, IfMatch: ifMatch,
			})
			if err != nil {
				return err
			}
			return c.printGallery(r.Gallery)
		}),
	}
	addGalleryFlags(update)
	ifMatchFlag(update, &ifMatch)

	var delIfMatch string
	var cascade bool
	del := &cobra.Command{
		Use:   "delete NAME [--cascade] [--if-match ETAG]",
		Short: "Delete a gallery",
		Long: `Delete a gallery. A gallery that holds applications can only be deleted
with --cascade, which deletes them and their versions too.`,
		Args: args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := cl.Catalog.DeleteGallery(c.ctx, &pb.DeleteGalleryRequest{Gallery: args[0], IfMatch: delIfMatch, Cascade: cascade})
			if err != nil {
				return err
			}
			if c.structured() {
				return c.printJSON(r.Gallery)
			}
			return printDeleted(c.stdout, "Gallery", args[0], r.GetGallery().GetProvisioningState())
		}),
	}
	ifMatchFlag(del, &delIfMatch)
	del.Flags().BoolVar(&cascade, "cascade", false, "also delete the gallery's applications and their versions")

	cmd.AddCommand(create, show, list, update, del, c.trustCmd())
	cmd.AddCommand(c.shareCmds()...)
	return cmd
}

func (c *cli) printGallery(g *pb.Gallery) error {
	if c.structured() {
		return c.printJSON(g)
	}
	d := newDetails(c.stdout)
	d.add("Name", g.Name)
	d.add("Location", g.Location)
	d.add("Description", g.Description)
	d.add("Provisioning state", g.ProvisioningState)
	d.add("Tenant", g.Tenant)
	d.add("Etag", g.Etag)
	d.add("Created", formatTime(g.CreateTime))
	d.add("Updated", formatTime(g.UpdateTime))
	return d.flush()
}

// printDeleted reports a delete in table mode.
func printDeleted(w io.Writer, kind, name, state string) error {
	if state == "" {
		state = "Deleted"
	}
	_, err := fmt.Fprintf(w, "%s '%s': %s\n", kind, name, state)
	return err
}
