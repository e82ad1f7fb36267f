package auth_test

import (
	"testing"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/server/auth"
)

// TestAllows holds Allows to Check's rules in a token's own tenant: the
// role's least permission, the gallery scope, the tenant, machines never.
func TestAllows(t *testing.T) {
	reader := &pb.Token{Tenant: "t", Role: pb.Role_ROLE_READER}
	contributor := &pb.Token{Tenant: "t", Role: pb.Role_ROLE_CONTRIBUTOR}
	scoped := &pb.Token{Tenant: "t", Role: pb.Role_ROLE_CONTRIBUTOR, Gallery: "g"}
	operator := &pb.Token{Tenant: pb.AllTenants, Role: pb.Role_ROLE_OWNER}
	machine := &pb.Token{Tenant: "t", Role: pb.Role_ROLE_MACHINE, Machine: "vm1"}
	for _, tc := range []struct {
		name    string
		t       *pb.Token
		perm    auth.Perm
		tenant  string
		gallery string
		want    bool
	}{
		{"reader reads", reader, auth.Read, "t", "g", true},
		{"reader deploys", reader, auth.Deploy, "t", "", true},
		{"reader publishes", reader, auth.Publish, "t", "g", false},
		{"contributor publishes", contributor, auth.Publish, "t", "g", true},
		{"contributor manages", contributor, auth.Manage, "t", "", false},
		{"scoped on its gallery", scoped, auth.Publish, "t", "g", true},
		{"scoped on another", scoped, auth.Publish, "t", "h", false},
		{"scoped deploys", scoped, auth.Deploy, "t", "", false},
		{"another tenant", contributor, auth.Read, "u", "g", false},
		{"operator anywhere", operator, auth.Manage, "u", "", true},
		{"machine", machine, auth.Read, "t", "g", false},
		{"nobody", nil, auth.Read, "t", "g", false},
	} {
		if got := auth.Allows(tc.t, tc.perm, tc.tenant, tc.gallery); got != tc.want {
			t.Errorf("%s: Allows = %v, want %v", tc.name, got, tc.want)
		}
	}
}
