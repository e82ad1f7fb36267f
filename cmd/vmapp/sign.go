package main

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign"
	"github.com/vmapp/vmapp/sign/minisign"
	"github.com/vmapp/vmapp/sign/signpb"
)

func signingClient(cl *client.Client) pb.SigningServiceClient {
	return pb.NewSigningServiceClient(cl.Conn())
}

// signFlags are a signature's flags: the secret key, its passphrase, and
// the statement's parameters.
type signFlags struct {
	key, passFile string
	sequence      uint64
	expires       string
	rollback      bool
}

func (f *signFlags) add(cmd *cobra.Command, rollback bool) {
	fs := cmd.Flags()
	fs.StringVar(&f.key, "sign-key", "", "sign the version's statement with this secret key (vmapp's or minisign's)")
	fs.StringVar(&f.passFile, "passphrase-file", "", "the file holding the secret key's passphrase (else asked on the terminal)")
	fs.Uint64Var(&f.sequence, "sequence", 0, "the statement's sequence number (default: one more than the highest signed for the application)")
	fs.StringVar(&f.expires, "expires", "", "the statement expires then: a date (2027-01-31), an RFC 3339 time, or a duration from now (720h); default never")
	if rollback {
		fs.BoolVar(&f.rollback, "rollback", false, "an intended rollback: machines accept it below the highest sequence they installed (needs --expires)")
	}
}

// explicit tells whether the flags set any of the statement's parameters.
func (f signFlags) explicit() bool { return f.sequence != 0 || f.expires != "" || f.rollback }

// expireTime parses --expires: a date, an RFC 3339 time or a duration
// from now, in whole seconds.
func (f signFlags) expireTime(now time.Time) (*timestamppb.Timestamp, error) {
	if f.expires == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(f.expires); err == nil {
		return timestamppb.New(now.Add(d).Truncate(time.Second)), nil
	}
	ts, err := parseDate(f.expires)
	if err != nil {
		return nil, usagef("--expires %q: %v, or a duration like 720h", f.expires, err)
	}
	return timestamppb.New(ts.AsTime().Truncate(time.Second)), nil
}

// intent is what the signer knows a version must hold, checked before
// signing vmappd's record of it: files' sha256 and size, commands and
// settings. Empty fields are not checked.
type intent struct {
	pkg, config *pb.Artifact
	profile     *pb.PublishingProfile // commands and settings given
}

// fileArtifact is the sha256 and size of a local file.
func fileArtifact(flag, path string) (*pb.Artifact, error) {
	if path == "" {
		return nil, nil
	}
	sum, n, err := client.FileSHA256(path)
	if err != nil {
		return nil, usagef("%s: %v", flag, err)
	}
	return &pb.Artifact{Sha256: sum, SizeBytes: n}, nil
}

// check refuses to sign a version that holds something other than what
// the signer knows: a compromised or mistaken vmappd must not get a
// signature over what it made up.
func (in intent) check(v *pb.GalleryApplicationVersion) error {
	what := v.Gallery + "/" + v.Application + "/" + v.Name
	for _, a := range []struct {
		label      string
		want, have *pb.Artifact
	}{{"package", in.pkg, v.Package}, {"default configuration", in.config, v.DefaultConfiguration}} {
		if a.want != nil && (a.have.GetSha256() != a.want.Sha256 || a.have.GetSizeBytes() != a.want.SizeBytes) {
			return errs.New(errs.FailedPrecondition, "", "vmappd holds a %s of %s with sha256 %q (%d bytes), not your file's %s (%d bytes): not signed",
				a.label, what, a.have.GetSha256(), a.have.GetSizeBytes(), a.want.Sha256, a.want.SizeBytes)
		}
	}
	if in.profile == nil {
		return nil
	}
	want, have := in.profile, v.GetPublishingProfile()
	for _, f := range []struct{ name, want, have string }{
		{"install", want.GetManageActions().GetInstall(), have.GetManageActions().GetInstall()},
		{"remove", want.GetManageActions().GetRemove(), have.GetManageActions().GetRemove()},
		{"update", want.GetManageActions().GetUpdate(), have.GetManageActions().GetUpdate()},
		{"package file name", want.GetSettings().GetPackageFileName(), have.GetSettings().GetPackageFileName()},
		{"config file name", want.GetSettings().GetConfigFileName(), have.GetSettings().GetConfigFileName()},
		{"reboot behavior", rebootBehavior(want.GetSettings()), rebootBehavior(have.GetSettings())},
	} {
		if f.want != f.have {
			return errs.New(errs.FailedPrecondition, "", "vmappd holds the %s %q for %s, not %q: not signed", f.name, f.have, what, f.want)
		}
	}
	return nil
}

func rebootBehavior(s *pb.UserArtifactSettings) string {
	if b := s.GetScriptBehaviorAfterReboot(); !strings.EqualFold(b, "None") && b != "" {
		return strings.ToLower(b)
	}
	return "none"
}

