package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	"github.com/vmapp/vmapp/internal/redact"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/sign/minisign"
)

type versionT = *pb.GalleryApplicationVersion

// The parts of a version's request body, created as the flags need them.
func profile(v versionT) *pb.PublishingProfile {
	if v.PublishingProfile == nil {
		v.PublishingProfile = &pb.PublishingProfile{}
	}
	return v.PublishingProfile
}

func actions(v versionT) *pb.UserArtifactManage {
	p := profile(v)
	if p.ManageActions == nil {
		p.ManageActions = &pb.UserArtifactManage{}
	}
	return p.ManageActions
}

func settings(v versionT) *pb.UserArtifactSettings {
	p := profile(v)
	if p.Settings == nil {
		p.Settings = &pb.UserArtifactSettings{}
	}
	return p.Settings
}

func source(v versionT) *pb.UserArtifactSource {
	p := profile(v)
	if p.Source == nil {
		p.Source = &pb.UserArtifactSource{}
	}
	return p.Source
}

// versionFields map the version flags to the seeds' properties of the same
// names (publishingProfile.manageActions.install, ...).
var versionFields = []field[versionT]{
	stringField("location", "location", func(v versionT, s string) { v.Location = s }),
	stringField("install", "publishing_profile.manage_actions.install", func(v versionT, s string) { actions(v).Install = s }),
	stringField("remove", "publishing_profile.manage_actions.remove", func(v versionT, s string) { actions(v).Remove = s }),
	stringField("update", "publishing_profile.manage_actions.update", func(v versionT, s string) { actions(v).Update = s }),
	{"target-region", "publishing_profile.target_regions", func(v versionT, fs *pflag.FlagSet) error {
		specs, err := fs.GetStringArray("target-region")
		if err != nil {
			return err
		}
		regions, err := parseTargetRegions(specs)
		profile(v).TargetRegions = regions
		return err
	}},
	{"replica-count", "publishing_profile.replica_count", func(v versionT, fs *pflag.FlagSet) error {
		n, err := int32Flag(fs, "replica-count")
		profile(v).ReplicaCount = n
		return err
	}},
	boolField("exclude-from-latest", "publishing_profile.exclude_from_latest", func(v versionT, b bool) { profile(v).ExcludeFromLatest = b }),
	dateField("end-of-life", "publishing_profile.end_of_life_date", func(v versionT, t *timestamppb.Timestamp) { profile(v).EndOfLifeDate = t }),
	stringField("storage-account-type", "publishing_profile.storage_account_type", func(v versionT, s string) { profile(v).StorageAccountType = s }),
	stringField("package-file-name", "publishing_profile.settings.package_file_name", func(v versionT, s string) { settings(v).PackageFileName = s }),
	stringField("config-file-name", "publishing_profile.settings.config_file_name", func(v versionT, s string) { settings(v).ConfigFileName = s }),
	stringField("reboot-behavior", "publishing_profile.settings.script_behavior_after_reboot", func(v versionT, s string) { settings(v).ScriptBehaviorAfterReboot = s }),
	stringField("package-url", "publishing_profile.source.media_link", func(v versionT, s string) { source(v).MediaLink = s }),
	stringField("config-url", "publishing_profile.source.default_configuration_link", func(v versionT, s string) { source(v).DefaultConfigurationLink = s }),
	boolField("allow-deletion-of-replicated-locations", "safety_profile.allow_deletion_of_replicated_locations", func(v versionT, b bool) {
		v.SafetyProfile = &pb.SafetyProfile{AllowDeletionOfReplicatedLocations: b}
	}),
	boolField("enable-health-check", "publishing_profile.enable_health_check", func(v versionT, b bool) { profile(v).EnableHealthCheck = b }),
	{"advanced-setting", "publishing_profile.advanced_settings", func(v versionT, fs *pflag.FlagSet) error {
		specs, _ := fs.GetStringArray("advanced-setting")
		m, err := parseAdvancedSettings(specs)
		profile(v).AdvancedSettings = m
		return err
	}},
	stringField("replication-mode", "publishing_profile.replication_mode", func(v versionT, s string) { profile(v).ReplicationMode = s }),
	stringField("storage-account-strategy", "publishing_profile.storage_account_strategy", func(v versionT, s string) { profile(v).StorageAccountStrategy = s }),
}

