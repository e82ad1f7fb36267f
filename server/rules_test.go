package server_test

import (
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/catalog"
)

func TestGalleryNames(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	for _, tc := range []struct {
		name string
		ok   bool
		msg  string
	}{
		{"g1", true, ""},
		{"My_Gallery-2.0", true, ""},
		{strings.Repeat("g", 80), true, ""},
		{strings.Repeat("g", 81), false, "is 81 characters long; the maximum is 80"},
		{"", false, "gallery name is required"},
		{"bad name", false, "allowed characters are letters, digits"},
		{"slash/name", false, "allowed characters"},
		{"ünicode", false, "allowed characters"},
		{"endsdot.", false, "must not end with a period"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.c.Catalog.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: tc.name, Location: "eastus"}})
			if tc.ok {
				mustOK(t, err)
				return
			}
			wantErr(t, err, codes.InvalidArgument, tc.msg)
			if f := errs.FieldOf(err); f != "gallery" {
				t.Errorf("field at fault = %q, want gallery", f)
			}
		})
	}
	_, err := e.c.Catalog.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g1", Location: "eastus"}})
	wantErr(t, err, codes.AlreadyExists, "Gallery 'g1' already exists.")
	_, err = e.c.Catalog.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g9", Location: "mars"}})
	wantErr(t, err, codes.InvalidArgument, "Region 'mars' in location isn't a known region; known regions are eastus, westus, northeurope.")
	_, err = e.c.Catalog.CreateGallery(ctx(t), &pb.CreateGalleryRequest{})
	wantErr(t, err, codes.InvalidArgument, "gallery is required")
	_, err = e.c.Catalog.GetGallery(ctx(t), &pb.GetGalleryRequest{Gallery: "nope"})
	wantErr(t, err, codes.NotFound, "Gallery 'nope' doesn't exist.")
}

func TestApplicationRules(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	e.gallery("g")
	base := func() *pb.GalleryApplication {
		return &pb.GalleryApplication{Gallery: "g", Name: "app", Location: "eastus", SupportedOsType: "Linux"}
	}
	for _, tc := range []struct {
		name string
		edit func(*pb.GalleryApplication)
		code codes.Code
		msg  string
	}{
		{"117 chars", func(a *pb.GalleryApplication) { a.Name = strings.Repeat("a", 117) }, codes.OK, ""},
		{"118 chars", func(a *pb.GalleryApplication) { a.Name = strings.Repeat("a", 118) }, codes.InvalidArgument, "is 118 characters long; the maximum is 117"},
		{"bad char", func(a *pb.GalleryApplication) { a.Name = "a+b" }, codes.InvalidArgument, "application name 'a+b' is invalid"},
		{"ends with period", func(a *pb.GalleryApplication) { a.Name = "app." }, codes.InvalidArgument, "must not end with a period"},
		{"os any case", func(a *pb.GalleryApplication) { a.Name = "lower"; a.SupportedOsType = "wInDoWs" }, codes.OK, ""},
		{"os missing", func(a *pb.GalleryApplication) { a.Name = "noos"; a.SupportedOsType = "" }, codes.InvalidArgument, "supportedOSType is required"},
		{"os unknown", func(a *pb.GalleryApplication) { a.Name = "mac"; a.SupportedOsType = "MacOS" }, codes.InvalidArgument, "The value 'MacOS' of parameter 'galleryApplication.properties.supportedOSType' is invalid"},
		{"location unknown", func(a *pb.GalleryApplication) { a.Name = "x"; a.Location = "moon" }, codes.InvalidArgument, "Region 'moon'"},
		{"eol in the past", func(a *pb.GalleryApplication) { a.Name = "x"; a.EndOfLifeDate = past() }, codes.InvalidArgument, "of parameter 'galleryApplication.properties.endOfLifeDate' must be a future date."},
		{"bad privacy uri", func(a *pb.GalleryApplication) { a.Name = "x"; a.PrivacyStatementUri = "not a uri" }, codes.InvalidArgument, "privacyStatementUri 'not a uri' is not an absolute URI"},
		{"missing gallery", func(a *pb.GalleryApplication) { a.Gallery = "nope" }, codes.NotFound, "Gallery 'nope' doesn't exist."},
		{"full", func(a *pb.GalleryApplication) {
			a.Name, a.EndOfLifeDate, a.Description, a.Eula = "full", future(), "d", "e"
			a.PrivacyStatementUri, a.ReleaseNoteUri = "https://example.com/p", "https://example.com/r"
		}, codes.OK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := base()
			tc.edit(a)
			r, err := e.c.Catalog.CreateApplication(ctx(t), &pb.CreateApplicationRequest{Application: a})
			if tc.code == codes.OK {
				mustOK(t, err)
				if r.Application.SupportedOsType != "Linux" && r.Application.SupportedOsType != "Windows" {
					t.Errorf("supportedOSType stored as %q", r.Application.SupportedOsType)
				}
				return
			}
			wantErr(t, err, tc.code, tc.msg)
		})
	}
	_, err := e.c.Catalog.CreateApplication(ctx(t), &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: strings.Repeat("a", 117), Location: "eastus", SupportedOsType: "Linux"}})
	wantErr(t, err, codes.AlreadyExists, "already exists")
}

