package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/vmapp/vmapp/errs"
	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

// Limits of custom actions' runs.
const (
	// MaxPendingActions is how many runs a machine may have pending.
	MaxPendingActions = 20
	// KeepFinishedActions is how many finished runs a machine keeps.
	KeepFinishedActions = 50
	// MaxParameterValue bounds a String parameter's value.
	MaxParameterValue = 32 << 10
	// MaxActionLog bounds a LogOutputBlob file kept: agents send its last
	// MaxActionLog bytes.
	MaxActionLog = 64 << 10
	// maxOutputTail bounds a run's reported output tail.
	maxOutputTail = 8 << 10
)

// RunAction records a run of an application's custom action for the
// machine, or every instance of the scale set, t names, after checking
// everything: the application is in the machine's goal state, its
// version defines the action, the parameters are the action's and the
// required ones are given. The runs reach the agents in their goal
// states.
func (f *Fleet) RunAction(ctx context.Context, tenant string, t Target, app, action string, given []*pb.ActionParameterValue) ([]*pb.ActionRun, error) {
	if err := checkTarget(t); err != nil {
		return nil, err
	}
	if app == "" {
		return nil, errs.New(errs.InvalidArgument, "application", "application is required: gallery/application")
	}
	if action == "" {
		return nil, errs.New(errs.InvalidArgument, "action", "action is required: the name of a custom action of the application's version")
	}
	machines, err := f.targetMachines(ctx, tenant, t)
	if err != nil {
		return nil, err
	}
	now := f.now()
	var runs []*pb.ActionRun
	for _, m := range machines {
		r, err := f.actionRun(ctx, tenant, m, app, action, given)
		if err != nil {
			return nil, err
		}
		r.Id, r.ScaleSet = runID(now), t.ScaleSet
		runs = append(runs, r)
	}
	_, err = f.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_RequestActions{RequestActions: &statepb.RequestActions{Runs: runs, MaxPending: MaxPendingActions}}
	})
	if err != nil {
		return nil, err
	}
	return f.listRuns(ctx, tenant, machines, "", runIDs(runs))
}

func checkTarget(t Target) error {
	if (t.Machine == "") == (t.ScaleSet == "") {
		return errs.New(errs.InvalidArgument, "target", "target is required: a machine or a scale set")
	}
	return nil
}

// targetMachines is the machine t names, or the instances of the scale
// set (at least one).
func (f *Fleet) targetMachines(ctx context.Context, tenant string, t Target) ([]string, error) {
	var out []string
	err := f.syncView(ctx, func(tx *state.Tx) error {
		if t.Machine != "" {
			_, err := tx.Machine(tenant, t.Machine)
			out = []string{t.Machine}
			return err
		}
		if _, err := tx.ScaleSet(tenant, t.ScaleSet); err != nil {
			return err
		}
		ms, err := tx.Instances(tenant, t.ScaleSet)
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return err
	})
	if err == nil && len(out) == 0 {
		err = errs.New(errs.FailedPrecondition, "target", "Scale set '%s' has no instances to run the action on.", t.ScaleSet)
	}
	return out, err
}

// actionRun checks a run of action on machine and builds it (without id).
func (f *Fleet) actionRun(ctx context.Context, tenant, machine, app, action string, given []*pb.ActionParameterValue) (*pb.ActionRun, error) {
	gs, err := f.GoalState(ctx, tenant, machine)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(gs.Applications, func(ga *pb.GoalApplication) bool {
		return pb.AppRef(ga.Tenant, ga.Gallery, ga.Application) == app
	})
	if i < 0 {
		return nil, errs.New(errs.FailedPrecondition, "application", "Machine '%s' has no application '%s' in its application profile.", machine, app)
	}
	ga := gs.Applications[i]
	def := pb.FindAction(ga.CustomActions, nil, action)
	if def == nil {
		return nil, errs.New(errs.InvalidArgument, "action", "Custom action '%s' isn't defined by %s version %s (nor by its application); it defines: %s.", action, app, ga.Version, actionNames(ga.CustomActions))
	}
	params, err := actionParameters(def, given)
	if err != nil {
		return nil, err
	}
	return &pb.ActionRun{Tenant: tenant, Machine: machine, Application: app, Version: ga.Version, Action: def.Name, Script: def.Script, Parameters: params}, nil
}