func init() {
	versionFields = append(versionFields, customActionFields("publishing_profile.custom_actions", func(v versionT, as []*pb.GalleryApplicationCustomAction) {
		profile(v).CustomActions = as
	})...)
}

// parseTargetRegions parses --target-region values: NAME, NAME=COUNT or
// NAME=COUNT=STORAGE_TYPE (COUNT may be empty: NAME==Premium_LRS). Each flag
// may also hold several, separated by commas.
func parseTargetRegions(specs []string) ([]*pb.TargetRegion, error) {
	var out []*pb.TargetRegion
	for _, spec := range specs {
		for _, s := range strings.Split(spec, ",") {
			parts := strings.Split(strings.TrimSpace(s), "=")
			if parts[0] == "" || len(parts) > 3 {
				return nil, usagef("--target-region %q: want NAME, NAME=COUNT or NAME=COUNT=STORAGE_TYPE", s)
			}
			tr := &pb.TargetRegion{Name: parts[0]}
			if len(parts) > 1 && parts[1] != "" {
				n, err := strconv.ParseInt(parts[1], 10, 32)
				if err != nil {
					return nil, usagef("--target-region %q: replica count %q is not an integer", s, parts[1])
				}
				c := int32(n)
				tr.RegionalReplicaCount = &c
			}
			if len(parts) > 2 {
				if parts[2] == "" {
					return nil, usagef("--target-region %q: empty storage account type", s)
				}
				tr.StorageAccountType = parts[2]
			}
			out = append(out, tr)
		}
	}
	return out, nil
}

// addVersionFlags adds the flags of versionFields.
func addVersionFlags(cmd *cobra.Command, update bool) {
	f := cmd.Flags()
	f.String("location", "", "source region of the version (immutable; default: the application's location)")
	f.String("install", "", "install command (publishingProfile.manageActions.install; immutable)")
	f.String("remove", "", "remove command (publishingProfile.manageActions.remove; immutable)")
	f.String("update", "", "update command (publishingProfile.manageActions.update; immutable)")
	f.StringArray("target-region", nil, "region to replicate to: NAME, NAME=COUNT or NAME=COUNT=STORAGE_TYPE; repeatable, or comma-separated (default: the location)")
	f.Int32("replica-count", 0, "replicas per region where the region sets no count, 1..10 (default 1)")
	f.Bool("exclude-from-latest", false, "exclude the version from 'latest'")
	f.String("end-of-life", "", "end-of-life date, e.g. 2027-01-31 (for reference only; \"\" clears it on update)")
	f.String("storage-account-type", "", "Standard_LRS (default), Standard_ZRS or Premium_LRS (immutable)")
	f.String("package-file-name", "", "file name of the package on the VM (immutable)")
	f.String("config-file-name", "", "file name of the configuration on the VM (immutable)")
	f.String("reboot-behavior", "", "scriptBehaviorAfterReboot: None (default) or Rerun (immutable)")
	f.Bool("allow-deletion-of-replicated-locations", false, "allow removing target regions that hold replicas (safetyProfile)")
	f.Bool("enable-health-check", false, "check the application's health after every install and update with its custom action 'health' (immutable)")
	f.StringArray("advanced-setting", nil, "advancedSettings KEY=VALUE (repeatable; immutable)")
	f.String("replication-mode", "", "Full (default; Shallow is refused: vmapp always copies the package) (immutable)")
	f.String("storage-account-strategy", "", "PreferStandard_ZRS or DefaultStandard_LRS, instead of --storage-account-type (immutable)")
	addCustomActionFlags(f)
	if update {
		f.String("package-url", "", "new publishingProfile.source.mediaLink: only its SAS token (query) may change; nothing is imported")
		f.String("config-url", "", "new publishingProfile.source.defaultConfigurationLink: only its SAS token (query) may change; nothing is imported")
		return
	}
	addArtifactFlags(cmd)
}

// artifactFlags are the files and URLs of a version's package and
// configuration.
type artifactFlags struct {
	pkg, config             string
	pkgURL, configURL       string
	pkgSHA256, configSHA256 string
}

func addArtifactFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("package", "", "upload this file as the package")
	f.String("config", "", "upload this file as the default configuration")
	f.String("package-url", "", "import the package from this http(s) URL")
	f.String("config-url", "", "import the default configuration from this http(s) URL")
	f.String("sha256", "", "hex sha256 the package must have (default: computed from --package; unchecked for --package-url)")
	f.String("config-sha256", "", "hex sha256 the configuration must have")
	cmd.MarkFlagsMutuallyExclusive("package", "package-url")
	cmd.MarkFlagsMutuallyExclusive("config", "config-url")
}

