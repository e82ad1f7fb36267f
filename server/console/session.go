package console

import (
	"context"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
	"github.com/vmapp/vmapp/server/catalog"
)

// Cookies of a session.
const (
	tokenCookie  = "vmapp_token"
	tenantCookie = "vmapp_tenant"
)

// outgoing puts the credential and the tenant in ctx's gRPC metadata.
func outgoing(ctx context.Context, credential, tenant string) context.Context {
	kv := []string{"authorization", "Bearer " + credential}
	if tenant != "" {
		kv = append(kv, pb.TenantMetadataKey, tenant)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// pageFunc renders a page for a signed-in person.
type pageFunc func(w http.ResponseWriter, r *http.Request, s *session) error

// sessionOf reads the cookies and asks the API who the token is: an
// error when there is no session or the API refuses the token.
func (c *Console) sessionOf(r *http.Request) (*session, error) {
	ck, err := r.Cookie(tokenCookie)
	if err != nil || ck.Value == "" {
		return nil, errs.New(errs.Unauthenticated, "token", "sign in with an API token")
	}
	s := &session{credential: ck.Value}
	if t, err := r.Cookie(tenantCookie); err == nil {
		s.tenant = t.Value
	}
	res, err := c.access.WhoAmI(s.ctx(r.Context()), &pb.WhoAmIRequest{})
	if err != nil {
		return nil, errs.FromStatus(err)
	}
	s.token = res.Token
	return s, nil
}

// tenantName is the tenant the session's calls run in.
func (s *session) tenantName() string {
	switch {
	case s.tenant != "":
		return s.tenant
	case s.token.GetTenant() == pb.AllTenants:
		return "default"
	}
	return s.token.GetTenant()
}

// can reports whether the session's token may do perm on gallery.
func (s *session) can(perm auth.Perm, gallery string) bool {
	return auth.Allows(s.token, perm, s.tenantName(), gallery)
}

// signedIn runs h for a signed-in person; others go to the sign-in page,
// which comes back here once they are.
func (c *Console) signedIn(h pageFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := c.sessionOf(r)
		if err != nil {
			c.toSignIn(w, r, err)
			return
		}
		if err := h(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	})
}

// toSignIn sends the browser to the sign-in page (a GET comes back to
// where it was), or answers 401 to a POST.
func (c *Console) toSignIn(w http.ResponseWriter, r *http.Request, err error) {
	if r.Method != http.MethodGet {
		http.Error(w, "sign in first: "+errs.FromStatus(err).Error(), http.StatusUnauthorized)
		return
	}
	q := "?next=" + urlQuery(r.URL.RequestURI())
	if _, cerr := r.Cookie(tokenCookie); cerr == nil {
		q += "&refused=1" // a cookie the API no longer takes
	}
	http.Redirect(w, r, "/ui/signin"+q, http.StatusSeeOther)
}

// signInPage shows the form.
func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	d := signInData{Next: safeNext(r.URL.Query().Get("next"))}
	if r.URL.Query().Get("refused") != "" {
		d.Error = "vmappd no longer accepts the token you signed in with (revoked or expired): sign in again."
	}
	c.render(w, http.StatusOK, "signin", page{Title: "Sign in", Data: d})
}

type signInData struct {
	Next, Error, Tenant string
}

// signIn checks the token with WhoAmI and sets the cookies.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	credential := strings.TrimSpace(r.PostFormValue("token"))
	tenant := strings.TrimSpace(r.PostFormValue("tenant"))
	d := signInData{Next: safeNext(r.PostFormValue("next")), Tenant: tenant}
	switch {
	case credential == "":
		d.Error = "Paste an API token: the CLI prints one with 'vmapp token create', and vmappd writes the operator's in its data directory (admin.token)."
	case tenant != "" && catalog.ValidateTenant(tenant) != nil:
		d.Error = "Tenant: " + catalog.ValidateTenant(tenant).Error()
	}
	if d.Error == "" {
		res, err := c.access.WhoAmI(outgoing(r.Context(), credential, tenant), &pb.WhoAmIRequest{})
		switch {
		case err != nil:
			d.Error = "vmappd refused this token: " + errs.FromStatus(err).Error()
		case res.Token.GetRole() == pb.Role_ROLE_MACHINE:
			d.Error = "This is a machine's agent credential: it serves its agent only. Sign in with a person's or a pipeline's token."
		}
	}
	if d.Error != "" {
		c.render(w, http.StatusUnauthorized, "signin", page{Title: "Sign in", Data: d})
		return
	}
	c.setCookie(w, tokenCookie, credential, 12*time.Hour)
	if tenant != "" {
		c.setCookie(w, tenantCookie, tenant, 12*time.Hour)
	} else {
		c.setCookie(w, tenantCookie, "", -1)
	}
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
}

// signOut drops the cookies.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	c.setCookie(w, tokenCookie, "", -1)
	c.setCookie(w, tenantCookie, "", -1)
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
}

func (c *Console) setCookie(w http.ResponseWriter, name, value string, age time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/ui/", MaxAge: int(age.Seconds()),
		HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteStrictMode})
}

// safeNext keeps a return path inside the console: no other site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/"
	}
	return next
}
