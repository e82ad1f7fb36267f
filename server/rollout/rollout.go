// Package rollout moves an application's machines to a version in waves:
// it validates and plans a rollout (its machines, each in a wave), and
// its driver, leader-only background work, steps every active rollout
// (step.go, pure) whenever an agent reports, a rollout changes, or a
// wave's soak ends. A rollout moves a machine by pinning the
// application's version for that machine in the state (the rollout_pins
// table, which goal states read over the profiles); one that succeeds
// writes its version into the profiles and drops its pins. All of it is
// in the state, so a restarted vmappd, or a new leader, resumes where the
// last one was.
package rollout

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/fleet"
	"github.com/vmapp/vmapp/state"
)

// MaxSoak bounds a rollout's soak.
const MaxSoak = 7 * 24 * time.Hour

// Options configure a Service.
type Options struct {
	DB    *state.DB
	Fleet *fleet.Fleet
	// Regions in the regions file's order: byRegion's order.
	Regions []string
	Logger  *slog.Logger
	// Clock times soaks (nil: the real one).
	Clock clockwork.Clock
	// Registry, when set, gets the rollouts' metrics.
	Registry prometheus.Registerer
}

// Service creates, reads and changes rollouts, and drives them (Run).
type Service struct {
	o    Options
	wake chan struct{}
}

// New returns the service on o.DB.
func New(o Options) *Service {
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{o: o, wake: make(chan struct{}, 1)}
	o.DB.Watch(func(c *statepb.Command) {
		switch c.GetOp().(type) {
		case *statepb.Command_ReportStatus, *statepb.Command_CreateRollout, *statepb.Command_PutRollout, nil:
			s.poke()
		}
	})
	if o.Registry != nil {
		o.Registry.MustRegister(&collector{s: s})
	}
	return s
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Create validates a rollout, picks and plans its machines, and stores it
// Running: the driver starts it.
func (s *Service) Create(ctx context.Context, tenant string, in *pb.Rollout) (*pb.Rollout, error) {
	if in == nil {
		return nil, errs.New(errs.InvalidArgument, "rollout", "rollout is required")
	}
	if err := fleet.CheckName("name", in.Name); err != nil {
		return nil, err
	}
	if strings.Count(in.Application, "/") != 1 {
		return nil, errs.New(errs.InvalidArgument, "application", "application '%s' is invalid: want gallery/application", in.Application)
	}
	if in.Version == "" {
		return nil, errs.New(errs.InvalidArgument, "version", "version is required")
	}
	if d := in.Soak.AsDuration(); d < 0 || d > MaxSoak || in.Soak != nil && !in.Soak.IsValid() {
		return nil, errs.New(errs.InvalidArgument, "soak", "soak %s is invalid: want between 0 and %s", d, MaxSoak)
	}
	r := &pb.Rollout{Name: in.Name, Application: in.Application, Version: in.Version, Target: in.Target, Waves: in.Waves,
		MaxConcurrency: in.MaxConcurrency, MaxErrors: in.MaxErrors, Soak: in.Soak, RollbackOnHalt: in.RollbackOnHalt,
		ByRegion: in.ByRegion, State: pb.RolloutRunning, Tenant: tenant}
	var err error
	if r.Machines, err = s.o.Fleet.RolloutMachines(ctx, tenant, in.Target, in.Application, in.Version); err != nil {
		return nil, err
	}
	if err := resolve(r, s.o.Regions); err != nil {
		return nil, err
	}
	c := state.NewCommand(s.o.Clock.Now())
	c.Op = &statepb.Command_CreateRollout{CreateRollout: &statepb.CreateRollout{Rollout: r}}
	r = proto.CloneOf(r)
	r.Etag, r.CreateTime, r.UpdateTime = c.Etag, c.Time, c.Time
	return r, s.o.DB.Propose(ctx, c)
}

// Get returns a rollout.
func (s *Service) Get(ctx context.Context, tenant, name string) (*pb.Rollout, error) {
	if err := s.o.DB.Sync(ctx); err != nil {
		return nil, err
	}
	var r *pb.Rollout
	err := s.o.DB.View(ctx, func(tx *state.Tx) error {
		var ok bool
		var err error
		if r, ok, err = state.Rollouts.Get(tx, state.RolloutKey(tenant, name)); err == nil && !ok {
			err = errs.New(errs.NotFound, "name", "Rollout '%s' doesn't exist.", name)
		}
		return err
	})
	return r, err
}

// List lists the tenant's rollouts, by name.
func (s *Service) List(ctx context.Context, tenant string, size int32, token string) ([]*pb.Rollout, string, error) {
	n, err := state.PageSize(size)
	if err != nil {
		return nil, "", err
	}
	if err := s.o.DB.Sync(ctx); err != nil {
		return nil, "", err
	}
	var out []*pb.Rollout
	var next string
	err = s.o.DB.View(ctx, func(tx *state.Tx) (err error) {
		out, next, err = state.Page(tx, state.Rollouts, state.Prefix(tenant), token, n, nil)
		return err
	})
	return out, next, err
}

// Pause stops a running rollout from starting machines.
func (s *Service) Pause(ctx context.Context, tenant, name string) (*pb.Rollout, error) {
	return s.change(ctx, tenant, name, "pause", []string{pb.RolloutRunning, pb.RolloutPaused}, pb.RolloutPaused)
}

// Resume lets a paused rollout go on.
func (s *Service) Resume(ctx context.Context, tenant, name string) (*pb.Rollout, error) {
	return s.change(ctx, tenant, name, "resume", []string{pb.RolloutPaused, pb.RolloutRunning}, pb.RolloutRunning)
}

// Abort ends a rollout where it is.
func (s *Service) Abort(ctx context.Context, tenant, name string) (*pb.Rollout, error) {
	return s.change(ctx, tenant, name, "abort", []string{pb.RolloutRunning, pb.RolloutPaused, pb.RolloutRollingBack, pb.RolloutAborted}, pb.RolloutAborted)
}

// change moves a rollout in one of from to state to, retrying when the
// driver changed it meanwhile.
func (s *Service) change(ctx context.Context, tenant, name, verb string, from []string, to string) (*pb.Rollout, error) {
	for i := 0; ; i++ {
		r, err := s.Get(ctx, tenant, name)
		if err != nil {
			return nil, err
		}
		if r.State == to {
			return r, nil
		}
		ok := false
		for _, f := range from {
			ok = ok || r.State == f
		}
		if !ok {
			return nil, errs.New(errs.FailedPrecondition, "name", "Rollout '%s' is %s: it can't %s.", name, r.State, verb)
		}
		etag := r.Etag
		r.State = to
		if to == pb.RolloutAborted {
			r.Reason = "aborted"
		}
		c := state.NewCommand(s.o.Clock.Now())
		c.Op = &statepb.Command_PutRollout{PutRollout: &statepb.PutRollout{Rollout: r, ExpectEtag: etag}}
		err = s.o.DB.Propose(ctx, c)
		if err == nil || !errs.Is(err, errs.Aborted) || i == 9 {
			r = proto.CloneOf(r)
			r.Etag, r.UpdateTime = c.Etag, c.Time
			return r, err
		}
	}
}
