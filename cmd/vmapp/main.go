// Command vmapp is the command-line client of vmappd: it publishes VM
// applications into galleries the way Azure's VM Applications do.
//
//	vmapp gallery create g1 --location eastus
//	vmapp app create --gallery g1 myapp --os linux
//	vmapp version create --gallery g1 --app myapp 1.0.0 --location eastus \
//	    --install 'sh install.sh' --remove 'sh remove.sh' --package app.tgz --wait
//	vmapp version watch --gallery g1 --app myapp 1.0.0
//	vmapp version repair --gallery g1 --app myapp 1.0.0 --deep
//	vmapp vm create --name vm1 --region eastus --os linux
//	vmapp vm app set --vm vm1 --app g1/myapp/latest --enable-automatic-upgrade
//	vmapp vm show vm1
//	vmapp inventory --state failed
//
// Exit status: 0 on success, 1 when vmappd (or a local file) refuses the
// request, 2 on a usage error, 130 when interrupted (Ctrl-C).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/jmespath-community/go-jmespath"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/client/download"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/buildinfo"
	"github.com/vmapp/vmapp/internal/tlsfiles"
)

const defaultServer = "127.0.0.1:7443"

// extraCommands are added to the root (man.go's gen-man, built with -tags man).
var extraCommands []*cobra.Command

func main() {
	download.RaiseProcsForDirectIO()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// cli holds the global flags and the connection of one invocation.
type cli struct {
	stdout, stderr io.Writer
	ctx            context.Context

	server   string
	tenant   string
	compress string
	output   string
	// queryText is --query; query, compiled.
	queryText string
	// contextName is --context: the configuration file's context to use
	// ("": its current one).
	contextName string
	query       jmespath.JMESPath
	// token is the credential: VMAPP_TOKEN, or read from tokenFile.
	token, tokenFile string

	ca, cert, key string // TLS: PEM files
	useTLS        bool

	client *client.Client
	// pollEvery is how often --wait of app set reads the machines' reports
	// (0: defaultPollEvery).
	pollEvery time.Duration
}

// usageError is a mistake on the command line: exit status 2.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// runError is a failure after the command line was understood: exit status 1.
type runError struct{ error }

func (e runError) Unwrap() error { return e.error }

// run executes vmapp with args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	// Ctrl-C cancels the call in flight (an upload resumes when run again);
	// a second one kills vmapp.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	context.AfterFunc(ctx, stop)
	c := &cli{stdout: stdout, stderr: stderr, ctx: ctx}
	defer func() {
		if c.client != nil {
			c.client.Close()
		}
	}()
	root := c.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if ctx.Err() != nil {
		// Ctrl-C: the shell's convention, 128 + SIGINT.
		fmt.Fprintln(stderr, "interrupted")
		return 130
	}
	if err == nil {
		return 0
	}
	var re runError
	if errors.As(err, &re) {
		class, msg := errs.ClassOf(re.error), re.error.Error()
		if fc, fmsg, ok := fileText(re.error); ok {
			class, msg = fc, fmsg
		}
		fmt.Fprintf(stderr, "error: %s: %s\n", class, msg)
		return 1
	}
	// A usageError of ours, or one of cobra's: unknown command or flag, bad
	// flag value, missing argument or required flag.
	fmt.Fprintf(stderr, "error: %s\n", err)
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return 2
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (c *cli) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:     "vmapp",
		Version: buildinfo.Get().String(),
		Short:   "Publish VM applications to vmappd galleries and deploy them to machines",
		Long: `vmapp manages galleries, applications and application versions on vmappd,
and uploads or imports their packages and configurations; it deploys them
through the application profiles of machines (vm) and scale sets (vmss), and
shows what the machines' agents report (vm show, inventory).

Exit status: 0 on success, 1 when the request fails, 2 on a usage error,
130 when interrupted (Ctrl-C).`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		Args:              cobra.NoArgs,
		RunE:              group,
		PersistentPreRunE: c.checkGlobals,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&c.server, "server", envOr("VMAPP_SERVER", defaultServer), "vmappd address host:port, or a cluster's nodes host:port,host:port,... (calls fail over between them) (env VMAPP_SERVER)")
	pf.StringVar(&c.tenant, "tenant", os.Getenv("VMAPP_TENANT"), "tenant to work in (env VMAPP_TENANT); empty: the token's tenant, or default for the operator's")
	pf.StringVar(&c.compress, "compress", "none", "wire compression of requests: none, zstd or s2")
	pf.StringVarP(&c.output, "output", "o", "table", "output format: table, json, yaml or tsv")
	pf.StringVar(&c.queryText, "query", "", "JMESPath query on the JSON output, as az's (e.g. 'value[].name'); the result is printed as -o says")
	pf.BoolVar(&c.useTLS, "tls", false, "connect over TLS, trusting the system's CAs (implied by --ca and --cert)")
	pf.StringVar(&c.ca, "ca", os.Getenv("VMAPP_CA"), "connect over TLS, trusting the CAs in this PEM file (env VMAPP_CA)")
	pf.StringVar(&c.cert, "cert", os.Getenv("VMAPP_CERT"), "PEM client certificate, for a vmappd that requires one; needs --key (env VMAPP_CERT)")
	pf.StringVar(&c.key, "key", os.Getenv("VMAPP_KEY"), "PEM private key of --cert (env VMAPP_KEY)")
	pf.StringVar(&c.tokenFile, "token-file", os.Getenv("VMAPP_TOKEN_FILE"), "file holding the API token (env VMAPP_TOKEN_FILE; or the token itself in VMAPP_TOKEN)")
	pf.StringVar(&c.contextName, "context", os.Getenv("VMAPP_CONTEXT"), "the context of the configuration file to use (env VMAPP_CONTEXT; default its current context; see 'vmapp config')")
	root.AddCommand(c.healthCmd(), c.configCmd())
	c.token = os.Getenv("VMAPP_TOKEN")
	root.AddCommand(c.galleryCmd(), c.appCmd(), c.versionCmd(), c.regionCmd(), c.vmCmd(), c.vmssCmd(), c.inventoryCmd(), c.tokenCmd(), c.whoamiCmd(), c.clusterCmd(), c.keyCmd(), c.rolloutCmd())
	root.AddCommand(extraCommands...)
	c.completeNames(root)
	addAliases(root)
	return root
}