func readArtifactFlags(fs *pflag.FlagSet) (artifactFlags, error) {
	var a artifactFlags
	a.pkg, _ = fs.GetString("package")
	a.config, _ = fs.GetString("config")
	a.pkgURL, _ = fs.GetString("package-url")
	a.configURL, _ = fs.GetString("config-url")
	a.pkgSHA256, _ = fs.GetString("sha256")
	a.configSHA256, _ = fs.GetString("config-sha256")
	if a.pkgSHA256 != "" && a.pkg == "" && a.pkgURL == "" {
		return a, usagef("--sha256 needs --package or --package-url")
	}
	if a.configSHA256 != "" && a.config == "" && a.configURL == "" {
		return a, usagef("--config-sha256 needs --config or --config-url")
	}
	return a, nil
}

// checkFiles checks --package and --config before anything is sent: each
// must be a readable regular file within vmappd's limits (a usage error
// naming the flag and the file otherwise).
func (a artifactFlags) checkFiles() error {
	for _, f := range []struct {
		flag, path string
		kind       pb.ArtifactKind
	}{
		{"--package", a.pkg, pb.ArtifactKind_ARTIFACT_KIND_PACKAGE},
		{"--config", a.config, pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION},
	} {
		if f.path == "" {
			continue
		}
		if _, err := client.CheckFile(f.path, f.kind); err != nil {
			return usagef("%s: %v", f.flag, err)
		}
	}
	return nil
}

func (a artifactFlags) any() bool {
	return a.pkg != "" || a.config != "" || a.pkgURL != "" || a.configURL != ""
}

// transfer uploads or imports the artifacts the flags name.
func (c *cli) transfer(cl *client.Client, gallery, app, version string, a artifactFlags) error {
	for _, t := range []struct {
		kind            pb.ArtifactKind
		label           string
		file, url, hash string
	}{
		{pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, "package", a.pkg, a.pkgURL, a.pkgSHA256},
		{pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION, "configuration", a.config, a.configURL, a.configSHA256},
	} {
		switch {
		case t.file != "":
			if t.hash == "" {
				c.status("computing the sha256 of %s", t.file)
			}
			bar := c.newProgress(t.label)
			_, err := cl.Upload(c.ctx, gallery, app, version, t.kind, t.file, client.UploadOptions{Progress: bar.update, SHA256: t.hash})
			bar.finish(err)
			if err != nil {
				return fmt.Errorf("upload %s %s: %w", t.label, t.file, err)
			}
		case t.url != "":
			c.status("importing %s from %s", t.label, redact.URL(t.url))
			if _, err := cl.Import(c.ctx, gallery, app, version, t.kind, t.url, t.hash); err != nil {
				return fmt.Errorf("import %s from %s: %w", t.label, redact.URL(t.url), err)
			}
		}
	}
	return nil
}

// abortUploads aborts the open upload sessions of a version's package and
// configuration, and says what it discarded.
func (c *cli) abortUploads(cl *client.Client, gallery, app, version string) error {
	what := gallery + "/" + app + "/" + version
	if _, err := cl.Catalog.GetVersion(c.ctx, &pb.GetVersionRequest{Gallery: gallery, Application: app, Version: version}); err != nil {
		return err
	}
	var aborted []*pb.AbortUploadResponse
	for _, k := range []pb.ArtifactKind{pb.ArtifactKind_ARTIFACT_KIND_PACKAGE, pb.ArtifactKind_ARTIFACT_KIND_CONFIGURATION} {
		r, err := cl.AbortUpload(c.ctx, gallery, app, version, k)
		if errs.Is(err, errs.NotFound) {
			continue // none of this kind
		}
		if err != nil {
			return err
		}
		aborted = append(aborted, r)
	}
	if c.structured() {
		return printJSONList(c, aborted, "")
	}
	if len(aborted) == 0 {
		_, err := fmt.Fprintf(c.stdout, "No upload of '%s' is in progress: nothing to abort.\n", what)
		return err
	}
	for _, r := range aborted {
		stored := formatBytes(r.CommittedOffset)
		if r.SizeBytes >= 0 {
			stored += " of " + formatBytes(r.SizeBytes)
		}
		if _, err := fmt.Fprintf(c.stdout, "Aborted the upload of the %s of '%s' (session %s, %s stored).\n", r.Kind.Label(), what, r.SessionId, stored); err != nil {
			return err
		}
	}
	return nil
}

