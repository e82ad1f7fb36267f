package console

import (
	"net/http"
	"net/url"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
)

// pageSize is how many rows a listing shows at once.
const pageSize = 100

// listing is a page of rows with the link to the next.
type listing struct {
	Rows any
	Next string // the query of the next page; "" on the last
	// Parent names what the rows belong to (a gallery, an application).
	Gallery, Application string
}

// nextPage is the query of the page after this one: q with page=token.
func nextPage(q url.Values, token string) string {
	if token == "" {
		return ""
	}
	n := url.Values{}
	for k, v := range q {
		n[k] = v
	}
	n.Set("page", token)
	return "?" + n.Encode()
}

func (c *Console) galleries(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	res, err := c.catalog.ListGalleries(s.ctx(r.Context()), &pb.ListGalleriesRequest{PageSize: pageSize, PageToken: q.Get("page")})
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "galleries", page{Title: "Galleries", Nav: "galleries", Session: s,
		Data: listing{Rows: res.Galleries, Next: nextPage(q, res.NextPageToken)}})
	return nil
}

func (c *Console) applications(w http.ResponseWriter, r *http.Request, s *session) error {
	q, g := r.URL.Query(), r.PathValue("gallery")
	ctx := s.ctx(r.Context())
	if _, err := c.catalog.GetGallery(ctx, &pb.GetGalleryRequest{Gallery: g}); err != nil {
		return err
	}
	res, err := c.catalog.ListApplications(ctx, &pb.ListApplicationsRequest{Gallery: g, PageSize: pageSize, PageToken: q.Get("page")})
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "applications", page{Title: "Gallery " + g, Nav: "galleries", Session: s,
		Data: listing{Rows: res.Applications, Next: nextPage(q, res.NextPageToken), Gallery: g}})
	return nil
}

func (c *Console) versions(w http.ResponseWriter, r *http.Request, s *session) error {
	q, g, a := r.URL.Query(), r.PathValue("gallery"), r.PathValue("application")
	ctx := s.ctx(r.Context())
	if _, err := c.catalog.GetApplication(ctx, &pb.GetApplicationRequest{Gallery: g, Application: a}); err != nil {
		return err
	}
	res, err := c.catalog.ListVersions(ctx, &pb.ListVersionsRequest{Gallery: g, Application: a, PageSize: pageSize, PageToken: q.Get("page")})
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "versions", page{Title: g + "/" + a, Nav: "galleries", Session: s,
		Data: listing{Rows: res.Versions, Next: nextPage(q, res.NextPageToken), Gallery: g, Application: a}})
	return nil
}

// versionData is the version page's.
type versionData struct {
	V *pb.GalleryApplicationVersion
	// CanRepair: the token may repair the version (Publish on its gallery).
	CanRepair bool
	// Repair is the outcome of a repair just asked for.
	Repair *pb.RepairVersionResponse
	Matrix matrix
}

func (c *Console) version(w http.ResponseWriter, r *http.Request, s *session) error {
	return c.showVersion(w, r, s, nil)
}

func (c *Console) showVersion(w http.ResponseWriter, r *http.Request, s *session, rep *pb.RepairVersionResponse) error {
	g, a, v := r.PathValue("gallery"), r.PathValue("application"), r.PathValue("version")
	res, err := c.catalog.GetVersion(s.ctx(r.Context()), &pb.GetVersionRequest{Gallery: g, Application: a, Version: v})
	if err != nil {
		return err
	}
	d := versionData{V: res.Version, CanRepair: s.can(auth.Publish, g), Repair: rep, Matrix: matrixOf(res.Version.ReplicationStatus)}
	c.render(w, http.StatusOK, "version", page{Title: g + "/" + a + "/" + v, Nav: "galleries", Session: s, Data: d})
	return nil
}

// repair asks vmappd to check the version's replicas (deep with deep=1)
// and shows the version with what it found.
func (c *Console) repair(w http.ResponseWriter, r *http.Request, s *session) error {
	g, a, v := r.PathValue("gallery"), r.PathValue("application"), r.PathValue("version")
	res, err := c.repl.RepairVersion(s.ctx(r.Context()), &pb.RepairVersionRequest{Gallery: g, Application: a, Version: v, Deep: r.PostFormValue("deep") == "1"})
	if err != nil {
		return err
	}
	return c.showVersion(w, r, s, res)
}
