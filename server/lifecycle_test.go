package server_test

import (
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/catalog"
)

func TestLatest(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	e.gallery("g")
	e.app("g", "app")
	latest := func() string {
		t.Helper()
		r, err := e.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "app", Version: "latest"})
		mustOK(t, err)
		return r.Version.Name
	}
	_, err := e.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "app", Version: "latest"})
	wantErr(t, err, codes.NotFound, "Gallery application 'g/app' has no version eligible as latest")
	for _, v := range []string{"1.9.0", "1.10.0", "1.2.0", "0.99.99"} {
		e.version("g", "app", v)
	}
	e.version("g", "app", "1.11.0", func(v *pb.GalleryApplicationVersion) { v.PublishingProfile.ExcludeFromLatest = true })
	if got := latest(); got != "1.10.0" {
		t.Fatalf("latest = %s, want 1.10.0 (numeric order, 1.11.0 excluded)", got)
	}
	// Listing is in numeric order too.
	r, err := e.c.Catalog.ListVersions(ctx(t), &pb.ListVersionsRequest{Gallery: "g", Application: "app"})
	mustOK(t, err)
	var names []string
	for _, v := range r.Versions {
		names = append(names, v.Name)
	}
	if want := "[0.99.99 1.2.0 1.9.0 1.10.0 1.11.0]"; "["+strings.Join(names, " ")+"]" != want {
		t.Fatalf("list order = %v, want %s", names, want)
	}
	// A version being deleted is not latest.
	_, err = e.c.Catalog.DeleteVersion(ctx(t), &pb.DeleteVersionRequest{Gallery: "g", Application: "app", Version: "1.10.0"})
	mustOK(t, err)
	if got := latest(); got != "1.9.0" {
		t.Fatalf("latest after deleting 1.10.0 = %s, want 1.9.0", got)
	}
	// Un-excluding 1.11.0 makes it latest.
	_, err = e.c.Catalog.UpdateVersion(ctx(t), &pb.UpdateVersionRequest{
		Version:    &pb.GalleryApplicationVersion{Gallery: "g", Application: "app", Name: "1.11.0", PublishingProfile: &pb.PublishingProfile{}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"publishing_profile.exclude_from_latest"}},
	})
	mustOK(t, err)
	if got := latest(); got != "1.11.0" {
		t.Fatalf("latest = %s, want 1.11.0", got)
	}
}

func TestMarkedForDeletion(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	e.gallery("g")
	e.app("g", "app")
	e.version("g", "app", "1.0.0")
	d, err := e.c.Catalog.DeleteVersion(ctx(t), &pb.DeleteVersionRequest{Gallery: "g", Application: "app", Version: "1.0.0"})
	mustOK(t, err)
	if d.Version.ProvisioningState != "Deleting" {
		t.Fatalf("deleted version state = %q, want Deleting", d.Version.ProvisioningState)
	}
	const marked = "Operation 'UpdateVersion' isn't allowed on 'g/app/1.0.0' since it's marked for deletion. You can only retry the delete operation (or wait for an ongoing one to complete)."
	_, err = e.c.Catalog.UpdateVersion(ctx(t), &pb.UpdateVersionRequest{
		Version:    &pb.GalleryApplicationVersion{Gallery: "g", Application: "app", Name: "1.0.0", PublishingProfile: &pb.PublishingProfile{ExcludeFromLatest: true}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"publishing_profile.exclude_from_latest"}},
	})
	wantErr(t, err, codes.FailedPrecondition, marked)
	_, err = e.createVersion(newVersion("g", "app", "1.0.0"))
	wantErr(t, err, codes.FailedPrecondition, "Operation 'CreateVersion' isn't allowed on 'g/app/1.0.0' since it's marked for deletion.")
	// Reading it shows the state; retrying the delete is allowed.
	got, err := e.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "app", Version: "1.0.0"})
	mustOK(t, err)
	if got.Version.ProvisioningState != "Deleting" {
		t.Fatalf("state = %q", got.Version.ProvisioningState)
	}
	_, err = e.c.Catalog.DeleteVersion(ctx(t), &pb.DeleteVersionRequest{Gallery: "g", Application: "app", Version: "1.0.0"})
	mustOK(t, err)
	e.reap()
	_, err = e.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "app", Version: "1.0.0"})
	wantErr(t, err, codes.NotFound, "doesn't exist")
	// The name can be used again once it is gone.
	e.version("g", "app", "1.0.0")
}

