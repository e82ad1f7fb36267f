package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/cobracmd"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/daemon"
	"github.com/vmapp/vmapp/state"
)

// operatorTokenCmd is `vmappd operator-token`: a new token that is Owner
// of every tenant, written into the data directory of a stopped vmappd,
// for when the operator's tokens are lost.
func operatorTokenCmd(stdout io.Writer) *cobra.Command {
	var data, out, name string
	cmd := &cobra.Command{
		Use:   "operator-token --data DIR --out FILE [--name TEXT]",
		Short: "a new operator token, issued offline (vmappd stopped)",
		Long: `Issues a token that is Owner of every tenant, as the bootstrap token is, into
the state of a stopped vmappd: for when the operator's tokens are lost.
Revoke the lost ones with vmapp token revoke.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if data == "" || out == "" {
				return cobracmd.Usage(cmd)
			}
			return cobracmd.Exit(operatorToken(data, out, name, stdout, cmd.ErrOrStderr()))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&data, "data", "", "vmappd's data directory (required; vmappd must be stopped)")
	fs.StringVar(&out, "out", "", "new file to write the token to, mode 0600 (required)")
	fs.StringVar(&name, "name", "operator (issued offline)", "what the token is for")
	return cmd
}

// operatorToken issues the token and returns the exit status.
func operatorToken(data, out, name string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "vmappd operator-token: %v\n", err)
		return 1
	}
	path := filepath.Join(data, daemon.DBFile)
	if _, err := os.Stat(path); err != nil {
		return fail(fmt.Errorf("--data %s: no vmappd state here: %w", data, err))
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(fmt.Errorf("--out: %w", err))
	}
	keep := false
	defer func() {
		f.Close()
		if !keep {
			os.Remove(out)
		}
	}()
	// The state is locked while vmappd runs.
	db, err := state.Open(path, state.Options{OpenTimeout: time.Second})
	if errs.Is(err, errs.Unavailable) {
		return fail(fmt.Errorf("%s is in use: stop vmappd first", path))
	}
	if err != nil {
		return fail(err)
	}
	db.Close()
	// The token goes through the log when vmappd starts again, so that in
	// a cluster every node has it.
	t := &pb.Token{Name: name, Tenant: pb.AllTenants, Role: pb.Role_ROLE_OWNER}
	if err := auth.CheckTokenName(name); err != nil {
		return fail(err)
	}
	cred, secret := auth.NewCredential(t, time.Now())
	c := state.NewCommand(time.Now())
	c.Op = &statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: cred}}
	if err := daemon.QueueCommand(data, c); err != nil {
		return fail(err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	keep = true
	fmt.Fprintf(stdout, "token %s (%s: Owner of every tenant) written to %s; it works once vmappd has started again\n", t.Id, t.Name, out)
	return 0
}
