package fleet

import (
	"cmp"
	"context"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// Target is a machine or a scale set name.
type Target struct {
	Machine, ScaleSet string
}

func (t Target) String() string {
	if t.ScaleSet != "" {
		return "scale set '" + t.ScaleSet + "'"
	}
	return "machine '" + t.Machine + "'"
}

// profileOf is a target's profile with its region, OS, and the other
// profiles its machines combine it with (a machine's scale set's; a scale
// set's instances' that name applications: an empty profile conflicts
// with nothing), as read at one moment: the command that changes the
// profile is applied only if none of them changed since (their etags),
// and, for a scale set, no other instance got applications of its own.
type profileOf struct {
	region, os string
	profile    *pb.ApplicationProfile
	target     *statepb.ProfileEtag
	others     []*pb.ApplicationProfile
	otherEtags []*statepb.ProfileEtag
}

func (f *Fleet) load(ctx context.Context, tenant string, t Target) (*profileOf, error) {
	if (t.Machine == "") == (t.ScaleSet == "") {
		return nil, errs.New(errs.InvalidArgument, "target", "name either a machine or a scale set")
	}
	p := &profileOf{}
	add := func(ap *pb.ApplicationProfile, machine, scaleSet string) {
		p.others = append(p.others, ap)
		p.otherEtags = append(p.otherEtags, &statepb.ProfileEtag{Machine: machine, ScaleSet: scaleSet, Etag: ap.GetEtag()})
	}
	err := f.syncView(ctx, func(tx *state.Tx) error {
		if t.Machine != "" {
			m, err := tx.Machine(tenant, t.Machine)
			if err != nil {
				return err
			}
			p.region, p.os, p.profile = m.Region, m.OsType, m.ApplicationProfile
			p.target = &statepb.ProfileEtag{Machine: m.Name, Etag: m.ApplicationProfile.GetEtag()}
			if m.ScaleSet != "" {
				if ss, err := tx.ScaleSet(tenant, m.ScaleSet); err == nil {
					add(ss.ApplicationProfile, "", ss.Name)
				}
			}
			return nil
		}
		ss, err := tx.ScaleSet(tenant, t.ScaleSet)
		if err != nil {
			return err
		}
		p.region, p.os, p.profile = ss.Region, ss.OsType, ss.ApplicationProfile
		p.target = &statepb.ProfileEtag{ScaleSet: ss.Name, Etag: ss.ApplicationProfile.GetEtag()}
		// Only instances with applications of their own can conflict with
		// the scale set's (the applier checks that no other got some since).
		instances, err := tx.InstancesWithOwnApps(tenant, ss.Name)
		for _, m := range instances {
			add(m.ApplicationProfile, m.Name, "")
		}
		return err
	})
	return p, err
}

// save proposes the profile's new applications, if none of the profiles
// read changed since.
func (f *Fleet) save(ctx context.Context, tenant string, p *profileOf, apps []*pb.VMGalleryApplication) (*pb.ApplicationProfile, error) {
	out := &pb.ApplicationProfile{GalleryApplications: apps}
	_, err := f.propose(ctx, func(c *statepb.Command) {
		out.Etag = c.Etag
		c.Op = &statepb.Command_SetProfile{SetProfile: &statepb.SetProfile{Tenant: tenant, Target: p.target, Others: p.otherEtags, Profile: out}}
	})
	return out, err
}

// retryProfile runs a read-check-save of a profile until no other change
// raced it (ifMatch empty: the client didn't ask for that check), at most
// a few times.
func retryProfile(ifMatch string, attempt func() (*pb.ApplicationProfile, error)) (*pb.ApplicationProfile, error) {
	for i := 0; ; i++ {
		out, err := attempt()
		raced := errs.Is(err, errs.Aborted) || errs.Is(err, errs.FailedPrecondition) && errs.FieldOf(err) == "ifMatch" && ifMatch == ""
		if err == nil || !raced || i == 4 {
			return out, err
		}
	}
}

// SetApplication adds or changes an application in a profile, after the
// seeds' checks: the application and version exist, match the OS, aren't
// deprecated and are replicated to the region; at most 25 applications; one
// version of an application per machine.
func (f *Fleet) SetApplication(ctx context.Context, tenant string, t Target, in *pb.VMGalleryApplication, ifMatch string) (*pb.ApplicationProfile, error) {
	if in == nil {
		return nil, errs.New(errs.InvalidArgument, "application", "application is required")
	}
	ref, err := ParseRef(in.PackageReferenceId)
	if err != nil {
		return nil, err
	}
	if ref.Tenant == tenant {
		ref.Tenant = "" // its own
	}
	if in.EnableAutomaticUpgrade && ref.Version != "latest" {
		return nil, errs.New(errs.InvalidArgument, "enableAutomaticUpgrade", "enableAutomaticUpgrade needs the version 'latest' in packageReferenceId, not '%s'", ref.Version)
	}
	if len(in.Configuration) > pb.MaxInlineConfigSize {
		return nil, errs.New(errs.InvalidArgument, "configuration", "configuration has %d bytes: at most %d can be given inline; use configurationReference", len(in.Configuration), pb.MaxInlineConfigSize)
	}
	if err := checkTags(in.Tags); err != nil {
		return nil, err
	}
	if in.ConfigurationReference != "" {
		if u, err := url.Parse(in.ConfigurationReference); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errs.New(errs.InvalidArgument, "configurationReference", "configurationReference isn't a valid http(s) URL")
		}
		if len(in.Configuration) > 0 {
			return nil, errs.New(errs.InvalidArgument, "configuration", "give configuration or configurationReference, not both")
		}
	}
	first, err := f.load(ctx, tenant, t)
	if err != nil {
		return nil, err
	}
	region, os := first.region, first.os
	v, err := f.checkVersion(ctx, tenant, ref, os, region)
	if err != nil {
		return nil, err
	}
	entry := proto.Clone(in).(*pb.VMGalleryApplication)
	entry.PackageReferenceId = ref.String()
	entry.ResolvedVersion = v.Name
	// The first attempt uses what was read for the checks: the command
	// carries its etags, so a change since is refused and read again.
	return retryProfile(ifMatch, func() (*pb.ApplicationProfile, error) {
		p := first
		first = nil
		if p == nil {
			var err error
			if p, err = f.load(ctx, tenant, t); err != nil {
				return nil, err
			}
		}
		apps, err := withEntry(p, t, entry, ref, ifMatch)
		if err != nil {
			return nil, err
		}
		return f.save(ctx, tenant, p, apps)
	})
}