func actionNames(as []*pb.GalleryApplicationCustomAction) string {
	if len(as) == 0 {
		return "none"
	}
	var out []string
	for _, a := range as {
		out = append(out, a.Name)
	}
	return strings.Join(out, ", ")
}

// actionParameters checks the parameters given against the action's and
// returns what the script gets: every parameter given, the defaults of
// String parameters not given, and every LogOutputBlob.
func actionParameters(def *pb.GalleryApplicationCustomAction, given []*pb.ActionParameterValue) ([]*pb.ActionParameterValue, error) {
	byName := map[string]*pb.ActionParameterValue{}
	for _, g := range given {
		p := findParameter(def, g.GetName())
		switch {
		case p == nil:
			return nil, errs.New(errs.InvalidArgument, "parameters", "Parameter '%s' isn't a parameter of custom action '%s'; its parameters are: %s.", g.GetName(), def.Name, parameterNames(def))
		case byName[p.Name] != nil:
			return nil, errs.New(errs.InvalidArgument, "parameters", "Parameter '%s' is given more than once.", p.Name)
		}
		v, err := checkValue(p, g)
		if err != nil {
			return nil, err
		}
		byName[p.Name] = v
	}
	var out []*pb.ActionParameterValue
	for _, p := range def.Parameters {
		v := byName[p.Name]
		switch {
		case v != nil:
		case p.Type == pb.ParamLogOutputBlob:
			v = &pb.ActionParameterValue{Name: p.Name, Type: p.Type}
		case p.Required:
			return nil, errs.New(errs.InvalidArgument, "parameters", "Parameter '%s' of custom action '%s' is required.", p.Name, def.Name)
		case p.Type == pb.ParamString && p.DefaultValue != "":
			v = &pb.ActionParameterValue{Name: p.Name, Type: p.Type, Value: p.DefaultValue}
		default:
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

func findParameter(def *pb.GalleryApplicationCustomAction, name string) *pb.GalleryApplicationCustomActionParameter {
	for _, p := range def.Parameters {
		if p.Name == name {
			return p
		}
	}
	return nil
}

func parameterNames(def *pb.GalleryApplicationCustomAction) string {
	var out []string
	for _, p := range def.Parameters {
		out = append(out, p.Name+" ("+p.Type+")")
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// checkValue checks a value given for parameter p.
func checkValue(p *pb.GalleryApplicationCustomActionParameter, g *pb.ActionParameterValue) (*pb.ActionParameterValue, error) {
	bad := func(format string, args ...any) error {
		return errs.New(errs.InvalidArgument, "parameters", "Parameter '%s' (%s): "+format, append([]any{p.Name, p.Type}, args...)...)
	}
	v := &pb.ActionParameterValue{Name: p.Name, Type: p.Type, Value: g.Value}
	switch p.Type {
	case pb.ParamLogOutputBlob:
		return nil, bad("the agent provides the file the script writes and collects it back: give no value.")
	case pb.ParamString:
		switch {
		case len(g.Data) > 0:
			return nil, bad("give a value, not a file.")
		case len(g.Value) > MaxParameterValue:
			return nil, bad("the value is %d bytes long; the maximum is %d.", len(g.Value), MaxParameterValue)
		case !utf8.ValidString(g.Value) || strings.ContainsRune(g.Value, 0):
			return nil, bad("the value must be UTF-8 text without NUL.")
		}
		return v, nil
	}
	switch {
	case len(g.Data) > 0 && g.Value != "":
		return nil, bad("give the file's content or its URL, not both.")
	case len(g.Data) > pb.MaxInlineConfigSize:
		return nil, bad("the file is %d bytes; the most given inline is %d: give its URL instead.", len(g.Data), pb.MaxInlineConfigSize)
	case len(g.Data) > 0:
		v.Data, v.SizeBytes = g.Data, int64(len(g.Data))
		return v, nil
	}
	if u, err := url.Parse(g.Value); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, bad("'%s' is neither a file's content nor an http(s) URL.", g.Value)
	}
	return v, nil
}

// runID is a new run's id: its time, then random, so that ids sort by
// creation.
func runID(now interface{ UnixNano() int64 }) string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%016x%s", now.UnixNano(), hex.EncodeToString(b))
}

func runIDs(runs []*pb.ActionRun) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.Id)
	}
	return out
}

