package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
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
)

// fleetClient is vmappd's FleetService on the client's connection (which
// carries the tenant and maps errors to errs classes).
func fleetClient(cl *client.Client) pb.FleetServiceClient {
	return pb.NewFleetServiceClient(cl.Conn())
}

// nameFlagOrArg takes the name of a resource to create from --name or from
// the one positional argument.
func nameFlagOrArg(flag string, args []string) (string, error) {
	switch {
	case flag != "" && len(args) > 0:
		return "", usagef("give the name as --name or as an argument, not both")
	case flag != "":
		return flag, nil
	case len(args) > 0:
		return args[0], nil
	}
	return "", usagef("missing --name")
}

// maxOneArg allows the name as an optional argument.
func maxOneArg() cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > 1 {
			return usagef("unexpected argument %q", args[1])
		}
		return nil
	}
}

func (c *cli) vmCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "vm",
		Aliases: []string{"vms", "machine", "machines"},
		Short:   "Manage virtual machines and their application profiles",
		RunE:    group,
	}

	var name, region, osType, vmss, tokenFile string
	var machineTags []string
	create := &cobra.Command{
		Use:   "create --name NAME --region REGION --os linux|windows [--vmss SCALESET] [--tag K=V]",
		Short: "Create a virtual machine (the record vmapp-agent on it reports to)",
		Long: `Create a virtual machine. An instance of a scale set (--vmss) takes the
scale set's region and OS, so --region and --os may be left out; given, they
must match the scale set's.`,
		Example: `  vmapp vm create --name vm1 --region eastus --os linux
  vmapp vm create --name web-0 --vmss web`,
		Args: maxOneArg(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			n, err := nameFlagOrArg(name, args)
			if err != nil {
				return err
			}
			m := &pb.Machine{Name: n, Region: region, ScaleSet: vmss}
			if m.Tags, err = parseTags(machineTags); err != nil {
				return err
			}
			if osType != "" {
				if m.OsType, err = parseOS(osType); err != nil {
					return err
				}
			}
			if vmss == "" {
				var missing []string
				if region == "" {
					missing = append(missing, "--region")
				}
				if osType == "" {
					missing = append(missing, "--os")
				}
				if len(missing) > 0 {
					return usagef("missing %s (only an instance of a scale set, --vmss, inherits them)", strings.Join(missing, " and "))
				}
			}
			out, err := c.secretTo(tokenFile, "--agent-token-file")
			if err != nil {
				return err
			}
			defer out.discard()
			r, err := fleetClient(cl).CreateMachine(c.ctx, &pb.CreateMachineRequest{Machine: m})
			if err != nil {
				return err
			}
			if err := c.printMachine(r.Machine); err != nil || r.AgentToken == "" {
				return err
			}
			return out.save("agent token", r.AgentToken)
		}),
	}
	create.Flags().StringArrayVar(&machineTags, "tag", nil, "tag KEY=VALUE (repeatable): rollouts select machines by tags")
	create.Flags().StringVar(&tokenFile, "agent-token-file", "", "save the machine's agent credential to this new file (mode 0600) for vmapp-agent --token-file, instead of printing it")

	credential := &cobra.Command{
		Use:   "credential NAME [--agent-token-file F]",
		Short: "Issue a new agent credential for a machine, revoking its earlier ones",
		Args:  args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			out, err := c.secretTo(tokenFile, "--agent-token-file")
			if err != nil {
				return err
			}
			defer out.discard()
			r, err := accessClient(cl).IssueAgentToken(c.ctx, &pb.IssueAgentTokenRequest{Machine: args[0]})
			if err != nil {
				return err
			}
			return out.save("agent token", r.AgentToken)
		}),
	}
	credential.Flags().StringVar(&tokenFile, "agent-token-file", "", "save the credential to this new file (mode 0600) instead of printing it")
	create.Flags().StringVar(&name, "name", "", "name of the machine")
	create.Flags().StringVar(&region, "region", "", "region of the machine (default with --vmss: the scale set's)")
	create.Flags().StringVar(&osType, "os", "", "OS type: linux or windows (default with --vmss: the scale set's)")
	create.Flags().StringVar(&vmss, "vmss", "", "make the machine an instance of this scale set")

	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show a machine and its instance view (what its agent reported)",
		Long: `Show a machine: its properties, what its agent last reported (provisioning
state, whether the agent is connected, its boot id and the time of its last
report), a table of its applications (APPLICATION VERSION STATE PROGRESS EXIT
OPERATION UPDATED REASON) and the output tail of the failed ones. -o json
prints the machine with its instanceView.`,
		Args: args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := fleetClient(cl).GetMachine(c.ctx, &pb.GetMachineRequest{Name: args[0]})
			if err != nil {
				return err
			}
			return c.printMachine(r.Machine)
		}),
	}

	var page pageFlags
	var listVMSS string
	list := &cobra.Command{
		Use:   "list [--vmss SCALESET] [--top N] [--skip-token TOKEN]",
		Short: "List machines (the instances of a scale set with --vmss)",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			fl := fleetClient(cl)
			items, next, err := listAll(cmd, &page, func(size int32, token string) ([]*pb.Machine, string, error) {
				r, err := fl.ListMachines(c.ctx, &pb.ListMachinesRequest{ScaleSet: listVMSS, PageSize: size, PageToken: token})
				return r.GetMachines(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			if c.structured() {
				return printJSONList(c, items, next)
			}
			t := newTable(c.stdout, "NAME", "REGION", "OS", "VMSS", "STATE", "AGENT", "APPLICATIONS", "LAST-REPORT")
			for _, m := range items {
				t.row(m.Name, m.Region, m.OsType, m.ScaleSet, m.ProvisioningState, agentState(m.InstanceView),
					strconv.Itoa(len(m.GetApplicationProfile().GetGalleryApplications())), formatTime(m.GetInstanceView().GetLastReportTime()))
			}
			err = t.flush()
			printNextToken(c.stdout, next)
			return err
		}),
	}
	list.Flags().StringVar(&listVMSS, "vmss", "", "only the instances of this scale set")
	page.add(list)

	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a machine (its agent's record and instance view)",
		Args:  args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := fleetClient(cl).DeleteMachine(c.ctx, &pb.DeleteMachineRequest{Name: args[0]})
			if err != nil {
				return err
			}
			if c.structured() {
				return c.printJSON(r)
			}
			return printDeleted(c.stdout, "Machine", args[0], "")
		}),
	}

	cmd.AddCommand(create, show, list, del, credential, c.profileAppCmd(vmTarget))
	return cmd
}