func TestCascadeDelete(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	e.gallery("g")
	e.gallery("keep")
	e.app("keep", "app")
	e.version("keep", "app", "1.0.0")
	for _, a := range []string{"a1", "a2"} {
		e.app("g", a)
		for i := range 3 {
			e.version("g", a, "1.0."+strconv.Itoa(i))
		}
	}
	_, err := e.c.Catalog.DeleteGallery(ctx(t), &pb.DeleteGalleryRequest{Gallery: "g"})
	wantErr(t, err, codes.FailedPrecondition, "Gallery 'g' has 2 application(s): delete them first, or delete with cascade.")
	_, err = e.c.Catalog.DeleteApplication(ctx(t), &pb.DeleteApplicationRequest{Gallery: "g", Application: "a1"})
	wantErr(t, err, codes.FailedPrecondition, "Gallery application 'g/a1' has 3 version(s): delete them first, or delete with cascade.")
	// Nothing was marked by the refused deletes.
	a, err := e.c.Catalog.GetApplication(ctx(t), &pb.GetApplicationRequest{Gallery: "g", Application: "a1"})
	mustOK(t, err)
	if a.Application.ProvisioningState != "Succeeded" {
		t.Fatalf("refused delete marked the application: %q", a.Application.ProvisioningState)
	}

	_, err = e.c.Catalog.DeleteGallery(ctx(t), &pb.DeleteGalleryRequest{Gallery: "g", Cascade: true})
	mustOK(t, err)
	_, err = e.c.Catalog.CreateApplication(ctx(t), &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "a3", Location: "eastus", SupportedOsType: "Linux"}})
	wantErr(t, err, codes.FailedPrecondition, "Operation 'CreateApplication' isn't allowed on 'g' since it's marked for deletion.")
	_, err = e.c.Catalog.UpdateApplication(ctx(t), &pb.UpdateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "g", Name: "a1"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}})
	wantErr(t, err, codes.FailedPrecondition, "marked for deletion")
	_, err = e.c.Catalog.UpdateGallery(ctx(t), &pb.UpdateGalleryRequest{Gallery: &pb.Gallery{Name: "g"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}})
	wantErr(t, err, codes.FailedPrecondition, "Operation 'UpdateGallery' isn't allowed on 'g' since it's marked for deletion.")
	v, err := e.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "a2", Version: "1.0.2"})
	mustOK(t, err)
	if v.Version.ProvisioningState != "Deleting" {
		t.Fatalf("cascade did not mark the version: %q", v.Version.ProvisioningState)
	}
	e.reap()
	_, err = e.c.Catalog.GetGallery(ctx(t), &pb.GetGalleryRequest{Gallery: "g"})
	wantErr(t, err, codes.NotFound, "Gallery 'g' doesn't exist.")
	_, err = e.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "a2", Version: "1.0.2"})
	wantErr(t, err, codes.NotFound)
	// The other gallery is untouched.
	_, err = e.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "keep", Application: "app", Version: "1.0.0"})
	mustOK(t, err)
	// Application cascade alone.
	_, err = e.c.Catalog.DeleteApplication(ctx(t), &pb.DeleteApplicationRequest{Gallery: "keep", Application: "app", Cascade: true})
	mustOK(t, err)
	e.reap()
	_, err = e.c.Catalog.GetApplication(ctx(t), &pb.GetApplicationRequest{Gallery: "keep", Application: "app"})
	wantErr(t, err, codes.NotFound, "Gallery application 'keep/app' doesn't exist.")
	_, err = e.c.Catalog.DeleteGallery(ctx(t), &pb.DeleteGalleryRequest{Gallery: "keep"})
	mustOK(t, err)
}

