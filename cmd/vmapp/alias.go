package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// az's spellings. An Azure user's muscle memory types az's flag names
// (az sig gallery-application version create --gallery-name G
// --application-name A --version-name 1.0.0 --install-command ...); vmapp
// accepts them as hidden aliases of its own flags. An alias is a flag of its
// own, copied onto the native flag before cobra checks the required flags
// and the exclusive groups, so that both can be told apart: giving both with
// different values is a usage error, never a silent choice (az's -g is a
// resource group; vmapp's -g is --gallery: "-g rg -r gallery" is refused).

// alias is one az spelling.
type alias struct {
	name, short string
	// native is the vmapp flag it stands for; "" is the command's
	// positional argument (NAME or VERSION).
	native string
	// split: the value is az's space-separated list, each item given to
	// the native (repeatable) flag.
	split bool
	// flagValue, for an alias that takes no value: what it sets the
	// native flag to (--order-applications is --order 1).
	flagValue string
	// when limits the alias to the commands it matches (nil: every command
	// that has the native flag).
	when func(cmd *cobra.Command) bool
}

// The mapping; README's "vmapp for az users" table lists it.
var azAliases = []alias{
	{name: "gallery-name", short: "r", native: "gallery"},
	{name: "gallery-name", short: "r", when: under("gallery")},
	{name: "application-name", native: "app", when: hasFlag("gallery")},
	{name: "application-name", short: "n", when: under("app")},
	{name: "version-name", short: "n", when: under("version")},
	{name: "install-command", native: "install"},
	{name: "remove-command", native: "remove"},
	{name: "update-command", native: "update"},
	{name: "package-file-link", native: "package-url", when: hasFlag("gallery")},
	{name: "default-file-link", native: "config-url", when: hasFlag("gallery")},
	{name: "target-regions", native: "target-region", split: true},
	{name: "end-of-life-date", native: "end-of-life"},
	{name: "tags", native: "tag", split: true},
	// az vm application set / az vmss application set.
	{name: "app-version-ids", native: "app", when: hasFlag("treat-failure-as-deployment-failure")},
	{name: "app-config-overrides", native: "config-url", when: hasFlag("treat-failure-as-deployment-failure")},
	{name: "order-applications", native: "order", flagValue: "1"},
	{name: "treat-deployment-as-failure", native: "treat-failure-as-deployment-failure"},
}

func under(group string) func(*cobra.Command) bool {
	return func(cmd *cobra.Command) bool {
		p := cmd.Parent()
		return p != nil && p.Name() == group && p.Parent() != nil && !p.Parent().HasParent()
	}
}

func hasFlag(name string) func(*cobra.Command) bool {
	return func(cmd *cobra.Command) bool { return cmd.Flags().Lookup(name) != nil }
}

// positional is the name of the one positional argument a command takes
// (NAME, VERSION), or "".
func positional(cmd *cobra.Command) string {
	for _, w := range strings.Fields(cmd.Use) {
		if w == "NAME" || strings.HasPrefix(w, "VERSION") {
			return w
		}
	}
	return ""
}

// addAliases adds az's spellings to every command of the tree that has
// what they stand for.
func addAliases(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		addAliases(sub)
	}
	if cmd.RunE == nil || cmd.Args == nil {
		return
	}
	var added []alias
	for _, a := range azAliases {
		if !a.applies(cmd) || cmd.Flags().Lookup(a.name) != nil {
			continue
		}
		if a.short != "" && cmd.Flags().ShorthandLookup(a.short) != nil {
			a.short = ""
		}
		if a.flagValue != "" {
			cmd.Flags().BoolP(a.name, a.short, false, "")
		} else {
			cmd.Flags().StringP(a.name, a.short, "", "")
		}
		_ = cmd.Flags().MarkHidden(a.name)
		_ = cmd.Flags().SetAnnotation(a.name, azAnnotation, []string{a.native})
		added = append(added, a)
	}
	if len(added) > 0 {
		wrapAliases(cmd, added)
	}
}

func (a alias) applies(cmd *cobra.Command) bool {
	if a.native == "" {
		if positional(cmd) == "" {
			return false
		}
	} else if cmd.Flags().Lookup(a.native) == nil {
		return false
	}
	return a.when == nil || a.when(cmd)
}

// wrapAliases resolves the aliases of cmd before its arguments are checked
// (cobra checks them after parsing the flags and before the required
// flags), and gives the positional alias's value to its body.
func wrapAliases(cmd *cobra.Command, aliases []alias) {
	checkArgs, body := cmd.Args, cmd.RunE
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		for _, a := range aliases {
			if err := a.resolve(cmd, args); err != nil {
				return err
			}
		}
		return checkArgs(cmd, withPositional(cmd, args))
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return body(cmd, withPositional(cmd, args))
	}
}

// azAnnotation marks the alias flags with their native flag's name.
const azAnnotation = "vmapp-az-alias-of"

// withPositional is args with the value of the positional alias given
// (--version-name 1.0.0), when args don't hold it already.
func withPositional(cmd *cobra.Command, args []string) []string {
	if len(args) > 0 {
		return args
	}
	var v string
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if of, ok := f.Annotations[azAnnotation]; ok && of[0] == "" {
			v = f.Value.String()
		}
	})
	if v != "" {
		return []string{v}
	}
	return args
}

// resolve copies the alias's value onto its native flag.
func (a alias) resolve(cmd *cobra.Command, args []string) error {
	fs := cmd.Flags()
	if !fs.Changed(a.name) {
		return nil
	}
	v := fs.Lookup(a.name).Value.String()
	if a.native == "" {
		if len(args) > 0 && args[0] != v {
			return usagef("%s %q and the argument %q: both name the %s; give one", a.flag(), v, args[0], positional(cmd))
		}
		return nil
	}
	if a.flagValue != "" {
		if v != "true" {
			return nil
		}
		v = a.flagValue
	}
	nf := fs.Lookup(a.native)
	if a.split {
		for _, s := range strings.Fields(v) {
			if err := fs.Set(a.native, s); err != nil {
				return usagef("%s %q: %v", a.flag(), s, err)
			}
		}
		return nil
	}
	if nf.Changed {
		if nf.Value.String() == v {
			return nil
		}
		hint := ""
		if a.native == "gallery" {
			hint = " (vmapp has no resource groups: its -g is --gallery)"
		}
		return usagef("%s %q and --%s %q: %s is az's spelling of --%s, give one%s", a.flag(), v, a.native, nf.Value.String(), a.flag(), a.native, hint)
	}
	if err := fs.Set(a.native, v); err != nil {
		return usagef("%s %q: %v", a.flag(), v, err)
	}
	return nil
}

// flag is how the alias is spelled, for messages.
func (a alias) flag() string {
	if a.short != "" {
		return "--" + a.name + "/-" + a.short
	}
	return "--" + a.name
}
