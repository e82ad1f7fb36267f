package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vmapp/vmapp/client"
	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

func rolloutClient(cl *client.Client) pb.RolloutServiceClient {
	return pb.NewRolloutServiceClient(cl.Conn())
}

func (c *cli) rolloutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rollout",
		Aliases: []string{"rollouts"},
		Short:   "Roll a version out to machines in waves, halting and rolling back on failures",
		RunE:    group,
	}
	simple := func(verb, short string, call func(cl *client.Client, name string) (*pb.Rollout, error)) *cobra.Command {
		return &cobra.Command{
			Use: verb + " NAME", Short: short, Args: args("NAME"),
			RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
				r, err := call(cl, args[0])
				if err != nil {
					return err
				}
				return c.printRollout(r)
			}),
		}
	}
	show := simple("show", "Show a rollout: its waves and machines", func(cl *client.Client, name string) (*pb.Rollout, error) {
		r, err := rolloutClient(cl).GetRollout(c.ctx, &pb.GetRolloutRequest{Name: name})
		return r.GetRollout(), err
	})
	pause := simple("pause", "Start no more machines (those updating finish)", func(cl *client.Client, name string) (*pb.Rollout, error) {
		r, err := rolloutClient(cl).PauseRollout(c.ctx, &pb.PauseRolloutRequest{Name: name})
		return r.GetRollout(), err
	})
	resume := simple("resume", "Go on with a paused rollout", func(cl *client.Client, name string) (*pb.Rollout, error) {
		r, err := rolloutClient(cl).ResumeRollout(c.ctx, &pb.ResumeRolloutRequest{Name: name})
		return r.GetRollout(), err
	})
	abort := simple("abort", "End a rollout for good; machines stay where they are", func(cl *client.Client, name string) (*pb.Rollout, error) {
		r, err := rolloutClient(cl).AbortRollout(c.ctx, &pb.AbortRolloutRequest{Name: name})
		return r.GetRollout(), err
	})
	cmd.AddCommand(c.rolloutCreateCmd(), show, c.rolloutListCmd(), c.rolloutWatchCmd(), pause, resume, abort)
	return cmd
}

func (c *cli) rolloutCreateCmd() *cobra.Command {
	var in pb.Rollout
	var target, machines string
	var soak time.Duration
	create := &cobra.Command{
		Use:   "create NAME --app G/A --version V --target vmss:S | --machines SELECTOR --waves W,W,... [flags]",
		Short: "Start a rollout (returns at once; see rollout watch)",
		Long: `Start rolling version V of application G/A out to the instances of a scale
set (--target vmss:S), or to the machines with the application in their own
profile that a selector picks (--machines region=R,tag:K=V,...). It returns
at once: vmappd moves the machines wave by wave (--waves, cumulative counts
or percentages, the last 100%), at most --max-concurrency at a time, waits
--soak after each wave is done, and halts as soon as more machines failed
than --max-errors allows (with --rollback-on-halt it then moves every
machine it moved back to its previous version).`,
		Example: `  vmapp rollout create hello-1.1 --app demo/hello --version 1.1.0 --target vmss:web --waves 1,100% --soak 30s
  vmapp rollout create motd-2 --app demo/motd --version 2.0.0 --machines region=eastus,tag:env=prod --waves 1,10%,50%,100% --max-errors 5% --rollback-on-halt --by-region`,
		Args: args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			in.Name = args[0]
			var err error
			if in.Target, err = parseRolloutTarget(target, machines); err != nil {
				return err
			}
			if cmd.Flags().Changed("soak") {
				in.Soak = durationpb.New(soak)
			}
			r, err := rolloutClient(cl).CreateRollout(c.ctx, &pb.CreateRolloutRequest{Rollout: &in})
			if err != nil {
				return err
			}
			return c.printRollout(r.Rollout)
		}),
	}
	f := create.Flags()
	f.StringVar(&in.Application, "app", "", "gallery/application (required)")
	f.StringVar(&in.Version, "version", "", "the version to roll out (required)")
	f.StringVar(&target, "target", "", "vmss:NAME: the instances of a scale set")
	f.StringVar(&machines, "machines", "", "a selector of machines: region=R and tag:KEY=VALUE, comma-separated")
	f.StringSliceVar(&in.Waves, "waves", nil, "cumulative waves: counts or percentages, the last 100% (required)")
	f.StringVar(&in.MaxConcurrency, "max-concurrency", "", "at most N or N% of the machines updating at once (default: a whole wave)")
	f.StringVar(&in.MaxErrors, "max-errors", "", "failed machines tolerated, N or N% (default 0); the rollout halts at the first failure beyond")
	f.DurationVar(&soak, "soak", 0, "how long a wave must stay done before the next starts")
	f.BoolVar(&in.RollbackOnHalt, "rollback-on-halt", false, "on halt, move every machine the rollout moved back to its previous version")
	f.BoolVar(&in.ByRegion, "by-region", false, "one region at a time (the regions file's order), the waves within each")
	_ = create.MarkFlagRequired("app")
	_ = create.MarkFlagRequired("version")
	_ = create.MarkFlagRequired("waves")
	return create
}