// versionRef are the --gallery and --app flags.
type versionRef struct{ gallery, app string }

func (r *versionRef) add(cmd *cobra.Command) {
	galleryFlag(cmd, &r.gallery)
	cmd.Flags().StringVarP(&r.app, "app", "a", "", "application name (required)")
	_ = cmd.MarkFlagRequired("app")
}

func (c *cli) versionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "version",
		Aliases: []string{"versions"},
		Short:   "Manage application versions (Microsoft.Compute/galleries/applications/versions)",
		RunE:    group,
	}
	var ref versionRef
	var createWait, uploadWait bool
	var createSign signFlags

	create := &cobra.Command{
		Use:   "create --gallery G --app A VERSION --install CMD --remove CMD [flags]",
		Short: "Create a version, and upload or import its package and configuration",
		Long: `Create an application version (Major.Minor.Patch). With --package/--config
the files are checked first (readable regular files, at most 2 GiB and
1 GiB, not empty), then uploaded after the version is created; with
--package-url/--config-url vmappd imports them (and the URLs are recorded
as publishingProfile.source.mediaLink / defaultConfigurationLink); the final
version is printed. An upload that fails can be finished with 'vmapp version
upload', which resumes where it stopped; an import that fails makes the
version Failed, with the reason in its provisioningError. Flags left out are
not sent, so vmappd applies its defaults.

With --sign-key (which needs --package) vmapp signs the version's statement
once the files are stored, as 'vmapp version sign' does, after checking that
vmappd holds the files and commands given; the gallery must trust the key.

With --wait (which needs --package or --package-url) vmapp then follows the
replication of the package to the target regions, on stderr as 'vmapp
version watch' shows it, and prints the version once every region is
Completed or Failed; it exits 1 if a region failed.`,
		Example: `  vmapp version create --gallery g1 --app myapp 1.0.0 --location eastus \
      --install 'tar xzf myapp && ./install.sh' --remove './remove.sh' \
      --target-region eastus=3 --target-region westus --package myapp.tgz --wait
  vmapp version create --gallery g1 --app myapp 1.0.1 --install ./install.sh --remove ./remove.sh \
      --package myapp.tgz --sign-key release.key --passphrase-file release.pass`,
		Args: args("VERSION"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			art, err := readArtifactFlags(cmd.Flags())
			if err != nil {
				return err
			}
			if createWait && art.pkg == "" && art.pkgURL == "" {
				return usagef("--wait needs --package or --package-url: a version replicates once its package is stored")
			}
			if err := art.checkFiles(); err != nil {
				return err
			}
			var key minisign.PrivateKey
			var in intent
			switch {
			case createSign.key != "":
				if key, in, err = c.prepareSigning(cl, ref.gallery, createSign, &art); err != nil {
					return err
				}
			case createSign.explicit() || createSign.passFile != "":
				return usagef("--sequence, --expires and --passphrase-file go with --sign-key")
			}
			v := &pb.GalleryApplicationVersion{Gallery: ref.gallery, Application: ref.app, Name: args[0]}
			if _, err := applyFlags(v, cmd.Flags(), versionFields); err != nil {
				return err
			}
			in.profile = v.PublishingProfile
			if v.Location == "" {
				r, err := cl.Catalog.GetApplication(c.ctx, &pb.GetApplicationRequest{Gallery: ref.gallery, Application: ref.app})
				if err != nil {
					return err
				}
				v.Location = r.Application.GetLocation()
			}
			r, err := cl.Catalog.CreateVersion(c.ctx, &pb.CreateVersionRequest{Version: v})
			if err != nil {
				return err
			}
			if !art.any() {
				return c.printVersion(r.Version)
			}
			if err := c.transfer(cl, ref.gallery, ref.app, v.Name, art); err != nil {
				fmt.Fprintf(c.stderr, "Version '%s/%s/%s' was created; finish it with 'vmapp version upload --gallery %s --app %s %s ...'.\n",
					ref.gallery, ref.app, v.Name, ref.gallery, ref.app, v.Name)
				return err
			}
			if createSign.key != "" {
				if err := c.signVersion(cl, ref.gallery, ref.app, v.Name, key, createSign, in); err != nil {
					fmt.Fprintf(c.stderr, "Version '%s/%s/%s' was created and its files stored, but it is not signed; sign it with 'vmapp version sign --gallery %s --app %s %s --sign-key KEY'.\n",
						ref.gallery, ref.app, v.Name, ref.gallery, ref.app, v.Name)
					return err
				}
			}
			return c.finishVersion(cl, ref.gallery, ref.app, v.Name, createWait)
		}),
	}
	ref.add(create)
	addVersionFlags(create, false)
	waitFlag(create, &createWait)
	createSign.add(create, false)
	_ = create.MarkFlagRequired("install")
	_ = create.MarkFlagRequired("remove")

	var abort bool
	upload := &cobra.Command{
		Use:   "upload --gallery G --app A VERSION (--package FILE | --package-url URL) [--config FILE | --config-url URL] | --abort",
		Short: "Upload or import the package or configuration of an existing version",
		Long: `Upload (--package, --config) or import (--package-url, --config-url) the
package or default configuration of a version, then print the version.
Uploads always resume an interrupted upload of the same file (same size and
sha256), so running the same command again continues where it stopped.

--abort discards the interrupted uploads of the version (of its package and
of its configuration) and the bytes they stored, so that another file can
be uploaded; the version keeps its state.

With --wait vmapp then follows the replication of the package to the target
regions (on stderr, as 'vmapp version watch' shows it) and prints the
version once every region is Completed or Failed; it exits 1 if a region
failed.`,
		Example: `  vmapp version upload --gallery g1 --app myapp 1.0.0 --package myapp.tgz
  vmapp version upload --gallery g1 --app myapp 1.0.0 --abort`,
		Args: args("VERSION"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			if resume, _ := cmd.Flags().GetBool("resume"); !resume {
				return usagef("--resume=false: uploads always resume an interrupted upload of the same file")
			}
			if abort {
				return c.abortUploads(cl, ref.gallery, ref.app, args[0])
			}
			art, err := readArtifactFlags(cmd.Flags())
			if err != nil {
				return err
			}
			if err := art.checkFiles(); err != nil {
				return err
			}
			if err := c.transfer(cl, ref.gallery, ref.app, args[0], art); err != nil {
				return err
			}
			return c.finishVersion(cl, ref.gallery, ref.app, args[0], uploadWait)
		}),
	}
	ref.add(upload)
	addArtifactFlags(upload)
	upload.Flags().Bool("resume", true, "resume an interrupted upload of the same file (always on: uploads resume by themselves)")
	waitFlag(upload, &uploadWait)
	upload.Flags().BoolVar(&abort, "abort", false, "discard the interrupted uploads of the version instead")
	upload.MarkFlagsOneRequired("package", "config", "package-url", "config-url", "abort")
	for _, f := range []string{"package", "config", "package-url", "config-url", "sha256", "config-sha256", "wait"} {
		upload.MarkFlagsMutuallyExclusive("abort", f)
	}

	show := &cobra.Command{
		Use:   "show --gallery G --app A VERSION|latest",
		Short: "Show a version ('latest' is the newest one not excluded from latest)",
		Long: `Show a version ('latest' is the newest one not excluded from latest): its
properties, then its replication: the aggregated state (Unknown, InProgress,
Completed or Failed) and a table of its target regions (REGION STATE
PROGRESS REPLICAS BYTES ETA DETAILS); then its preheats (vmapp version
preheat), region by region: the machines chosen, how many of them hold the
package, and how many machines of the region hold it. -o json prints the
version with its replicationStatus and preheat.`,
		Args: args("VERSION"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			return c.showVersion(cl, ref.gallery, ref.app, args[0])
		}),
	}
	ref.add(show)

	var page pageFlags
	list := &cobra.Command{
		Use:   "list --gallery G --app A [--top N] [--skip-token TOKEN]",
		Short: "List the versions of an application",
		Long: `List the versions of an application. REPLICATION is the aggregated
replication state (Unknown, InProgress, Completed or Failed); 'vmapp version
show' or 'vmapp version watch' give the regions.`,
		Args: args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			items, next, err := listAll(cmd, &page, func(size int32, token string) ([]versionT, string, error) {
				r, err := cl.Catalog.ListVersions(c.ctx, &pb.ListVersionsRequest{Gallery: ref.gallery, Application: ref.app, PageSize: size, PageToken: token})
				return r.GetVersions(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			if c.structured() {
				return printJSONList(c, items, next)
			}
			t := newTable(c.stdout, "NAME", "LOCATION", "STATE", "REPLICATION", "TARGET-REGIONS", "PACKAGE", "EXCLUDE-FROM-LATEST")
			for _, v := range items {
				pkg := ""
				if v.Package != nil {
					pkg = formatBytes(v.Package.SizeBytes)
				}
				t.row(v.Name, v.Location, v.ProvisioningState, v.GetReplicationStatus().GetAggregatedState(),
					formatTargetRegions(v.PublishingProfile), pkg, yesNo(v.GetPublishingProfile().GetExcludeFromLatest()))
			}
			err = t.flush()
			printNextToken(c.stdout, next)
			return err
		}),
	}
	ref.add(list)
	page.add(list)

	var ifMatch string
	update := &cobra.Command{
		Use:   "update --gallery G --app A VERSION [flags]",
		Short: "Update the properties of a version given as flags",
		Long: `Update a version. Only the properties given as flags are sent (the update
mask); vmappd decides which may change: targetRegions, replicaCount,
excludeFromLatest, endOfLife, the SAS of the source links and
allowDeletionOfReplicatedLocations. --target-region replaces the whole list.`,
		Example: "  vmapp version update --gallery g1 --app myapp 1.0.0 --exclude-from-latest",
		Args:    args("VERSION"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			v := &pb.GalleryApplicationVersion{Gallery: ref.gallery, Application: ref.app, Name: args[0]}
			paths, err := applyFlags(v, cmd.Flags(), versionFields)
			if err != nil {
				return err
			}
			if len(paths) == 0 {
				return usagef("nothing to update: give at least one of %s", flagNames(versionFields))
			}
			r, err := cl.Catalog.UpdateVersion(c.ctx, &pb.UpdateVersionRequest{
				Version: v, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}, IfMatch: ifMatch,
			})
			if err != nil {
				return err
			}
			return c.printVersion(r.Version)
		}),
	}
	ref.add(update)
	addVersionFlags(update, true)
	ifMatchFlag(update, &ifMatch)

	var delIfMatch string
	del := &cobra.Command{
		Use:   "delete --gallery G --app A VERSION [--if-match ETAG]",
		Short: "Delete a version and its replicas",
		Args:  args("VERSION"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := cl.Catalog.DeleteVersion(c.ctx, &pb.DeleteVersionRequest{
				Gallery: ref.gallery, Application: ref.app, Version: args[0], IfMatch: delIfMatch,
			})
			if err != nil {
				return err
			}
			if c.structured() {
				return c.printJSON(r.Version)
			}
			return printDeleted(c.stdout, "Version", ref.gallery+"/"+ref.app+"/"+args[0], r.GetVersion().GetProvisioningState())
		}),
	}
	ref.add(del)
	ifMatchFlag(del, &delIfMatch)

	cmd.AddCommand(create, upload, show, list, update, del, c.watchCmd(&ref), c.repairCmd(&ref), c.downloadCmd(&ref),
		c.versionSignCmd(&ref), c.versionSignaturesCmd(&ref), c.preheatCmd(&ref))
	return cmd
}