func TestApplicationUpdate(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	e.gallery("g")
	a := e.app("g", "app")
	upd := func(in *pb.GalleryApplication, ifMatch string, paths ...string) (*pb.GalleryApplication, error) {
		r, err := e.c.Catalog.UpdateApplication(ctx(t), &pb.UpdateApplicationRequest{Application: in, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}, IfMatch: ifMatch})
		return r.GetApplication(), err
	}
	got, err := upd(&pb.GalleryApplication{Gallery: "g", Name: "app", Description: "new", Eula: "ignored"}, a.Etag, "description")
	mustOK(t, err)
	if got.Description != "new" || got.Eula != "" || got.Etag == a.Etag {
		t.Fatalf("update: got description %q eula %q etag %s (was %s)", got.Description, got.Eula, got.Etag, a.Etag)
	}
	_, err = upd(&pb.GalleryApplication{Gallery: "g", Name: "app", Description: "stale"}, a.Etag, "description")
	wantErr(t, err, codes.FailedPrecondition, "has etag "+got.Etag+", not "+a.Etag)
	_, err = upd(&pb.GalleryApplication{Gallery: "g", Name: "app", SupportedOsType: "Windows"}, "", "supported_os_type")
	wantErr(t, err, codes.InvalidArgument, "Changing property 'galleryApplication.properties.supportedOSType' isn't allowed.")
	_, err = upd(&pb.GalleryApplication{Gallery: "g", Name: "app", SupportedOsType: "linux"}, "", "supported_os_type")
	mustOK(t, err) // the same value, any casing
	_, err = upd(&pb.GalleryApplication{Gallery: "g", Name: "app", Location: "westus"}, "", "location")
	wantErr(t, err, codes.InvalidArgument, "Changing property 'galleryApplication.location' isn't allowed.")
	_, err = upd(&pb.GalleryApplication{Gallery: "g", Name: "app", EndOfLifeDate: past()}, "", "end_of_life_date")
	wantErr(t, err, codes.InvalidArgument, "must be a future date")
	_, err = upd(&pb.GalleryApplication{Gallery: "g", Name: "app"}, "")
	wantErr(t, err, codes.InvalidArgument, "updateMask is required")
	_, err = upd(&pb.GalleryApplication{Gallery: "g", Name: "app"}, "", "etag")
	wantErr(t, err, codes.InvalidArgument, "updateMask path 'etag' can't be updated")
	_, err = upd(&pb.GalleryApplication{Gallery: "g", Name: "nope"}, "", "description")
	wantErr(t, err, codes.NotFound, "Gallery application 'g/nope' doesn't exist.")
	after, err := e.c.Catalog.GetApplication(ctx(t), &pb.GetApplicationRequest{Gallery: "g", Application: "app"})
	mustOK(t, err)
	if after.Application.Description != "new" || after.Application.SupportedOsType != "Linux" || after.Application.Location != "eastus" {
		t.Fatalf("a rejected update changed the application: %v", after.Application)
	}
}

