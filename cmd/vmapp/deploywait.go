package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// vm app set --wait and vmss app set --wait wait, as az does, until the
// machines report the result: each machine's instance view (its agent's
// report) shows the application at the version set, Installed, or Failed
// or Skipped by an operation that ended after the set. vmappd has no watch
// of instance views, so vmapp reads them every pollEvery.

// defaultPollEvery is how often --wait reads the machines' reports.
const defaultPollEvery = time.Second

// deployment is what set --wait waits for.
type deployment struct {
	target target
	name   string // the machine or the scale set
	app    string // gallery/application, without the tenant
	// version is the version set (the one "latest" stood for).
	version string
	since   time.Time // just before the set
}

// newDeployment reads what to wait for from the profile SetApplication
// returned.
func newDeployment(t target, name, ref string, p *pb.ApplicationProfile, since time.Time) (deployment, error) {
	for _, a := range p.GetGalleryApplications() {
		if a.PackageReferenceId != ref {
			continue
		}
		parts := strings.Split(withoutTenant(ref), "/")
		if len(parts) != 3 {
			break
		}
		v := parts[2]
		if a.ResolvedVersion != "" {
			v = a.ResolvedVersion
		}
		return deployment{target: t, name: name, app: parts[0] + "/" + parts[1], version: v, since: since}, nil
	}
	return deployment{}, errs.New(errs.Internal, "", "the profile vmappd returned holds no %s", ref)
}

func withoutTenant(s string) string {
	if _, after, ok := strings.Cut(s, ":"); ok {
		return after
	}
	return s
}

// outcome is where one machine stands.
type outcome struct {
	done, failed bool
	line         string // what it reported, for the user
}

// outcomeOf reads a machine's report of the application.
func (d deployment) outcomeOf(m *pb.Machine) outcome {
	iv := m.GetInstanceView()
	for _, s := range iv.GetApplications() {
		if withoutTenant(s.Application) != d.app {
			continue
		}
		if s.Version != d.version {
			return outcome{line: fmt.Sprintf("%s: %s %s %s, %s not started", m.Name, d.app, s.Version, s.State, d.version)}
		}
		switch s.State {
		case pb.AppInstalled:
			switch s.Health {
			case pb.HealthChecking:
				return outcome{line: fmt.Sprintf("%s: %s %s Installed, checking its health", m.Name, d.app, d.version)}
			case pb.HealthUnhealthy:
				return outcome{done: true, failed: true, line: fmt.Sprintf("%s: %s %s Installed but Unhealthy: %s", m.Name, d.app, d.version, s.HealthReason)}
			}
			return outcome{done: true, line: fmt.Sprintf("%s: %s %s Installed", m.Name, d.app, d.version)}
		case pb.AppFailed, pb.AppSkipped:
			if s.EndTime != nil && !s.EndTime.AsTime().Before(d.since) {
				return outcome{done: true, failed: true, line: fmt.Sprintf("%s: %s %s %s (%s, exit %d): %s", m.Name, d.app, d.version, s.State, s.Operation, s.ExitCode, s.Reason)}
			}
		}
		return outcome{line: fmt.Sprintf("%s: %s %s %s", m.Name, d.app, d.version, s.State)}
	}
	if !iv.GetConnected() {
		return outcome{line: m.Name + ": its agent is not connected"}
	}
	return outcome{line: fmt.Sprintf("%s: %s %s not started", m.Name, d.app, d.version)}
}

// machines are the machines the deployment reaches, read anew each round
// (a scale set gains and loses instances).
func (c *cli) machines(fl pb.FleetServiceClient, d deployment) ([]*pb.Machine, error) {
	if d.target.flag == vmTarget.flag {
		r, err := fl.GetMachine(c.ctx, &pb.GetMachineRequest{Name: d.name})
		return []*pb.Machine{r.GetMachine()}, err
	}
	var all []*pb.Machine
	token := ""
	for {
		r, err := fl.ListMachines(c.ctx, &pb.ListMachinesRequest{ScaleSet: d.name, PageToken: token})
		if err != nil {
			return nil, err
		}
		all = append(all, r.Machines...)
		if token = r.NextPageToken; token == "" {
			return all, nil
		}
	}
}

// waitDeployed waits until every machine reports the application's
// outcome, printing each machine's line on stderr as it changes; it
// returns FailedPrecondition naming the machines where it failed.
func (c *cli) waitDeployed(fl pb.FleetServiceClient, d deployment) error {
	every := c.pollEvery
	if every == 0 {
		every = defaultPollEvery
	}
	said := map[string]string{}
	for {
		ms, err := c.machines(fl, d)
		if err != nil {
			return err
		}
		var failed, pending []string
		for _, m := range ms {
			o := d.outcomeOf(m)
			if said[m.Name] != o.line && !c.structured() {
				fmt.Fprintln(c.stderr, o.line)
			}
			said[m.Name] = o.line
			switch {
			case o.failed:
				failed = append(failed, o.line)
			case !o.done:
				pending = append(pending, m.Name)
			}
		}
		if len(pending) == 0 {
			if len(failed) > 0 {
				slices.Sort(failed)
				return errs.New(errs.FailedPrecondition, "", "%s %s failed on %d of %d machines: %s", d.app, d.version, len(failed), len(ms), strings.Join(failed, "; "))
			}
			return nil
		}
		if err := sleepCtx(c.ctx, every); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
