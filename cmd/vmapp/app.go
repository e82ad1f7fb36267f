package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

type appT = *pb.GalleryApplication

// appFields are the flags that set application properties.
var appFields = []field[appT]{
	stringField("location", "location", func(a appT, v string) { a.Location = v }),
	{"os", "supported_os_type", func(a appT, fs *pflag.FlagSet) error {
		v, err := fs.GetString("os")
		if err != nil {
			return err
		}
		if a.SupportedOsType, err = parseOS(v); err != nil {
			return err
		}
		return nil
	}},
	stringField("description", "description", func(a appT, v string) { a.Description = v }),
	stringField("eula", "eula", func(a appT, v string) { a.Eula = v }),
	stringField("privacy-statement-uri", "privacy_statement_uri", func(a appT, v string) { a.PrivacyStatementUri = v }),
	stringField("release-note-uri", "release_note_uri", func(a appT, v string) { a.ReleaseNoteUri = v }),
	dateField("end-of-life", "end_of_life_date", func(a appT, v *timestamppb.Timestamp) { a.EndOfLifeDate = v }),
}

func init() {
	appFields = append(appFields, customActionFields("custom_actions", func(a appT, as []*pb.GalleryApplicationCustomAction) { a.CustomActions = as })...)
}

// parseOS maps --os, in any case, to Azure's supportedOSType values.
func parseOS(s string) (string, error) {
	switch strings.ToLower(s) {
	case "linux":
		return "Linux", nil
	case "windows":
		return "Windows", nil
	}
	return "", usagef("--os %q: must be linux or windows", s)
}

func addAppFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("os", "", "supported OS type: linux or windows (immutable)")
	f.String("location", "", "region of the application (immutable; default: the gallery's location)")
	f.String("description", "", "description of the application")
	f.String("eula", "", "end user license agreement")
	f.String("privacy-statement-uri", "", "URI of the privacy statement")
	f.String("release-note-uri", "", "URI of the release notes")
	f.String("end-of-life", "", "end-of-life date, e.g. 2027-01-31 (for reference only; \"\" clears it on update)")
	addCustomActionFlags(f)
}

func galleryFlag(cmd *cobra.Command, v *string) {
	cmd.Flags().StringVarP(v, "gallery", "g", "", "gallery name (required)")
	_ = cmd.MarkFlagRequired("gallery")
}

