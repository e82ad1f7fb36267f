package fleet

import (
	"bytes"
	"context"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/boltpb"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
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

// profileOf reads a target's profile with its region, OS, and the other
// profiles its machines combine it with (a machine's scale set's; a scale
// set's instances').
type profileOf struct {
	region, os string
	profile    *pb.ApplicationProfile
	others     []*pb.ApplicationProfile
	save       func(p *pb.ApplicationProfile) error
}

func (f *Fleet) load(tx *bolt.Tx, tenant string, t Target) (*profileOf, error) {
	if (t.Machine == "") == (t.ScaleSet == "") {
		return nil, errs.New(errs.InvalidArgument, "target", "name either a machine or a scale set")
	}
	if t.Machine != "" {
		m, err := getMachine(tx, tenant, t.Machine)
		if err != nil {
			return nil, err
		}
		p := &profileOf{region: m.Region, os: m.OsType, profile: m.ApplicationProfile}
		if m.ScaleSet != "" {
			if ss, err := getScaleSet(tx, tenant, m.ScaleSet); err == nil {
				p.others = append(p.others, ss.ApplicationProfile)
			}
		}
		p.save = func(ap *pb.ApplicationProfile) error {
			m.ApplicationProfile, m.UpdateTime = ap, f.timestamp()
			return boltpb.Put(tx.Bucket(bucketMachines), key(tenant, m.Name), m)
		}
		return p, nil
	}
	ss, err := getScaleSet(tx, tenant, t.ScaleSet)
	if err != nil {
		return nil, err
	}
	p := &profileOf{region: ss.Region, os: ss.OsType, profile: ss.ApplicationProfile}
	c := tx.Bucket(bucketMachines).Cursor()
	prefix := key(tenant, "")
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		m := &pb.Machine{}
		if err := proto.Unmarshal(v, m); err != nil {
			return nil, err
		}
		if m.ScaleSet == ss.Name {
			p.others = append(p.others, m.ApplicationProfile)
		}
	}
	p.save = func(ap *pb.ApplicationProfile) error {
		ss.ApplicationProfile, ss.UpdateTime = ap, f.timestamp()
		return boltpb.Put(tx.Bucket(bucketScaleSets), key(tenant, ss.Name), ss)
	}
	return p, nil
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
	if len(in.Configuration) > MaxInlineConfigSize {
		return nil, errs.New(errs.InvalidArgument, "configuration", "configuration has %d bytes: at most %d can be given inline; use configurationReference", len(in.Configuration), MaxInlineConfigSize)
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
	// Read the target first (outside the write transaction: the checks
	// below read the catalog).
	var region, os string
	if err := f.db.View(func(tx *bolt.Tx) error {
		p, err := f.load(tx, tenant, t)
		if err == nil {
			region, os = p.region, p.os
		}
		return err
	}); err != nil {
		return nil, err
	}
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
	entry := proto.Clone(in).(*pb.VMGalleryApplication)
	entry.PackageReferenceId = ref.String()
	entry.ResolvedVersion = v.Name
	var out *pb.ApplicationProfile
	err = f.db.Update(func(tx *bolt.Tx) error {
		p, err := f.load(tx, tenant, t)
		if err != nil {
			return err
		}
		if err := boltpb.CheckETag("the application profile of "+t.String(), ifMatch, p.profile.GetEtag()); err != nil {
			return err
		}
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
			return errs.New(errs.InvalidArgument, "application", "The maximum number of VM applications (max=%d, current=%d) has been exceeded. Use fewer applications and retry the request.", MaxApplications, len(apps))
		}
		for _, other := range p.others {
			for _, a := range other.GetGalleryApplications() {
				r, _ := ParseRef(a.PackageReferenceId)
				switch {
				case a.PackageReferenceId == entry.PackageReferenceId:
					return errs.New(errs.InvalidArgument, "packageReferenceId", "More than one VM Application was specified with the same packageReferenceId: %s is in the scale set's profile and the machine's.", ref)
				case r.App() == ref.App():
					return errs.New(errs.InvalidArgument, "packageReferenceId", "Only one version of an application can be deployed to a machine: %s and %s are both in its profiles.", ref, r)
				}
			}
		}
		if n := len(apps) + otherCount(p.others); len(p.others) == 1 && n > MaxApplications {
			return errs.New(errs.InvalidArgument, "application", "The maximum number of VM applications (max=%d, current=%d) has been exceeded. Use fewer applications and retry the request.", MaxApplications, n)
		}
		tag, err := boltpb.NextETag(tx.Bucket(bucketMeta))
		if err != nil {
			return err
		}
		out = &pb.ApplicationProfile{GalleryApplications: apps, Etag: tag}
		return p.save(out)
	})
	if err != nil {
		return nil, err
	}
	f.Notify()
	return out, nil
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

func otherCount(ps []*pb.ApplicationProfile) int {
	n := 0
	for _, p := range ps {
		n += len(p.GetGalleryApplications())
	}
	return n
}

// RemoveApplication takes gallery/application out of a profile.
func (f *Fleet) RemoveApplication(ctx context.Context, tenant string, t Target, app, ifMatch string) (*pb.ApplicationProfile, error) {
	return f.editEntry(tenant, t, app, ifMatch, func(apps []*pb.VMGalleryApplication, i int) []*pb.VMGalleryApplication {
		return append(apps[:i:i], apps[i+1:]...)
	})
}

// RetryApplication makes agents run the application's failed operation
// again.
func (f *Fleet) RetryApplication(ctx context.Context, tenant string, t Target, app string) (*pb.ApplicationProfile, error) {
	return f.editEntry(tenant, t, app, "", func(apps []*pb.VMGalleryApplication, i int) []*pb.VMGalleryApplication {
		apps[i].Retry++
		return apps
	})
}

func (f *Fleet) editEntry(tenant string, t Target, app, ifMatch string, edit func([]*pb.VMGalleryApplication, int) []*pb.VMGalleryApplication) (*pb.ApplicationProfile, error) {
	var out *pb.ApplicationProfile
	err := f.db.Update(func(tx *bolt.Tx) error {
		p, err := f.load(tx, tenant, t)
		if err != nil {
			return err
		}
		if err := boltpb.CheckETag("the application profile of "+t.String(), ifMatch, p.profile.GetEtag()); err != nil {
			return err
		}
		apps := p.profile.GetGalleryApplications()
		for i, a := range apps {
			r, _ := ParseRef(a.PackageReferenceId)
			if r.App() == app {
				tag, err := boltpb.NextETag(tx.Bucket(bucketMeta))
				if err != nil {
					return err
				}
				out = &pb.ApplicationProfile{GalleryApplications: edit(apps, i), Etag: tag}
				return p.save(out)
			}
		}
		return errs.New(errs.NotFound, "application", "Application '%s' isn't in the application profile of %s.", app, t)
	})
	if err != nil {
		return nil, err
	}
	f.Notify()
	return out, nil
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

// GoalState computes a machine's goal state.
func (f *Fleet) GoalState(ctx context.Context, tenant, machine string) (*pb.GoalState, error) {
	var m *pb.Machine
	var entries []*pb.VMGalleryApplication
	err := f.db.View(func(tx *bolt.Tx) (err error) {
		if m, err = getMachine(tx, tenant, machine); err != nil {
			return err
		}
		if m.ScaleSet != "" {
			if ss, err := getScaleSet(tx, tenant, m.ScaleSet); err == nil {
				entries = append(entries, ss.ApplicationProfile.GetGalleryApplications()...)
			}
		}
		entries = append(entries, m.ApplicationProfile.GetGalleryApplications()...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	byApp := map[string]*pb.VMGalleryApplication{} // the machine's own entry wins
	for _, e := range entries {
		r, _ := ParseRef(e.PackageReferenceId)
		byApp[r.App()] = e
	}
	gs := &pb.GoalState{Machine: m.Name, Region: m.Region}
	for _, e := range byApp {
		ref, _ := ParseRef(e.PackageReferenceId)
		version := ref.Version
		if version == "latest" {
			version = e.ResolvedVersion
			if e.EnableAutomaticUpgrade {
				if lv, err := f.cat.GetVersion(ctx, ref.in(tenant), ref.Gallery, ref.Application, "latest"); err == nil && lv.Package != nil && f.avail.Available(ctx, lv, m.Region) == nil {
					version = lv.Name
				}
			}
		}
		ga := &pb.GoalApplication{Tenant: ref.Tenant, Gallery: ref.Gallery, Application: ref.Application, Version: version, Order: e.Order,
			TreatFailureAsDeploymentFailure: e.TreatFailureAsDeploymentFailure, ConfigurationReference: e.ConfigurationReference,
			Configuration: e.Configuration, Retry: e.Retry}
		if v, err := f.cat.GetVersion(ctx, ref.in(tenant), ref.Gallery, ref.Application, version); err == nil {
			ga.ManageActions, ga.Settings = v.GetPublishingProfile().GetManageActions(), v.GetPublishingProfile().GetSettings()
			ga.Package, ga.DefaultConfiguration = v.Package, v.DefaultConfiguration
		} else if !errs.Is(err, errs.NotFound) {
			return nil, err
		}
		gs.Applications = append(gs.Applications, ga)
	}
	sort.Slice(gs.Applications, func(i, j int) bool {
		a, b := gs.Applications[i], gs.Applications[j]
		return a.Gallery+"/"+a.Application < b.Gallery+"/"+b.Application
	})
	gs.Generation = generation(gs.Applications)
	return gs, nil
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

// ReportStatus records a machine's instance view.
func (f *Fleet) ReportStatus(ctx context.Context, tenant, machine string, iv *pb.InstanceView) error {
	if iv == nil {
		return errs.New(errs.InvalidArgument, "instanceView", "instanceView is required")
	}
	iv = proto.Clone(iv).(*pb.InstanceView)
	iv.LastReportTime, iv.Connected = f.timestamp(), false
	return f.db.Update(func(tx *bolt.Tx) error {
		if _, err := getMachine(tx, tenant, machine); err != nil {
			return err
		}
		return boltpb.Put(tx.Bucket(bucketViews), key(tenant, machine), iv)
	})
}

// Inventory lists the tenant's machines' application statuses, filtered by
// application (gallery/application or application), region and state.
func (f *Fleet) Inventory(ctx context.Context, tenant, app, region, state string) ([]*pb.InventoryEntry, error) {
	var out []*pb.InventoryEntry
	err := f.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketMachines).Cursor()
		prefix := key(tenant, "")
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			m := &pb.Machine{}
			if err := proto.Unmarshal(v, m); err != nil {
				return err
			}
			if region != "" && m.Region != region {
				continue
			}
			if err := f.withView(tx, m); err != nil {
				return err
			}
			for _, s := range m.InstanceView.Applications {
				if app != "" && s.Application != app && !strings.HasSuffix(s.Application, "/"+app) {
					continue
				}
				if state != "" && !strings.EqualFold(s.State, state) {
					continue
				}
				out = append(out, &pb.InventoryEntry{Machine: m.Name, Region: m.Region, ScaleSet: m.ScaleSet, Status: s})
			}
		}
		return nil
	})
	return out, err
}