// agentState sums up the agent of a machine: connected, disconnected (it
// reported once) or never (no report yet).
func agentState(iv *pb.InstanceView) string {
	switch {
	case iv.GetConnected():
		return "connected"
	case iv.GetLastReportTime() != nil:
		return "disconnected"
	}
	return "never"
}

func (c *cli) printMachine(m *pb.Machine) error {
	if c.structured() {
		return c.printJSON(m)
	}
	iv := m.GetInstanceView()
	var refs []string
	for _, a := range m.GetApplicationProfile().GetGalleryApplications() {
		refs = append(refs, a.PackageReferenceId)
	}
	d := newDetails(c.stdout)
	d.add("Name", m.Name)
	d.add("Region", m.Region)
	d.add("OS type", m.OsType)
	d.add("Scale set", m.ScaleSet)
	d.add("Provisioning state", m.ProvisioningState)
	d.add("Agent connected", yesNo(iv.GetConnected()))
	d.add("Agent version", iv.GetAgentVersion())
	d.add("Boot id", iv.GetBootId())
	if iv.GetAppliedGeneration() != 0 {
		d.add("Applied generation", strconv.FormatInt(iv.GetAppliedGeneration(), 10))
	}
	last := formatTime(iv.GetLastReportTime())
	if last == "" {
		last = "never"
	}
	d.add("Last report", last)
	d.add("Profile", strings.Join(refs, ", "))
	d.add("Profile etag", m.GetApplicationProfile().GetEtag())
	d.add("Tenant", m.Tenant)
	d.add("Etag", m.Etag)
	d.add("Created", formatTime(m.CreateTime))
	d.add("Updated", formatTime(m.UpdateTime))
	if err := d.flush(); err != nil {
		return err
	}
	apps := iv.GetApplications()
	if len(apps) == 0 {
		return nil
	}
	fmt.Fprintln(c.stdout)
	t := newTable(c.stdout, "APPLICATION", "VERSION", "STATE", "HEALTH", "PROGRESS", "EXIT", "OPERATION", "UPDATED", "REASON")
	for _, a := range apps {
		t.row(a.Application, a.Version, a.State, a.Health, formatProgress(a), formatExit(a), a.Operation, formatTime(statusTime(a)), cmp.Or(a.Reason, a.HealthReason))
	}
	if err := t.flush(); err != nil {
		return err
	}
	for _, a := range apps {
		if a.Health == pb.HealthUnhealthy && strings.TrimSpace(a.HealthOutputTail) != "" {
			fmt.Fprintf(c.stdout, "\nOutput of %s health check (%s):\n", a.Application, a.Version)
			for _, line := range strings.Split(strings.TrimRight(a.HealthOutputTail, "\n"), "\n") {
				fmt.Fprintf(c.stdout, "  %s\n", line)
			}
		}
		if a.State != pb.AppFailed || strings.TrimSpace(a.OutputTail) == "" {
			continue
		}
		fmt.Fprintf(c.stdout, "\nOutput of %s %s (%s, exit %d):\n", a.Application, a.Operation, a.Version, a.ExitCode)
		for _, line := range strings.Split(strings.TrimRight(a.OutputTail, "\n"), "\n") {
			fmt.Fprintf(c.stdout, "  %s\n", line)
		}
	}
	return nil
}