// ListActionRuns lists the runs of the machine, or of the scale set's
// instances, newest first; only those of app and ids when given.
func (f *Fleet) ListActionRuns(ctx context.Context, tenant string, t Target, app string, ids []string) ([]*pb.ActionRun, error) {
	if err := checkTarget(t); err != nil {
		return nil, err
	}
	machines, err := f.targetMachines(ctx, tenant, t)
	if errs.Is(err, errs.FailedPrecondition) { // a scale set without instances
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return f.listRuns(ctx, tenant, machines, app, ids)
}

func (f *Fleet) listRuns(ctx context.Context, tenant string, machines []string, app string, ids []string) ([]*pb.ActionRun, error) {
	var out []*pb.ActionRun
	err := f.syncView(ctx, func(tx *state.Tx) error {
		for _, m := range machines {
			err := state.ActionRuns.ScanDesc(tx, state.Prefix(tenant, m), func(_ []byte, r *pb.ActionRun) (bool, error) {
				if (app == "" || r.Application == app) && (len(ids) == 0 || slices.Contains(ids, r.Id)) {
					out = append(out, listed(r))
				}
				return true, nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	slices.SortStableFunc(out, func(a, b *pb.ActionRun) int { return strings.Compare(b.Id[:16], a.Id[:16]) })
	return out, err
}

// listed is a run as lists show it: without the files given inline.
func listed(r *pb.ActionRun) *pb.ActionRun {
	for _, p := range r.Parameters {
		p.Data = nil
	}
	return r
}

// pendingActions are the machine's runs still pending, oldest first: what
// its goal state carries.
func pendingActions(tx *state.Tx, tenant, machine string) ([]*pb.ActionRun, error) {
	var out []*pb.ActionRun
	err := state.ActionRuns.Scan(tx, state.Prefix(tenant, machine), nil, func(_ []byte, r *pb.ActionRun) (bool, error) {
		if r.State == pb.ActionPending {
			out = append(out, r)
		}
		return true, nil
	})
	return out, err
}

// ReportActionResult records how a run on machine ended; it tells
// whether it did: a run already finished (a report sent again) or gone
// is left alone.
func (f *Fleet) ReportActionResult(ctx context.Context, tenant, machine string, r *pb.ActionRun) (bool, error) {
	if err := checkResult(r); err != nil {
		return false, err
	}
	if err := f.db.Sync(ctx); err != nil { // a run just asked for is seen
		return false, err
	}
	var pending bool
	err := f.db.View(ctx, func(tx *state.Tx) error {
		run, _, err := state.ActionRuns.Get(tx, state.ActionRunKey(tenant, machine, r.Id))
		pending = run.GetState() == pb.ActionPending
		return err
	})
	if err != nil || !pending {
		return false, err
	}
	_, err = f.propose(ctx, func(c *statepb.Command) {
		c.Op = &statepb.Command_FinishAction{FinishAction: &statepb.FinishAction{Tenant: tenant, Machine: machine, Run: r, KeepFinished: KeepFinishedActions}}
	})
	return err == nil, err
}

func checkResult(r *pb.ActionRun) error {
	bad := func(field, format string, args ...any) error {
		return errs.New(errs.InvalidArgument, field, format, args...)
	}
	switch {
	case r == nil || r.Id == "":
		return bad("run.id", "run.id is required")
	case r.State != pb.ActionSucceeded && r.State != pb.ActionFailed:
		return bad("run.state", "run.state '%s' is invalid: want Succeeded or Failed", r.State)
	case len(r.OutputTail) > maxOutputTail || len(r.Reason) > maxOutputTail:
		return bad("run.outputTail", "run.outputTail and run.reason are at most %d bytes", maxOutputTail)
	case len(r.Logs) > 50:
		return bad("run.logs", "run.logs has %d files; the most is 50", len(r.Logs))
	}
	for _, l := range r.Logs {
		if len(l.Content) > MaxActionLog {
			return bad("run.logs", "log '%s' is %d bytes; the most kept is %d", l.Name, len(l.Content), MaxActionLog)
		}
	}
	return nil
}
