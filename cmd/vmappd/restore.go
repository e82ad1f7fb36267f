package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/cobracmd"
	"github.com/vmapp/vmapp/server/daemon"
	"github.com/vmapp/vmapp/state"
)

// restoreCmd is `vmappd restore --data DIR FILE`: the state of a stopped
// vmappd replaced by a snapshot (vmapp cluster snapshot save). The raft
// log of a cluster node is removed with it: started again, the node is a
// one-node cluster holding the snapshot (the others join it anew), or a
// single vmappd. The state it had is kept beside it.
func restoreCmd(stdout io.Writer) *cobra.Command {
	var data string
	cmd := &cobra.Command{
		Use:   "restore --data DIR FILE",
		Short: "replace the state with a snapshot (vmappd stopped)",
		Long: `Replaces the state of a stopped vmappd with FILE, a snapshot saved by
vmapp cluster snapshot save; DIR is made when missing (a new machine). The
state it had, if any, is kept as vmapp.db.replaced-TIME.
A cluster node's raft log goes too: start the node again without --join and
it is a one-node cluster holding the snapshot; start the other nodes with
empty data directories and --join to make the cluster whole.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" || len(args) != 1 {
				return cobracmd.Usage(cmd)
			}
			if err := restoreState(data, args[0], stdout); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "vmappd restore: %v\n", err)
				return cobracmd.Exit(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "vmappd's data directory (required; vmappd must be stopped)")
	return cmd
}

func restoreState(data, snapshot string, stdout io.Writer) error {
	in, err := os.Open(snapshot)
	if err != nil {
		return err
	}
	defer in.Close()
	// A new machine's data directory may not exist yet: the snapshot is
	// all its state.
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	path := filepath.Join(data, daemon.DBFile)
	_, statErr := os.Stat(path)
	fresh := errors.Is(statErr, fs.ErrNotExist)
	db, err := state.Open(path, state.Options{OpenTimeout: time.Second})
	if errs.Is(err, errs.Unavailable) {
		return fmt.Errorf("%s is in use: stop vmappd first", path)
	}
	if err != nil {
		return err
	}
	kept := ""
	if !fresh {
		kept = fmt.Sprintf("%s.replaced-%s", path, time.Now().UTC().Format("20060102T150405Z"))
		if err := copyFile(path, kept); err != nil {
			db.Close()
			return fmt.Errorf("keeping the state it had: %w", err)
		}
	}
	// Restore checks the snapshot before it replaces anything.
	if err := db.Restore(in); err != nil {
		db.Close()
		if kept != "" {
			os.Remove(kept)
		} else {
			os.Remove(path)
		}
		return fmt.Errorf("%s: %w", snapshot, err)
	}
	// A new log starts on it, whatever log it was taken from.
	if err := db.ForgetLog(); err != nil {
		db.Close()
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	raftDir := filepath.Join(data, "raft")
	if _, err := os.Stat(raftDir); err == nil {
		if err := os.RemoveAll(raftDir); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed the raft log %s: start this node without --join; it leads a one-node cluster the others join\n", raftDir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if kept == "" {
		fmt.Fprintf(stdout, "restored %s from %s\n", path, snapshot)
		return nil
	}
	fmt.Fprintf(stdout, "restored %s from %s (the state it had is kept as %s)\n", path, snapshot, kept)
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