// group is the RunE of commands that only hold subcommands.
func group(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return usagef("%q needs a subcommand", cmd.CommandPath())
}

func (c *cli) checkGlobals(cmd *cobra.Command, _ []string) error {
	if err := c.applyContext(cmd); err != nil {
		return err
	}
	if !slices.Contains(outputFormats, c.output) {
		return usagef("--output %q: must be table, json, yaml or tsv", c.output)
	}
	if err := c.compileQuery(); err != nil {
		return err
	}
	switch c.compress {
	case "none", "zstd", "s2":
	default:
		return usagef("--compress %q: must be none, zstd or s2", c.compress)
	}
	if c.server == "" {
		return usagef("--server is empty")
	}
	if (c.cert == "") != (c.key == "") {
		return usagef("--cert and --key go together (env VMAPP_CERT, VMAPP_KEY): give both or neither")
	}
	return nil
}

// connect dials vmappd (lazily: the first call makes the connection).
func (c *cli) connect() (*client.Client, error) {
	if c.client != nil {
		return c.client, nil
	}
	o, err := c.options()
	if err != nil {
		return nil, err
	}
	cl, err := client.New(c.server, o)
	if err != nil {
		return nil, err
	}
	c.client = cl
	return cl, nil
}

// options are the client options the global flags give.
func (c *cli) options() (client.Options, error) {
	comp := c.compress
	if comp == "none" {
		comp = ""
	}
	token := c.token
	if c.tokenFile != "" {
		var err error
		if token, err = client.ReadTokenFile(c.tokenFile); err != nil {
			return client.Options{}, usageError{fmt.Errorf("--token-file: %w", err)}
		}
	}
	o := client.Options{Tenant: c.tenant, Compressor: comp, Token: token}
	if c.useTLS || c.ca != "" || c.cert != "" {
		var err error
		if o.TLS, err = client.TLSConfig(c.ca, c.cert, c.key); err != nil {
			return client.Options{}, tlsFlagError(err)
		}
	}
	return o, nil
}

// tlsFlagError names the flag (--ca, --cert or --key) of a TLS file error.
func tlsFlagError(err error) error {
	var fe *tlsfiles.Error
	if errors.As(err, &fe) {
		return &errs.Error{Class: errs.InvalidArgument, Field: fe.What, Msg: tlsfiles.ClientFlags[fe.What] + " " + fe.File, Err: fe.Err}
	}
	return err
}

// action adapts the body of a command: it connects, and marks the errors the
// body returns as run errors (exit 1) unless they are usage errors.
func (c *cli) action(body func(cl *client.Client, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		cl, err := c.connect()
		if err == nil {
			err = body(cl, cmd, args)
		}
		var ue usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return runError{cascadeHint(c.explain(err), cmd, args)}
	}
}

// args checks the positional arguments: exactly the ones named.
func args(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usagef("missing argument %s", names[len(args)])
		case len(args) > len(names):
			return usagef("unexpected argument %q", args[len(names)])
		}
		return nil
	}
}

