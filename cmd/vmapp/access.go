package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func accessClient(cl *client.Client) pb.AccessServiceClient {
	return pb.NewAccessServiceClient(cl.Conn())
}

// secretOut is where a new credential goes: a file created (mode 0600,
// never over an existing one) before the call that makes the credential,
// so that a bad path fails before anything is issued; or, without a path,
// table output only: secrets never go into -o json.
type secretOut struct {
	c          *cli
	path, flag string
	f          *os.File
}

// secretTo opens path (if any) for a credential; flag names the path's
// flag, for hints. A path that can't be created new is a usage error.
func (c *cli) secretTo(path, flag string) (*secretOut, error) {
	o := &secretOut{c: c, path: path, flag: flag}
	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return nil, usagef("%s %s: the file exists; a secret is never written over a file: name a new one", flag, path)
		}
		if err != nil {
			return nil, usagef("%s: %v", flag, err)
		}
		o.f = f
	}
	return o, nil
}

// discard removes the file when no credential came.
func (o *secretOut) discard() {
	if o.f != nil {
		o.f.Close()
		os.Remove(o.path)
		o.f = nil
	}
}

// save writes the credential what.
func (o *secretOut) save(what, secret string) error {
	c := o.c
	if o.f != nil {
		_, err := o.f.WriteString(secret + "\n")
		if cerr := o.f.Close(); err == nil {
			err = cerr
		}
		o.f = nil
		if err != nil {
			return fmt.Errorf("save the %s to %s: %w", what, o.path, err)
		}
		if !c.structured() {
			fmt.Fprintf(c.stdout, "%s saved to %s\n", what, o.path)
		}
		return nil
	}
	if c.structured() {
		fmt.Fprintf(c.stderr, "the %s is never printed in JSON output: pass %s to save it to a file\n", what, o.flag)
		return nil
	}
	_, err := fmt.Fprintf(c.stdout, "%s (shown once, keep it secret):\n%s\n", what, secret)
	return err
}

func (c *cli) whoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show the token this CLI calls vmappd with (never its secret)",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := accessClient(cl).WhoAmI(c.ctx, &pb.WhoAmIRequest{})
			if err != nil {
				return err
			}
			return c.printTokens(false, r.Token)
		}),
	}
}