func TestVersionNames(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	e.gallery("g")
	e.app("g", "app")
	for _, name := range []string{"1.0.0", "2018.12.1", "0.0.0", "2147483647.2147483647.2147483647"} {
		if _, err := e.createVersion(newVersion("g", "app", name)); err != nil {
			t.Errorf("version %s: %v", name, err)
		}
	}
	for _, name := range []string{"1.0", "1.0.0.0", "-1.0.0", "2147483648.0.0", "01.0.0", "1.01.0", "", "a.b.c", "1..0", " 1.0.0", "latest"} {
		_, err := e.createVersion(newVersion("g", "app", name))
		wantErr(t, err, codes.InvalidArgument, "The gallery application version name '"+name+"' is invalid. The application version name should follow Major(int32).Minor(int32).Patch(int32) format")
	}
	_, err := e.createVersion(newVersion("g", "app", "1.0.0"))
	wantErr(t, err, codes.AlreadyExists, "Gallery application version 'g/app/1.0.0' already exists.")
	_, err = e.createVersion(newVersion("g", "nope", "1.0.0"))
	wantErr(t, err, codes.NotFound, "Gallery application 'g/nope' doesn't exist.")
	_, err = e.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "app", Version: "9.9.9"})
	wantErr(t, err, codes.NotFound, "Gallery application version 'g/app/9.9.9' doesn't exist.")
}

