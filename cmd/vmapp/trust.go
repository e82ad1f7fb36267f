package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
	"github.com/vmapp/vmapp/sign/signpb"
)

func (c *cli) trustCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Manage a gallery's trust policy: the keys whose signatures count, and how many are required",
		Long: `A gallery's trust policy lists the public keys (minisign's) whose signatures
of versions count, and how many distinct trusted keys must have signed a
version for vmappd to deploy it (--require-signatures; 0: not required).
Changing it needs the Owner role on the gallery.

Machines don't take their trust from vmappd: an agent verifies versions with
the keys of its own --trust-file. Rotations and revocations signed here reach
the agents in their goal states, and an agent applies those signed by keys it
trusts.`,
		RunE: group,
	}
	cmd.AddCommand(c.trustListCmd(), c.trustAddCmd(), c.trustRemoveCmd(), c.trustSetCmd(), c.trustRotateCmd(), c.trustRevokeCmd())
	return cmd
}

func (c *cli) trustListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list GALLERY",
		Short: "Show a gallery's trust policy",
		Args:  args("GALLERY"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := signingClient(cl).GetTrustPolicy(c.ctx, &pb.GetTrustPolicyRequest{Gallery: args[0]})
			if err != nil {
				return err
			}
			return c.printTrust(r.Policy)
		}),
	}
}

// requireFlag is --require-signatures N; with optional, N may be left out
// (it is 1), and is then given as --require-signatures=N.
func requireFlag(cmd *cobra.Command, v *int32, optional bool) {
	usage := "require this many trusted keys' signatures for vmappd to deploy a version (0: not required)"
	if optional {
		usage = "require signatures for vmappd to deploy a version: alone, one; --require-signatures=N, N trusted keys' (0: not required)"
	}
	cmd.Flags().Int32Var(v, "require-signatures", 0, usage)
	if optional {
		cmd.Flags().Lookup("require-signatures").NoOptDefVal = "1"
	}
}

func (c *cli) trustAddCmd() *cobra.Command {
	var pub, name string
	var required int32
	cmd := &cobra.Command{
		Use:   "add GALLERY --key PUBLIC_KEY_FILE [--name NAME] [--require-signatures [N]]",
		Short: "Trust a public key for a gallery's versions",
		Long: `Trust a public key (a minisign public key file, as vmapp key create prints
it) for the gallery, under a name (default: the key id). A key that a
rotation replaced or a revocation revoked is never trusted again.

This command's --key is the public key file: give the TLS client key in
VMAPP_KEY.`,
		Example: "  vmapp gallery trust add g1 --key release.pub --name release --require-signatures",
		Args:    args("GALLERY"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			k, err := minisign.ReadPublicKeyFile(pub)
			if err != nil {
				return err
			}
			req := &pb.AddTrustedKeyRequest{Gallery: args[0], PublicKey: k.String(), Name: name}
			if cmd.Flags().Changed("require-signatures") {
				req.RequiredSignatures = &required
			}
			r, err := signingClient(cl).AddTrustedKey(c.ctx, req)
			if err != nil {
				return err
			}
			return c.printTrust(r.Policy)
		}),
	}
	cmd.Flags().StringVar(&pub, "key", "", "the public key file")
	cmd.Flags().StringVar(&name, "name", "", "the key's name in the policy (default: its key id)")
	requireFlag(cmd, &required, true)
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func (c *cli) trustRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove GALLERY KEY",
		Short: "Stop trusting a key (by name or key id) for a gallery",
		Long: `Stop trusting a key for the gallery: its signatures no longer count for
vmappd. Machines are not told; to make them refuse the key's signatures,
revoke it (vmapp gallery trust revoke).`,
		Args: args("GALLERY", "KEY"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := signingClient(cl).RemoveTrustedKey(c.ctx, &pb.RemoveTrustedKeyRequest{Gallery: args[0], Key: args[1]})
			if err != nil {
				return err
			}
			return c.printTrust(r.Policy)
		}),
	}
}

func (c *cli) trustSetCmd() *cobra.Command {
	var required int32
	cmd := &cobra.Command{
		Use:   "set GALLERY --require-signatures N",
		Short: "Set how many trusted keys must have signed a version for vmappd to deploy it",
		Args:  args("GALLERY"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := signingClient(cl).SetRequiredSignatures(c.ctx, &pb.SetRequiredSignaturesRequest{Gallery: args[0], RequiredSignatures: required})
			if err != nil {
				return err
			}
			return c.printTrust(r.Policy)
		}),
	}
	requireFlag(cmd, &required, false)
	_ = cmd.MarkFlagRequired("require-signatures")
	return cmd
}