// formatProgress prints how much of an application's package is
// downloaded: "50% (1.0 KiB/2.0 KiB)".
func formatProgress(a *pb.ApplicationStatus) string {
	if a.BytesTotal <= 0 {
		return ""
	}
	return fmt.Sprintf("%d%% (%s/%s)", a.BytesDone*100/a.BytesTotal, formatBytes(a.BytesDone), formatBytes(a.BytesTotal))
}

// formatExit prints the exit code of an operation that ended.
func formatExit(a *pb.ApplicationStatus) string {
	if a.EndTime == nil && a.ExitCode == 0 && a.State != pb.AppFailed {
		return ""
	}
	return strconv.Itoa(int(a.ExitCode))
}

// statusTime is when an application's status last changed: the end of its
// operation, or its start while it runs.
func statusTime(a *pb.ApplicationStatus) *timestamppb.Timestamp {
	if a.EndTime != nil {
		return a.EndTime
	}
	return a.StartTime
}

// target is the kind of resource whose application profile the app
// commands edit: a machine (--vm) or a scale set (--vmss).
type target struct {
	flag, noun string
	of         func(name string) *pb.ProfileTarget
}

var (
	vmTarget = target{flag: "vm", noun: "machine", of: func(n string) *pb.ProfileTarget {
		return &pb.ProfileTarget{Target: &pb.ProfileTarget_Machine{Machine: n}}
	}}
	vmssTarget = target{flag: "vmss", noun: "scale set", of: func(n string) *pb.ProfileTarget {
		return &pb.ProfileTarget{Target: &pb.ProfileTarget_ScaleSet{ScaleSet: n}}
	}}
)

func (t target) add(cmd *cobra.Command, v *string) {
	cmd.Flags().StringVar(v, t.flag, "", t.noun+" whose application profile to use (required)")
	_ = cmd.MarkFlagRequired(t.flag)
}

// profileIfMatchFlag adds --if-match for the etag of a profile.
func profileIfMatchFlag(cmd *cobra.Command, v *string) {
	cmd.Flags().StringVar(v, "if-match", "", "apply only if the application profile's etag (printed by 'app list') is still ETAG")
}

// parseTags parses --tag KEY=VALUE flags.
func parseTags(specs []string) (map[string]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	tags := map[string]string{}
	for _, s := range specs {
		k, v, ok := strings.Cut(s, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, usagef("--tag %q: want KEY=VALUE", s)
		}
		if _, dup := tags[k]; dup {
			return nil, usagef("--tag %q: tag %q is given twice", s, k)
		}
		tags[k] = v
	}
	return tags, nil
}

// parseAppName checks an --app of remove and retry: gallery/application.
func parseAppName(s string) (string, error) {
	p := strings.Split(s, "/")
	if len(p) != 2 || p[0] == "" || p[1] == "" {
		return "", usagef("--app %q: want GALLERY/APPLICATION (the application, without a version)", s)
	}
	return s, nil
}

// readConfig reads --config: the configuration sent inline.
func readConfig(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, errs.Wrap(errs.InvalidArgument, err, "--config")
	}
	if st.Size() > pb.MaxInlineConfigSize {
		return nil, errs.New(errs.InvalidArgument, "configuration", "--config %s has %d bytes: at most %d can be given inline; serve it over http(s) and use --config-url", path, st.Size(), pb.MaxInlineConfigSize)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errs.Wrap(errs.InvalidArgument, err, "--config")
	}
	return b, nil
}