// signVersion signs the statement of a version as vmappd holds it (after
// checking it against in) with key k, and adds the signature. The
// statement's parameters are the flags', else those of the version's
// statement when it is signed already (another signer), else the next
// sequence of the application.
func (c *cli) signVersion(cl *client.Client, gallery, app, name string, k minisign.PrivateKey, f signFlags, in intent) error {
	vr, err := cl.Catalog.GetVersion(c.ctx, &pb.GetVersionRequest{Gallery: gallery, Application: app, Version: name})
	if err != nil {
		return err
	}
	v := vr.Version
	if err := in.check(v); err != nil {
		return err
	}
	cur, err := signingClient(cl).GetVersionSignatures(c.ctx, &pb.GetVersionSignaturesRequest{Gallery: gallery, Application: app, Version: name})
	if err != nil {
		return err
	}
	params := cur.Signatures
	if params == nil || f.explicit() {
		params = &pb.VersionSignatures{Tenant: v.Tenant, Sequence: cmp.Or(f.sequence, cur.NextSequence), Rollback: f.rollback}
		if params.ExpireTime, err = f.expireTime(time.Now()); err != nil {
			return err
		}
	}
	ar, err := cl.Catalog.GetApplication(c.ctx, &pb.GetApplicationRequest{Gallery: gallery, Application: app})
	if err != nil {
		return err
	}
	params = signpb.Params(v, ar.Application, cur.Signatures, params)
	stmt := signpb.Statement(v, params)
	s, err := sign.Sign(k, stmt, time.Now())
	if err != nil {
		return err
	}
	c.status("signing %s with key %s", stmt.Subject(), k.ID)
	_, err = signingClient(cl).SignVersion(c.ctx, &pb.SignVersionRequest{Gallery: gallery, Application: app, Version: name,
		Sequence: params.Sequence, ExpireTime: params.ExpireTime, Rollback: params.Rollback, Signature: string(s.Encode()),
		Replace: cur.Signatures != nil && !cur.Signatures.SameStatement(params)})
	return err
}

// prepareSigning is version create's part of --sign-key, before anything
// is created: the key (a wrong passphrase fails now), whether the gallery
// trusts it, and the intent: the files' sha256 (kept for the upload, which
// then doesn't hash them again).
func (c *cli) prepareSigning(cl *client.Client, gallery string, f signFlags, art *artifactFlags) (minisign.PrivateKey, intent, error) {
	var in intent
	switch {
	case art.pkg == "":
		return minisign.PrivateKey{}, in, usagef("--sign-key needs --package: the signature vouches for the file you upload (sign an imported package with 'vmapp version sign --package FILE')")
	case art.configURL != "":
		return minisign.PrivateKey{}, in, usagef("--sign-key needs --config rather than --config-url: the signature vouches for the files you upload")
	}
	k, err := c.readSecretKey(f.key, f.passFile)
	if err != nil {
		return k, in, err
	}
	r, err := signingClient(cl).GetTrustPolicy(c.ctx, &pb.GetTrustPolicyRequest{Gallery: gallery})
	if err != nil {
		return k, in, err
	}
	if !slices.ContainsFunc(r.Policy.GetKeys(), func(t *pb.TrustedKey) bool { return t.KeyId == k.ID.String() }) {
		return k, in, errs.New(errs.FailedPrecondition, "", "gallery '%s' doesn't trust key %s (%s): its Owner adds it with 'vmapp gallery trust add %s --key PUBLIC_KEY_FILE'; nothing was created",
			gallery, k.ID, f.key, gallery)
	}
	if in.pkg, err = fileArtifact("--package", art.pkg); err != nil {
		return k, in, err
	}
	if in.config, err = fileArtifact("--config", art.config); err != nil {
		return k, in, err
	}
	art.pkgSHA256 = cmp.Or(art.pkgSHA256, in.pkg.Sha256)
	if in.config != nil {
		art.configSHA256 = cmp.Or(art.configSHA256, in.config.Sha256)
	}
	return k, in, nil
}

func (c *cli) versionSignCmd(ref *versionRef) *cobra.Command {
	var f signFlags
	var pkg, config string
	cmd := &cobra.Command{
		Use:   "sign --gallery G --app A VERSION --sign-key FILE [--package FILE] [--config FILE] [--sequence N] [--expires T] [--rollback]",
		Short: "Sign a version's statement and add the signature (several signers allowed)",
		Long: `Sign the statement of a version as vmappd holds it — its names, sequence,
expiry, package and default configuration (sha256 and size), commands,
settings and custom actions (its own and its application's) — and add the
signature. The gallery must trust the key (vmapp
gallery trust add); vmappd checks the signature against its own statement
of the version.

A version signed already is signed with the same statement (another signer)
unless --sequence, --expires or --rollback is given: then the new statement
replaces the old one, whose signatures are dropped. A statement covers the
custom actions of the version and its application as they were when it was
first signed: to cover an application's action added or changed since (agents
that verify signatures run only covered actions), sign a new statement. A new statement takes the
next sequence of the application unless --sequence.

--package and --config check that vmappd holds exactly those files before
anything is signed: without them you vouch for the sha256 vmappd reports.`,
		Example: `  vmapp version sign --gallery g1 --app myapp 1.0.0 --sign-key release.key --package myapp.tgz
  vmapp version sign --gallery g1 --app myapp 1.0.0 --sign-key release.key --rollback --expires 168h`,
		Args: args("VERSION"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			if f.rollback && f.expires == "" {
				return usagef("--rollback needs --expires: a rollback statement that never expires could be replayed forever")
			}
			var in intent
			var err error
			if in.pkg, err = fileArtifact("--package", pkg); err != nil {
				return err
			}
			if in.config, err = fileArtifact("--config", config); err != nil {
				return err
			}
			k, err := c.readSecretKey(f.key, f.passFile)
			if err != nil {
				return err
			}
			if err := c.signVersion(cl, ref.gallery, ref.app, args[0], k, f, in); err != nil {
				return err
			}
			return c.showSignatures(cl, ref.gallery, ref.app, args[0])
		}),
	}
	ref.add(cmd)
	f.add(cmd, true)
	cmd.Flags().StringVar(&pkg, "package", "", "check that the version's package is this file before signing")
	cmd.Flags().StringVar(&config, "config", "", "check that the version's default configuration is this file before signing")
	_ = cmd.MarkFlagRequired("sign-key")
	return cmd
}

