// Package cobracmd is what vmappd and vmapp-agent share of their command
// lines on cobra: the exit statuses (0, 1 a failure, 2 a usage error; a
// command may ask for another), the usage printed on a usage error, the
// version line. (Package man: the man pages.)
package cobracmd

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit is the error of a command that has said what went wrong itself
// and wants the process to exit with this status.
type Exit int

func (e Exit) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// Setup sets what root and its subcommands have in common: errors printed
// here (not by cobra), the version line "NAME VERSION", no usage dump on
// a failure that isn't one of usage.
func Setup(root *cobra.Command, version string) {
	root.Version = version
	root.SetVersionTemplate("{{.Name}} {{.Version}}\n")
	root.SilenceErrors = true
	root.SilenceUsage = true
}

// Execute runs root with args and returns the exit status: a command's
// Exit, 0, or 2 with the usage of the command at fault for an error of
// the command line (unknown flag, bad value, stray argument).
func Execute(root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	var code Exit
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	}
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
	PrintUsage(cmd)
	return 2
}

// Usage prints cmd's usage to its error output and returns Exit(2): a
// command's answer to a missing flag or argument.
func Usage(cmd *cobra.Command) error {
	PrintUsage(cmd)
	return Exit(2)
}

// PrintUsage prints "usage: " and cmd's use line, its long description
// and its flags.
func PrintUsage(cmd *cobra.Command) {
	w := cmd.ErrOrStderr()
	fmt.Fprintf(w, "usage: %s\n", cmd.UseLine())
	if cmd.Long != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(cmd.Long))
	}
	if cmd.HasAvailableSubCommands() {
		fmt.Fprintln(w, "\nCommands:")
		for _, s := range cmd.Commands() {
			if s.IsAvailableCommand() {
				fmt.Fprintf(w, "  %-16s %s\n", s.Name(), s.Short)
			}
		}
	}
	fmt.Fprintf(w, "\nFlags:\n%s", cmd.LocalFlags().FlagUsages())
}