// readSigners reads the secret keys of --sign-key (with one passphrase
// file for the encrypted ones).
func (c *cli) readSigners(paths []string, passFile string) ([]minisign.PrivateKey, error) {
	var out []minisign.PrivateKey
	for _, p := range paths {
		k, err := c.readSecretKey(p, passFile)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// signChange signs a key change statement with every key.
func signChange(st sign.Statement, keys []minisign.PrivateKey) ([]string, error) {
	var out []string
	for _, k := range keys {
		s, err := sign.Sign(k, st, time.Now())
		if err != nil {
			return nil, err
		}
		out = append(out, string(s.Encode()))
	}
	return out, nil
}

func (c *cli) trustRotateCmd() *cobra.Command {
	var oldPub, newPub, signKey, passFile string
	cmd := &cobra.Command{
		Use:   "rotate GALLERY --old OLD.pub --new NEW.pub --sign-key OLD.key [--passphrase-file F]",
		Short: "Replace a trusted key by a new one, on a rotation statement the old key signs",
		Long: `Sign the statement "the new key replaces the old one" with the old key, and
have the gallery apply it: the new key takes the old one's place and name,
and the old key's signatures stop counting. Agents that trust the old key
apply the rotation too when their goal state carries it. Re-sign with the
new key what must stay deployable.`,
		Args: args("GALLERY"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			old, err := minisign.ReadPublicKeyFile(oldPub)
			if err != nil {
				return err
			}
			next, err := minisign.ReadPublicKeyFile(newPub)
			if err != nil {
				return err
			}
			keys, err := c.readSigners([]string{signKey}, passFile)
			if err != nil {
				return err
			}
			sigs, err := signChange(&sign.Rotation{Old: old, New: next}, keys)
			if err != nil {
				return err
			}
			r, err := signingClient(cl).RotateTrustedKey(c.ctx, &pb.RotateTrustedKeyRequest{Gallery: args[0],
				Rotation: &pb.KeyRotation{OldPublicKey: old.String(), NewPublicKey: next.String()}, Signatures: sigs})
			if err != nil {
				return err
			}
			return c.printTrust(r.Policy)
		}),
	}
	cmd.Flags().StringVar(&oldPub, "old", "", "the public key file of the key replaced")
	cmd.Flags().StringVar(&newPub, "new", "", "the public key file of the key that replaces it")
	cmd.Flags().StringVar(&signKey, "sign-key", "", "the old key's secret key file, which signs the rotation")
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "the file holding the secret key's passphrase (else asked on the terminal)")
	for _, f := range []string{"old", "new", "sign-key"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func (c *cli) trustRevokeCmd() *cobra.Command {
	var pub, passFile, reason string
	var signKeys []string
	cmd := &cobra.Command{
		Use:   "revoke GALLERY --key KEY.pub --sign-key FILE [--sign-key FILE...] [--reason TEXT]",
		Short: "Revoke a key, on a revocation statement signed by the key itself or by other trusted keys",
		Long: `Sign the statement "this key is never to be trusted again" and have the
gallery apply it. It is signed by the revoked key itself (a key's holder can
always give it up), or by as many other trusted keys as the gallery requires
signatures (at least one), for a key lost or stolen. Agents apply it when
their goal state carries it, if it is signed so by keys they trust, and
refuse the key's signatures from then on.

This command's --key is the public key file: give the TLS client key in
VMAPP_KEY.`,
		Args: args("GALLERY"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			k, err := minisign.ReadPublicKeyFile(pub)
			if err != nil {
				return err
			}
			keys, err := c.readSigners(signKeys, passFile)
			if err != nil {
				return err
			}
			sigs, err := signChange(&sign.Revocation{Key: k, Reason: reason}, keys)
			if err != nil {
				return err
			}
			r, err := signingClient(cl).RevokeTrustedKey(c.ctx, &pb.RevokeTrustedKeyRequest{Gallery: args[0],
				Revocation: &pb.KeyRevocation{PublicKey: k.String(), Reason: reason}, Signatures: sigs})
			if err != nil {
				return err
			}
			return c.printTrust(r.Policy)
		}),
	}
	cmd.Flags().StringVar(&pub, "key", "", "the public key file of the key revoked")
	cmd.Flags().StringArrayVar(&signKeys, "sign-key", nil, "a secret key file that signs the revocation (repeatable)")
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "the file holding the secret keys' passphrase (else asked on the terminal)")
	cmd.Flags().StringVar(&reason, "reason", "", "why the key is revoked (signed with it)")
	_ = cmd.MarkFlagRequired("key")
	_ = cmd.MarkFlagRequired("sign-key")
	return cmd
}

func (c *cli) printTrust(p *pb.TrustPolicy) error {
	if c.structured() {
		return c.printJSON(p)
	}
	d := newDetails(c.stdout)
	d.add("Gallery", p.Gallery)
	required := "not required"
	if p.RequiredSignatures > 0 {
		required = fmt.Sprint(p.RequiredSignatures)
	}
	d.add("Required signatures", required)
	d.add("Updated", formatTime(p.UpdateTime))
	if err := d.flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout)
	t := newTable(c.stdout, "NAME", "KEY ID", "ADDED", "PUBLIC KEY")
	for _, k := range p.Keys {
		t.row(k.Name, k.KeyId, formatTime(k.AddTime), k.PublicKey)
	}
	if err := t.flush(); err != nil || len(p.KeyChanges) == 0 {
		return err
	}
	fmt.Fprintln(c.stdout, "\nKey changes:")
	for _, kc := range p.KeyChanges {
		what := "unreadable"
		if st, _, err := signpb.KeyChange(kc); err == nil {
			what = st.Subject()
		}
		fmt.Fprintf(c.stdout, "  %s  %s (%d signature(s))\n", formatTime(kc.Time), what, len(kc.Signatures))
	}
	return nil
}
