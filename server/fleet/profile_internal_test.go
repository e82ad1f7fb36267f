package fleet

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// wantErr fails unless err is of class c naming field.
func wantErr(t *testing.T, err error, c errs.Class, field string) {
	t.Helper()
	if !errs.Is(err, c) || errs.FieldOf(err) != field {
		t.Fatalf("got %v (class %v, field %q), want class %v naming %q", err, errs.ClassOf(err), errs.FieldOf(err), c, field)
	}
}

func TestParseRef(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Ref
	}{
		{"g/a/1.0.0", Ref{"", "g", "a", "1.0.0"}},
		{"g/a/latest", Ref{"", "g", "a", "latest"}},
		{"my.gallery/my-app_2/2018.12.1", Ref{"", "my.gallery", "my-app_2", "2018.12.1"}},
		{"contoso:g/a/1.0.0", Ref{"contoso", "g", "a", "1.0.0"}},
		{"contoso:g/a/latest", Ref{"contoso", "g", "a", "latest"}},
		{"/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/applications/a/versions/1.0.0", Ref{"", "g", "a", "1.0.0"}},
		{"/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/Galleries/g/Applications/a/Versions/latest", Ref{"", "g", "a", "latest"}},
	} {
		got, err := ParseRef(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{
		"", "g", "g/a", "g/a/", "/a/1.0.0", "g//1.0.0", "g/a/1.0.0/extra", "g/a/1.0.0/",
		":g/a/1.0.0",           // a shared gallery's tenant is required
		"bad tenant:g/a/1.0.0", // and a name
		"-x:g/a/1.0.0",
		"contoso:g/a",
	} {
		_, err := ParseRef(in)
		wantErr(t, err, errs.InvalidArgument, "packageReferenceId")
	}
}

// TestRefNames: a Ref prints as a packageReferenceId, App leaves the
// version out, and in names the gallery's tenant for a machine of another.
func TestRefNames(t *testing.T) {
	for _, c := range []struct {
		r            Ref
		str, app, in string
	}{
		{Ref{"", "g", "a", "1.0.0"}, "g/a/1.0.0", "g/a", "mine"},
		{Ref{"contoso", "g", "a", "latest"}, "contoso:g/a/latest", "contoso:g/a", "contoso"},
	} {
		if c.r.String() != c.str || c.r.App() != c.app || c.r.in("mine") != c.in {
			t.Errorf("%+v: String %q, App %q, in %q; want %q, %q, %q", c.r, c.r.String(), c.r.App(), c.r.in("mine"), c.str, c.app, c.in)
		}
		if back, err := ParseRef(c.r.String()); err != nil || back != c.r {
			t.Errorf("ParseRef(%q) = %+v, %v", c.r.String(), back, err)
		}
	}
}

func TestCheckTags(t *testing.T) {
	many := func(n int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("t%02d", i)] = "v"
		}
		return m
	}
	// bytes(n) is 16 tags of n/16 bytes each, the last with the rest.
	bytes := func(n int) map[string]string {
		m := map[string]string{}
		for i := range 16 {
			name := fmt.Sprintf("t%02d", i)
			size := n / 16
			if i == 15 {
				size = n - 15*(n/16)
			}
			m[name] = strings.Repeat("v", size-len(name))
		}
		return m
	}
	// "é" is 2 bytes: names and values are limited in characters, the
	// total in bytes.
	for _, c := range []struct {
		name string
		tags map[string]string
		ok   bool
	}{
		{"none", nil, true},
		{"50 tags", many(MaxTags), true},
		{"51 tags", many(MaxTags + 1), false},
		{"an empty name", map[string]string{"": "v"}, false},
		{"an empty value", map[string]string{"k": ""}, true},
		{"a name of 512 characters", map[string]string{strings.Repeat("é", MaxTagNameLen): ""}, true},
		{"a name of 513 characters", map[string]string{strings.Repeat("n", MaxTagNameLen+1): ""}, false},
		{"a value of 256 characters", map[string]string{"k": strings.Repeat("é", MaxTagValueLen)}, true},
		{"a value of 257 characters", map[string]string{"k": strings.Repeat("v", MaxTagValueLen+1)}, false},
		{"4096 bytes in all", bytes(MaxTagBytes), true},
		{"4097 bytes in all", bytes(MaxTagBytes + 1), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkTags(c.tags)
			if c.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, errs.InvalidArgument, "tags")
		})
	}
}

func entry(ref string) *pb.VMGalleryApplication {
	return &pb.VMGalleryApplication{PackageReferenceId: ref}
}

func profile(etag string, refs ...string) *pb.ApplicationProfile {
	p := &pb.ApplicationProfile{Etag: etag}
	for _, r := range refs {
		p.GalleryApplications = append(p.GalleryApplications, entry(r))
	}
	return p
}

// apps names n applications g/appNN/1.0.0 from first on.
func apps(first, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("g/app%02d/1.0.0", first+i))
	}
	return out
}

func refs(apps []*pb.VMGalleryApplication) []string {
	var out []string
	for _, a := range apps {
		out = append(out, a.PackageReferenceId)
	}
	return out
}

