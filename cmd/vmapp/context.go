package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/cliconfig"
)

// Contexts: the connection settings of the current context (or --context's)
// in the configuration file fill in what neither a flag nor an environment
// variable sets.

// noContext marks the commands that don't read a context (config ...),
// so that a broken file can still be mended with them.
const noContext = "vmapp-no-context"

// applyContext fills c's connection settings from the chosen context.
func (c *cli) applyContext(cmd *cobra.Command) error {
	for p := cmd; p != nil; p = p.Parent() {
		if _, ok := p.Annotations[noContext]; ok {
			return nil
		}
	}
	cfg, path, err := loadConfig()
	if err != nil {
		return err
	}
	ctx, _, err := cfg.Current(c.contextName)
	if err != nil {
		return runError{errs.New(errs.NotFound, "context", "%s: %v", path, err)}
	}
	if ctx == nil {
		return nil
	}
	fs := cmd.Flags()
	unset := func(flag string, envs ...string) bool {
		if fs.Changed(flag) {
			return false
		}
		for _, e := range envs {
			if os.Getenv(e) != "" {
				return false
			}
		}
		return true
	}
	for _, s := range []struct {
		flag, env string
		dst       *string
		v         string
	}{
		{"server", "VMAPP_SERVER", &c.server, ctx.Server},
		{"tenant", "VMAPP_TENANT", &c.tenant, ctx.Tenant},
		{"ca", "VMAPP_CA", &c.ca, ctx.CA},
		{"cert", "VMAPP_CERT", &c.cert, ctx.Cert},
		{"key", "VMAPP_KEY", &c.key, ctx.Key},
	} {
		if s.v != "" && unset(s.flag, s.env) {
			*s.dst = s.v
		}
	}
	// VMAPP_TOKEN (the token itself) overrides the context's file too.
	if ctx.TokenFile != "" && unset("token-file", "VMAPP_TOKEN_FILE", "VMAPP_TOKEN") {
		c.tokenFile = ctx.TokenFile
	}
	if ctx.TLS && unset("tls") {
		c.useTLS = true
	}
	return nil
}

func loadConfig() (*cliconfig.Config, string, error) {
	path, err := cliconfig.Path()
	if err != nil {
		return nil, "", runError{errs.New(errs.FailedPrecondition, "context", "%v", err)}
	}
	cfg, err := cliconfig.Load(path)
	if err != nil {
		return nil, path, runError{errs.New(errs.InvalidArgument, "context", "%v", err)}
	}
	return cfg, path, nil
}

func (c *cli) configCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Manage the contexts of the configuration file (servers, TLS files, token file, tenant)",
		Long: `A context is a named set of connection settings: --server, --tenant, --ca,
--cert, --key, --token-file and --tls. The current context (or --context
NAME, env VMAPP_CONTEXT) fills in those that neither a flag nor an
environment variable gives. The file is $XDG_CONFIG_HOME/vmapp/config.yaml
(~/.config/vmapp/config.yaml), mode 0600.`,
		Annotations: map[string]string{noContext: ""},
		RunE:        group,
	}
	var use bool
	set := &cobra.Command{
		Use:   "set-context NAME [--server ADDRS] [--tenant T] [--ca F] [--cert F --key F] [--token-file F] [--tls] [--use]",
		Short: "Create a context, or change the settings given of an existing one",
		Long: `Create a context from the connection flags given on this command line (not
from the environment), or change those of an existing one; files are stored
as absolute paths and must exist. --use makes it the current context.`,
		Example: `  vmapp config set-context prod --server vmappd-1:7443,vmappd-2:7443,vmappd-3:7443 \
      --ca /etc/vmapp/ca.pem --token-file ~/.config/vmapp/prod.token --use`,
		Args: args("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.setContext(cmd, args[0], use)
		},
	}
	set.Flags().BoolVar(&use, "use", false, "make it the current context")

	useCmd := &cobra.Command{
		Use:   "use-context NAME",
		Short: "Make a context the current one",
		Args:  args("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.editConfig(func(cfg *cliconfig.Config) (string, error) {
				if err := contextExists(cfg, args[0]); err != nil {
					return "", err
				}
				cfg.CurrentContext = args[0]
				return fmt.Sprintf("Switched to context '%s'.", args[0]), nil
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete-context NAME",
		Short: "Delete a context",
		Args:  args("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.editConfig(func(cfg *cliconfig.Config) (string, error) {
				if err := contextExists(cfg, args[0]); err != nil {
					return "", err
				}
				delete(cfg.Contexts, args[0])
				if cfg.CurrentContext == args[0] {
					cfg.CurrentContext = ""
				}
				return fmt.Sprintf("Deleted context '%s'.", args[0]), nil
			})
		},
	}
	get := &cobra.Command{
		Use:   "get-contexts",
		Short: "List the contexts (* marks the current one)",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig()
			if err != nil {
				return err
			}
			return c.printContexts(cfg)
		},
	}
	current := &cobra.Command{
		Use:   "current-context",
		Short: "Print the name of the current context",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, path, err := loadConfig()
			if err != nil {
				return err
			}
			if cfg.CurrentContext == "" {
				return runError{errs.New(errs.NotFound, "context", "%s sets no current context: 'vmapp config use-context NAME'", path)}
			}
			_, err = fmt.Fprintln(c.stdout, cfg.CurrentContext)
			return err
		},
	}
	cmd.AddCommand(set, useCmd, get, current, del)
	return cmd
}

