package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/errs"
)

// page is what every template gets.
type page struct {
	Title   string
	Nav     string // the nav entry to mark current
	Session *session
	Flash   string // a message from the last action
	Data    any
}

// User names the signed-in token, for the header.
func (p page) User() string {
	if p.Session == nil || p.Session.token == nil {
		return ""
	}
	t := p.Session.token
	return fmt.Sprintf("%s (%s, %s)", t.Name, t.Role.Label(), t.Scope())
}

var funcs = template.FuncMap{
	"bytes": func(n int64) string { return humanize.IBytes(uint64(max(n, 0))) },
	"when": func(t *timestamppb.Timestamp) string {
		if t == nil {
			return "-"
		}
		return t.AsTime().UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"dur": func(d *durationpb.Duration) string {
		if d == nil {
			return "-"
		}
		return d.AsDuration().Round(time.Second).String()
	},
	"lower": strings.ToLower,
	"path":  url.PathEscape,
	"app":   appOf,
	"int":   func(n int32) int { return int(n) },
	"add":   func(a, b int) int { return a + b },
	"list":  func(s ...string) []string { return s },
	"has":   slices.Contains[[]string],
	"title": func(s string) string { return strings.ToUpper(s[:1]) + s[1:] },
}

// parsePages parses each page with the layout.
func parsePages() map[string]*template.Template {
	base := template.Must(template.New("").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/parts.html"))
	names, _ := files.ReadDir("templates")
	out := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(n.Name(), ".html")
		if name == "layout" || name == "parts" {
			continue
		}
		out[name] = template.Must(template.Must(base.Clone()).ParseFS(files, "templates/"+n.Name()))
	}
	return out
}

// render writes page p with template name.
func (c *Console) render(w http.ResponseWriter, status int, name string, p page) {
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		c.log.Error("console: rendering", "page", name, "err", err)
		http.Error(w, "the console could not render this page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	buf.WriteTo(w)
}

// fragment renders one named template of page name (a part updated live).
func (c *Console) fragment(name, part string, data any) (string, error) {
	var buf bytes.Buffer
	err := c.pages[name].ExecuteTemplate(&buf, part, data)
	return buf.String(), err
}

// problem is an error as a person reads it.
type problem struct {
	Heading, Message, Field string
}

// explain turns an API error into a heading, the API's message and the
// field at fault, with the HTTP status of the page.
func explain(err error) (problem, int) {
	err = errs.FromStatus(err)
	p := problem{Message: err.Error(), Field: errs.FieldOf(err)}
	switch errs.ClassOf(err) {
	case errs.NotFound:
		p.Heading = "Not found"
		return p, http.StatusNotFound
	case errs.PermissionDenied:
		p.Heading = "Your token doesn't allow this"
		return p, http.StatusForbidden
	case errs.InvalidArgument, errs.FailedPrecondition, errs.AlreadyExists, errs.Aborted, errs.OutOfRange:
		p.Heading = "vmappd refused this"
		return p, http.StatusBadRequest
	case errs.Unavailable, errs.DeadlineExceeded:
		p.Heading = "vmappd can't answer now; try again in a moment"
		return p, http.StatusServiceUnavailable
	case errs.Internal:
		p.Heading = "Something went wrong inside vmappd"
		p.Message = "vmappd logged the cause; its operator can read it there."
		return p, http.StatusInternalServerError
	}
	p.Heading = "vmappd refused this"
	return p, http.StatusBadRequest
}

// fail renders the error page; a refused token goes back to sign-in.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	if errs.ClassOf(errs.FromStatus(err)) == errs.Unauthenticated {
		c.toSignIn(w, r, err)
		return
	}
	p, status := explain(err)
	c.render(w, status, "error", page{Title: p.Heading, Session: s, Data: p})
}

func urlQuery(s string) string { return url.QueryEscape(s) }
