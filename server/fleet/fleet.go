// Package fleet keeps machines, scale sets and their application profiles,
// computes each machine's goal state, and records what its agent reports.
//
// Machines, scale sets and instance views live in the state (package
// state: the machines, scalesets and instanceviews tables, and the
// inventory, one entry per application an agent reported). A machine's
// goal state is derived, never stored: its scale set's profile
// and its own, each version resolved ("latest" to the version it stood for
// when set, or with enableAutomaticUpgrade to the newest latest that is
// replicated to the machine's region). The fleet keeps goal states
// computed in memory (goalcache.go) and drops each when a command changes
// what it was computed from. What a goal state holds but the machine's
// name and region (its body: goalbody.go) is computed once for every
// machine with the same profile entries — a scale set's instances — and
// encoded once for all their streams. Agents hold a stream that gets the
// goal state again whenever it changes: every node applies every command,
// and the fleet wakes its streams on those that can change a goal state.
package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// MaxApplications is the seeds' limit of applications on a machine. (The
// inline configuration's is pb.MaxInlineConfigSize.)
const MaxApplications = 25

// Limits of an application's tags: Azure's limits of resource tags (at most
// 50; names of 1 to 512 characters, values of up to 256), and at most
// MaxTagBytes of names and values in all, so that 25 applications carry at
// most 100 KiB of tags into a goal state.
const (
	MaxTags        = 50
	MaxTagNameLen  = 512
	MaxTagValueLen = 256
	MaxTagBytes    = 4096
)

// Catalog is what the fleet reads from the catalog.
type Catalog interface {
	GetApplication(ctx context.Context, tenant, gallery, name string) (*pb.GalleryApplication, error)
	GetVersion(ctx context.Context, tenant, gallery, app, name string) (*pb.GalleryApplicationVersion, error)
	// ReadVersion is GetVersion from this node's state as it is (no wait
	// for the cluster's latest commits): for goal states, which follow
	// every change anyway.
	ReadVersion(ctx context.Context, tenant, gallery, app, name string) (*pb.GalleryApplicationVersion, error)
	// ReadApplication is GetApplication from this node's state as it is.
	ReadApplication(ctx context.Context, tenant, gallery, name string) (*pb.GalleryApplication, error)
}

// Availability tells whether a version may be deployed in a region (the
// replicator).
type Availability interface {
	Available(ctx context.Context, v *pb.GalleryApplicationVersion, region string) error
}

// Shares tells whether a tenant's gallery is shared with another tenant.
type Shares interface {
	Shared(tenant, gallery, with string) (bool, error)
}

// Signing is what the fleet reads of versions' signatures and galleries'
// trust policies (package server/signing).
type Signing interface {
	// Deployable refuses (FailedPrecondition) a version its gallery's
	// trust policy doesn't let vmappd deploy.
	Deployable(ctx context.Context, v *pb.GalleryApplicationVersion) error
	// GoalSigning is the version's signatures for a goal state (nil: none).
	GoalSigning(ctx context.Context, v *pb.GalleryApplicationVersion) (*pb.VersionSignatures, error)
	// KeyChanges are a gallery's signed key changes.
	KeyChanges(ctx context.Context, tenant, gallery string) ([]*pb.KeyChange, error)
}

// Options configure a Fleet.
type Options struct {
	Catalog      Catalog
	Availability Availability
	// Shares, when set, lets profiles name galleries other tenants share
	// ("TENANT:gallery/application/version").
	Shares Shares
	// Signing, when set, refuses versions the galleries' trust policies
	// don't accept, and puts signatures and key changes in goal states.
	Signing Signing
	// Regions are the topology's regions.
	Regions []string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// GoalStateCacheSize is how many machines' goal states are kept
	// computed (0: DefaultGoalStateCacheSize).
	GoalStateCacheSize int
}

// Fleet is the fleet state.
type Fleet struct {
	db      *state.DB
	cat     Catalog
	avail   Availability
	shares  Shares
	signing Signing
	regions []string
	now     func() time.Time
	goals   *goalCache
	// flights shares a goal-state body's computation among the machines
	// that ask for it at once; bodiesComputed counts the computations.
	flights        singleflight.Group
	bodiesComputed atomic.Int64
	syncs          *syncs

	mu        sync.Mutex
	changed   chan struct{}  // closed and replaced on every change
	connected map[string]int // tenant 0 machine -> open goal-state streams
}

// New returns the fleet on db.
func New(db *state.DB, o Options) *Fleet {
	f := &Fleet{db: db, cat: o.Catalog, avail: o.Availability, shares: o.Shares, signing: o.Signing, regions: o.Regions, now: o.Now,
		goals: newGoalCache(o.GoalStateCacheSize), changed: make(chan struct{}), connected: map[string]int{}}
	if f.now == nil {
		f.now = time.Now
	}
	f.syncs = &syncs{sync: db.Sync}
	db.Watch(func(c *statepb.Command) {
		if changesGoalStates(c) {
			f.goals.invalidate(c)
			f.Notify()
		}
	})
	return f
}

