package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// completionTimeout bounds the calls a completion makes, so that a
// <Tab> against a vmappd that doesn't answer gives up rather than hangs.
const completionTimeout = 5 * time.Second

// completionPage is how many names a completion asks vmappd for: one
// page, enough to pick from.
const completionPage = 200

// lister lists names of one kind, reading the flags it needs (--gallery,
// --app) from cmd.
type lister func(ctx context.Context, c *cli, cmd *cobra.Command) ([]string, error)

// completeNames makes the shell complete the names commands take, by
// asking vmappd with the user's connection flags: galleries (--gallery and
// the gallery commands' NAME), applications (--app with --gallery, and
// the app commands' NAME), versions (the version commands' VERSION) and
// machines (--vm and the vm commands' NAME).
func (c *cli) completeNames(root *cobra.Command) {
	walk(root, func(cmd *cobra.Command) {
		fl := cmd.Flags()
		if fl.Lookup("gallery") != nil {
			_ = cmd.RegisterFlagCompletionFunc("gallery", c.complete(galleryNames))
			if fl.Lookup("app") != nil {
				_ = cmd.RegisterFlagCompletionFunc("app", c.complete(appNames))
			}
		}
		if fl.Lookup("vm") != nil {
			_ = cmd.RegisterFlagCompletionFunc("vm", c.complete(machineNames))
		}
		if cmd.ValidArgsFunction == nil && cmd.HasParent() {
			if l := positionalLister(cmd); l != nil {
				names := c.complete(l)
				cmd.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
					if len(args) > 0 { // the name is given: nothing more to complete
						return nil, cobra.ShellCompDirectiveNoFileComp
					}
					return names(cmd, args, toComplete)
				}
			}
		}
	})
}

// positionalLister is the lister of cmd's first argument, from its group and
// its use line: gallery show NAME, app delete --gallery G NAME, ...
func positionalLister(cmd *cobra.Command) lister {
	use := strings.Fields(cmd.Use)
	var arg string
	for _, w := range use[1:] {
		if w == "NAME" || strings.HasPrefix(w, "VERSION") {
			arg = w
			break
		}
		if !strings.HasPrefix(w, "-") && !strings.HasPrefix(w, "[") && strings.ToUpper(w) != w {
			return nil
		}
	}
	if arg == "" || cmd.Name() == "create" {
		return nil
	}
	switch cmd.Parent().Name() {
	case "gallery":
		return galleryNames
	case "app":
		if cmd.Parent().HasParent() && cmd.Parent().Parent().HasParent() {
			return nil // vm app, vmss app
		}
		return appNames
	case "version":
		return versionNames
	case "vm":
		return machineNames
	}
	return nil
}

// complete is the completion function of l: the names that start with
// what is typed, and no file names; an error is reported to the shell's
// debug log, not printed over the command line.
func (c *cli) complete(l lister) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		ctx, cancel := context.WithTimeout(c.ctx, completionTimeout)
		defer cancel()
		names, err := l(ctx, c, cmd)
		if err != nil {
			cobra.CompDebugln("vmapp: "+err.Error(), true)
			return nil, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
		}
		var out []string
		for _, n := range names {
			if strings.HasPrefix(n, toComplete) {
				out = append(out, n)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func galleryNames(ctx context.Context, c *cli, _ *cobra.Command) ([]string, error) {
	cl, err := c.connect()
	if err != nil {
		return nil, err
	}
	r, err := cl.Catalog.ListGalleries(ctx, &pb.ListGalleriesRequest{PageSize: completionPage})
	return namesOf(r.GetGalleries(), err)
}

func appNames(ctx context.Context, c *cli, cmd *cobra.Command) ([]string, error) {
	gallery, _ := cmd.Flags().GetString("gallery")
	if gallery == "" {
		return nil, nil
	}
	cl, err := c.connect()
	if err != nil {
		return nil, err
	}
	r, err := cl.Catalog.ListApplications(ctx, &pb.ListApplicationsRequest{Gallery: gallery, PageSize: completionPage})
	return namesOf(r.GetApplications(), err)
}

func versionNames(ctx context.Context, c *cli, cmd *cobra.Command) ([]string, error) {
	gallery, _ := cmd.Flags().GetString("gallery")
	app, _ := cmd.Flags().GetString("app")
	if gallery == "" || app == "" {
		return nil, nil
	}
	cl, err := c.connect()
	if err != nil {
		return nil, err
	}
	r, err := cl.Catalog.ListVersions(ctx, &pb.ListVersionsRequest{Gallery: gallery, Application: app, PageSize: completionPage})
	return namesOf(r.GetVersions(), err)
}

func machineNames(ctx context.Context, c *cli, _ *cobra.Command) ([]string, error) {
	cl, err := c.connect()
	if err != nil {
		return nil, err
	}
	r, err := fleetClient(cl).ListMachines(ctx, &pb.ListMachinesRequest{PageSize: completionPage})
	return namesOf(r.GetMachines(), err)
}

// namesOf are the names of a page of resources.
func namesOf[T interface{ GetName() string }](items []T, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	names := make([]string, len(items))
	for i, it := range items {
		names[i] = it.GetName()
	}
	return names, nil
}

// walk calls f on cmd and every command under it.
func walk(cmd *cobra.Command, f func(*cobra.Command)) {
	f(cmd)
	for _, s := range cmd.Commands() {
		walk(s, f)
	}
}
