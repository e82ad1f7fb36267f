package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/atomicfile"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
)

// PendingDir, in the data directory, holds commands made while vmappd was
// stopped (vmappd operator-token): the next start proposes them, so that
// they go through the log like any other change and reach every node of
// a cluster.
const PendingDir = "pending"

// QueueCommand leaves c for the next start of the vmappd of dataDir.
func QueueCommand(dataDir string, c *statepb.Command) error {
	dir := filepath.Join(dataDir, PendingDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := proto.Marshal(c)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("%d-%x.cmd", time.Now().UnixNano(), c.Etag)
	return atomicfile.Write(filepath.Join(dir, name), b, 0o600)
}

// proposePending proposes the queued commands, oldest first, removing each
// once it is applied (or refused: a refusal is final). It retries while
// the state can't take them (no leader yet).
func (d *Daemon) proposePending(ctx context.Context) error {
	dir := filepath.Join(d.Config.DataDir, PendingDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	for _, n := range names {
		path := filepath.Join(dir, n)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		c := &statepb.Command{}
		if err := proto.Unmarshal(b, c); err != nil {
			return fmt.Errorf("pending command %s: %w", path, err)
		}
		for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
			err = d.State.Propose(ctx, c)
			if err == nil || errs.ClassOf(err) != errs.Unavailable || ctx.Err() != nil {
				break
			}
			time.Sleep(backoff)
		}
		if err != nil && errs.ClassOf(err) == errs.Unavailable {
			return err
		}
		if err != nil {
			d.log.Error("a pending command was refused", "file", path, "err", err)
		} else {
			d.log.Info("applied a pending command", "file", path)
		}
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	return nil
}