// changesGoalStates tells whether a command can change a machine's goal
// state: its profiles, the versions they name (and whether those are
// replicated to its region), the galleries shared with its tenant. A nil
// command (the state was restored) can change any.
func changesGoalStates(c *statepb.Command) bool {
	switch c.GetOp().(type) {
	case *statepb.Command_ReportStatus, *statepb.Command_CommitPart, *statepb.Command_CreateUpload,
		*statepb.Command_ReplicaStarted, *statepb.Command_ReplicaMultipart, *statepb.Command_ReplicaPartCopied,
		*statepb.Command_ReplicaFailed, *statepb.Command_ReplicaVerified, *statepb.Command_IssueToken,
		*statepb.Command_RevokeToken, *statepb.Command_CreateGallery, *statepb.Command_CreateApplication,
		*statepb.Command_PutNode, *statepb.Command_RemoveNode, *statepb.Command_CreateRollout:
		return false
	}
	return true
}

// Changed returns a channel closed at the next change of any profile.
func (f *Fleet) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// Notify wakes the goal-state streams: something they depend on changed
// (a profile, a version, a replication).
func (f *Fleet) Notify() {
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// syncView reads what every change committed before the call made (on
// any node of a cluster): what API clients read. Goal states read without
// waiting (they follow every change anyway).
func (f *Fleet) syncView(ctx context.Context, fn func(tx *state.Tx) error) error {
	if err := f.db.Sync(ctx); err != nil {
		return err
	}
	return f.db.View(ctx, fn)
}

// propose builds a command at now with set and has it applied.
func (f *Fleet) propose(ctx context.Context, set func(c *statepb.Command)) (*statepb.Command, error) {
	c := state.NewCommand(f.now())
	set(c)
	return c, f.db.Propose(ctx, c)
}

func key(tenant, name string) []byte { return []byte(tenant + "\x00" + name) }

var resourceName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9_])?$`)

// CheckName refuses a resource name Azure would: 1-64 letters, digits,
// dots, underscores and hyphens, starting with a letter or digit.
func CheckName(field, name string) error {
	if !resourceName.MatchString(name) {
		return errs.New(errs.InvalidArgument, field, "%s '%s' is invalid: use 1-64 letters, digits, '.', '_' and '-', starting with a letter or digit and not ending in '.' or '-'", field, name)
	}
	return nil
}

func canonicalOS(field, os string) (string, error) {
	switch strings.ToLower(os) {
	case "linux":
		return "Linux", nil
	case "windows":
		return "Windows", nil
	}
	return "", errs.New(errs.InvalidArgument, field, "%s '%s' is invalid: want Linux or Windows", field, os)
}

func (f *Fleet) checkRegion(region string) error {
	for _, r := range f.regions {
		if r == region {
			return nil
		}
	}
	return errs.New(errs.InvalidArgument, "region", "region '%s' is not one of %v", region, f.regions)
}

// Ref is a parsed packageReferenceId. Tenant is set for a gallery another
// tenant shares: "TENANT:gallery/application/version".
type Ref struct{ Tenant, Gallery, Application, Version string }

func (r Ref) String() string { return r.App() + "/" + r.Version }

// in returns the tenant the gallery belongs to, for a machine of tenant.
func (r Ref) in(tenant string) string {
	if r.Tenant != "" {
		return r.Tenant
	}
	return tenant
}

// App is the [tenant:]gallery/application part.
func (r Ref) App() string { return pb.AppRef(r.Tenant, r.Gallery, r.Application) }

var azureRef = regexp.MustCompile(`(?i)/galleries/([^/]+)/applications/([^/]+)/versions/([^/]+)$`)

// ParseRef parses "gallery/application/version", Azure's
// ".../galleries/G/applications/A/versions/V", or, for a gallery another
// tenant shares, "TENANT:gallery/application/version".
func ParseRef(s string) (Ref, error) {
	if m := azureRef.FindStringSubmatch(s); m != nil {
		return Ref{"", m[1], m[2], m[3]}, nil
	}
	tenant, rest, shared := strings.Cut(s, ":")
	if !shared {
		tenant, rest = "", s
	}
	p := strings.Split(rest, "/")
	if len(p) != 3 || p[0] == "" || p[1] == "" || p[2] == "" || shared && !resourceName.MatchString(tenant) {
		return Ref{}, errs.New(errs.InvalidArgument, "packageReferenceId", "packageReferenceId '%s' is invalid: want gallery/application/version (a version name or 'latest'), or TENANT:gallery/application/version for a gallery another tenant shares", s)
	}
	return Ref{tenant, p[0], p[1], p[2]}, nil
}

// generation fingerprints a goal state.
func generation(apps []*pb.GoalApplication, changes []*pb.KeyChange, actions []*pb.ActionRun, preheat []*pb.GoalPreheat) string {
	h := sha256.New()
	write := func(m proto.Message) {
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	for _, a := range apps {
		write(a)
	}
	for _, c := range changes {
		write(c)
	}
	for _, a := range actions {
		write(a)
	}
	if len(preheat) > 0 { // goal states without are fingerprinted as before
		fmt.Fprint(h, "preheat:")
		for _, p := range preheat {
			write(p)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