// field binds a flag to the message field it sets; path is the field's
// update_mask path.
type field[T any] struct {
	flag, path string
	set        func(m T, fs *pflag.FlagSet) error
}

// applyFlags sets the fields of m whose flags were given on the command line
// and returns their update_mask paths. Flags left out leave their fields
// unset, so the server applies its defaults.
func applyFlags[T any](m T, fs *pflag.FlagSet, fields []field[T]) ([]string, error) {
	var paths []string
	for _, f := range fields {
		if !fs.Changed(f.flag) {
			continue
		}
		if err := f.set(m, fs); err != nil {
			return nil, err
		}
		paths = append(paths, f.path)
	}
	return paths, nil
}

// flagNames lists the flags of fields, for messages.
func flagNames[T any](fields []field[T]) string {
	var s []string
	for _, f := range fields {
		s = append(s, "--"+f.flag)
	}
	return strings.Join(s, ", ")
}

func stringField[T any](flag, path string, set func(T, string)) field[T] {
	return field[T]{flag, path, func(m T, fs *pflag.FlagSet) error {
		v, err := fs.GetString(flag)
		set(m, v)
		return err
	}}
}

func boolField[T any](flag, path string, set func(T, bool)) field[T] {
	return field[T]{flag, path, func(m T, fs *pflag.FlagSet) error {
		v, err := fs.GetBool(flag)
		set(m, v)
		return err
	}}
}

// dateField parses a date (2027-01-31, midnight UTC) or an RFC 3339 time;
// "" clears the field.
func dateField[T any](flag, path string, set func(T, *timestamppb.Timestamp)) field[T] {
	return field[T]{flag, path, func(m T, fs *pflag.FlagSet) error {
		v, err := fs.GetString(flag)
		if err != nil {
			return err
		}
		ts, err := parseDate(v)
		if err != nil {
			return usagef("--%s %q: %v", flag, v, err)
		}
		set(m, ts)
		return nil
	}}
}

func parseDate(s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	for _, layout := range []string{time.DateOnly, time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return timestamppb.New(t), nil
		}
	}
	return nil, errors.New("want a date like 2027-01-31 or an RFC 3339 time like 2027-01-31T12:00:00Z")
}

// int32Flag reads an int32 flag as an optional value.
func int32Flag(fs *pflag.FlagSet, flag string) (*int32, error) {
	v, err := fs.GetInt32(flag)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// pageFlags are az's --top and --skip-token of list commands.
type pageFlags struct {
	top   int32
	token string
}

func (p *pageFlags) add(cmd *cobra.Command) {
	cmd.Flags().Int32Var(&p.top, "top", 0, "list at most this many items (following pages) and print the token to continue from")
	cmd.Flags().StringVar(&p.token, "skip-token", "", "continue a listing from the token an earlier --top printed")
	// Their names before, kept for scripts (listAll warns).
	cmd.Flags().Int32Var(&p.top, "page-size", 0, "")
	cmd.Flags().StringVar(&p.token, "page-token", "", "")
	_ = cmd.Flags().MarkHidden("page-size")
	_ = cmd.Flags().MarkHidden("page-token")
}

// warnOldPageFlags warns, on stderr, of --page-size and --page-token.
func warnOldPageFlags(cmd *cobra.Command) {
	for old, now := range map[string]string{"page-size": "top", "page-token": "skip-token"} {
		if cmd.Flags().Changed(old) {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: --%s is deprecated: use --%s\n", old, now)
		}
	}
}

// listAll calls fetch page after page, from --skip-token's (or the first),
// until the last page or, with --top N, N items; it returns the items and
// the token to continue from ("" after the last page).
func listAll[T any](cmd *cobra.Command, p *pageFlags, fetch func(size int32, token string) ([]T, string, error)) ([]T, string, error) {
	if (cmd.Flags().Changed("top") || cmd.Flags().Changed("page-size")) && p.top < 1 {
		return nil, "", usagef("--top %d: want at least 1", p.top)
	}
	warnOldPageFlags(cmd)
	var all []T
	token := p.token
	for {
		size := int32(0) // the server's default
		if p.top > 0 {
			size = p.top - int32(len(all)) // the server sends at most 1000
		}
		items, next, err := fetch(size, token)
		if err != nil {
			return nil, "", err
		}
		all = append(all, items...)
		if next == "" || next == token {
			return all, "", nil
		}
		if p.top > 0 && len(all) >= int(p.top) {
			return all, next, nil
		}
		token = next
	}
}

// ifMatchFlag adds --if-match.
func ifMatchFlag(cmd *cobra.Command, v *string) {
	cmd.Flags().StringVar(v, "if-match", "", "apply only if the resource's etag is still ETAG")
}
