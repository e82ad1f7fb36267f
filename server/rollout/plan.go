package rollout

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vmapp/vmapp/errs"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// amount is a count of machines ("5") or a percentage of them ("10%").
type amount struct {
	n   int
	pct bool
}

// parseAmount parses s, refusing what field can't hold: negative
// numbers, percentages over 100, zero unless zeroOK.
func parseAmount(field, s string, zeroOK bool) (amount, error) {
	num, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.Atoi(num)
	switch {
	case err != nil:
		return amount{}, errs.New(errs.InvalidArgument, field, "%s '%s' is invalid: want a number of machines (5) or a percentage of them (10%%)", field, s)
	case n < 0:
		return amount{}, errs.New(errs.InvalidArgument, field, "%s '%s' is negative", field, s)
	case pct && n > 100:
		return amount{}, errs.New(errs.InvalidArgument, field, "%s '%s' is over 100%%", field, s)
	case n == 0 && !zeroOK:
		return amount{}, errs.New(errs.InvalidArgument, field, "%s '%s' is zero: it would move no machine", field, s)
	}
	return amount{n, pct}, nil
}

// ceilOf is a of total machines, a percentage rounded up (a wave or a
// concurrency of 10% of 5 machines is 1 machine), at most total.
func (a amount) ceilOf(total int) int {
	if a.pct {
		return (a.n*total + 99) / 100
	}
	return min(a.n, total)
}

// floorOf is a of total machines, a percentage rounded down (an error
// budget of 10% of 15 machines is 1 failure).
func (a amount) floorOf(total int) int {
	if a.pct {
		return a.n * total / 100
	}
	return a.n
}

// parseWaves parses the waves and checks them against total machines:
// each reaches more machines than the one before, the last reaches all.
func parseWaves(specs []string, total int) ([]amount, error) {
	if len(specs) == 0 {
		return nil, errs.New(errs.InvalidArgument, "waves", "waves are required: for example 1,10%%,50%%,100%%")
	}
	var out []amount
	prev := 0
	for i, s := range specs {
		a, err := parseAmount("waves", s, false)
		if err != nil {
			return nil, err
		}
		if n := a.ceilOf(total); n <= prev {
			return nil, errs.New(errs.InvalidArgument, "waves", "waves must grow: wave %d (%s) reaches %d of the %d machines, no more than wave %d (%s)", i+1, s, n, total, i, specs[i-1])
		}
		prev = a.ceilOf(total)
		out = append(out, a)
	}
	if prev < total {
		return nil, errs.New(errs.InvalidArgument, "waves", "the last wave (%s) reaches %d of the %d machines: end with 100%%", specs[len(specs)-1], prev, total)
	}
	return out, nil
}

// plan assigns r's machines to waves: name order, or with byRegion one
// region after another in the order of regions, the waves within each
// (a wave that adds no machine in a small region is left out).
func plan(r *pb.Rollout, waves []amount, regions []string) {
	groups := [][]*pb.RolloutMachine{r.Machines}
	if r.ByRegion {
		groups = nil
		for _, region := range regions {
			var g []*pb.RolloutMachine
			for _, m := range r.Machines {
				if m.Region == region {
					g = append(g, m)
				}
			}
			if len(g) > 0 {
				groups = append(groups, g)
			}
		}
	}
	var ordered []*pb.RolloutMachine
	for _, g := range groups {
		slices.SortFunc(g, func(a, b *pb.RolloutMachine) int { return cmp.Compare(a.Name, b.Name) })
		placed := 0
		for i, w := range waves {
			n := w.ceilOf(len(g))
			if n <= placed {
				continue
			}
			wave := &pb.RolloutWave{Spec: r.Waves[i], Machines: int32(n - placed)}
			if r.ByRegion {
				wave.Region = g[0].Region
			}
			for _, m := range g[placed:n] {
				m.Wave = int32(len(r.WavePlan))
			}
			r.WavePlan = append(r.WavePlan, wave)
			placed = n
		}
		ordered = append(ordered, g...)
	}
	r.Machines = ordered
}

// resolve checks r's waves, concurrency and error budget against its
// machines and plans it.
func resolve(r *pb.Rollout, regions []string) error {
	total := len(r.Machines)
	waves, err := parseWaves(r.Waves, total)
	if err != nil {
		return err
	}
	if r.MaxConcurrency != "" {
		c, err := parseAmount("maxConcurrency", r.MaxConcurrency, false)
		if err != nil {
			return err
		}
		r.Concurrency = int32(c.ceilOf(total))
	}
	if r.MaxErrors != "" {
		e, err := parseAmount("maxErrors", r.MaxErrors, true)
		if err != nil {
			return err
		}
		r.ErrorBudget = int32(e.floorOf(total))
	}
	plan(r, waves, regions)
	return nil
}

// describeBudget says when r halts, for messages.
func describeBudget(r *pb.Rollout) string {
	return fmt.Sprintf("maxErrors %s tolerates %d failed machines", cmp.Or(r.MaxErrors, "0"), r.ErrorBudget)
}