// parseRolloutTarget reads --target vmss:NAME or --machines SELECTOR.
func parseRolloutTarget(target, machines string) (*pb.RolloutTarget, error) {
	switch {
	case (target == "") == (machines == ""):
		return nil, usagef("give --target vmss:NAME or --machines SELECTOR (one of them)")
	case target != "":
		name, ok := strings.CutPrefix(target, "vmss:")
		if !ok || name == "" {
			return nil, usagef("--target %q: want vmss:NAME", target)
		}
		return &pb.RolloutTarget{ScaleSet: name}, nil
	}
	sel := &pb.MachineSelector{}
	for _, part := range strings.Split(machines, ",") {
		k, v, ok := strings.Cut(part, "=")
		switch tag, isTag := strings.CutPrefix(k, "tag:"); {
		case ok && k == "region":
			sel.Region = v
		case ok && isTag && tag != "":
			if sel.Tags == nil {
				sel.Tags = map[string]string{}
			}
			sel.Tags[tag] = v
		default:
			return nil, usagef("--machines %q: %q isn't region=R or tag:KEY=VALUE", machines, part)
		}
	}
	return &pb.RolloutTarget{Machines: sel}, nil
}

func (c *cli) rolloutListCmd() *cobra.Command {
	var page pageFlags
	list := &cobra.Command{
		Use:   "list [--top N] [--skip-token TOKEN]",
		Short: "List rollouts",
		Args:  args(),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			items, next, err := listAll(cmd, &page, func(size int32, token string) ([]*pb.Rollout, string, error) {
				r, err := rolloutClient(cl).ListRollouts(c.ctx, &pb.ListRolloutsRequest{PageSize: size, PageToken: token})
				return r.GetRollouts(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			if c.structured() {
				return printJSONList(c, items, next)
			}
			t := newTable(c.stdout, "NAME", "APPLICATION", "VERSION", "STATE", "WAVE", "DONE", "FAILED")
			for _, r := range items {
				t.row(r.Name, r.Application, r.Version, r.State, waveOf(r), strconv.Itoa(done(r))+"/"+strconv.Itoa(len(r.Machines)), strconv.Itoa(int(r.Failures)))
			}
			err = t.flush()
			printNextToken(c.stdout, next)
			return err
		}),
	}
	page.add(list)
	return list
}

func (c *cli) rolloutWatchCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "watch NAME",
		Short: "Show a rollout's progress until it ends",
		Long: `Show a rollout's progress, a line each time it changes, until it ends
(WatchRollout). Exit status: 0 when it succeeded, 1 when it halted, was
rolled back or aborted, 2 on a usage error.`,
		Args: args("NAME"),
		RunE: c.action(func(cl *client.Client, cmd *cobra.Command, args []string) error {
			stream, err := rolloutClient(cl).WatchRollout(c.ctx, &pb.WatchRolloutRequest{Name: args[0]})
			if err != nil {
				return err
			}
			var r *pb.Rollout
			last := ""
			for {
				res, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return err
				}
				r = res.Rollout
				if line := progressLine(r); line != last && !c.structured() {
					fmt.Fprintln(c.stdout, time.Now().Format(time.TimeOnly), line)
					last = line
				}
			}
			if c.structured() {
				if err := c.printJSON(r); err != nil {
					return err
				}
			}
			if r.GetState() != pb.RolloutSucceeded {
				return errs.New(errs.FailedPrecondition, "", "rollout '%s' is %s: %s", r.GetName(), r.GetState(), r.GetReason())
			}
			return nil
		}),
	}
}

// progressLine sums a rollout up: its state, wave and machines by state.
func progressLine(r *pb.Rollout) string {
	counts := map[string]int{}
	for _, m := range r.Machines {
		counts[m.State]++
	}
	var parts []string
	for _, s := range pb.RolloutMachineStates {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, counts[s]))
		}
	}
	line := fmt.Sprintf("%s wave %s: %s", r.State, waveOf(r), strings.Join(parts, ", "))
	if r.Reason != "" {
		line += " (" + r.Reason + ")"
	}
	return line
}

func waveOf(r *pb.Rollout) string {
	return fmt.Sprintf("%d/%d", r.CurrentWave+1, len(r.WavePlan))
}

func done(r *pb.Rollout) int {
	n := 0
	for _, m := range r.Machines {
		if m.State != pb.RolloutMachinePending && m.State != pb.RolloutMachineUpdating && m.State != pb.RolloutMachineRollingBack {
			n++
		}
	}
	return n
}

func (c *cli) printRollout(r *pb.Rollout) error {
	if c.structured() {
		return c.printJSON(r)
	}
	d := newDetails(c.stdout)
	d.add("Name", r.Name)
	d.add("Application", r.Application)
	d.add("Version", r.Version)
	if ss := r.GetTarget().GetScaleSet(); ss != "" {
		d.add("Target", "vmss:"+ss)
	} else if sel := r.GetTarget().GetMachines(); sel != nil {
		d.add("Target", strings.TrimPrefix(fmt.Sprintf("region=%s %s", sel.Region, formatTags(sel.Tags)), "region= "))
	}
	d.add("State", r.State)
	d.add("Reason", r.Reason)
	d.add("Waves", strings.Join(r.Waves, ","))
	d.add("Wave", waveOf(r))
	d.add("Max concurrency", r.MaxConcurrency)
	d.add("Max errors", fmt.Sprintf("%s (%d machines)", cmp.Or(r.MaxErrors, "0"), r.ErrorBudget))
	d.add("Failures", strconv.Itoa(int(r.Failures)))
	d.add("Soak", r.Soak.AsDuration().String())
	d.add("Rollback on halt", strconv.FormatBool(r.RollbackOnHalt))
	d.add("Created", formatTime(r.CreateTime))
	d.add("Updated", formatTime(r.UpdateTime))
	if err := d.flush(); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout)
	t := newTable(c.stdout, "MACHINE", "REGION", "WAVE", "PREVIOUS", "STATE", "REASON")
	for _, m := range r.Machines {
		t.row(m.Name, m.Region, strconv.Itoa(int(m.Wave)+1), m.PreviousVersion, m.State, m.Reason)
	}
	return t.flush()
}