// finishVersion prints a version whose package or configuration was just
// stored; with wait, after following its replication to the end, and then
// fails unless it Completed.
func (c *cli) finishVersion(cl *client.Client, gallery, app, version string, wait bool) error {
	if !wait {
		return c.showVersion(cl, gallery, app, version)
	}
	r, err := cl.Catalog.GetVersion(c.ctx, &pb.GetVersionRequest{Gallery: gallery, Application: app, Version: version})
	if err != nil {
		return err
	}
	if r.GetVersion().GetPackage() == nil {
		return errs.New(errs.FailedPrecondition, "", "version '%s/%s/%s' has no package yet, so nothing replicates: upload one with --package or --package-url", gallery, app, version)
	}
	last, err := c.waitReplicated(cl, gallery, app, version)
	if err != nil {
		return err
	}
	if err := c.showVersion(cl, gallery, app, version); err != nil {
		return err
	}
	return replicationResult(last)
}

func (c *cli) showVersion(cl *client.Client, gallery, app, name string) error {
	r, err := cl.Catalog.GetVersion(c.ctx, &pb.GetVersionRequest{Gallery: gallery, Application: app, Version: name})
	if err != nil {
		return err
	}
	return c.printVersion(r.Version)
}

// formatTargetRegions prints target regions as --target-region takes them:
// eastus=3,westus.
func formatTargetRegions(p *pb.PublishingProfile) string {
	var s []string
	for _, tr := range p.GetTargetRegions() {
		r := tr.Name
		if tr.RegionalReplicaCount != nil {
			r += "=" + strconv.Itoa(int(*tr.RegionalReplicaCount))
		}
		if tr.StorageAccountType != "" && tr.StorageAccountType != p.GetStorageAccountType() {
			if tr.RegionalReplicaCount == nil {
				r += "="
			}
			r += "=" + tr.StorageAccountType
		}
		s = append(s, r)
	}
	return strings.Join(s, ",")
}

