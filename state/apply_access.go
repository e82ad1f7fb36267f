package state

import (
	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// issueToken stores a credential; a machine's replaces (and revokes) the
// machine's earlier one.
func issueToken(tx *Tx, c *statepb.Command, op *statepb.IssueToken) error {
	cred := op.GetCredential()
	t := cred.GetToken()
	if op.OnlyIfNone && tx.AnyToken() {
		return errs.New(errs.AlreadyExists, "", "credentials exist already")
	}
	if Tokens.Has(tx, TokenKey(t.GetId())) {
		return errs.New(errs.AlreadyExists, "id", "token %s exists already", t.GetId())
	}
	if t.GetMachine() != "" {
		if err := bindMachineToken(tx, c, t.Tenant, t.Machine, t.Id); err != nil {
			return err
		}
	}
	if err := TokensByTenant.put(tx, TokenInTenantKey(t), TokenKey(t.Id)); err != nil {
		return err
	}
	return Tokens.put(tx, TokenKey(t.Id), cred)
}

// bindMachineToken revokes the machine's agent credential, if any, and
// records id as the machine's ("" forgets it).
func bindMachineToken(tx *Tx, c *statepb.Command, tenant, machine, id string) error {
	if old := tx.MachineToken(tenant, machine); old != "" {
		if err := revokeToken(tx, c, old); err != nil && !errs.Is(err, errs.NotFound) {
			return err
		}
	}
	b := tx.tx.Bucket(bucketMachineTokens)
	if id == "" {
		return b.Delete(MachineTokenKey(tenant, machine))
	}
	return b.Put(MachineTokenKey(tenant, machine), []byte(id))
}

// revokeToken marks a credential revoked at the command's time, unless it
// is already.
func revokeToken(tx *Tx, c *statepb.Command, id string) error {
	cred, ok, err := Tokens.Get(tx, TokenKey(id))
	if err != nil {
		return err
	}
	if !ok {
		return errs.New(errs.NotFound, "id", "Token '%s' doesn't exist.", id)
	}
	if cred.Token.RevokeTime != nil {
		return nil
	}
	cred.Token.RevokeTime = c.Time
	return Tokens.put(tx, TokenKey(id), cred)
}

func putShare(tx *Tx, op *statepb.PutShare) error {
	sh := op.GetShare()
	k := ShareKey(op.Tenant, sh.GetGallery(), sh.GetGrantee())
	if Shares.Has(tx, k) {
		return nil // already shared: keep who and when
	}
	return Shares.put(tx, k, sh)
}

func deleteShare(tx *Tx, op *statepb.DeleteShare) error {
	k := ShareKey(op.Tenant, op.Gallery, op.Grantee)
	if !Shares.Has(tx, k) {
		return errs.New(errs.NotFound, "grantee", "Gallery '%s' is not shared with '%s'.", op.Gallery, op.Grantee)
	}
	return Shares.delete(tx, k)
}

// Shared tells whether the tenant's gallery is shared with tenant with, or
// public.
func (tx *Tx) Shared(tenant, gallery, with string) bool {
	return Shares.Has(tx, ShareKey(tenant, gallery, with)) || Shares.Has(tx, ShareKey(tenant, gallery, pb.AllTenants))
}
