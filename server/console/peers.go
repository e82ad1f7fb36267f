package console

import (
	"context"
	"net/http"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// peersLimit bounds the versions the peers page reads (one GetVersion
// each).
const peersLimit = 200

// peersData is the peers page's: the versions with a preheat or peers
// holding their package.
type peersData struct {
	Versions []*pb.GalleryApplicationVersion
	// Read is how many versions were read; Truncated: there were more.
	Read      int
	Truncated bool
}

// peers shows what vmappd knows of peer-to-peer distribution: each
// version's preheat with the machines holding it, and the machines its
// tracker knows to serve the package, region by region.
func (c *Console) peers(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := s.ctx(r.Context())
	var d peersData
	err := c.eachVersion(ctx, func(g, a, v string) error {
		if d.Read == peersLimit {
			d.Truncated = true
			return errStop
		}
		d.Read++
		res, err := c.catalog.GetVersion(ctx, &pb.GetVersionRequest{Gallery: g, Application: a, Version: v})
		if err == nil && (len(res.Version.Preheat) > 0 || len(res.Version.Peers) > 0) {
			d.Versions = append(d.Versions, res.Version)
		}
		return err
	})
	if err != nil && err != errStop {
		return err
	}
	c.render(w, http.StatusOK, "peers", page{Title: "Peers and cache", Nav: "peers", Session: s, Data: d})
	return nil
}

// errStop ends eachVersion early.
var errStop = errorString("stop")

type errorString string

func (e errorString) Error() string { return string(e) }

// eachVersion calls f with every version of every gallery of the tenant,
// until f returns an error.
func (c *Console) eachVersion(ctx context.Context, f func(g, a, v string) error) error {
	return eachPage(func(tok string) (string, error) {
		gs, err := c.catalog.ListGalleries(ctx, &pb.ListGalleriesRequest{PageSize: pageSize, PageToken: tok})
		for _, g := range gs.GetGalleries() {
			err = eachPage(func(tok string) (string, error) {
				as, err := c.catalog.ListApplications(ctx, &pb.ListApplicationsRequest{Gallery: g.Name, PageSize: pageSize, PageToken: tok})
				for _, a := range as.GetApplications() {
					err = eachPage(func(tok string) (string, error) {
						vs, err := c.catalog.ListVersions(ctx, &pb.ListVersionsRequest{Gallery: g.Name, Application: a.Name, PageSize: pageSize, PageToken: tok})
						for _, v := range vs.GetVersions() {
							if err = f(g.Name, a.Name, v.Name); err != nil {
								break
							}
						}
						return vs.GetNextPageToken(), err
					})
					if err != nil {
						break
					}
				}
				return as.GetNextPageToken(), err
			})
			if err != nil {
				break
			}
		}
		return gs.GetNextPageToken(), err
	})
}

// eachPage calls list with each page's token until the last page or an
// error.
func eachPage(list func(token string) (next string, err error)) error {
	tok := ""
	for {
		next, err := list(tok)
		if err != nil || next == "" {
			return err
		}
		tok = next
	}
}