func formatArtifact(a *pb.Artifact) (size, sum string) {
	if a == nil {
		return "", ""
	}
	return fmt.Sprintf("%s (%d bytes)", formatBytes(a.SizeBytes), a.SizeBytes), a.Sha256
}

func (c *cli) printVersion(v *pb.GalleryApplicationVersion) error {
	if c.structured() {
		return c.printJSON(v)
	}
	p := v.GetPublishingProfile()
	d := newDetails(c.stdout)
	d.add("Name", v.Name)
	d.add("Gallery", v.Gallery)
	d.add("Application", v.Application)
	d.add("Location", v.Location)
	d.add("Provisioning state", v.ProvisioningState)
	if pe := v.GetProvisioningError(); pe != nil {
		d.add("Provisioning error", pe.Code+": "+pe.Message+" ("+formatTime(pe.Time)+")")
	}
	d.add("Install", p.GetManageActions().GetInstall())
	d.add("Remove", p.GetManageActions().GetRemove())
	d.add("Update", p.GetManageActions().GetUpdate())
	d.add("Target regions", formatTargetRegions(p))
	if p != nil && p.ReplicaCount != nil {
		d.add("Replica count", strconv.Itoa(int(p.GetReplicaCount())))
	}
	d.add("Storage account type", p.GetStorageAccountType())
	d.add("Replication mode", p.GetReplicationMode())
	if p.GetEnableHealthCheck() {
		d.add("Health check", "yes (custom action 'health')")
	}
	var names []string
	for _, a := range p.GetCustomActions() {
		names = append(names, a.Name)
	}
	d.add("Custom actions", strings.Join(names, ", "))
	d.add("Advanced settings", formatTags(p.GetAdvancedSettings()))
	d.add("Exclude from latest", yesNo(p.GetExcludeFromLatest()))
	d.add("End of life", formatDate(p.GetEndOfLifeDate()))
	d.add("Published", formatTime(p.GetPublishedDate()))
	d.add("Package file name", p.GetSettings().GetPackageFileName())
	d.add("Config file name", p.GetSettings().GetConfigFileName())
	d.add("Script behavior after reboot", p.GetSettings().GetScriptBehaviorAfterReboot())
	d.add("Media link", redact.URL(p.GetSource().GetMediaLink()))
	d.add("Default configuration link", redact.URL(p.GetSource().GetDefaultConfigurationLink()))
	d.add("Allow deletion of replicated locations", yesNo(v.GetSafetyProfile().GetAllowDeletionOfReplicatedLocations()))
	size, sum := formatArtifact(v.Package)
	if size == "" {
		size = "none (not uploaded yet)"
	}
	d.add("Package size", size)
	d.add("Package sha256", sum)
	size, sum = formatArtifact(v.DefaultConfiguration)
	d.add("Configuration size", size)
	d.add("Configuration sha256", sum)
	rs := v.GetReplicationStatus()
	if rs != nil {
		d.add("Replication", summarizeReplication(rs))
	}
	d.add("Tenant", v.Tenant)
	d.add("Etag", v.Etag)
	d.add("Created", formatTime(v.CreateTime))
	d.add("Updated", formatTime(v.UpdateTime))
	if err := d.flush(); err != nil {
		return err
	}
	if len(rs.GetSummary()) > 0 {
		fmt.Fprintln(c.stdout)
		if err := writeReplicationTable(c.stdout, rs); err != nil {
			return err
		}
	}
	if len(v.Preheat) == 0 {
		return nil
	}
	fmt.Fprintln(c.stdout)
	return writePreheatTable(c, v.Preheat)
}
