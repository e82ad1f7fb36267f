package catalog

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

var testNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// pure is a Store for the checks that read only the regions and the time.
func pure() *Store {
	return &Store{regions: []string{"eastus", "westus", "northeurope"}, now: func() time.Time { return testNow }}
}

// refused fails unless err is InvalidArgument naming field.
func refused(t *testing.T, what string, err error, field string) {
	t.Helper()
	if !errs.Is(err, errs.InvalidArgument) || errs.FieldOf(err) != field {
		t.Errorf("%s: %v (class %v, field %q), want InvalidArgument naming %q", what, err, errs.ClassOf(err), errs.FieldOf(err), field)
	}
}

func n32(n int32) *int32 { return &n }

func TestNames(t *testing.T) {
	for _, ok := range []string{"g", "G-1.x_y", strings.Repeat("g", MaxGalleryNameLen)} {
		if err := ValidateGalleryName(ok); err != nil {
			t.Errorf("gallery %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "a/b", "end.", "ü", strings.Repeat("g", MaxGalleryNameLen+1)} {
		refused(t, "gallery "+bad, ValidateGalleryName(bad), "gallery")
		refused(t, "tenant "+bad, ValidateTenant(bad), "tenant")
	}
	if err := ValidateApplicationName(strings.Repeat("a", MaxApplicationNameLen)); err != nil {
		t.Error(err)
	}
	refused(t, "application of 118", ValidateApplicationName(strings.Repeat("a", MaxApplicationNameLen+1)), "application")
	for _, ok := range []string{"0.0.0", "1.2.3", "2147483647.2147483647.2147483647"} {
		if _, err := ParseVersion(ok); err != nil {
			t.Errorf("version %q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "1", "1.0", "1.0.0.0", "01.0.0", "1.00.0", "+1.0.0", "-1.0.0", "1.0.0-beta", "2147483648.0.0", "a.b.c", "latest"} {
		_, err := ParseVersion(bad)
		refused(t, "version "+bad, err, "version")
	}
	for _, c := range []struct{ field, name string }{
		{"publishingProfile.settings.packageFileName", "../x"},
		{"publishingProfile.settings.packageFileName", "a/b"},
		{"publishingProfile.settings.packageFileName", `a\b`},
		{"publishingProfile.settings.configFileName", "."},
		{"publishingProfile.settings.configFileName", "a\x00b"},
		{"publishingProfile.settings.configFileName", strings.Repeat("f", MaxFileNameLen+1)},
		{"publishingProfile.settings.configFileName", "bad\xff"},
	} {
		refused(t, "file name "+c.name, ValidateFileName(c.field, c.name), c.field)
	}
	for _, ok := range []string{"", "app.tar.gz", "setup .exe", "a.b"} {
		if err := ValidateFileName("f", ok); err != nil {
			t.Errorf("file name %q: %v", ok, err)
		}
	}
}

// version is a valid version to create, as a client would send it.
func version() *pb.GalleryApplicationVersion {
	return &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "1.0.0", Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{ManageActions: &pb.UserArtifactManage{Install: "sh install.sh", Remove: "sh remove.sh"}}}
}

// TestValidateVersion: each rule of a version refuses naming the field at
// fault; what is valid comes back with the defaults filled in and the
// enumerations spelt as Azure spells them.
func TestValidateVersion(t *testing.T) {
	s := pure()
	past, future := timestamppb.New(testNow.Add(-time.Hour)), timestamppb.New(testNow.Add(time.Hour))
	for _, c := range []struct {
		name  string
		edit  func(v *pb.GalleryApplicationVersion)
		field string
	}{
		{"gallery", func(v *pb.GalleryApplicationVersion) { v.Gallery = "a b" }, "gallery"},
		{"application", func(v *pb.GalleryApplicationVersion) { v.Application = "" }, "application"},
		{"version", func(v *pb.GalleryApplicationVersion) { v.Name = "1.0" }, "version"},
		{"no location", func(v *pb.GalleryApplicationVersion) { v.Location = "" }, "location"},
		{"an unknown location", func(v *pb.GalleryApplicationVersion) { v.Location = "mars" }, "location"},
		{"no install", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ManageActions.Install = "" }, "publishingProfile.manageActions.install"},
		{"no manage actions", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ManageActions = nil }, "publishingProfile.manageActions.install"},
		{"a blank remove", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ManageActions.Remove = " \t" }, "publishingProfile.manageActions.remove"},
		{"a blank update", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ManageActions.Update = " " }, "publishingProfile.manageActions.update"},
		{"NUL in install", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ManageActions.Install = "a\x00b" }, "publishingProfile.manageActions.install"},
		{"install too long", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.ManageActions.Install = strings.Repeat("x", maxCommandLen+1)
		}, "publishingProfile.manageActions.install"},
		{"update not UTF-8", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ManageActions.Update = "a\xff" }, "publishingProfile.manageActions.update"},
		{"packageFileName", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.Settings = &pb.UserArtifactSettings{PackageFileName: "../x"}
		}, "publishingProfile.settings.packageFileName"},
		{"configFileName", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.Settings = &pb.UserArtifactSettings{ConfigFileName: "a/b"}
		}, "publishingProfile.settings.configFileName"},
		{"scriptBehaviorAfterReboot", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.Settings = &pb.UserArtifactSettings{ScriptBehaviorAfterReboot: "Sometimes"}
		}, "publishingProfile.settings.scriptBehaviorAfterReboot"},
		{"storageAccountType", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.StorageAccountType = "Standard_GRS" }, "publishingProfile.storageAccountType"},
		{"mediaLink not http(s)", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.Source = &pb.UserArtifactSource{MediaLink: "ftp://h/p"}
		}, "publishingProfile.source.mediaLink"},
		{"defaultConfigurationLink without a host", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.Source = &pb.UserArtifactSource{DefaultConfigurationLink: "https:///p"}
		}, "publishingProfile.source.defaultConfigurationLink"},
		{"endOfLifeDate past", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.EndOfLifeDate = past }, "publishingProfile.endOfLifeDate"},
		{"endOfLifeDate now", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.EndOfLifeDate = timestamppb.New(testNow) }, "publishingProfile.endOfLifeDate"},
		{"endOfLifeDate invalid", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.EndOfLifeDate = &timestamppb.Timestamp{Seconds: 1, Nanos: -1}
		}, "publishingProfile.endOfLifeDate"},
		{"replicaCount 0", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ReplicaCount = n32(0) }, "publishingProfile.replicaCount"},
		{"replicaCount 11", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ReplicaCount = n32(11) }, "publishingProfile.replicaCount"},
		{"an empty target region", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "eastus"}, nil}
		}, "publishingProfile.targetRegions[1]"},
		{"an unknown target region", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "mars"}}
		}, "publishingProfile.targetRegions[0].name"},
		{"a target region twice", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "eastus"}, {Name: "westus"}, {Name: "eastus"}}
		}, "publishingProfile.targetRegions[2].name"},
		{"regionalReplicaCount 11", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "eastus", RegionalReplicaCount: n32(11)}}
		}, "publishingProfile.targetRegions[0].regionalReplicaCount"},
		{"a region's storageAccountType", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "eastus", StorageAccountType: "LRS"}}
		}, "publishingProfile.targetRegions[0].storageAccountType"},
		{"the location not a target", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "westus"}}
		}, "publishingProfile.targetRegions"},
	} {
		v := version()
		c.edit(v)
		refused(t, c.name, s.validateVersion(v), c.field)
	}

	// Defaults: settings, reboot behaviour, storage type, the location as
	// the only target.
	v := version()
	v.PublishingProfile.Settings = nil
	if err := s.validateVersion(v); err != nil {
		t.Fatal(err)
	}
	want := version().PublishingProfile
	want.Settings = &pb.UserArtifactSettings{ScriptBehaviorAfterReboot: RebootNone}
	want.StorageAccountType = StandardLRS
	want.ReplicationMode = ReplicationFull
	want.TargetRegions = []*pb.TargetRegion{{Name: "eastus"}}
	if !proto.Equal(v.PublishingProfile, want) {
		t.Errorf("defaults:\n got  %v\n want %v", v.PublishingProfile, want)
	}

	// Any casing of an enumeration, spelt Azure's way; the limits included.
	v = version()
	pp := v.PublishingProfile
	pp.Settings = &pb.UserArtifactSettings{ScriptBehaviorAfterReboot: "rerun", PackageFileName: "app.tgz"}
	pp.StorageAccountType = "premium_lrs"
	pp.ReplicaCount = n32(MaxReplicaCount)
	pp.EndOfLifeDate = future
	pp.Source = &pb.UserArtifactSource{MediaLink: "https://blob.example/p?sv=1&sig=x"}
	pp.TargetRegions = []*pb.TargetRegion{{Name: "westus", RegionalReplicaCount: n32(MinReplicaCount), StorageAccountType: "STANDARD_zrs"}, {Name: "eastus"}}
	if err := s.validateVersion(v); err != nil {
		t.Fatal(err)
	}
	if pp.Settings.ScriptBehaviorAfterReboot != RebootRerun || pp.StorageAccountType != PremiumLRS || pp.TargetRegions[0].StorageAccountType != StandardZRS || pp.TargetRegions[1].StorageAccountType != "" {
		t.Errorf("canonical spellings: %v", pp)
	}
}