func contextExists(cfg *cliconfig.Config, name string) error {
	if _, _, err := cfg.Current(name); err != nil {
		return errs.New(errs.NotFound, "context", "%v", err)
	}
	return nil
}

// editConfig loads the file, changes it with edit, saves it and prints
// edit's message.
func (c *cli) editConfig(edit func(*cliconfig.Config) (string, error)) error {
	cfg, path, err := loadConfig()
	if err != nil {
		return err
	}
	msg, err := edit(cfg)
	if err != nil {
		return runError{err}
	}
	if err := cfg.Save(path); err != nil {
		return runError{fmt.Errorf("save %s: %w", path, err)}
	}
	_, err = fmt.Fprintln(c.stdout, msg)
	return err
}

// setContext is config set-context.
func (c *cli) setContext(cmd *cobra.Command, name string, use bool) error {
	fs := cmd.Flags()
	var given []string
	for _, f := range []string{"server", "tenant", "ca", "cert", "key", "token-file", "tls"} {
		if fs.Changed(f) {
			given = append(given, f)
		}
	}
	if len(given) == 0 && !use {
		return usagef("give at least one of --server, --tenant, --ca, --cert, --key, --token-file, --tls or --use")
	}
	if fs.Changed("server") {
		if _, err := client.Servers(c.server); err != nil {
			return usagef("--server: %v", err)
		}
	}
	files := map[string]*string{"ca": &c.ca, "cert": &c.cert, "key": &c.key, "token-file": &c.tokenFile}
	for flag, p := range files {
		if !fs.Changed(flag) || *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			return usagef("--%s: %v", flag, err)
		}
		*p = abs
	}
	return c.editConfig(func(cfg *cliconfig.Config) (string, error) {
		if cfg.Contexts == nil {
			cfg.Contexts = map[string]*cliconfig.Context{}
		}
		ctx, ok := cfg.Contexts[name]
		if !ok {
			ctx = &cliconfig.Context{}
			cfg.Contexts[name] = ctx
		}
		for flag, dst := range map[string]*string{"server": &ctx.Server, "tenant": &ctx.Tenant, "ca": &ctx.CA, "cert": &ctx.Cert, "key": &ctx.Key, "token-file": &ctx.TokenFile} {
			if fs.Changed(flag) {
				v, _ := fs.GetString(flag)
				if p, isFile := files[flag]; isFile {
					v = *p
				}
				*dst = v
			}
		}
		if fs.Changed("tls") {
			ctx.TLS = c.useTLS
		}
		if use {
			cfg.CurrentContext = name
		}
		verb := "Modified"
		if !ok {
			verb = "Created"
		}
		msg := fmt.Sprintf("%s context '%s'.", verb, name)
		if use {
			msg += " It is the current context."
		}
		return msg, nil
	})
}

// printContexts prints get-contexts.
func (c *cli) printContexts(cfg *cliconfig.Config) error {
	if c.structured() {
		return c.printIndented(cfg)
	}
	t := newTable(c.stdout, "CURRENT", "NAME", "SERVER", "TENANT", "TLS", "TOKEN-FILE")
	for _, n := range cfg.Names() {
		ctx := cfg.Contexts[n]
		cur := ""
		if n == cfg.CurrentContext {
			cur = "*"
		}
		tls := "no"
		switch {
		case ctx.Cert != "":
			tls = "mutual"
		case ctx.CA != "" || ctx.TLS:
			tls = "yes"
		}
		t.row(cur, n, ctx.Server, ctx.Tenant, tls, ctx.TokenFile)
	}
	return t.flush()
}
