package console

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/fleet"
)

// inventoryFilter is the inventory page's form.
type inventoryFilter struct {
	Application, Version, State, Region, ScaleSet string
}

// inventoryData is the inventory page's.
type inventoryData struct {
	Filter  inventoryFilter
	States  []string
	Regions []*pb.Region
	Rows    []*pb.InventoryEntry
	Next    string
}

// inventory lists the fleet's applications per machine, filtered by the
// API.
func (c *Console) inventory(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	f := inventoryFilter{Application: strings.TrimSpace(q.Get("application")), Version: strings.TrimSpace(q.Get("version")),
		State: q.Get("state"), Region: q.Get("region"), ScaleSet: strings.TrimSpace(q.Get("scaleSet"))}
	ctx := s.ctx(r.Context())
	regions, err := c.catalog.ListRegions(ctx, &pb.ListRegionsRequest{})
	if err != nil {
		return err
	}
	res, err := c.fleet.ListInventory(ctx, &pb.ListInventoryRequest{Application: f.Application, Region: f.Region, State: f.State,
		Version: f.Version, ScaleSet: f.ScaleSet, PageSize: 500, PageToken: q.Get("page")})
	if err != nil {
		return err
	}
	d := inventoryData{Filter: f, States: pb.AppStates, Regions: regions.Regions, Rows: res.Entries, Next: nextPage(q, res.NextPageToken)}
	c.render(w, http.StatusOK, "inventory", page{Title: "Inventory", Nav: "inventory", Session: s, Data: d})
	return nil
}

func (c *Console) machines(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	res, err := c.fleet.ListMachines(s.ctx(r.Context()), &pb.ListMachinesRequest{PageSize: pageSize, PageToken: q.Get("page")})
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "machines", page{Title: "Machines", Nav: "machines", Session: s,
		Data: listing{Rows: res.Machines, Next: nextPage(q, res.NextPageToken)}})
	return nil
}

// profileData is a machine's or a scale set's page.
type profileData struct {
	Machine   *pb.Machine
	ScaleSet  *pb.ScaleSet
	Instances []*pb.Machine
	// CanRetry: the token may retry applications (Deploy).
	CanRetry bool
	// Own: the applications (gallery/application) of the machine's own
	// profile; the others come from its scale set's, and are retried there.
	Own map[string]bool
}

// ownApps lists the applications of a profile.
func ownApps(p *pb.ApplicationProfile) map[string]bool {
	out := map[string]bool{}
	for _, a := range p.GetGalleryApplications() {
		out[appOf(a.PackageReferenceId)] = true
	}
	return out
}

// appOf is the gallery/application of a package reference id (the
// reference itself when it isn't one).
func appOf(ref string) string {
	r, err := fleet.ParseRef(ref)
	if err != nil {
		return ref
	}
	return r.App()
}

func (c *Console) machine(w http.ResponseWriter, r *http.Request, s *session) error {
	res, err := c.fleet.GetMachine(s.ctx(r.Context()), &pb.GetMachineRequest{Name: r.PathValue("machine")})
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "machine", page{Title: "Machine " + res.Machine.Name, Nav: "machines", Session: s, Flash: retried(r),
		Data: profileData{Machine: res.Machine, CanRetry: s.can(auth.Deploy, ""), Own: ownApps(res.Machine.ApplicationProfile)}})
	return nil
}

func (c *Console) scaleSets(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	res, err := c.fleet.ListScaleSets(s.ctx(r.Context()), &pb.ListScaleSetsRequest{PageSize: pageSize, PageToken: q.Get("page")})
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "scalesets", page{Title: "Scale sets", Nav: "scalesets", Session: s,
		Data: listing{Rows: res.ScaleSets, Next: nextPage(q, res.NextPageToken)}})
	return nil
}

func (c *Console) scaleSet(w http.ResponseWriter, r *http.Request, s *session) error {
	ctx := s.ctx(r.Context())
	res, err := c.fleet.GetScaleSet(ctx, &pb.GetScaleSetRequest{Name: r.PathValue("scaleset")})
	if err != nil {
		return err
	}
	inst, err := c.fleet.ListMachines(ctx, &pb.ListMachinesRequest{ScaleSet: res.ScaleSet.Name, PageSize: 1000})
	if err != nil {
		return err
	}
	c.render(w, http.StatusOK, "scaleset", page{Title: "Scale set " + res.ScaleSet.Name, Nav: "scalesets", Session: s, Flash: retried(r),
		Data: profileData{ScaleSet: res.ScaleSet, Instances: inst.Machines, CanRetry: s.can(auth.Deploy, "")}})
	return nil
}

// retry runs an application again on a machine or a scale set's
// instances (RetryApplication), and goes back to its page.
func (c *Console) retry(w http.ResponseWriter, r *http.Request, s *session) error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	machine, scaleSet, app := r.PostFormValue("machine"), r.PostFormValue("scaleSet"), r.PostFormValue("application")
	t := &pb.ProfileTarget{}
	back := "/ui/machines/" + url.PathEscape(machine)
	switch {
	case machine != "" && scaleSet == "":
		t.Target = &pb.ProfileTarget_Machine{Machine: machine}
	case scaleSet != "" && machine == "":
		t.Target = &pb.ProfileTarget_ScaleSet{ScaleSet: scaleSet}
		back = "/ui/scalesets/" + url.PathEscape(scaleSet)
	default:
		return errs.New(errs.InvalidArgument, "target", "name a machine or a scale set to retry the application on")
	}
	if _, err := c.fleet.RetryApplication(s.ctx(r.Context()), &pb.RetryApplicationRequest{Target: t, Application: app}); err != nil {
		return err
	}
	http.Redirect(w, r, back+"?retried="+url.QueryEscape(app), http.StatusSeeOther)
	return nil
}

// retried is the message after a retry, from the page's query.
func retried(r *http.Request) string {
	if app := r.URL.Query().Get("retried"); app != "" {
		return "Asked the agents to run " + app + " again."
	}
	return ""
}