func TestValidateApplication(t *testing.T) {
	s := pure()
	app := func() *pb.GalleryApplication {
		return &pb.GalleryApplication{Gallery: "g", Name: "a", Location: "westus", SupportedOsType: "linux"}
	}
	for _, c := range []struct {
		name  string
		edit  func(a *pb.GalleryApplication)
		field string
	}{
		{"gallery", func(a *pb.GalleryApplication) { a.Gallery = "" }, "gallery"},
		{"name", func(a *pb.GalleryApplication) { a.Name = "a." }, "application"},
		{"location", func(a *pb.GalleryApplication) { a.Location = "mars" }, "location"},
		{"no OS", func(a *pb.GalleryApplication) { a.SupportedOsType = "" }, "supportedOSType"},
		{"another OS", func(a *pb.GalleryApplication) { a.SupportedOsType = "macOS" }, "supportedOSType"},
		{"description too long", func(a *pb.GalleryApplication) { a.Description = strings.Repeat("d", maxTextLen+1) }, "description"},
		{"eula not UTF-8", func(a *pb.GalleryApplication) { a.Eula = "\xff" }, "eula"},
		{"privacyStatementUri relative", func(a *pb.GalleryApplication) { a.PrivacyStatementUri = "/privacy" }, "privacyStatementUri"},
		{"releaseNoteUri not a URI", func(a *pb.GalleryApplication) { a.ReleaseNoteUri = "::" }, "releaseNoteUri"},
		{"endOfLifeDate past", func(a *pb.GalleryApplication) { a.EndOfLifeDate = timestamppb.New(testNow.Add(-time.Second)) }, "endOfLifeDate"},
		{"a custom action without a script", func(a *pb.GalleryApplication) {
			a.CustomActions = []*pb.GalleryApplicationCustomAction{{Name: "x"}}
		}, "customActions[0].script"},
		{"a custom action twice", func(a *pb.GalleryApplication) {
			a.CustomActions = []*pb.GalleryApplicationCustomAction{{Name: "x", Script: "true"}, {Name: "X", Script: "true"}}
		}, "customActions[1].name"},
	} {
		a := app()
		c.edit(a)
		refused(t, c.name, s.validateApplication(a), c.field)
	}
	a := app()
	a.Description, a.PrivacyStatementUri = strings.Repeat("d", maxTextLen), "https://example.com/privacy"
	if err := s.validateApplication(a); err != nil || a.SupportedOsType != OSLinux {
		t.Fatalf("valid application: %v, OS %q", err, a.SupportedOsType)
	}
}

