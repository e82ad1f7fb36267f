package server_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/internal/testkit/testcluster"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// parallel runs fn for 0..n-1, 16 at a time.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var g errgroup.Group
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error { return fn(i) })
	}
	mustOK(t, g.Wait())
}

// pages lists every page of size, calling between(page) after each, and
// returns the items and the number of pages.
func pages[T any](t *testing.T, size int32, list func(size int32, token string) ([]T, string, error), between func(page int)) ([]T, int) {
	t.Helper()
	var all []T
	token := ""
	for n := 1; ; n++ {
		items, next, err := list(size, token)
		mustOK(t, err)
		if len(items) > int(size) {
			t.Fatalf("page %d has %d items, more than %d", n, len(items), size)
		}
		all = append(all, items...)
		if between != nil {
			between(n)
		}
		if next == "" {
			return all, n
		}
		if n > 1000 {
			t.Fatal("paging does not end")
		}
		token = next
	}
}

// TestInventoryPaging: ListInventory pages through every entry, by any
// filter, with changes between pages, at the cost of the page (it reads
// the index of its filter); bad page tokens and sizes are refused.
func TestInventoryPaging(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	fl := pb.NewFleetServiceClient(c.Client.Conn())
	_, err := fl.CreateScaleSet(ctx(t), &pb.CreateScaleSetRequest{ScaleSet: &pb.ScaleSet{Name: "web", Region: "westus", OsType: "Linux"}})
	mustOK(t, err)
	name := func(i int) string {
		if i < 150 {
			return fmt.Sprintf("vm-%03d", i)
		}
		return fmt.Sprintf("web-%03d", i)
	}
	// version: g/a's.
	report := func(machine, version string, states ...string) error {
		iv := &pb.InstanceView{}
		for i, st := range states {
			iv.Applications = append(iv.Applications, &pb.ApplicationStatus{Application: []string{"g/a", "g/tools"}[i], Version: []string{version, "1.0.0"}[i], State: st})
		}
		_, err := fl.ReportStatus(ctx(t), &pb.ReportStatusRequest{Machine: machine, InstanceView: iv})
		return err
	}
	const machines = 250
	parallel(t, machines, func(i int) error {
		m := &pb.Machine{Name: name(i), Region: "eastus", OsType: "Linux"}
		if i >= 150 {
			m = &pb.Machine{Name: name(i), ScaleSet: "web"}
		}
		if _, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: m}); err != nil {
			return err
		}
		a := "Installed"
		if i%10 == 3 {
			a = "Failed"
		}
		v := "1.0.0"
		if i%5 == 0 {
			v = "1.0.1"
		}
		return report(name(i), v, a, "Installed")
	})
	list := func(q *pb.ListInventoryRequest) func(size int32, token string) ([]string, string, error) {
		return func(size int32, token string) ([]string, string, error) {
			r := &pb.ListInventoryRequest{Application: q.Application, Region: q.Region, State: q.State, Version: q.Version, ScaleSet: q.ScaleSet, PageSize: size, PageToken: token}
			resp, err := fl.ListInventory(ctx(t), r)
			var out []string
			for _, e := range resp.GetEntries() {
				out = append(out, e.Machine+" "+e.Status.Application+" "+e.Status.State)
			}
			return out, resp.GetNextPageToken(), err
		}
	}
	distinct := func(what string, got []string, want int) {
		t.Helper()
		if len(got) != want || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != want {
			t.Fatalf("%s: %d entries (sorted: %v), want %d distinct, in order", what, len(got), slices.IsSorted(got), want)
		}
	}

	all, n := pages(t, 70, list(&pb.ListInventoryRequest{}), nil)
	distinct("every entry", all, 2*machines)
	if n != 8 {
		t.Errorf("500 entries in %d pages of 70", n)
	}
	for _, tc := range []struct {
		q    *pb.ListInventoryRequest
		want int
	}{
		{&pb.ListInventoryRequest{State: "failed"}, 25},
		{&pb.ListInventoryRequest{State: "INSTALLED", Application: "g/tools"}, machines},
		{&pb.ListInventoryRequest{Application: "tools"}, machines},
		{&pb.ListInventoryRequest{Application: "g/a", Region: "westus"}, 100},
		{&pb.ListInventoryRequest{Region: "westus"}, 200},
		{&pb.ListInventoryRequest{Region: "northeurope"}, 0},
		{&pb.ListInventoryRequest{Application: "other/a"}, 0},
		{&pb.ListInventoryRequest{Version: "1.0.1"}, 50},
		{&pb.ListInventoryRequest{Version: "1.0.0", Application: "g/a"}, 200},
		{&pb.ListInventoryRequest{Version: "1.0.1", ScaleSet: "web"}, 20},
		{&pb.ListInventoryRequest{ScaleSet: "web"}, 200},
		{&pb.ListInventoryRequest{ScaleSet: "web", State: "failed"}, 10},
		{&pb.ListInventoryRequest{ScaleSet: "nope"}, 0},
		{&pb.ListInventoryRequest{Version: "1.0"}, 0},
	} {
		got, _ := pages(t, 7, list(tc.q), nil)
		distinct(fmt.Sprintf("%v", tc.q), got, tc.want)
	}

	// A filtered page reads the entries of its state, not every entry.
	db := c.Daemon.State
	before := db.RecordsRead()
	r, err := fl.ListInventory(ctx(t), &pb.ListInventoryRequest{State: "Failed", PageSize: 10})
	mustOK(t, err)
	if read := db.RecordsRead() - before; len(r.Entries) != 10 || read > 30 {
		t.Fatalf("a page of 10 failed entries read %d records (%d entries)", read, len(r.Entries))
	}

	// Changes between pages: an entry behind the listing changes, a machine
	// ahead goes, another ahead comes. Nothing repeats, nothing alive is
	// skipped.
	got, _ := pages(t, 100, list(&pb.ListInventoryRequest{}), func(page int) {
		if page != 1 {
			return
		}
		mustOK(t, report(name(0), "1.0.1", "Removing"))
		_, err := fl.DeleteMachine(ctx(t), &pb.DeleteMachineRequest{Name: name(200)})
		mustOK(t, err)
		_, err = fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: "zz-late", Region: "eastus", OsType: "Linux"}})
		mustOK(t, err)
		mustOK(t, report("zz-late", "1.0.0", "Installing"))
	})
	distinct("entries while they change", got, 2*machines-2+1)
	if got[0] != "vm-000 g/a Installed" || got[len(got)-1] != "zz-late g/a Installing" || slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, name(200)) }) {
		t.Fatalf("entries while they change: first %q, last %q", got[0], got[len(got)-1])
	}

	_, err = fl.ListInventory(ctx(t), &pb.ListInventoryRequest{PageToken: "not-a-token"})
	wantErr(t, err, codes.InvalidArgument, "pageToken 'not-a-token' is not a token this listing returned")
	_, err = fl.ListInventory(ctx(t), &pb.ListInventoryRequest{PageSize: -1})
	wantErr(t, err, codes.InvalidArgument, "pageSize -1 must not be negative")
	big, err := fl.ListInventory(ctx(t), &pb.ListInventoryRequest{PageSize: 5000})
	mustOK(t, err)
	if len(big.Entries) != 2*machines-2 || big.NextPageToken != "" {
		t.Fatalf("pageSize 5000 (capped at 1000): %d entries, next %q", len(big.Entries), big.NextPageToken)
	}

	// A scale set's instances, from its index.
	before = db.RecordsRead()
	web, n := pages(t, 30, func(size int32, token string) ([]string, string, error) {
		r, err := fl.ListMachines(ctx(t), &pb.ListMachinesRequest{ScaleSet: "web", PageSize: size, PageToken: token})
		var out []string
		for _, m := range r.GetMachines() {
			out = append(out, m.Name)
		}
		return out, r.GetNextPageToken(), err
	}, nil)
	if len(web) != 99 || !slices.IsSorted(web) || n != 4 {
		t.Fatalf("instances of web: %d in %d pages", len(web), n)
	}
	if read := db.RecordsRead() - before; read > 99*3+20 {
		t.Fatalf("listing 99 instances read %d records", read)
	}
}