// checkVersion reads the version ref names and refuses it, with the seeds'
// messages, for a machine of tenant running os in region: the application
// or version doesn't exist, is for another OS, is deprecated, has no
// package, isn't replicated to region, or its gallery's trust policy
// refuses it.
func (f *Fleet) checkVersion(ctx context.Context, tenant string, ref Ref, os, region string) (*pb.GalleryApplicationVersion, error) {
	if err := f.checkShared(tenant, ref); err != nil {
		return nil, err
	}
	app, err := f.cat.GetApplication(ctx, ref.in(tenant), ref.Gallery, ref.Application)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.New(errs.NotFound, "packageReferenceId", "The platform image %s isn't available. Verify that all fields in the storage profile are correct. The application '%s' doesn't exist.", ref, ref.App())
	}
	if err != nil {
		return nil, err
	}
	v, err := f.cat.GetVersion(ctx, ref.in(tenant), ref.Gallery, ref.Application, ref.Version)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.New(errs.NotFound, "packageReferenceId", "The platform image %s isn't available. Verify that all fields in the storage profile are correct. The version doesn't exist.", ref)
	}
	if err != nil {
		return nil, err
	}
	name := v.Gallery + "/" + v.Application + "/" + v.Name
	if app.SupportedOsType != os {
		return nil, errs.New(errs.FailedPrecondition, "packageReferenceId", "Current VM Application Version %s supports OS %s, while current OSDisk's OS is %s.", name, app.SupportedOsType, os)
	}
	if eol := v.GetPublishingProfile().GetEndOfLifeDate(); eol != nil && eol.AsTime().Before(f.now()) {
		return nil, errs.New(errs.FailedPrecondition, "packageReferenceId", "Current VM Application Version %s was deprecated at %s.", name, eol.AsTime().Format("2006-01-02"))
	}
	if v.Package == nil {
		return nil, errs.New(errs.FailedPrecondition, "packageReferenceId", "Gallery application version '%s' has no package yet.", name)
	}
	if err := f.avail.Available(ctx, v, region); err != nil {
		return nil, err
	}
	return v, f.deployable(ctx, v)
}