func TestValidateGallery(t *testing.T) {
	s := pure()
	for _, c := range []struct {
		g     *pb.Gallery
		field string
	}{
		{&pb.Gallery{Name: "", Location: "eastus"}, "gallery"},
		{&pb.Gallery{Name: "g", Location: ""}, "location"},
		{&pb.Gallery{Name: "g", Location: "EastUS"}, "location"}, // regions are matched exactly
		{&pb.Gallery{Name: "g", Location: "eastus", Description: "\xff"}, "description"},
	} {
		refused(t, c.g.String(), s.validateGallery(c.g), c.field)
	}
	if err := s.validateGallery(&pb.Gallery{Name: "g", Location: "eastus", Description: "d"}); err != nil {
		t.Fatal(err)
	}
}

// TestApplyMask: the mutable paths of a mask are copied (and cleared when
// the request leaves them unset), immutable ones may only repeat the stored
// value, anything else is refused naming updateMask; the stored resource is
// never changed.
func TestApplyMask(t *testing.T) {
	eol := timestamppb.New(testNow.Add(24 * time.Hour))
	cur := &pb.GalleryApplicationVersion{Gallery: "g", Application: "a", Name: "1.0.0", Location: "eastus",
		PublishingProfile: &pb.PublishingProfile{
			ManageActions:      &pb.UserArtifactManage{Install: "i", Remove: "r"},
			Settings:           &pb.UserArtifactSettings{PackageFileName: "p", ScriptBehaviorAfterReboot: RebootNone},
			TargetRegions:      []*pb.TargetRegion{{Name: "eastus"}},
			ReplicaCount:       n32(2),
			EndOfLifeDate:      eol,
			StorageAccountType: StandardLRS,
		}}
	stored := proto.Clone(cur)
	in := proto.CloneOf(cur)
	in.PublishingProfile.TargetRegions = append(in.PublishingProfile.TargetRegions, &pb.TargetRegion{Name: "westus"})
	in.PublishingProfile.ExcludeFromLatest = true
	in.PublishingProfile.EndOfLifeDate = nil
	in.PublishingProfile.Source = &pb.UserArtifactSource{MediaLink: "https://h/new?sig=2"}
	in.PublishingProfile.ManageActions.Install = "changed"
	in.PublishingProfile.Settings.ConfigFileName = "c"
	in.Location = "westus"

	next, err := applyMask(cur, in, []string{
		"publishing_profile.target_regions", "publishing_profile.exclude_from_latest", "publishing_profile.end_of_life_date",
		"publishing_profile.source.media_link", "publishing_profile.replica_count",
		"publishing_profile.manage_actions.remove", "publishing_profile.storage_account_type", // immutable, unchanged
	}, versionRules)
	if err != nil {
		t.Fatal(err)
	}
	pp := next.PublishingProfile
	if len(pp.TargetRegions) != 2 || !pp.ExcludeFromLatest || pp.EndOfLifeDate != nil || pp.GetSource().GetMediaLink() != "https://h/new?sig=2" ||
		pp.GetReplicaCount() != 2 || pp.ManageActions.Install != "i" || pp.Settings.ConfigFileName != "" || next.Location != "eastus" {
		t.Errorf("after the mask: %v", next)
	}
	if !proto.Equal(cur, stored) {
		t.Error("applyMask changed the stored version")
	}

	for _, c := range []struct {
		name  string
		mask  []string
		field string
		msg   string
	}{
		{"no mask", nil, "updateMask", "updateMask is required"},
		{"an immutable field changed", []string{"publishing_profile.manage_actions.install"}, "publishingProfile.manageActions.install",
			"Changing property 'galleryApplicationVersion.properties.publishingProfile.manageActions.install' isn't allowed."},
		{"a parent of immutable fields, one changed", []string{"publishing_profile.settings"}, "publishingProfile.settings.configFileName",
			"Changing property 'galleryApplicationVersion.properties.publishingProfile.settings.configFileName' isn't allowed."},
		{"the location changed", []string{"location"}, "location", "Changing property 'galleryApplicationVersion.location' isn't allowed."},
		{"an unknown path", []string{"publishing_profile.colour"}, "updateMask", "updateMask path 'publishing_profile.colour' can't be updated"},
		{"the name", []string{"name"}, "updateMask", "can't be updated"},
		{"a parent of mutable and immutable fields", []string{"publishing_profile"}, "updateMask", "can't be updated"},
		{"a parent of mutable fields only", []string{"publishing_profile.source"}, "updateMask", "can't be updated"},
		{"a JSON name", []string{"publishingProfile.targetRegions"}, "updateMask", "can't be updated"},
		{"a good path, then a bad one", []string{"publishing_profile.exclude_from_latest", "publishing_profile.manage_actions"}, "publishingProfile.manageActions.install", "isn't allowed"},
	} {
		_, err := applyMask(cur, in, c.mask, versionRules)
		refused(t, c.name, err, c.field)
		if err != nil && !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %q, want %q", c.name, err, c.msg)
		}
	}
	// A parent of immutable fields whose values are all the same passes.
	same := proto.CloneOf(cur)
	same.PublishingProfile.ExcludeFromLatest = true
	if _, err := applyMask(cur, same, []string{"publishing_profile.manage_actions", "publishing_profile.settings"}, versionRules); err != nil {
		t.Errorf("unchanged immutable parents: %v", err)
	}

	// The other resources' rules, and a path through a message cur lacks.
	g, err := applyMask(&pb.Gallery{Name: "g", Location: "eastus"}, &pb.Gallery{Name: "x", Location: "eastus", Description: "new"}, []string{"description", "location"}, galleryRules)
	if err != nil || g.Description != "new" || g.Name != "g" {
		t.Errorf("gallery: %v, %v", g, err)
	}
	_, err = applyMask(&pb.GalleryApplication{SupportedOsType: OSLinux}, &pb.GalleryApplication{SupportedOsType: OSWindows}, []string{"supported_os_type"}, applicationRules)
	refused(t, "application's OS", err, "supportedOSType")
	if err != nil && !strings.Contains(err.Error(), "'galleryApplication.properties.supportedOSType'") {
		t.Errorf("application's OS: %q", err)
	}
	bare := &pb.GalleryApplicationVersion{}
	got, err := applyMask(bare, in, []string{"publishing_profile.source.default_configuration_link", "publishing_profile.source.media_link"}, versionRules)
	if err != nil || got.GetPublishingProfile().GetSource().GetMediaLink() != "https://h/new?sig=2" || got.PublishingProfile.ManageActions != nil {
		t.Errorf("into a version without a profile: %v, %v", got, err)
	}
}