// TestTokenPaging: ListTokens pages, API tokens apart from the machines'
// (so the default listing doesn't read them), revoked ones with all, the
// operator's own after the tenant's for the operator.
func TestTokenPaging(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ac, fl := pb.NewAccessServiceClient(c.Client.Conn()), pb.NewFleetServiceClient(c.Client.Conn())
	ids := make([]string, 120)
	parallel(t, 120, func(i int) error {
		r, err := ac.CreateToken(ctx(t), &pb.CreateTokenRequest{Name: fmt.Sprintf("pipeline %d", i), Role: pb.Role_ROLE_READER})
		ids[i] = r.GetToken().GetId()
		return err
	})
	parallel(t, 200, func(i int) error {
		_, err := fl.CreateMachine(ctx(t), &pb.CreateMachineRequest{Machine: &pb.Machine{Name: fmt.Sprintf("vm-%03d", i), Region: "eastus", OsType: "Linux"}})
		return err
	})
	for _, id := range ids[:20] {
		_, err := ac.RevokeToken(ctx(t), &pb.RevokeTokenRequest{Id: id})
		mustOK(t, err)
	}
	owner, err := ac.CreateToken(ctx(t), &pb.CreateTokenRequest{Name: "owner", Role: pb.Role_ROLE_OWNER})
	mustOK(t, err)
	ownerCl, err := client.New(c.Addr, client.Options{Token: owner.Secret})
	mustOK(t, err)
	t.Cleanup(func() { ownerCl.Close() })

	list := func(ac pb.AccessServiceClient, all bool) func(size int32, token string) ([]*pb.Token, string, error) {
		return func(size int32, token string) ([]*pb.Token, string, error) {
			r, err := ac.ListTokens(ctx(t), &pb.ListTokensRequest{All: all, PageSize: size, PageToken: token})
			return r.GetTokens(), r.GetNextPageToken(), err
		}
	}
	count := func(ts []*pb.Token) (api, machine, revoked, operator int) {
		seen := map[string]bool{}
		for _, tk := range ts {
			if seen[tk.Id] {
				t.Fatalf("token %s listed twice", tk.Id)
			}
			seen[tk.Id] = true
			switch {
			case tk.Tenant == "*":
				operator++
			case tk.Machine != "":
				machine++
			case tk.RevokeTime != nil:
				revoked++
			default:
				api++
			}
		}
		return
	}
	db := c.Daemon.State
	before := db.RecordsRead()
	live, _ := pages(t, 40, list(ac, false), nil)
	// What the listing returns, the 20 revoked tokens it skips, and slack
	// for the caller's credential read per call and whatever the daemon's
	// background work reads meanwhile — far below the 200 machine tokens
	// a listing that skipped the index would read.
	if read := db.RecordsRead() - before; read > 101+20+1+20 {
		t.Errorf("listing 101 live API tokens among 200 machine tokens read %d records", read)
	}
	if api, machine, revoked, operator := count(live); api != 101 || machine+revoked != 0 || operator != 1 {
		t.Fatalf("the operator's default listing: %d API, %d machine, %d revoked, %d operator tokens", api, machine, revoked, operator)
	}
	if live[len(live)-1].Tenant != "*" {
		t.Errorf("the operator's own token is not listed after the tenant's")
	}
	every, _ := pages(t, 64, list(ac, true), nil)
	if api, machine, revoked, operator := count(every); api != 101 || machine != 200 || revoked != 20 || operator != 1 {
		t.Fatalf("--all: %d API, %d machine, %d revoked, %d operator tokens", api, machine, revoked, operator)
	}
	mine, _ := pages(t, 1000, list(pb.NewAccessServiceClient(ownerCl.Conn()), false), nil)
	if api, _, _, operator := count(mine); api != 101 || operator != 0 {
		t.Fatalf("the tenant owner's listing: %d API, %d operator tokens", api, operator)
	}

	_, err = ac.ListTokens(ctx(t), &pb.ListTokensRequest{PageToken: "AAAAAAAA"})
	wantErr(t, err, codes.InvalidArgument, "pageToken")
	_, err = ac.ListTokens(ctx(t), &pb.ListTokensRequest{PageSize: -5})
	wantErr(t, err, codes.InvalidArgument, "pageSize")
}
