package auth

import (
	"fmt"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// Perm is what an RPC needs.
type Perm int

const (
	// Read: galleries, applications, versions, replication, machines,
	// inventory; download packages.
	Read Perm = iota + 1
	// Deploy: change machines' and scale sets' application profiles.
	Deploy
	// Publish: manage galleries, applications, versions, uploads,
	// machines and scale sets.
	Publish
	// Manage: tokens and shares.
	Manage
	// Agent: a machine's goal state and status. Machine tokens have it
	// for their own machine (the caller checks which); Contributors too,
	// to debug and test agents.
	Agent
)

var permNames = map[Perm]string{Read: "read", Deploy: "deploy", Publish: "publish", Manage: "manage access", Agent: "act as an agent"}

func (p Perm) String() string { return permNames[p] }

// least is the least role with each permission.
var least = map[Perm]pb.Role{Read: pb.Role_ROLE_READER, Deploy: pb.Role_ROLE_READER, Publish: pb.Role_ROLE_CONTRIBUTOR, Manage: pb.Role_ROLE_OWNER, Agent: pb.Role_ROLE_CONTRIBUTOR}

// Describe names a token in messages and logs: never its secret.
func Describe(t *pb.Token) string {
	if t == nil {
		return "anonymous"
	}
	return fmt.Sprintf("token %s (%s: %s of %s)", t.Id, t.Name, t.Role.Label(), t.Scope())
}

// Check returns nil when t may do perm in the tenant, on the gallery (""
// for what is not one gallery's: listing galleries, machines, tokens), and
// PermissionDenied saying why otherwise. A machine token passes Agent
// only: the caller checks that the machine is its own.
func (s *Service) Check(t *pb.Token, perm Perm, action, tenant, gallery string) error {
	where := "tenant '" + tenant + "'"
	if gallery != "" {
		where = "gallery '" + gallery + "' of tenant '" + tenant + "'"
	}
	deny := func(why string, args ...any) error {
		return errs.New(errs.PermissionDenied, "", "%s may not %s on %s: %s", Describe(t), action, where, fmt.Sprintf(why, args...))
	}
	if t.Role == pb.Role_ROLE_MACHINE {
		if perm == Agent && t.Tenant == tenant {
			return nil
		}
		return deny("a machine's credential serves its agent only")
	}
	if t.Tenant == tenant || t.Tenant == AllTenants {
		if t.Gallery != "" && t.Gallery != gallery {
			return deny("it is scoped to gallery '%s'", t.Gallery)
		}
		if t.Role < least[perm] {
			return deny("that needs the %s role", least[perm].Label())
		}
		return nil
	}
	if perm == Read && gallery != "" && t.Gallery == "" {
		ok, err := s.Shared(tenant, gallery, t.Tenant)
		if err != nil || ok {
			return err
		}
	}
	if perm == Read && gallery != "" {
		return deny("it works in tenant '%s', and the gallery is not shared with it", t.Tenant)
	}
	return deny("it works in tenant '%s'", t.Tenant)
}

// Allows reports whether t may do perm in its own tenant (tenant, or any
// for the operator's tokens), on gallery ("" for what is not one
// gallery's): Check's rules without gallery shares, for showing a person
// only the actions the API will take from them (the API checks anyway).
func Allows(t *pb.Token, perm Perm, tenant, gallery string) bool {
	switch {
	case t == nil || t.Role == pb.Role_ROLE_MACHINE:
		return false
	case t.Tenant != tenant && t.Tenant != AllTenants:
		return false
	case t.Gallery != "" && t.Gallery != gallery:
		return false
	}
	return t.Role >= least[perm]
}
