// Package man writes the man pages of a cobra command tree (make man);
// kept apart so that the binaries link it only when built with -tags man.
package man

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Command is the hidden `gen-man DIR` command: root's man pages, one
// per command (section 1), written into DIR. make man runs it.
func Command() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "write the man pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return Gen(cmd.Root(), args[0])
		},
	}
}

// Gen writes the man pages of root and its subcommands into dir.
func Gen(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root.DisableAutoGenTag = true
	return doc.GenManTree(root, &doc.GenManHeader{Section: "1", Source: "vmapp"}, dir)
}
