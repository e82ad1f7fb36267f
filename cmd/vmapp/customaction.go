package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vmapp/vmapp/client"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// The custom actions' flags of versions and applications:
//
//	--custom-action NAME=SCRIPT         an action without parameters, or
//	--custom-action @FILE               actions from a JSON or YAML file: a list
//	                                    of Azure's customActions objects
//	--custom-action-param ACTION.PARAM=TYPE[,required][,default=VALUE]
//	                                    a parameter of an action given by
//	                                    --custom-action NAME=SCRIPT (default=
//	                                    comes last: VALUE is the rest)

const (
	customActionUsage = "custom action NAME=SCRIPT, or @FILE: a JSON or YAML list of Azure's customActions objects " +
		"(name, script, description, parameters: name, required, type, defaultValue, description); repeatable"
	customActionParamUsage = "parameter of a --custom-action NAME=SCRIPT: ACTION.PARAM=TYPE[,required][,default=VALUE], " +
		"TYPE String, ConfigurationDataBlob or LogOutputBlob (default=... comes last); repeatable"
)

func addCustomActionFlags(f *pflag.FlagSet) {
	f.StringArray("custom-action", nil, customActionUsage)
	f.StringArray("custom-action-param", nil, customActionParamUsage)
}

// customActionFields are the flags' fields of a resource with custom
// actions at path.
func customActionFields[T any](path string, set func(T, []*pb.GalleryApplicationCustomAction)) []field[T] {
	return []field[T]{
		{"custom-action", path, func(m T, fs *pflag.FlagSet) error {
			specs, _ := fs.GetStringArray("custom-action")
			params, _ := fs.GetStringArray("custom-action-param")
			as, err := parseCustomActions(specs, params)
			set(m, as)
			return err
		}},
		{"custom-action-param", path, func(m T, fs *pflag.FlagSet) error {
			if !fs.Changed("custom-action") {
				return usagef("--custom-action-param needs the --custom-action NAME=SCRIPT it is a parameter of")
			}
			return nil
		}},
	}
}