func TestVersionRules(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	e.gallery("g")
	e.app("g", "app")
	type edit = func(v *pb.GalleryApplicationVersion)
	pp := func(f func(*pb.PublishingProfile)) edit {
		return func(v *pb.GalleryApplicationVersion) { f(v.PublishingProfile) }
	}
	settings := func(f func(*pb.UserArtifactSettings)) edit {
		return pp(func(p *pb.PublishingProfile) { p.Settings = &pb.UserArtifactSettings{}; f(p.Settings) })
	}
	n := 0
	for _, tc := range []struct {
		name  string
		edit  edit
		code  codes.Code
		msg   string
		field string
	}{
		{"minimal", func(v *pb.GalleryApplicationVersion) {}, codes.OK, "", ""},
		{"no install", pp(func(p *pb.PublishingProfile) { p.ManageActions.Install = "" }), codes.InvalidArgument, "publishingProfile.manageActions.install is required", "publishingProfile.manageActions.install"},
		{"blank remove", pp(func(p *pb.PublishingProfile) { p.ManageActions.Remove = "  " }), codes.InvalidArgument, "publishingProfile.manageActions.remove is required", "publishingProfile.manageActions.remove"},
		{"no manage actions", pp(func(p *pb.PublishingProfile) { p.ManageActions = nil }), codes.InvalidArgument, "install is required", ""},
		{"update optional", pp(func(p *pb.PublishingProfile) { p.ManageActions.Update = "update.sh" }), codes.OK, "", ""},
		{"location unknown", func(v *pb.GalleryApplicationVersion) { v.Location = "mars" }, codes.InvalidArgument, "Region 'mars' in location isn't a known region", "location"},
		{"target unknown", pp(func(p *pb.PublishingProfile) {
			p.TargetRegions = append(p.TargetRegions, &pb.TargetRegion{Name: "pluto"})
		}), codes.InvalidArgument, "Region 'pluto' in publishingProfile.targetRegions[1].name isn't a known region", "publishingProfile.targetRegions[1].name"},
		{"target duplicate", pp(func(p *pb.PublishingProfile) {
			p.TargetRegions = append(p.TargetRegions, &pb.TargetRegion{Name: "westus"}, &pb.TargetRegion{Name: "eastus"})
		}), codes.InvalidArgument, "Duplicate regions aren't allowed in target publishing regions. Region 'eastus' is listed more than once.", "publishingProfile.targetRegions[2].name"},
		{"target without location", pp(func(p *pb.PublishingProfile) {
			p.TargetRegions = []*pb.TargetRegion{{Name: "westus"}, {Name: "northeurope"}}
		}), codes.InvalidArgument, "Gallery image version publishing profile regions 'westus, northeurope' must contain the location of image version 'eastus'.", "publishingProfile.targetRegions"},
		{"regional replicas 0", pp(func(p *pb.PublishingProfile) { p.TargetRegions[0].RegionalReplicaCount = i32(0) }), codes.InvalidArgument, "The value 0 of parameter 'galleryApplicationVersion.properties.publishingProfile.targetRegions[0].regionalReplicaCount' is out of range. The value must be between 1 and 10, inclusive.", "publishingProfile.targetRegions[0].regionalReplicaCount"},
		{"regional replicas 11", pp(func(p *pb.PublishingProfile) { p.TargetRegions[0].RegionalReplicaCount = i32(11) }), codes.InvalidArgument, "The value 11 of parameter", ""},
		{"regional replicas 10", pp(func(p *pb.PublishingProfile) { p.TargetRegions[0].RegionalReplicaCount = i32(10) }), codes.OK, "", ""},
		{"replica count 0", pp(func(p *pb.PublishingProfile) { p.ReplicaCount = i32(0) }), codes.InvalidArgument, "The value 0 of parameter 'galleryApplicationVersion.properties.publishingProfile.replicaCount' is out of range. The value must be between 1 and 10, inclusive.", "publishingProfile.replicaCount"},
		{"replica count -1", pp(func(p *pb.PublishingProfile) { p.ReplicaCount = i32(-1) }), codes.InvalidArgument, "The value -1 of parameter", ""},
		{"replica count 11", pp(func(p *pb.PublishingProfile) { p.ReplicaCount = i32(11) }), codes.InvalidArgument, "The value 11 of parameter", ""},
		{"replica count 1", pp(func(p *pb.PublishingProfile) { p.ReplicaCount = i32(1) }), codes.OK, "", ""},
		{"storage type", pp(func(p *pb.PublishingProfile) { p.StorageAccountType = "Cheap_LRS" }), codes.InvalidArgument, "The value 'Cheap_LRS' of parameter 'galleryApplicationVersion.properties.publishingProfile.storageAccountType' is invalid; allowed values are Standard_LRS, Standard_ZRS and Premium_LRS.", "publishingProfile.storageAccountType"},
		{"region storage type", pp(func(p *pb.PublishingProfile) { p.TargetRegions[0].StorageAccountType = "SSD" }), codes.InvalidArgument, "targetRegions[0].storageAccountType", ""},
		{"storage types ok", pp(func(p *pb.PublishingProfile) {
			p.StorageAccountType = "Premium_LRS"
			p.TargetRegions[0].StorageAccountType = "standard_zrs"
		}), codes.OK, "", ""},
		{"eol past", pp(func(p *pb.PublishingProfile) { p.EndOfLifeDate = past() }), codes.InvalidArgument, "of parameter 'galleryApplicationVersion.properties.publishingProfile.endOfLifeDate' must be a future date.", "publishingProfile.endOfLifeDate"},
		{"eol future", pp(func(p *pb.PublishingProfile) { p.EndOfLifeDate = future() }), codes.OK, "", ""},
		{"reboot bad", settings(func(s *pb.UserArtifactSettings) { s.ScriptBehaviorAfterReboot = "Sometimes" }), codes.InvalidArgument, "The value 'Sometimes' of parameter 'galleryApplicationVersion.properties.publishingProfile.settings.scriptBehaviorAfterReboot' is invalid; allowed values are None and Rerun.", ""},
		{"reboot rerun", settings(func(s *pb.UserArtifactSettings) { s.ScriptBehaviorAfterReboot = "rerun" }), codes.OK, "", ""},
		{"package file slash", settings(func(s *pb.UserArtifactSettings) { s.PackageFileName = "../etc/passwd" }), codes.InvalidArgument, "publishingProfile.settings.packageFileName '../etc/passwd' must be a plain file name", "publishingProfile.settings.packageFileName"},
		{"package file backslash", settings(func(s *pb.UserArtifactSettings) { s.PackageFileName = `a\b` }), codes.InvalidArgument, "must be a plain file name", ""},
		{"package file dotdot", settings(func(s *pb.UserArtifactSettings) { s.PackageFileName = ".." }), codes.InvalidArgument, "must be a plain file name", ""},
		{"package file NUL", settings(func(s *pb.UserArtifactSettings) { s.PackageFileName = "a\x00b" }), codes.InvalidArgument, "must be a plain file name", ""},
		{"config file slash", settings(func(s *pb.UserArtifactSettings) { s.ConfigFileName = "/tmp/x" }), codes.InvalidArgument, "publishingProfile.settings.configFileName '/tmp/x' must be a plain file name", "publishingProfile.settings.configFileName"},
		{"config file 4097", settings(func(s *pb.UserArtifactSettings) { s.ConfigFileName = strings.Repeat("c", 4097) }), codes.InvalidArgument, "publishingProfile.settings.configFileName is 4097 characters long; the maximum is 4096", ""},
		{"file names 4096", settings(func(s *pb.UserArtifactSettings) {
			s.PackageFileName, s.ConfigFileName = strings.Repeat("p", 4096), "app.config.json"
		}), codes.OK, "", ""},
		{"media link not http", pp(func(p *pb.PublishingProfile) { p.Source = &pb.UserArtifactSource{MediaLink: "ftp://x/y"} }), codes.InvalidArgument, "The gallery application version url 'ftp://x/y' in publishingProfile.source.mediaLink isn't a valid http(s) URL.", ""},
		{"exclude and safety", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.ExcludeFromLatest = true
			v.SafetyProfile = &pb.SafetyProfile{AllowDeletionOfReplicatedLocations: true}
		}, codes.OK, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n++
			v := newVersion("g", "app", "1.0."+strconv.Itoa(n))
			tc.edit(v)
			got, err := e.createVersion(v)
			if tc.code == codes.OK {
				mustOK(t, err)
				if got.ProvisioningState != "Creating" {
					t.Errorf("provisioningState = %q, want Creating", got.ProvisioningState)
				}
				if got.PublishingProfile.StorageAccountType == "" || got.PublishingProfile.Settings.ScriptBehaviorAfterReboot == "" {
					t.Errorf("defaults not filled in: %v", got.PublishingProfile)
				}
				return
			}
			wantErr(t, err, tc.code, tc.msg)
			if tc.field != "" && errs.FieldOf(err) != tc.field {
				t.Errorf("field at fault = %q, want %q", errs.FieldOf(err), tc.field)
			}
			if _, err := e.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "app", Version: v.Name}); !errs.Is(err, errs.NotFound) {
				t.Errorf("a rejected version was stored: %v", err)
			}
		})
	}
}