// withEntry returns p's applications with entry added (or in place of the
// application's entry), after the seeds' checks across the profiles.
func withEntry(p *profileOf, t Target, entry *pb.VMGalleryApplication, ref Ref, ifMatch string) ([]*pb.VMGalleryApplication, error) {
	if err := state.CheckETag("the application profile of "+t.String(), ifMatch, p.profile.GetEtag()); err != nil {
		return nil, err
	}
	entry = proto.CloneOf(entry)
	var apps []*pb.VMGalleryApplication
	for _, a := range p.profile.GetGalleryApplications() {
		r, _ := ParseRef(a.PackageReferenceId)
		if r.App() == ref.App() {
			entry.Retry = a.Retry
			continue // replaced
		}
		apps = append(apps, a)
	}
	apps = append(apps, entry)
	sort.Slice(apps, func(i, j int) bool { return apps[i].PackageReferenceId < apps[j].PackageReferenceId })
	if len(apps) > MaxApplications {
		return nil, errs.New(errs.InvalidArgument, "application", "The maximum number of VM applications (max=%d, current=%d) has been exceeded. Use fewer applications and retry the request.", MaxApplications, len(apps))
	}
	for _, other := range p.others {
		for _, a := range other.GetGalleryApplications() {
			r, _ := ParseRef(a.PackageReferenceId)
			switch {
			case a.PackageReferenceId == entry.PackageReferenceId:
				return nil, errs.New(errs.InvalidArgument, "packageReferenceId", "More than one VM Application was specified with the same packageReferenceId: %s is in the scale set's profile and the machine's.", ref)
			case r.App() == ref.App():
				return nil, errs.New(errs.InvalidArgument, "packageReferenceId", "Only one version of an application can be deployed to a machine: %s and %s are both in its profiles.", ref, r)
			}
		}
	}
	// A machine runs its own profile's applications and its scale set's:
	// a machine's count with its scale set's, a scale set's with each of
	// its instances' (none is in both: refused above).
	for _, other := range p.others {
		if n := len(apps) + len(other.GetGalleryApplications()); n > MaxApplications {
			return nil, errs.New(errs.InvalidArgument, "application", "The maximum number of VM applications (max=%d, current=%d) has been exceeded. Use fewer applications and retry the request.", MaxApplications, n)
		}
	}
	return apps, nil
}

// checkTags refuses tags over the limits (MaxTags, ...).
func checkTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return errs.New(errs.InvalidArgument, "tags", "tags: %d tags; at most %d are allowed", len(tags), MaxTags)
	}
	total := 0
	for _, name := range slices.Sorted(maps.Keys(tags)) { // the same message every time
		value := tags[name]
		switch n := utf8.RuneCountInString(name); {
		case n == 0:
			return errs.New(errs.InvalidArgument, "tags", "tags: a tag name is empty")
		case n > MaxTagNameLen:
			return errs.New(errs.InvalidArgument, "tags", "tags: the tag name '%s…' has %d characters; at most %d are allowed", string([]rune(name)[:40]), n, MaxTagNameLen)
		}
		if n := utf8.RuneCountInString(value); n > MaxTagValueLen {
			return errs.New(errs.InvalidArgument, "tags", "tags: the value of tag '%s' has %d characters; at most %d are allowed", name, n, MaxTagValueLen)
		}
		total += len(name) + len(value)
	}
	if total > MaxTagBytes {
		return errs.New(errs.InvalidArgument, "tags", "tags: the names and values of the tags have %d bytes; at most %d are allowed", total, MaxTagBytes)
	}
	return nil
}

// RemoveApplication takes gallery/application out of a profile.
func (f *Fleet) RemoveApplication(ctx context.Context, tenant string, t Target, app, ifMatch string) (*pb.ApplicationProfile, error) {
	return f.editEntry(ctx, tenant, t, app, ifMatch, func(apps []*pb.VMGalleryApplication, i int) []*pb.VMGalleryApplication {
		return append(apps[:i:i], apps[i+1:]...)
	})
}

// RetryApplication makes agents run the application's failed operation
// again.
func (f *Fleet) RetryApplication(ctx context.Context, tenant string, t Target, app string) (*pb.ApplicationProfile, error) {
	return f.editEntry(ctx, tenant, t, app, "", func(apps []*pb.VMGalleryApplication, i int) []*pb.VMGalleryApplication {
		apps[i] = proto.CloneOf(apps[i])
		apps[i].Retry++
		return apps
	})
}