// parseCustomActions parses --custom-action and --custom-action-param.
func parseCustomActions(specs, params []string) ([]*pb.GalleryApplicationCustomAction, error) {
	var out []*pb.GalleryApplicationCustomAction
	for _, s := range specs {
		if path, ok := strings.CutPrefix(s, "@"); ok {
			as, err := readCustomActions(path)
			if err != nil {
				return nil, err
			}
			out = append(out, as...)
			continue
		}
		name, script, ok := strings.Cut(s, "=")
		if !ok || name == "" || strings.TrimSpace(script) == "" {
			return nil, usagef("--custom-action %q: want NAME=SCRIPT or @FILE", s)
		}
		out = append(out, &pb.GalleryApplicationCustomAction{Name: name, Script: script})
	}
	for _, s := range params {
		if err := addCustomActionParam(out, s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// addCustomActionParam adds a --custom-action-param to its action.
func addCustomActionParam(actions []*pb.GalleryApplicationCustomAction, s string) error {
	bad := func(why string) error {
		return usagef("--custom-action-param %q: %s; want ACTION.PARAM=TYPE[,required][,default=VALUE]", s, why)
	}
	ref, spec, ok := strings.Cut(s, "=")
	action, name, dot := strings.Cut(ref, ".")
	if !ok || !dot || action == "" || name == "" {
		return bad("no ACTION.PARAM=")
	}
	a := pb.FindAction(actions, nil, action)
	if a == nil {
		return bad(fmt.Sprintf("no --custom-action %s", action))
	}
	p := &pb.GalleryApplicationCustomActionParameter{Name: name}
	for spec != "" {
		var part string
		if def, ok := strings.CutPrefix(spec, "default="); ok {
			p.DefaultValue, spec = def, ""
			continue
		}
		part, spec, _ = strings.Cut(spec, ",")
		switch {
		case strings.EqualFold(part, "required"):
			p.Required = true
		case p.Type == "" && part != "":
			p.Type = part
		default:
			return bad(fmt.Sprintf("%q is neither a type, 'required' nor default=", part))
		}
	}
	a.Parameters = append(a.Parameters, p)
	return nil
}

// readCustomActions reads a JSON or YAML list of customActions objects
// (Azure's names).
func readCustomActions(path string) ([]*pb.GalleryApplicationCustomAction, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--custom-action @%s: %v", path, err)
	}
	var list []any
	if err := yaml.Unmarshal(b, &list); err != nil {
		return nil, usagef("--custom-action @%s: not a JSON or YAML list: %v", path, err)
	}
	var out []*pb.GalleryApplicationCustomAction
	for i, item := range list {
		j, err := json.Marshal(item)
		a := &pb.GalleryApplicationCustomAction{}
		if err == nil {
			err = protojson.Unmarshal(j, a)
		}
		if err != nil {
			return nil, usagef("--custom-action @%s: item %d: %v", path, i, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// parseAdvancedSettings parses --advanced-setting KEY=VALUE flags.
func parseAdvancedSettings(specs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, s := range specs {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, usagef("--advanced-setting %q: want KEY=VALUE", s)
		}
		if _, dup := m[k]; dup {
			return nil, usagef("--advanced-setting %q: %q is given twice", s, k)
		}
		m[k] = v
	}
	return m, nil
}

// parseActionParams parses --param NAME=VALUE, NAME=@FILE (a
// ConfigurationDataBlob's content, sent inline).
func parseActionParams(specs []string) ([]*pb.ActionParameterValue, error) {
	var out []*pb.ActionParameterValue
	for _, s := range specs {
		name, v, ok := strings.Cut(s, "=")
		if !ok || name == "" {
			return nil, usagef("--param %q: want NAME=VALUE or NAME=@FILE", s)
		}
		p := &pb.ActionParameterValue{Name: name, Value: v}
		if path, ok := strings.CutPrefix(v, "@"); ok {
			b, err := readConfig(path)
			if err != nil {
				return nil, err
			}
			p.Value, p.Data = "", b
		}
		out = append(out, p)
	}
	return out, nil
}

// actionCmd is "vm|vmss app action": run custom actions and list the runs.
func (c *cli) actionCmd(t target) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "action",
		Aliases: []string{"actions"},
		Short:   "Run an application's custom actions on a " + t.noun + " and list the runs",
		RunE:    group,
	}
	var name, app, action string
	var params []string
	var wait bool
	run := &cobra.Command{
		Use:   "run --" + t.flag + " NAME --app GALLERY/APP --action ACTION [--param NAME=VALUE|NAME=@FILE ...] [--wait]",
		Short: "Run a custom action of an application on a " + t.noun,
		Long: `Run a custom action of the application's version the ` + t.noun + ` has
(publishingProfile.customActions, or the application's customActions) on
` + map[bool]string{true: "the machine", false: "every instance of the scale set"}[t.flag == vmTarget.flag] + `. vmappd checks the action and its parameters first:
an unknown action or parameter, or a required one missing, is refused and
nothing runs. Each --param is NAME=VALUE (a String, or a
ConfigurationDataBlob's http(s) URL) or NAME=@FILE (a ConfigurationDataBlob's
content, at most 1 MiB). LogOutputBlob parameters take no value: the agent
gives the script a file to write and sends it back. An agent that verifies
signatures (vmapp-agent --trust-file) runs the action only as a trusted
signature of the installed version covers it; otherwise the run fails
without running, its reason saying why (Unsigned, SignatureInvalid, ...).

The runs are printed Pending; with --wait vmapp waits until every run ended
and prints them (exit 1 when one failed).`,
		Example: `  vmapp ` + t.flag + ` app action run --` + t.flag + ` NAME --app g1/myapp --action rotate-logs --param KEEP=7 --param CFG=@./policy.json --wait`,
		Args:    args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			if _, err := parseAppName(app); err != nil {
				return err
			}
			ps, err := parseActionParams(params)
			if err != nil {
				return err
			}
			fl := fleetClient(cl)
			r, err := fl.RunAction(c.ctx, &pb.RunActionRequest{Target: t.of(name), Application: app, Action: action, Parameters: ps})
			if err != nil {
				return err
			}
			runs := r.Runs
			if wait {
				if runs, err = c.waitRuns(fl, t.of(name), runs); err != nil {
					return err
				}
			}
			if err := c.printRuns(runs); err != nil {
				return err
			}
			for _, r := range runs {
				if r.State == pb.ActionFailed {
					return errRunFailed
				}
			}
			return nil
		}),
	}
	t.add(run, &name)
	f := run.Flags()
	f.StringVar(&app, "app", "", "the application: GALLERY/APPLICATION (required)")
	f.StringVar(&action, "action", "", "the custom action's name (required)")
	f.StringArrayVar(&params, "param", nil, "parameter NAME=VALUE, or NAME=@FILE for a ConfigurationDataBlob sent inline (repeatable)")
	f.BoolVar(&wait, "wait", false, "wait until every run ended, and print them (exit 1 if one failed)")
	_ = run.MarkFlagRequired("app")
	_ = run.MarkFlagRequired("action")

	var listName, listApp string
	list := &cobra.Command{
		Use:   "list --" + t.flag + " NAME [--app GALLERY/APP]",
		Short: "List the custom actions' runs of a " + t.noun + ", newest first",
		Long: `List the runs of custom actions on a ` + t.noun + `, newest first: ID MACHINE
APPLICATION ACTION STATE EXIT DURATION ENDED, then each run's output tail
and collected logs (LogOutputBlob). -o json prints {"value": [...]} with
Azure's names; a collected log's content is base64.`,
		Args: args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			r, err := fleetClient(cl).ListActionRuns(c.ctx, &pb.ListActionRunsRequest{Target: t.of(listName), Application: listApp})
			if err != nil {
				return err
			}
			return c.printRuns(r.Runs)
		}),
	}
	t.add(list, &listName)
	list.Flags().StringVar(&listApp, "app", "", "only the runs of this application (GALLERY/APPLICATION)")
	cmd.AddCommand(run, list)
	return cmd
}

