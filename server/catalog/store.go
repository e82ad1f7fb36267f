// Package catalog is the gallery side of vmappd: galleries, applications,
// application versions and their uploads, with every rule of the seeds.
// It validates requests, builds the state package's commands and proposes
// them; the records live in the state file (package state).
//
// # Deletion
//
// Deleting is two steps: the request marks the resource (and, with cascade,
// its descendants) Deleting in one command and returns; Reap then removes
// marked resources leaves first, after a version's stored objects are gone,
// and is safe to run again after a crash. While marked, a resource can be
// read and its delete retried; every other operation fails with the seeds'
// "marked for deletion" message.
package catalog

import (
	"context"
	"log/slog"
	"time"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// Options configure a Store.
type Options struct {
	// Regions are the known region names (from the topology file).
	Regions []string
	// MaxVersionsPerRegion limits a tenant's versions targeting one region;
	// 0 means DefaultMaxVersionsPerRegion.
	MaxVersionsPerRegion int
	// FinalizeVersion, when set, runs before a version marked for deletion is
	// removed (it deletes the version's stored objects); an error leaves the
	// version marked, to be retried by the next reaping.
	FinalizeVersion func(ctx context.Context, v *pb.GalleryApplicationVersion) error
	// Now returns the current time; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Store is the catalog on the state. It is safe for concurrent use.
type Store struct {
	db          *state.DB
	regions     []string
	maxVersions int
	now         func() time.Time
	log         *slog.Logger
	reap        chan struct{}
	finalize    func(ctx context.Context, v *pb.GalleryApplicationVersion) error
}

// New returns the catalog on db.
func New(db *state.DB, o Options) *Store {
	s := &Store{db: db, regions: o.Regions, maxVersions: o.MaxVersionsPerRegion, now: o.Now, log: o.Logger, reap: make(chan struct{}, 1), finalize: o.FinalizeVersion}
	if s.maxVersions == 0 {
		s.maxVersions = DefaultMaxVersionsPerRegion
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	db.Watch(func(c *statepb.Command) {
		switch c.GetOp().(type) {
		case *statepb.Command_DeleteGallery, *statepb.Command_DeleteApplication, *statepb.Command_DeleteVersion, nil:
			s.wakeReaper() // wherever the delete was proposed
		}
	})
	return s
}

// propose builds a command of op at now and has it applied; it returns
// the command (its etag and time are those of what it wrote).
func (s *Store) propose(ctx context.Context, set func(c *statepb.Command)) (*statepb.Command, error) {
	c := state.NewCommand(s.now())
	set(c)
	return c, s.db.Propose(ctx, c)
}

// view runs fn in a read transaction.
func (s *Store) view(ctx context.Context, fn func(tx *state.Tx) error) error {
	return s.db.View(ctx, fn)
}

// syncView is view after state.DB.Sync: it sees every change committed
// before the call, on any node (reads a client acts on).
func (s *Store) syncView(ctx context.Context, fn func(tx *state.Tx) error) error {
	if err := s.db.Sync(ctx); err != nil {
		return err
	}
	return s.db.View(ctx, fn)
}

// retryRace runs a read-modify-write until its command is not refused
// because what it read changed meanwhile (ifMatch empty: the client didn't
// ask for that check), at most a few times.
func retryRace(ifMatch string, attempt func() error) error {
	for i := 0; ; i++ {
		err := attempt()
		if err == nil || ifMatch != "" || i == 4 || !errs.Is(err, errs.FailedPrecondition) || errs.FieldOf(err) != "ifMatch" {
			return err
		}
	}
}