func (f *Fleet) editEntry(ctx context.Context, tenant string, t Target, app, ifMatch string, edit func([]*pb.VMGalleryApplication, int) []*pb.VMGalleryApplication) (*pb.ApplicationProfile, error) {
	return retryProfile(ifMatch, func() (*pb.ApplicationProfile, error) {
		p, err := f.load(ctx, tenant, t)
		if err != nil {
			return nil, err
		}
		if err := state.CheckETag("the application profile of "+t.String(), ifMatch, p.profile.GetEtag()); err != nil {
			return nil, err
		}
		apps := slices.Clone(p.profile.GetGalleryApplications())
		for i, a := range apps {
			if r, _ := ParseRef(a.PackageReferenceId); r.App() == app {
				return f.save(ctx, tenant, p, edit(apps, i))
			}
		}
		return nil, errs.New(errs.NotFound, "application", "Application '%s' isn't in the application profile of %s.", app, t)
	})
}

// checkShared refuses a reference to another tenant's gallery unless that
// tenant shares it with this one (or with everyone).
func (f *Fleet) checkShared(tenant string, ref Ref) error {
	if ref.Tenant == "" || ref.Tenant == tenant {
		return nil
	}
	ok := false
	if f.shares != nil {
		var err error
		if ok, err = f.shares.Shared(ref.Tenant, ref.Gallery, tenant); err != nil {
			return err
		}
	}
	if !ok {
		return errs.New(errs.PermissionDenied, "packageReferenceId", "gallery '%s' of tenant '%s' is not shared with tenant '%s'", ref.Gallery, ref.Tenant, tenant)
	}
	return nil
}

// Sync waits until this node's state holds every change committed so far
// (see state.DB.Sync): goal states computed after it are up to date.
// Callers at the same time share the wait (see syncs).
func (f *Fleet) Sync(ctx context.Context) error { return f.syncs.do(ctx) }

// goalApplication is the goal of a machine of tenant in region for its
// profile's entry e: the version it names, or with "latest" the version
// it stood for when set, or with enableAutomaticUpgrade the newest latest
// replicated to the region (and deployable), with the version's commands,
// artifacts and signatures.
func (f *Fleet) goalApplication(ctx context.Context, tenant, region string, e *pb.VMGalleryApplication) (*pb.GoalApplication, error) {
	ref, _ := ParseRef(e.PackageReferenceId)
	version := ref.Version
	if version == "latest" {
		version = e.ResolvedVersion
		if e.EnableAutomaticUpgrade {
			if lv, err := f.cat.ReadVersion(ctx, ref.in(tenant), ref.Gallery, ref.Application, "latest"); err == nil && lv.Package != nil &&
				f.avail.Available(ctx, lv, region) == nil && f.deployable(ctx, lv) == nil {
				version = lv.Name
			}
		}
	}
	ga := &pb.GoalApplication{Tenant: ref.Tenant, Gallery: ref.Gallery, Application: ref.Application, Version: version, Order: e.Order,
		TreatFailureAsDeploymentFailure: e.TreatFailureAsDeploymentFailure, ConfigurationReference: e.ConfigurationReference,
		Configuration: e.Configuration, Retry: e.Retry}
	v, err := f.cat.ReadVersion(ctx, ref.in(tenant), ref.Gallery, ref.Application, version)
	if errs.Is(err, errs.NotFound) {
		return ga, nil
	}
	if err != nil {
		return nil, err
	}
	ga.ManageActions, ga.Settings = v.GetPublishingProfile().GetManageActions(), v.GetPublishingProfile().GetSettings()
	ga.Package, ga.DefaultConfiguration = v.Package, v.DefaultConfiguration
	ga.EnableHealthCheck = v.GetPublishingProfile().GetEnableHealthCheck()
	ga.CustomActions = v.GetPublishingProfile().GetCustomActions()
	if a, err := f.cat.ReadApplication(ctx, ref.in(tenant), ref.Gallery, ref.Application); err == nil {
		ga.CustomActions = pb.MergeActions(ga.CustomActions, a.GetCustomActions())
	}
	if f.signing != nil {
		if ga.Signing, err = f.signing.GoalSigning(ctx, v); err != nil {
			return nil, err
		}
	}
	return ga, nil
}

// deployable refuses a version its gallery's trust policy doesn't let
// vmappd deploy.
func (f *Fleet) deployable(ctx context.Context, v *pb.GalleryApplicationVersion) error {
	if f.signing == nil {
		return nil
	}
	return f.signing.Deployable(ctx, v)
}