func TestETags(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	g := e.gallery("g")
	if g.Etag == "" {
		t.Fatal("no etag")
	}
	r, err := e.c.Catalog.UpdateGallery(ctx(t), &pb.UpdateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Description: "one"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}, IfMatch: g.Etag})
	mustOK(t, err)
	_, err = e.c.Catalog.UpdateGallery(ctx(t), &pb.UpdateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Description: "two"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}, IfMatch: g.Etag})
	wantErr(t, err, codes.FailedPrecondition, "gallery 'g' has etag "+r.Gallery.Etag+", not "+g.Etag)
	_, err = e.c.Catalog.UpdateGallery(ctx(t), &pb.UpdateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Location: "westus"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"location"}}})
	wantErr(t, err, codes.InvalidArgument, "Changing property 'gallery.location' isn't allowed.")
	_, err = e.c.Catalog.DeleteGallery(ctx(t), &pb.DeleteGalleryRequest{Gallery: "g", IfMatch: g.Etag})
	wantErr(t, err, codes.FailedPrecondition, "has etag")
	// The etag's quotes are optional.
	_, err = e.c.Catalog.UpdateGallery(ctx(t), &pb.UpdateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Description: "two"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}, IfMatch: strings.Trim(g.Etag, `"`)})
	wantErr(t, err, codes.FailedPrecondition, "has etag")
	r, err = e.c.Catalog.UpdateGallery(ctx(t), &pb.UpdateGalleryRequest{Gallery: &pb.Gallery{Name: "g", Description: "one"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"description"}}, IfMatch: strings.Trim(r.Gallery.Etag, `"`)})
	mustOK(t, err)
	got, err := e.c.Catalog.GetGallery(ctx(t), &pb.GetGalleryRequest{Gallery: "g"})
	mustOK(t, err)
	if got.Gallery.Description != "one" || got.Gallery.ProvisioningState != "Succeeded" {
		t.Fatalf("stale requests changed the gallery: %v", got.Gallery)
	}
	e.app("g", "app")
	v := e.version("g", "app", "1.0.0")
	_, err = e.c.Catalog.DeleteVersion(ctx(t), &pb.DeleteVersionRequest{Gallery: "g", Application: "app", Version: "1.0.0", IfMatch: `"0"`})
	wantErr(t, err, codes.FailedPrecondition, "version 'g/app/1.0.0' has etag")
	_, err = e.c.Catalog.DeleteVersion(ctx(t), &pb.DeleteVersionRequest{Gallery: "g", Application: "app", Version: "1.0.0", IfMatch: v.Etag})
	mustOK(t, err)
	_, err = e.c.Catalog.DeleteGallery(ctx(t), &pb.DeleteGalleryRequest{Gallery: "g", IfMatch: r.Gallery.Etag, Cascade: true})
	mustOK(t, err)
}

func TestTenancy(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	a, b := e.tenant("contoso"), e.tenant("fabrikam")
	for _, c := range []pb.CatalogServiceClient{a, b} {
		_, err := c.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "shared-name", Location: "eastus"}})
		mustOK(t, err)
	}
	_, err := a.CreateApplication(ctx(t), &pb.CreateApplicationRequest{Application: &pb.GalleryApplication{Gallery: "shared-name", Name: "only-a", Location: "eastus", SupportedOsType: "Linux"}})
	mustOK(t, err)
	_, err = b.GetApplication(ctx(t), &pb.GetApplicationRequest{Gallery: "shared-name", Application: "only-a"})
	wantErr(t, err, codes.NotFound, "Gallery application 'shared-name/only-a' doesn't exist.")
	ga, err := a.GetGallery(ctx(t), &pb.GetGalleryRequest{Gallery: "shared-name"})
	mustOK(t, err)
	if ga.Gallery.Tenant != "contoso" {
		t.Fatalf("tenant = %q", ga.Gallery.Tenant)
	}
	// The default tenant sees neither.
	_, err = e.c.Catalog.GetGallery(ctx(t), &pb.GetGalleryRequest{Gallery: "shared-name"})
	wantErr(t, err, codes.NotFound)
	// A malformed tenant is refused.
	bad := metadata.AppendToOutgoingContext(ctx(t), pb.TenantMetadataKey, "bad/tenant")
	_, err = e.c.Catalog.ListGalleries(bad, &pb.ListGalleriesRequest{})
	wantErr(t, err, codes.InvalidArgument, "tenant name 'bad/tenant' is invalid")
	two := metadata.AppendToOutgoingContext(ctx(t), pb.TenantMetadataKey, "a", pb.TenantMetadataKey, "b")
	_, err = e.c.Catalog.ListGalleries(two, &pb.ListGalleriesRequest{})
	wantErr(t, err, codes.InvalidArgument, "send one tenant")
}