// TestWithEntry: the seeds' rules across a machine's profiles, checked
// on profiles built in memory: one entry per application (a new version
// replaces the old, keeping its retry count), at most 25 applications on a
// machine with its scale set's, no packageReferenceId in both profiles and
// no two versions of one application.
func TestWithEntry(t *testing.T) {
	vm, ss := Target{Machine: "vm1"}, Target{ScaleSet: "ss1"}
	for _, c := range []struct {
		name    string
		target  Target
		own     *pb.ApplicationProfile
		others  []*pb.ApplicationProfile
		add     string
		ifMatch string
		want    []string // the profile's entries after
		class   errs.Class
		field   string
		msg     string
	}{
		{name: "into an empty profile", target: vm, add: "g/a/1.0.0", want: []string{"g/a/1.0.0"}},
		{name: "entries are kept in order", target: vm, own: profile(`"e"`, "g/b/1.0.0", "g/d/1.0.0"), add: "g/c/1.0.0",
			want: []string{"g/b/1.0.0", "g/c/1.0.0", "g/d/1.0.0"}},
		{name: "a new version replaces the application's entry", target: vm, own: profile(`"e"`, "g/a/1.0.0", "g/b/1.0.0"), add: "g/a/latest",
			want: []string{"g/a/latest", "g/b/1.0.0"}},
		{name: "a shared gallery's application is another application", target: vm, own: profile(`"e"`, "g/a/1.0.0"), add: "contoso:g/a/1.0.0",
			want: []string{"contoso:g/a/1.0.0", "g/a/1.0.0"}},
		{name: "if-match the profile's etag", target: vm, own: profile(`"e1"`), add: "g/a/1.0.0", ifMatch: `"e1"`, want: []string{"g/a/1.0.0"}},
		{name: "if-match without quotes", target: vm, own: profile(`"e1"`), add: "g/a/1.0.0", ifMatch: `e1`, want: []string{"g/a/1.0.0"}},
		{name: "if-match another etag", target: vm, own: profile(`"e1"`), add: "g/a/1.0.0", ifMatch: `"e0"`,
			class: errs.FailedPrecondition, field: "ifMatch", msg: "the application profile of machine 'vm1' has etag"},
		{name: "25 applications", target: vm, own: profile(`"e"`, apps(0, 24)...), add: "g/app24/1.0.0", want: apps(0, 25)},
		{name: "a 26th application", target: vm, own: profile(`"e"`, apps(0, 25)...), add: "g/app25/1.0.0",
			class: errs.InvalidArgument, field: "application", msg: "The maximum number of VM applications (max=25, current=26) has been exceeded."},
		{name: "a new version in a full profile", target: vm, own: profile(`"e"`, apps(0, 25)...), add: "g/app07/latest",
			want: append(append(apps(0, 7), "g/app07/latest"), apps(8, 17)...)},
		{name: "the machine's and its scale set's together: 25", target: vm, own: profile(`"e"`, apps(0, 4)...),
			others: []*pb.ApplicationProfile{profile(`"s"`, apps(10, 20)...)}, add: "g/app04/1.0.0", want: apps(0, 5)},
		{name: "the machine's and its scale set's together: 26", target: vm, own: profile(`"e"`, apps(0, 5)...),
			others: []*pb.ApplicationProfile{profile(`"s"`, apps(10, 20)...)}, add: "g/app05/1.0.0",
			class: errs.InvalidArgument, field: "application", msg: "(max=25, current=26)"},
		{name: "the same packageReferenceId in the scale set's profile", target: vm,
			others: []*pb.ApplicationProfile{profile(`"s"`, "g/a/1.0.0")}, add: "g/a/1.0.0",
			class: errs.InvalidArgument, field: "packageReferenceId", msg: "More than one VM Application was specified with the same packageReferenceId: g/a/1.0.0"},
		{name: "another version in the scale set's profile", target: vm,
			others: []*pb.ApplicationProfile{profile(`"s"`, "g/a/1.0.0")}, add: "g/a/2.0.0",
			class: errs.InvalidArgument, field: "packageReferenceId", msg: "Only one version of an application can be deployed to a machine: g/a/2.0.0 and g/a/1.0.0"},
		{name: "latest in an instance's profile", target: ss,
			others: []*pb.ApplicationProfile{profile(`"i0"`), profile(`"i1"`, "g/a/latest")}, add: "g/a/1.0.0",
			class: errs.InvalidArgument, field: "packageReferenceId", msg: "g/a/1.0.0 and g/a/latest"},
		{name: "another tenant's application of the same name beside it", target: vm,
			others: []*pb.ApplicationProfile{profile(`"s"`, "contoso:g/a/1.0.0")}, add: "g/a/1.0.0", want: []string{"g/a/1.0.0"}},
		{name: "a scale set's instances each with 25 at most", target: ss, own: profile(`"e"`, apps(0, 4)...),
			others: []*pb.ApplicationProfile{profile(`"i0"`, apps(10, 20)...), profile(`"i1"`, apps(40, 20)...)}, add: "g/app04/1.0.0",
			want: apps(0, 5)},
		{name: "a scale set's instance with 26", target: ss, own: profile(`"e"`, apps(0, 5)...),
			others: []*pb.ApplicationProfile{profile(`"i0"`, apps(10, 2)...), profile(`"i1"`, apps(40, 20)...)}, add: "g/app05/1.0.0",
			class: errs.InvalidArgument, field: "application", msg: "(max=25, current=26)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ref, err := ParseRef(c.add)
			if err != nil {
				t.Fatal(err)
			}
			p := &profileOf{profile: c.own, others: c.others}
			in := entry(c.add)
			got, err := withEntry(p, c.target, in, ref, c.ifMatch)
			if c.want == nil {
				wantErr(t, err, c.class, c.field)
				if !strings.Contains(err.Error(), c.msg) {
					t.Fatalf("message %q, want it to hold %q", err, c.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(refs(got)) != fmt.Sprint(c.want) {
				t.Fatalf("entries %v, want %v", refs(got), c.want)
			}
		})
	}
}

// TestWithEntryKeepsRetry: a new version of an application keeps the
// retry counter of the entry it replaces (agents retry on a change of
// it), and the caller's entry isn't changed.
func TestWithEntryKeepsRetry(t *testing.T) {
	own := profile(`"e"`, "g/a/1.0.0")
	own.GalleryApplications[0].Retry = 3
	in := entry("g/a/2.0.0")
	ref, _ := ParseRef(in.PackageReferenceId)
	got, err := withEntry(&profileOf{profile: own}, Target{Machine: "vm1"}, in, ref, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Retry != 3 || got[0].PackageReferenceId != "g/a/2.0.0" {
		t.Fatalf("entries %v", got)
	}
	if in.Retry != 0 {
		t.Fatal("withEntry changed the caller's entry")
	}
}

// TestGeneration: a goal state's generation changes with anything in it
// and only then.
func TestGeneration(t *testing.T) {
	base := func() []*pb.GoalApplication {
		return []*pb.GoalApplication{
			{Gallery: "g", Application: "a", Version: "1.0.0", Package: &pb.Artifact{Sha256: "aa"}},
			{Gallery: "g", Application: "b", Version: "2.0.0", Configuration: []byte("x=1")},
		}
	}
	gen := generation(base(), nil, nil, nil)
	if len(gen) != 24 || gen != generation(base(), nil, nil, nil) {
		t.Fatalf("generation %q, then %q", gen, generation(base(), nil, nil, nil))
	}
	order := int32(1)
	seen := map[string]string{gen: "the base"}
	for name, change := range map[string]func(a []*pb.GoalApplication) []*pb.GoalApplication{
		"a version":             func(a []*pb.GoalApplication) []*pb.GoalApplication { a[0].Version = "1.0.1"; return a },
		"an order":              func(a []*pb.GoalApplication) []*pb.GoalApplication { a[1].Order = &order; return a },
		"a configuration":       func(a []*pb.GoalApplication) []*pb.GoalApplication { a[1].Configuration = []byte("x=2"); return a },
		"a package":             func(a []*pb.GoalApplication) []*pb.GoalApplication { a[0].Package.Sha256 = "ab"; return a },
		"a retry":               func(a []*pb.GoalApplication) []*pb.GoalApplication { a[0].Retry++; return a },
		"the tenant":            func(a []*pb.GoalApplication) []*pb.GoalApplication { a[0].Tenant = "contoso"; return a },
		"an application less":   func(a []*pb.GoalApplication) []*pb.GoalApplication { return a[:1] },
		"no applications":       func(a []*pb.GoalApplication) []*pb.GoalApplication { return nil },
		"the order of the list": func(a []*pb.GoalApplication) []*pb.GoalApplication { return []*pb.GoalApplication{a[1], a[0]} },
	} {
		g := generation(change(base()), nil, nil, nil)
		if other, dup := seen[g]; dup {
			t.Errorf("%s: the same generation as %s", name, other)
		}
		seen[g] = name
	}
	// And with the gallery's key changes.
	changes := []*pb.KeyChange{{Signatures: []string{"untrusted comment: x"}}}
	if g := generation(base(), changes, nil, nil); seen[g] != "" || g != generation(base(), changes, nil, nil) {
		t.Errorf("with a key change: %q, the same as %q", g, seen[g])
	}
	// And with a preheat.
	pre := []*pb.GoalPreheat{{Gallery: "g", Application: "a", Version: "1.1.0"}}
	if g := generation(base(), nil, nil, pre); seen[g] != "" || g != generation(base(), nil, nil, pre) {
		t.Errorf("with a preheat: %q, the same as %q", g, seen[g])
	}
	// Two entries whose encodings, joined, encode one: the lengths keep
	// them apart.
	split := generation([]*pb.GoalApplication{{Gallery: "g"}, {Application: "a"}}, nil, nil, nil)
	if split == generation([]*pb.GoalApplication{{Gallery: "g", Application: "a"}}, nil, nil, nil) {
		t.Error("two entries and the one their encodings join to have the same generation")
	}
}