func TestVersionDefaults(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	e.gallery("g")
	e.app("g", "app")
	v := e.version("g", "app", "1.0.0", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.TargetRegions = nil })
	pp := v.PublishingProfile
	if len(pp.TargetRegions) != 1 || pp.TargetRegions[0].Name != "eastus" {
		t.Errorf("targetRegions default = %v, want [eastus]", pp.TargetRegions)
	}
	if pp.StorageAccountType != "Standard_LRS" || pp.Settings.ScriptBehaviorAfterReboot != "None" {
		t.Errorf("defaults: storageAccountType %q scriptBehaviorAfterReboot %q", pp.StorageAccountType, pp.Settings.ScriptBehaviorAfterReboot)
	}
	if got := pp.ReplicasIn(pp.TargetRegions[0]); got != 1 {
		t.Errorf("effective replicas = %d, want 1", got)
	}
	v = e.version("g", "app", "1.0.1", func(v *pb.GalleryApplicationVersion) {
		v.PublishingProfile.ReplicaCount = i32(3)
		v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "eastus"}, {Name: "westus", RegionalReplicaCount: i32(7)}}
	})
	pp = v.PublishingProfile
	if a, b := pp.ReplicasIn(pp.TargetRegions[0]), pp.ReplicasIn(pp.TargetRegions[1]); a != 3 || b != 7 {
		t.Errorf("effective replicas = %d, %d; want 3, 7", a, b)
	}
}

