package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/daemon"
	"github.com/vmapp/vmapp/state"
)

// operatorToken is `vmappd operator-token`: a new token that is Owner of
// every tenant, written into the data directory of a stopped vmappd, for
// when the operator's tokens are lost. It returns the exit status.
func operatorToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmappd operator-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "vmappd's data directory (required; vmappd must be stopped)")
	out := fs.String("out", "", "new file to write the token to, mode 0600 (required)")
	name := fs.String("name", "operator (issued offline)", "what the token is for")
	fs.Usage = func() {
		fmt.Fprintln(stderr, `usage: vmappd operator-token --data DIR --out FILE [--name TEXT]

Issues a token that is Owner of every tenant, as the bootstrap token is, into
the state of a stopped vmappd: for when the operator's tokens are lost.
Revoke the lost ones with vmapp token revoke.`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *data == "" || *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "vmappd operator-token: %v\n", err)
		return 1
	}
	path := filepath.Join(*data, daemon.DBFile)
	if _, err := os.Stat(path); err != nil {
		return fail(fmt.Errorf("--data %s: no vmappd state here: %w", *data, err))
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(fmt.Errorf("--out: %w", err))
	}
	keep := false
	defer func() {
		f.Close()
		if !keep {
			os.Remove(*out)
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
	t := &pb.Token{Name: *name, Tenant: pb.AllTenants, Role: pb.Role_ROLE_OWNER}
	if err := auth.CheckTokenName(*name); err != nil {
		return fail(err)
	}
	cred, secret := auth.NewCredential(t, time.Now())
	c := state.NewCommand(time.Now())
	c.Op = &statepb.Command_IssueToken{IssueToken: &statepb.IssueToken{Credential: cred}}
	if err := daemon.QueueCommand(*data, c); err != nil {
		return fail(err)
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	keep = true
	fmt.Fprintf(stdout, "token %s (%s: Owner of every tenant) written to %s; it works once vmappd has started again\n", t.Id, t.Name, *out)
	return 0
}