func (c *cli) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "token",
		Aliases: []string{"tokens"},
		Short:   "Manage API tokens (Owner)",
		Long: `Manage the API tokens of the tenant: each has one role, Reader (read and
deploy), Contributor (publish) or Owner (manage access), on the whole tenant
or on one gallery. vmappd keeps only a hash of each secret: it is shown once,
when the token is created.

The CLI sends the token in VMAPP_TOKEN, or read from --token-file.`,
		RunE: group,
	}
	var name, role, gallery, file string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create --name NAME --role reader|contributor|owner [--gallery G] [--ttl D] [--secret-file F]",
		Short: "Create a token; its secret is shown (or saved) once",
		Example: `  vmapp token create --name 'release pipeline' --role contributor --gallery g1 --secret-file ci.token
  vmapp token create --name auditor --role reader --ttl 720h`,
		Args: args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r := &pb.CreateTokenRequest{Name: name, Gallery: gallery, TtlSeconds: int64(ttl / time.Second)}
			switch strings.ToLower(role) {
			case "reader":
				r.Role = pb.Role_ROLE_READER
			case "contributor":
				r.Role = pb.Role_ROLE_CONTRIBUTOR
			case "owner":
				r.Role = pb.Role_ROLE_OWNER
			default:
				return usagef("--role %q: must be reader, contributor or owner", role)
			}
			if ttl < 0 || ttl > 0 && ttl < time.Second {
				return usagef("--ttl %s: must be at least 1s (or 0: until revoked)", ttl)
			}
			out, err := c.secretTo(file, "--secret-file")
			if err != nil {
				return err
			}
			defer out.discard()
			resp, err := accessClient(cl).CreateToken(c.ctx, r)
			if err != nil {
				return err
			}
			if err := c.printTokens(false, resp.Token); err != nil {
				return err
			}
			return out.save("token", resp.Secret)
		}),
	}
	create.Flags().StringVar(&name, "name", "", "what the token is for")
	create.Flags().StringVar(&role, "role", "", "reader, contributor or owner")
	create.Flags().StringVar(&gallery, "gallery", "", "scope the role to this gallery (default: the whole tenant)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "how long the token works (default: until revoked)")
	create.Flags().StringVar(&file, "secret-file", "", "save the secret to this new file (mode 0600) instead of printing it")
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("role")

	var all bool
	var page pageFlags
	list := &cobra.Command{
		Use:   "list [--all] [--top N] [--skip-token TOKEN]",
		Short: "List the tenant's tokens",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			ts, next, err := listAll(cmd, &page, func(size int32, token string) ([]*pb.Token, string, error) {
				r, err := accessClient(cl).ListTokens(c.ctx, &pb.ListTokensRequest{All: all, PageSize: size, PageToken: token})
				return r.GetTokens(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			if c.structured() {
				return printJSONList(c, ts, next)
			}
			if err := c.printTokens(true, ts...); err != nil {
				return err
			}
			printNextToken(c.stdout, next)
			return nil
		}),
	}
	list.Flags().BoolVar(&all, "all", false, "include revoked, expired and machine tokens")
	page.add(list)

	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: it fails from the next call on",
		Args:  args("ID"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := accessClient(cl).RevokeToken(c.ctx, &pb.RevokeTokenRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.printTokens(false, r.Token)
		}),
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func (c *cli) printTokens(list bool, ts ...*pb.Token) error {
	if c.structured() {
		if list {
			return printJSONList(c, ts, "")
		}
		return c.printJSON(ts[0])
	}
	tb := newTable(c.stdout, "ID", "NAME", "ROLE", "SCOPE", "CREATED", "EXPIRES", "REVOKED")
	for _, t := range ts {
		tb.row(t.Id, t.Name, t.Role.Label(), t.Scope(), formatTime(t.CreateTime), orDash(t.ExpireTime), orDash(t.RevokeTime))
	}
	return tb.flush()
}

func orDash(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return formatTime(ts)
}

// shareCmds are the gallery subcommands that share galleries.
func (c *cli) shareCmds() []*cobra.Command {
	var with string
	var public bool
	grantee := func() (string, error) {
		switch {
		case public && with != "":
			return "", usagef("--with and --public: give one")
		case public:
			return pb.AllTenants, nil
		case with == "":
			return "", usagef("--with TENANT or --public is required")
		}
		return with, nil
	}
	share := &cobra.Command{
		Use:   "share NAME --with TENANT | --public",
		Short: "Let another tenant (or everyone) read the gallery and download its versions (Owner)",
		Args:  args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			g, err := grantee()
			if err != nil {
				return err
			}
			r, err := accessClient(cl).ShareGallery(c.ctx, &pb.ShareGalleryRequest{Gallery: args[0], Grantee: g})
			if err != nil {
				return err
			}
			return c.printShares(false, r.Share)
		}),
	}
	unshare := &cobra.Command{
		Use:   "unshare NAME --with TENANT | --public",
		Short: "Take a share of the gallery back (Owner)",
		Args:  args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			g, err := grantee()
			if err != nil {
				return err
			}
			_, err = accessClient(cl).UnshareGallery(c.ctx, &pb.UnshareGalleryRequest{Gallery: args[0], Grantee: g})
			return err
		}),
	}
	for _, cmd := range []*cobra.Command{share, unshare} {
		cmd.Flags().StringVar(&with, "with", "", "the tenant to share with")
		cmd.Flags().BoolVar(&public, "public", false, "share with every tenant")
	}
	shares := &cobra.Command{
		Use:   "shares [NAME]",
		Short: "List the tenant's gallery shares (Owner)",
		Args:  cobra.MaximumNArgs(1),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r := &pb.ListSharesRequest{}
			if len(args) == 1 {
				r.Gallery = args[0]
			}
			resp, err := accessClient(cl).ListShares(c.ctx, r)
			if err != nil {
				return err
			}
			return c.printShares(true, resp.Shares...)
		}),
	}
	return []*cobra.Command{share, unshare, shares}
}

func (c *cli) printShares(list bool, ss ...*pb.Share) error {
	if c.structured() {
		if list {
			return printJSONList(c, ss, "")
		}
		return c.printJSON(ss[0])
	}
	tb := newTable(c.stdout, "GALLERY", "SHARED WITH", "BY", "SINCE")
	for _, s := range ss {
		with := s.Grantee
		if with == pb.AllTenants {
			with = "everyone (public)"
		}
		tb.row(s.Gallery, with, s.CreatedBy, formatTime(s.CreateTime))
	}
	return tb.flush()
}