// customVersion is a valid version with custom actions of every parameter
// type, and a health check.
func customVersion() *pb.GalleryApplicationVersion {
	v := version()
	pp := v.PublishingProfile
	pp.EnableHealthCheck = true
	pp.AdvancedSettings = map[string]string{"tier": "gold", strings.Repeat("k", MaxAdvancedKeyLen): strings.Repeat("v", MaxAdvancedValueLen)}
	pp.CustomActions = []*pb.GalleryApplicationCustomAction{
		{Name: "health", Script: "curl -fs localhost:8080/healthz"},
		{Name: "restart", Script: "systemctl restart app", Description: "restarts it", Parameters: []*pb.GalleryApplicationCustomActionParameter{
			{Name: "LEVEL", Type: "string", DefaultValue: "info"},
			{Name: "CFG", Type: "configurationdatablob", Required: true},
			{Name: "LOG", Type: "LogOutputBlob"},
			{Name: "_x1"},
		}},
	}
	return v
}

// TestValidateVersionModel: the rest of Azure's version model (health
// check, advanced settings, custom actions, replication mode, storage
// strategy): each wrong value refused naming its field; what is valid
// comes back in Azure's spellings.
func TestValidateVersionModel(t *testing.T) {
	s := pure()
	params := func(v *pb.GalleryApplicationVersion) []*pb.GalleryApplicationCustomActionParameter {
		return v.PublishingProfile.CustomActions[1].Parameters
	}
	const ca = "publishingProfile.customActions"
	for _, c := range []struct {
		name  string
		edit  func(v *pb.GalleryApplicationVersion)
		field string
	}{
		{"Shallow", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ReplicationMode = "shallow" }, "publishingProfile.replicationMode"},
		{"an unknown replicationMode", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ReplicationMode = "Deep" }, "publishingProfile.replicationMode"},
		{"an unknown storageAccountStrategy", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.StorageAccountStrategy = "Standard_ZRS" }, "publishingProfile.storageAccountStrategy"},
		{"storageAccountStrategy with storageAccountType", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.StorageAccountStrategy, v.PublishingProfile.StorageAccountType = PreferStandardZRS, StandardLRS
		}, "publishingProfile.storageAccountStrategy"},
		{"too many advanced settings", func(v *pb.GalleryApplicationVersion) {
			for i := range MaxAdvancedSettings {
				v.PublishingProfile.AdvancedSettings[strings.Repeat("k", i+2)] = "v"
			}
		}, "publishingProfile.advancedSettings"},
		{"an empty advanced setting key", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.AdvancedSettings[""] = "v" }, "publishingProfile.advancedSettings"},
		{"an advanced setting key too long", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.AdvancedSettings[strings.Repeat("k", MaxAdvancedKeyLen+1)] = "v"
		}, "publishingProfile.advancedSettings"},
		{"an advanced setting value too long", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.AdvancedSettings["tier"] = strings.Repeat("v", MaxAdvancedValueLen+1)
		}, "publishingProfile.advancedSettings.tier"},
		{"an advanced setting with NUL", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.AdvancedSettings["a"] = "\x00" }, "publishingProfile.advancedSettings"},
		{"a nil custom action", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.CustomActions[0] = nil }, ca + "[0]"},
		{"a custom action without a name", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.CustomActions[1].Name = "" }, ca + "[1].name"},
		{"a custom action's name with a space", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.CustomActions[1].Name = "re start" }, ca + "[1].name"},
		{"a custom action's name too long", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.CustomActions[1].Name = strings.Repeat("a", 65)
		}, ca + "[1].name"},
		{"two custom actions of one name", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.CustomActions[1].Name = "Health" }, ca + "[1].name"},
		{"a blank script", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.CustomActions[1].Script = " " }, ca + "[1].script"},
		{"a script with NUL", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.CustomActions[1].Script = "a\x00" }, ca + "[1].script"},
		{"a description too long", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.CustomActions[1].Description = strings.Repeat("d", maxTextLen+1)
		}, ca + "[1].description"},
		{"too many custom actions", func(v *pb.GalleryApplicationVersion) {
			for i := range MaxCustomActions {
				v.PublishingProfile.CustomActions = append(v.PublishingProfile.CustomActions, &pb.GalleryApplicationCustomAction{Name: "a" + strings.Repeat("x", i), Script: "true"})
			}
		}, ca},
		{"a parameter without a name", func(v *pb.GalleryApplicationVersion) { params(v)[0].Name = "" }, ca + "[1].parameters[0].name"},
		{"a parameter starting with a digit", func(v *pb.GalleryApplicationVersion) { params(v)[0].Name = "1X" }, ca + "[1].parameters[0].name"},
		{"a parameter with a dash", func(v *pb.GalleryApplicationVersion) { params(v)[0].Name = "A-B" }, ca + "[1].parameters[0].name"},
		{"a parameter named PATH", func(v *pb.GalleryApplicationVersion) { params(v)[0].Name = "path" }, ca + "[1].parameters[0].name"},
		{"a parameter named VMAPP_*", func(v *pb.GalleryApplicationVersion) { params(v)[0].Name = "VMAPP_VERSION" }, ca + "[1].parameters[0].name"},
		{"a parameter named LD_*", func(v *pb.GalleryApplicationVersion) { params(v)[0].Name = "LD_PRELOAD" }, ca + "[1].parameters[0].name"},
		{"two parameters of one name", func(v *pb.GalleryApplicationVersion) { params(v)[1].Name = "LEVEL" }, ca + "[1].parameters[1].name"},
		{"an unknown parameter type", func(v *pb.GalleryApplicationVersion) { params(v)[0].Type = "Integer" }, ca + "[1].parameters[0].type"},
		{"a default for a ConfigurationDataBlob", func(v *pb.GalleryApplicationVersion) { params(v)[1].DefaultValue = "x" }, ca + "[1].parameters[1].defaultValue"},
		{"a default for a LogOutputBlob", func(v *pb.GalleryApplicationVersion) { params(v)[2].DefaultValue = "x" }, ca + "[1].parameters[2].defaultValue"},
		{"a default too long", func(v *pb.GalleryApplicationVersion) {
			params(v)[0].DefaultValue = strings.Repeat("d", maxParameterDefaultLen+1)
		}, ca + "[1].parameters[0].defaultValue"},
		{"a nil parameter", func(v *pb.GalleryApplicationVersion) { params(v)[3] = nil }, ca + "[1].parameters[3]"},
	} {
		v := customVersion()
		c.edit(v)
		refused(t, c.name, s.validateVersion(v), c.field)
	}

	v := customVersion()
	if err := s.validateVersion(v); err != nil {
		t.Fatal(err)
	}
	pp := v.PublishingProfile
	var types []string
	for _, p := range pp.CustomActions[1].Parameters {
		types = append(types, p.Type)
	}
	if got := strings.Join(types, " "); got != "String ConfigurationDataBlob LogOutputBlob String" || pp.ReplicationMode != ReplicationFull || pp.StorageAccountType != StandardLRS {
		t.Errorf("normalised: types %s, replicationMode %q, storageAccountType %q", got, pp.ReplicationMode, pp.StorageAccountType)
	}
	for strategy, want := range map[string]string{"preferstandard_zrs": StandardZRS, DefaultStandardLRS: StandardLRS} {
		v := version()
		v.PublishingProfile.StorageAccountStrategy = strategy
		if err := s.validateVersion(v); err != nil || v.PublishingProfile.StorageAccountType != want || v.PublishingProfile.StorageAccountStrategy != cmpOr(map[string]string{StandardZRS: PreferStandardZRS}[want], DefaultStandardLRS) {
			t.Errorf("storageAccountStrategy %s: %v, %v", strategy, err, v.PublishingProfile)
		}
	}

	// enableHealthCheck needs a "health" action: the version's or its
	// application's.
	v = customVersion()
	v.PublishingProfile.CustomActions = v.PublishingProfile.CustomActions[1:]
	refused(t, "a health check without a health action", checkHealthAction(v.PublishingProfile, &pb.GalleryApplication{}), "publishingProfile.enableHealthCheck")
	app := &pb.GalleryApplication{CustomActions: []*pb.GalleryApplicationCustomAction{{Name: "HEALTH", Script: "true"}}}
	if err := checkHealthAction(v.PublishingProfile, app); err != nil {
		t.Errorf("the application's health action: %v", err)
	}
}