var errRunFailed = runError{fmt.Errorf("a custom action's run failed")}

// waitRuns polls until every run ended.
func (c *cli) waitRuns(fl pb.FleetServiceClient, t *pb.ProfileTarget, runs []*pb.ActionRun) ([]*pb.ActionRun, error) {
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.Id)
	}
	for {
		r, err := fl.ListActionRuns(c.ctx, &pb.ListActionRunsRequest{Target: t, Ids: ids})
		if err != nil {
			return nil, err
		}
		pending := 0
		for _, run := range r.Runs {
			if run.State == pb.ActionPending {
				pending++
			}
		}
		if pending == 0 {
			return r.Runs, nil
		}
		c.status("%d of %d runs pending", pending, len(r.Runs))
		select {
		case <-c.ctx.Done():
			return nil, c.ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// printRuns prints runs: a table, then each one's output tail and logs.
func (c *cli) printRuns(runs []*pb.ActionRun) error {
	if c.structured() {
		return printJSONList(c, runs, "")
	}
	t := newTable(c.stdout, "ID", "MACHINE", "APPLICATION", "VERSION", "ACTION", "STATE", "EXIT", "DURATION", "ENDED", "REASON")
	for _, r := range runs {
		exit, dur := "", ""
		if r.State != pb.ActionPending {
			exit, dur = fmt.Sprint(r.ExitCode), r.Duration.AsDuration().Round(time.Millisecond).String()
		}
		t.row(r.Id, r.Machine, r.Application, r.Version, r.Action, r.State, exit, dur, formatTime(r.EndTime), r.Reason)
	}
	if err := t.flush(); err != nil {
		return err
	}
	for _, r := range runs {
		if out := strings.TrimRight(r.OutputTail, "\n"); out != "" {
			fmt.Fprintf(c.stdout, "\nOutput of %s on %s (%s):\n", r.Action, r.Machine, r.Id)
			for _, line := range strings.Split(out, "\n") {
				fmt.Fprintf(c.stdout, "  %s\n", line)
			}
		}
		for _, l := range r.Logs {
			fmt.Fprintf(c.stdout, "\nLog %s of %s on %s (%s):\n", l.Name, r.Action, r.Machine, describeLog(l))
			for _, line := range strings.Split(strings.TrimRight(string(l.Content), "\n"), "\n") {
				fmt.Fprintf(c.stdout, "  %s\n", line)
			}
		}
	}
	return nil
}

func describeLog(l *pb.ActionLog) string {
	switch {
	case l.SizeBytes < 0:
		return "not written"
	case l.Truncated:
		return fmt.Sprintf("%s, its last %s", formatBytes(l.SizeBytes), formatBytes(int64(len(l.Content))))
	}
	return formatBytes(l.SizeBytes)
}