func (c *cli) profileAppCmd(t target) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "app",
		Aliases: []string{"apps", "application", "applications"},
		Short:   "Manage the applications in the application profile of a " + t.noun,
		RunE:    group,
	}
	var (
		name, ref, config, configURL, ifMatch string
		order                                 int32
		treat, auto, wait                     bool
		tags                                  []string
	)
	set := &cobra.Command{
		Use:   "set --" + t.flag + " NAME --app GALLERY/APP/VERSION|latest [flags]",
		Short: "Add an application to the profile of a " + t.noun + ", or replace it",
		Long: `Add an application version to the application profile of a ` + t.noun + `
(applicationProfile.galleryApplications), or replace the entry of the same
gallery/application: the entry is set as a whole, so flags left out (--tag,
--order, ...) are not kept from the old entry. vmappd checks the version
exists, supports the ` + t.noun + `'s OS, isn't deprecated and is replicated to its
region; the agents then install, update or remove to match.

--config sends a file as the configuration itself (at most 1 MiB);
--config-url has the agents download it. With "latest" as the version,
--enable-automatic-upgrade moves to each new latest version once it is
replicated to the region. The new profile is printed with its etag.

With --wait vmapp then waits, as az does, until the agents of the ` + t.noun + `'s
machines report the version Installed, or Failed (exit 1, naming the
machines and why); a line per machine shows on stderr how it stands.`,
		Example: `  vmapp ` + t.flag + ` app set --` + t.flag + ` NAME --app g1/myapp/1.0.0 --order 1 --config ./cfg.json
  vmapp ` + t.flag + ` app set --` + t.flag + ` NAME --app g1/myapp/latest --enable-automatic-upgrade --tag team=web`,
		Args: args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			tagMap, err := parseTags(tags)
			if err != nil {
				return err
			}
			app := &pb.VMGalleryApplication{PackageReferenceId: ref, ConfigurationReference: configURL,
				TreatFailureAsDeploymentFailure: treat, EnableAutomaticUpgrade: auto, Tags: tagMap}
			if cmd.Flags().Changed("order") {
				app.Order = &order
			}
			if config != "" {
				if app.Configuration, err = readConfig(config); err != nil {
					return err
				}
			}
			since := time.Now()
			fl := fleetClient(cl)
			r, err := fl.SetApplication(c.ctx, &pb.SetApplicationRequest{Target: t.of(name), Application: app, IfMatch: ifMatch})
			if err != nil {
				return err
			}
			if wait {
				d, err := newDeployment(t, name, ref, r.ApplicationProfile, since)
				if err == nil {
					err = c.waitDeployed(fl, d)
				}
				if err != nil {
					return err
				}
			}
			return c.printProfile(r.ApplicationProfile)
		}),
	}
	t.add(set, &name)
	f := set.Flags()
	f.StringVar(&ref, "app", "", "packageReferenceId: GALLERY/APPLICATION/VERSION, VERSION a version name or 'latest'; TENANT:GALLERY/APPLICATION/VERSION for a gallery another tenant shares (required)")
	f.Int32Var(&order, "order", 0, "install order: ascending, applications without one last")
	f.StringVar(&config, "config", "", "send this file as the configuration (at most 1 MiB)")
	f.StringVar(&configURL, "config-url", "", "http(s) URL the agents download the configuration from (configurationReference)")
	f.BoolVar(&treat, "treat-failure-as-deployment-failure", false, "a failure of the application fails the provisioning state of the machines it is on")
	f.BoolVar(&auto, "enable-automatic-upgrade", false, "with version 'latest': move to each new latest version once replicated to the region")
	f.StringArrayVar(&tags, "tag", nil, "tag KEY=VALUE (repeatable)")
	f.BoolVar(&wait, "wait", false, "wait until the "+t.noun+"'s machines report the result (on stderr): exit 1 if it failed on one")
	profileIfMatchFlag(set, &ifMatch)
	_ = set.MarkFlagRequired("app")
	set.MarkFlagsMutuallyExclusive("config", "config-url")

	var rmName, rmApp, rmIfMatch string
	remove := &cobra.Command{
		Use:   "remove --" + t.flag + " NAME --app GALLERY/APP [--if-match ETAG]",
		Short: "Take an application out of the profile of a " + t.noun + " (its agents remove it)",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			app, err := parseAppName(rmApp)
			if err != nil {
				return err
			}
			r, err := fleetClient(cl).RemoveApplication(c.ctx, &pb.RemoveApplicationRequest{Target: t.of(rmName), Application: app, IfMatch: rmIfMatch})
			if err != nil {
				return err
			}
			return c.printProfile(r.ApplicationProfile)
		}),
	}
	t.add(remove, &rmName)
	remove.Flags().StringVar(&rmApp, "app", "", "the application: GALLERY/APPLICATION, or TENANT:GALLERY/APPLICATION (required)")
	_ = remove.MarkFlagRequired("app")
	profileIfMatchFlag(remove, &rmIfMatch)

	var retryName, retryApp string
	retry := &cobra.Command{
		Use:   "retry --" + t.flag + " NAME --app GALLERY/APP",
		Short: "Make the agents run the failed operation of an application again",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			app, err := parseAppName(retryApp)
			if err != nil {
				return err
			}
			r, err := fleetClient(cl).RetryApplication(c.ctx, &pb.RetryApplicationRequest{Target: t.of(retryName), Application: app})
			if err != nil {
				return err
			}
			return c.printProfile(r.ApplicationProfile)
		}),
	}
	t.add(retry, &retryName)
	retry.Flags().StringVar(&retryApp, "app", "", "the application: GALLERY/APPLICATION, or TENANT:GALLERY/APPLICATION (required)")
	_ = retry.MarkFlagRequired("app")

	var listName string
	list := &cobra.Command{
		Use:   "list --" + t.flag + " NAME",
		Short: "List the application profile of a " + t.noun,
		Long: `List the application profile of a ` + t.noun + `: PACKAGE-REFERENCE ORDER
RESOLVED AUTO-UPGRADE TREAT-FAILURE TAGS, then the profile's etag (for
--if-match). RESOLVED is the version 'latest' stood for when it was set.
-o json prints {"value": [...], "etag": ...}.`,
		Args: args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			fl := fleetClient(cl)
			var p *pb.ApplicationProfile
			var inherited *pb.ScaleSet
			if t.flag == vmTarget.flag {
				r, err := fl.GetMachine(c.ctx, &pb.GetMachineRequest{Name: listName})
				if err != nil {
					return err
				}
				p = r.GetMachine().GetApplicationProfile()
				if ss := r.GetMachine().GetScaleSet(); ss != "" && !c.structured() {
					if r, err := fl.GetScaleSet(c.ctx, &pb.GetScaleSetRequest{Name: ss}); err == nil {
						inherited = r.ScaleSet
					}
				}
			} else {
				r, err := fl.GetScaleSet(c.ctx, &pb.GetScaleSetRequest{Name: listName})
				if err != nil {
					return err
				}
				p = r.GetScaleSet().GetApplicationProfile()
			}
			if c.structured() {
				return c.printProfileList(p)
			}
			if err := c.printProfile(p); err != nil {
				return err
			}
			if apps := inherited.GetApplicationProfile().GetGalleryApplications(); len(apps) > 0 {
				var refs []string
				for _, a := range apps {
					refs = append(refs, a.PackageReferenceId)
				}
				fmt.Fprintf(c.stdout, "From scale set '%s': %s\n", inherited.Name, strings.Join(refs, ", "))
			}
			return nil
		}),
	}
	t.add(list, &listName)

	cmd.AddCommand(set, remove, retry, list, c.actionCmd(t))
	return cmd
}