// keyChanges are the signed key changes of the galleries of apps (of a
// machine of tenant), gallery by gallery.
func (f *Fleet) keyChanges(ctx context.Context, tenant string, apps []*pb.GoalApplication) ([]*pb.KeyChange, error) {
	if f.signing == nil {
		return nil, nil
	}
	var out []*pb.KeyChange
	seen := map[string]bool{}
	for _, ga := range apps {
		owner := cmp.Or(ga.Tenant, tenant)
		if k := owner + "\x00" + ga.Gallery; !seen[k] {
			seen[k] = true
			kcs, err := f.signing.KeyChanges(ctx, owner, ga.Gallery)
			if err != nil {
				return nil, err
			}
			out = append(out, kcs...)
		}
	}
	return out, nil
}

// Connect counts an agent's goal-state stream until the returned func is
// called.
func (f *Fleet) Connect(tenant, machine string) func() {
	k := string(key(tenant, machine))
	f.mu.Lock()
	f.connected[k]++
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		if f.connected[k]--; f.connected[k] <= 0 {
			delete(f.connected, k)
		}
		f.mu.Unlock()
	}
}

// ConnectedMachines is the number of machines with a goal-state stream
// open on this node.
func (f *Fleet) ConnectedMachines() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.connected)
}

// ReportStatus records a machine's instance view.
func (f *Fleet) ReportStatus(ctx context.Context, tenant, machine string, iv *pb.InstanceView) error {
	if iv == nil {
		return errs.New(errs.InvalidArgument, "instanceView", "instanceView is required")
	}
	_, err := f.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_ReportStatus{ReportStatus: &statepb.ReportStatus{Tenant: tenant, Machine: machine, InstanceView: iv}}
	})
	return err
}

// InventoryFilter selects inventory entries; an empty field matches all.
type InventoryFilter struct {
	// Application is gallery/application, or an application's name.
	Application string
	Region      string
	// State matches in any case.
	State string
	// Version is the version reported, exactly.
	Version string
	// ScaleSet keeps the instances of one scale set.
	ScaleSet string
}

func (q InventoryFilter) keep(e *pb.InventoryEntry) bool {
	s := e.GetStatus()
	return (q.Region == "" || e.Region == q.Region) &&
		(q.Application == "" || s.Application == q.Application || strings.HasSuffix(s.Application, "/"+q.Application)) &&
		(q.State == "" || strings.EqualFold(s.State, q.State)) &&
		(q.Version == "" || s.Version == q.Version) && (q.ScaleSet == "" || e.ScaleSet == q.ScaleSet)
}

// Inventory lists one page of the tenant's machines' application statuses
// that q selects, read through the index of the first filter given — by
// state, else application, else region — or else by machine. The index
// spares reading entries that filter excludes; the others are checked on
// each entry read.
func (f *Fleet) Inventory(ctx context.Context, tenant string, q InventoryFilter, size int32, token string) ([]*pb.InventoryEntry, string, error) {
	n, err := state.PageSize(size)
	if err != nil {
		return nil, "", err
	}
	var out []*pb.InventoryEntry
	var next string
	err = f.syncView(ctx, func(tx *state.Tx) (err error) {
		switch {
		case q.State != "":
			out, next, err = state.Page(tx, state.InventoryByState, state.Prefix(tenant, state.InventoryState(q.State)), token, n, q.keep)
		case q.Application != "":
			out, next, err = state.Page(tx, state.InventoryByApp, state.Prefix(tenant, state.InventoryAppName(q.Application)), token, n, q.keep)
		case q.Region != "":
			out, next, err = state.Page(tx, state.InventoryByRegion, state.Prefix(tenant, q.Region), token, n, q.keep)
		default:
			out, next, err = state.Page(tx, state.Inventory, state.Prefix(tenant), token, n, q.keep)
		}
		return err
	})
	return out, next, err
}

// readPins reads the versions rollouts pin a machine's applications at, by
// gallery/application.
func readPins(tx *state.Tx, tenant, machine string) (map[string]string, error) {
	pins := map[string]string{}
	prefix := state.Prefix(tenant, machine)
	err := state.RolloutPins.Scan(tx, prefix, nil, func(k []byte, p *statepb.RolloutPin) (bool, error) {
		pins[string(k[len(prefix):])] = p.Version
		return true, nil
	})
	return pins, err
}

// pinned is a profile's entry e (of application r) with the version a
// rollout pins it at, if any.
func pinned(e *pb.VMGalleryApplication, r Ref, version string) *pb.VMGalleryApplication {
	if version == "" {
		return e
	}
	e = proto.CloneOf(e)
	e.PackageReferenceId, e.ResolvedVersion, e.EnableAutomaticUpgrade = r.App()+"/"+version, version, false
	return e
}