func TestVersionUpdate(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	e.gallery("g")
	e.app("g", "app")
	orig := e.version("g", "app", "1.0.0", func(v *pb.GalleryApplicationVersion) {
		v.PublishingProfile.ManageActions.Update = "update.sh"
		v.PublishingProfile.Settings = &pb.UserArtifactSettings{PackageFileName: "app.tgz", ConfigFileName: "app.json"}
		v.PublishingProfile.Source = &pb.UserArtifactSource{MediaLink: "https://store.example.com/pkg/app.tgz?sig=old"}
	})
	upd := func(v *pb.GalleryApplicationVersion, paths ...string) (*pb.GalleryApplicationVersion, error) {
		r, err := e.c.Catalog.UpdateVersion(ctx(t), &pb.UpdateVersionRequest{Version: v, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
		return r.GetVersion(), err
	}
	with := func(f func(v *pb.GalleryApplicationVersion)) *pb.GalleryApplicationVersion {
		v := newVersion("g", "app", "1.0.0")
		v.PublishingProfile.Settings = &pb.UserArtifactSettings{}
		v.PublishingProfile.Source = &pb.UserArtifactSource{}
		f(v)
		return v
	}
	for _, tc := range []struct {
		name, path string
		edit       func(v *pb.GalleryApplicationVersion)
		msg        string
	}{
		{"install", "publishing_profile.manage_actions.install", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ManageActions.Install = "other.sh" },
			"Changing property 'galleryApplicationVersion.properties.publishingProfile.manageActions.install' isn't allowed."},
		{"remove", "publishing_profile.manage_actions.remove", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ManageActions.Remove = "other.sh" },
			"Changing property 'galleryApplicationVersion.properties.publishingProfile.manageActions.remove' isn't allowed."},
		{"update", "publishing_profile.manage_actions", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.ManageActions.Update = "x"
		}, "Changing property 'galleryApplicationVersion.properties.publishingProfile.manageActions.update' isn't allowed."},
		{"packageFileName", "publishing_profile.settings.package_file_name", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.Settings.PackageFileName = "x" },
			"Changing property 'galleryApplicationVersion.properties.publishingProfile.settings.packageFileName' isn't allowed."},
		{"configFileName", "publishing_profile.settings.config_file_name", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.Settings.ConfigFileName = "x" },
			"Changing property 'galleryApplicationVersion.properties.publishingProfile.settings.configFileName' isn't allowed."},
		{"reboot", "publishing_profile.settings.script_behavior_after_reboot", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.Settings.ScriptBehaviorAfterReboot = "Rerun"
		},
			"Changing property 'galleryApplicationVersion.properties.publishingProfile.settings.scriptBehaviorAfterReboot' isn't allowed."},
		{"location", "location", func(v *pb.GalleryApplicationVersion) { v.Location = "westus" },
			"Changing property 'galleryApplicationVersion.location' isn't allowed."},
		{"storage type", "publishing_profile.storage_account_type", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.StorageAccountType = "Premium_LRS" },
			"Changing property 'galleryApplicationVersion.properties.publishingProfile.storageAccountType' isn't allowed."},
		{"media link host", "publishing_profile.source.media_link", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.Source.MediaLink = "https://other.example.com/pkg/app.tgz?sig=new"
		}, "only the SAS token (the URL's query) of 'https://store.example.com/pkg/app.tgz?sig=old' can change"},
		{"replica count", "publishing_profile.replica_count", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ReplicaCount = i32(11) },
			"The value 11 of parameter 'galleryApplicationVersion.properties.publishingProfile.replicaCount' is out of range"},
		{"regions without location", "publishing_profile.target_regions", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "westus"}}
		}, "must contain the location of image version 'eastus'"},
		{"regions duplicate", "publishing_profile.target_regions", func(v *pb.GalleryApplicationVersion) {
			v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "eastus"}, {Name: "eastus"}}
		}, "Duplicate regions aren't allowed"},
		{"eol past", "publishing_profile.end_of_life_date", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.EndOfLifeDate = past() }, "must be a future date"},
		{"name", "name", func(v *pb.GalleryApplicationVersion) {}, "updateMask path 'name' can't be updated"},
		{"whole profile", "publishing_profile", func(v *pb.GalleryApplicationVersion) {}, "updateMask path 'publishing_profile' can't be updated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := upd(with(tc.edit), tc.path)
			wantErr(t, err, codes.InvalidArgument, tc.msg)
		})
	}
	got, err := e.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "app", Version: "1.0.0"})
	mustOK(t, err)
	if got.Version.Etag != orig.Etag {
		t.Fatalf("rejected updates changed the version")
	}

	// The updatable fields.
	v, err := upd(with(func(v *pb.GalleryApplicationVersion) {
		v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "eastus"}, {Name: "westus", RegionalReplicaCount: i32(10)}}
		v.PublishingProfile.ReplicaCount = i32(2)
		v.PublishingProfile.ExcludeFromLatest = true
		v.PublishingProfile.EndOfLifeDate = future()
		v.PublishingProfile.Source.MediaLink = "https://store.example.com/pkg/app.tgz?sig=new"
		v.SafetyProfile = &pb.SafetyProfile{AllowDeletionOfReplicatedLocations: true}
		v.PublishingProfile.ManageActions.Install = "install.sh" // unchanged: allowed
	}), "publishing_profile.target_regions", "publishing_profile.replica_count", "publishing_profile.exclude_from_latest",
		"publishing_profile.end_of_life_date", "publishing_profile.source.media_link",
		"safety_profile.allow_deletion_of_replicated_locations", "publishing_profile.manage_actions.install")
	mustOK(t, err)
	pp := v.PublishingProfile
	if len(pp.TargetRegions) != 2 || pp.GetReplicaCount() != 2 || !pp.ExcludeFromLatest || pp.EndOfLifeDate == nil ||
		!v.SafetyProfile.AllowDeletionOfReplicatedLocations || pp.Source.MediaLink != "https://store.example.com/pkg/app.tgz?sig=new" {
		t.Fatalf("update not applied: %v", v)
	}
	if pp.ManageActions.Update != "update.sh" || pp.Settings.PackageFileName != "app.tgz" {
		t.Fatalf("fields outside the mask changed: %v", pp)
	}
	// Adding an unknown region.
	_, err = upd(with(func(v *pb.GalleryApplicationVersion) {
		v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "eastus"}, {Name: "saturn"}}
	}), "publishing_profile.target_regions")
	wantErr(t, err, codes.InvalidArgument, "Region 'saturn'")
}