func (c *cli) versionSignaturesCmd(ref *versionRef) *cobra.Command {
	var statement string
	cmd := &cobra.Command{
		Use:   "signatures --gallery G --app A VERSION [--statement FILE]",
		Short: "Show a version's signatures, each checked against the gallery's trust policy",
		Long: `Show the statement parameters of a version (sequence, expiry, rollback, the
custom actions it covers) and its signatures, each with its status under the gallery's trust policy now
(Trusted, or why it doesn't count), and whether the policy lets vmappd deploy
the version.

--statement FILE writes the statement's canonical bytes to FILE and each
signature to FILE.KEYID.minisig, for minisign -V -m FILE -x FILE.KEYID.minisig.`,
		Args: args("VERSION"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			if statement != "" {
				if err := c.writeStatement(cl, ref.gallery, ref.app, args[0], statement); err != nil {
					return err
				}
			}
			return c.showSignatures(cl, ref.gallery, ref.app, args[0])
		}),
	}
	ref.add(cmd)
	cmd.Flags().StringVar(&statement, "statement", "", "write the statement to this file, and each signature beside it")
	return cmd
}

// writeStatement writes a signed version's statement to path and its
// signatures to path.KEYID.minisig.
func (c *cli) writeStatement(cl *client.Client, gallery, app, name, path string) error {
	vr, err := cl.Catalog.GetVersion(c.ctx, &pb.GetVersionRequest{Gallery: gallery, Application: app, Version: name})
	if err != nil {
		return err
	}
	r, err := signingClient(cl).GetVersionSignatures(c.ctx, &pb.GetVersionSignaturesRequest{Gallery: gallery, Application: app, Version: name})
	if err != nil {
		return err
	}
	if r.Signatures == nil {
		return errs.New(errs.FailedPrecondition, "", "version %s is not signed: it has no statement yet", gallery+"/"+app+"/"+name)
	}
	b, err := signpb.Statement(vr.Version, r.Signatures).Encode()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return err
	}
	for _, s := range r.Signatures.Signatures {
		if err := os.WriteFile(path+"."+s.KeyId+".minisig", []byte(s.Signature), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// coveredActions names the custom actions a statement covers.
func coveredActions(s *pb.VersionSignatures) string {
	var names []string
	for _, a := range s.CustomActions {
		names = append(names, a.Name)
	}
	return orNone(strings.Join(names, ", "))
}

// showSignatures prints a version's signatures.
func (c *cli) showSignatures(cl *client.Client, gallery, app, name string) error {
	r, err := signingClient(cl).GetVersionSignatures(c.ctx, &pb.GetVersionSignaturesRequest{Gallery: gallery, Application: app, Version: name})
	if err != nil {
		return err
	}
	if c.structured() {
		return c.printJSON(r)
	}
	s := r.Signatures
	d := newDetails(c.stdout)
	d.add("Version", gallery+"/"+app+"/"+name)
	if s == nil {
		d.add("Statement", "not signed")
	} else {
		expires := "never"
		if s.ExpireTime != nil {
			expires = formatTime(s.ExpireTime)
		}
		st := fmt.Sprintf("sequence %d, expires %s", s.Sequence, expires)
		if s.Rollback {
			st += ", an intended rollback"
		}
		d.add("Statement", st)
		d.add("Custom actions", coveredActions(s))
	}
	deploy := "yes"
	if r.DeployRefusal != "" {
		deploy = "no: " + r.DeployRefusal
	}
	d.add("Deployable", deploy)
	d.add("Next sequence", strconv.FormatUint(r.NextSequence, 10))
	if err := d.flush(); err != nil || len(s.GetSignatures()) == 0 {
		return err
	}
	fmt.Fprintln(c.stdout)
	t := newTable(c.stdout, "KEY ID", "NAME", "SIGNED", "STATUS")
	for _, x := range s.Signatures {
		t.row(x.KeyId, orNone(x.KeyName), formatTime(x.AddTime), x.Status)
	}
	return t.flush()
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