func (c *cli) appCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "app",
		Aliases: []string{"application", "applications", "apps"},
		Short:   "Manage applications (Microsoft.Compute/galleries/applications)",
		RunE:    group,
	}

	var gallery string
	create := &cobra.Command{
		Use:   "create --gallery G NAME --os linux|windows [flags]",
		Short: "Create an application",
		Example: `  vmapp app create --gallery mygallery myapp --os linux \
      --description 'my app' --end-of-life 2027-01-31`,
		Args: args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			a := &pb.GalleryApplication{Gallery: gallery, Name: args[0]}
			if _, err := applyFlags(a, cmd.Flags(), appFields); err != nil {
				return err
			}
			if a.Location == "" {
				g, err := cl.Catalog.GetGallery(c.ctx, &pb.GetGalleryRequest{Gallery: gallery})
				if err != nil {
					return err
				}
				a.Location = g.Gallery.GetLocation()
			}
			r, err := cl.Catalog.CreateApplication(c.ctx, &pb.CreateApplicationRequest{Application: a})
			if err != nil {
				return err
			}
			return c.printApp(r.Application)
		}),
	}
	galleryFlag(create, &gallery)
	addAppFlags(create)
	_ = create.MarkFlagRequired("os")

	show := &cobra.Command{
		Use:   "show --gallery G NAME",
		Short: "Show an application",
		Args:  args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := cl.Catalog.GetApplication(c.ctx, &pb.GetApplicationRequest{Gallery: gallery, Application: args[0]})
			if err != nil {
				return err
			}
			return c.printApp(r.Application)
		}),
	}
	galleryFlag(show, &gallery)

	var page pageFlags
	list := &cobra.Command{
		Use:   "list --gallery G [--top N] [--skip-token TOKEN]",
		Short: "List the applications of a gallery",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			items, next, err := listAll(cmd, &page, func(size int32, token string) ([]appT, string, error) {
				r, err := cl.Catalog.ListApplications(c.ctx, &pb.ListApplicationsRequest{Gallery: gallery, PageSize: size, PageToken: token})
				return r.GetApplications(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			if c.structured() {
				return printJSONList(c, items, next)
			}
			t := newTable(c.stdout, "NAME", "OS", "LOCATION", "STATE", "END-OF-LIFE", "DESCRIPTION")
			for _, a := range items {
				t.row(a.Name, a.SupportedOsType, a.Location, a.ProvisioningState, formatDate(a.EndOfLifeDate), a.Description)
			}
			err = t.flush()
			printNextToken(c.stdout, next)
			return err
		}),
	}
	galleryFlag(list, &gallery)
	page.add(list)

	var ifMatch string
	update := &cobra.Command{
		Use:   "update --gallery G NAME [flags]",
		Short: "Update the properties of an application given as flags",
		Long: `Update an application. Only the properties given as flags are sent (the
update mask); vmappd refuses changes to immutable ones (--os, --location).`,
		Args: args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			a := &pb.GalleryApplication{Gallery: gallery, Name: args[0]}
			paths, err := applyFlags(a, cmd.Flags(), appFields)
			if err != nil {
				return err
			}
			if len(paths) == 0 {
				return usagef("nothing to update: give at least one of %s", flagNames(appFields))
			}
			r, err := cl.Catalog.UpdateApplication(c.ctx, &pb.UpdateApplicationRequest{
				Application: a, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}, IfMatch: ifMatch,
			})
			if err != nil {
				return err
			}
			return c.printApp(r.Application)
		}),
	}
	galleryFlag(update, &gallery)
	addAppFlags(update)
	ifMatchFlag(update, &ifMatch)

	var delIfMatch string
	var cascade bool
	del := &cobra.Command{
		Use:   "delete --gallery G NAME [--cascade] [--if-match ETAG]",
		Short: "Delete an application",
		Long: `Delete an application. An application that has versions can only be
deleted with --cascade, which deletes them too.`,
		Args: args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := cl.Catalog.DeleteApplication(c.ctx, &pb.DeleteApplicationRequest{
				Gallery: gallery, Application: args[0], IfMatch: delIfMatch, Cascade: cascade,
			})
			if err != nil {
				return err
			}
			if c.structured() {
				return c.printJSON(r.Application)
			}
			return printDeleted(c.stdout, "Application", gallery+"/"+args[0], r.GetApplication().GetProvisioningState())
		}),
	}
	galleryFlag(del, &gallery)
	ifMatchFlag(del, &delIfMatch)
	del.Flags().BoolVar(&cascade, "cascade", false, "also delete the application's versions")

	cmd.AddCommand(create, show, list, update, del)
	return cmd
}

func (c *cli) printApp(a *pb.GalleryApplication) error {
	if c.structured() {
		return c.printJSON(a)
	}
	d := newDetails(c.stdout)
	d.add("Name", a.Name)
	d.add("Gallery", a.Gallery)
	d.add("Location", a.Location)
	d.add("Supported OS type", a.SupportedOsType)
	d.add("Description", a.Description)
	d.add("EULA", a.Eula)
	d.add("Privacy statement URI", a.PrivacyStatementUri)
	d.add("Release note URI", a.ReleaseNoteUri)
	d.add("End of life", formatDate(a.EndOfLifeDate))
	d.add("Provisioning state", a.ProvisioningState)
	d.add("Tenant", a.Tenant)
	d.add("Etag", a.Etag)
	d.add("Created", formatTime(a.CreateTime))
	d.add("Updated", formatTime(a.UpdateTime))
	return d.flush()
}