func TestVersionsPerRegionLimit(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	e.gallery("g")
	e.app("g", "a1")
	e.app("g", "a2")
	// 300 versions in eastus across two applications, some also in westus.
	for i := range catalog.DefaultMaxVersionsPerRegion {
		app := []string{"a1", "a2"}[i%2]
		e.version("g", app, "1.0."+strconv.Itoa(i), func(v *pb.GalleryApplicationVersion) {
			if i%3 == 0 {
				v.PublishingProfile.TargetRegions = append(v.PublishingProfile.TargetRegions, &pb.TargetRegion{Name: "westus"})
			}
		})
	}
	_, err := e.createVersion(newVersion("g", "a1", "2.0.0"))
	wantErr(t, err, codes.ResourceExhausted, "The maximum number of VM application versions in region eastus (max=300, current=300) has been exceeded.")
	// Another tenant has its own quota.
	other := e.tenant("other")
	_, err = other.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "eastus"}})
	mustOK(t, err)
	// Another region is not full.
	v := newVersion("g", "a1", "2.0.0")
	v.Location = "westus"
	v.PublishingProfile.TargetRegions = []*pb.TargetRegion{{Name: "westus"}}
	_, err = e.createVersion(v)
	mustOK(t, err)
	// Adding the full region by update is refused too.
	_, err = e.c.Catalog.UpdateVersion(ctx(t), &pb.UpdateVersionRequest{
		Version:    &pb.GalleryApplicationVersion{Gallery: "g", Application: "a1", Name: "2.0.0", PublishingProfile: &pb.PublishingProfile{TargetRegions: []*pb.TargetRegion{{Name: "westus"}, {Name: "eastus"}}}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"publishing_profile.target_regions"}},
	})
	wantErr(t, err, codes.ResourceExhausted, "region eastus (max=300, current=300)")
	// Deleting one makes room.
	_, err = e.c.Catalog.DeleteVersion(ctx(t), &pb.DeleteVersionRequest{Gallery: "g", Application: "a1", Version: "1.0.0"})
	mustOK(t, err)
	e.reap()
	_, err = e.createVersion(newVersion("g", "a1", "2.0.1"))
	mustOK(t, err)
}