func TestPaging(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	for i := range 7 {
		e.gallery("g" + strconv.Itoa(i))
	}
	other := e.tenant("other")
	_, err := other.CreateGallery(ctx(t), &pb.CreateGalleryRequest{Gallery: &pb.Gallery{Name: "g0a", Location: "eastus"}})
	mustOK(t, err)
	var all []string
	token := ""
	pages := 0
	for {
		r, err := e.c.Catalog.ListGalleries(ctx(t), &pb.ListGalleriesRequest{PageSize: 3, PageToken: token})
		mustOK(t, err)
		pages++
		for _, g := range r.Galleries {
			all = append(all, g.Name)
		}
		if token = r.NextPageToken; token == "" {
			break
		}
	}
	if pages != 3 || strings.Join(all, " ") != "g0 g1 g2 g3 g4 g5 g6" {
		t.Fatalf("paged %d pages: %v", pages, all)
	}
	_, err = e.c.Catalog.ListGalleries(ctx(t), &pb.ListGalleriesRequest{PageSize: -1})
	wantErr(t, err, codes.InvalidArgument, "pageSize -1 must not be negative")
	_, err = e.c.Catalog.ListGalleries(ctx(t), &pb.ListGalleriesRequest{PageToken: "!!!"})
	wantErr(t, err, codes.InvalidArgument, "pageToken '!!!' is not a token this listing returned")
	_, err = e.c.Catalog.ListApplications(ctx(t), &pb.ListApplicationsRequest{Gallery: "missing"})
	wantErr(t, err, codes.NotFound, "Gallery 'missing' doesn't exist.")
	_, err = e.c.Catalog.ListVersions(ctx(t), &pb.ListVersionsRequest{Gallery: "g0", Application: "missing"})
	wantErr(t, err, codes.NotFound, "Gallery application 'g0/missing' doesn't exist.")
}

func TestHealthReflectionRegions(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	h, err := healthpb.NewHealthClient(e.c.Conn()).Check(ctx(t), &healthpb.HealthCheckRequest{Service: "vmapp.v1.CatalogService"})
	mustOK(t, err)
	if h.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v", h.Status)
	}
	rs, err := reflectionpb.NewServerReflectionClient(e.c.Conn()).ServerReflectionInfo(ctx(t))
	mustOK(t, err)
	mustOK(t, rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}))
	resp, err := rs.Recv()
	mustOK(t, err)
	found := false
	for _, s := range resp.GetListServicesResponse().GetService() {
		found = found || s.Name == "vmapp.v1.CatalogService"
	}
	if !found {
		t.Fatalf("reflection does not list vmapp.v1.CatalogService: %v", resp)
	}
	r, err := e.c.Catalog.ListRegions(ctx(t), &pb.ListRegionsRequest{})
	mustOK(t, err)
	if len(r.Regions) != 3 || r.Regions[1].Name != "westus" || r.Regions[1].EndpointCount != 2 {
		t.Fatalf("regions = %v", r.Regions)
	}
}

// TestCreateVersionIgnoresServerFields: what vmappd sets (the stored files,
// the state and its error) is never taken from a CreateVersion request: a
// version can't claim a package it never uploaded.
func TestCreateVersionIgnoresServerFields(t *testing.T) {
	e := newEnv(t, catalog.Options{})
	e.gallery("g")
	e.app("g", "app")
	v := e.version("g", "app", "1.0.0", func(v *pb.GalleryApplicationVersion) {
		v.ProvisioningState = "Succeeded"
		v.Package = &pb.Artifact{SizeBytes: 10, Sha256: strings.Repeat("a", 64)}
		v.DefaultConfiguration = &pb.Artifact{SizeBytes: 10, Sha256: strings.Repeat("b", 64)}
		v.ProvisioningError = &pb.ProvisioningError{Code: "NotFound", Message: "made up"}
	})
	r, err := e.c.Catalog.GetVersion(ctx(t), &pb.GetVersionRequest{Gallery: "g", Application: "app", Version: "1.0.0"})
	mustOK(t, err)
	for _, got := range []*pb.GalleryApplicationVersion{v, r.Version} {
		if got.ProvisioningState != "Creating" || got.Package != nil || got.DefaultConfiguration != nil || got.ProvisioningError != nil {
			t.Fatalf("created: %s, package %v, configuration %v, error %v", got.ProvisioningState, got.Package, got.DefaultConfiguration, got.ProvisioningError)
		}
	}
}