// printProfile prints an application profile: a table of its applications
// and its etag, or -o json the profile.
func (c *cli) printProfile(p *pb.ApplicationProfile) error {
	if c.structured() {
		return c.printJSON(p)
	}
	if err := writeProfileTable(c.stdout, p); err != nil {
		return err
	}
	_, err := fmt.Fprintf(c.stdout, "\nEtag: %s\n", p.GetEtag())
	return err
}

// writeProfileTable prints the applications of a profile.
func writeProfileTable(w io.Writer, p *pb.ApplicationProfile) error {
	t := newTable(w, "PACKAGE-REFERENCE", "ORDER", "RESOLVED", "AUTO-UPGRADE", "TREAT-FAILURE", "TAGS")
	for _, a := range p.GetGalleryApplications() {
		order := ""
		if a.Order != nil {
			order = strconv.Itoa(int(*a.Order))
		}
		t.row(a.PackageReferenceId, order, a.ResolvedVersion, yesNo(a.EnableAutomaticUpgrade), yesNo(a.TreatFailureAsDeploymentFailure), formatTags(a.Tags))
	}
	return t.flush()
}

// printProfileList prints a profile's applications as a list:
// {"value": [...], "etag": ...}.
func (c *cli) printProfileList(p *pb.ApplicationProfile) error {
	value, err := marshalAll(p.GetGalleryApplications())
	if err != nil {
		return err
	}
	return c.printIndented(struct {
		Value []json.RawMessage `json:"value"`
		Etag  string            `json:"etag,omitempty"`
	}{value, p.GetEtag()})
}

// formatTags prints tags sorted: k1=v1,k2=v2.
func formatTags(tags map[string]string) string {
	keys := slices.Sorted(maps.Keys(tags))
	for i, k := range keys {
		keys[i] = k + "=" + tags[k]
	}
	return strings.Join(keys, ",")
}
