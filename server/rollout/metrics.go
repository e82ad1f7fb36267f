package rollout

import (
	"context"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
	"github.com/vmapp/vmapp/state"
)

var (
	rolloutsDesc = prometheus.NewDesc("vmapp_rollouts", "Rollouts, by state.", []string{"state"}, nil)
	machinesDesc = prometheus.NewDesc("vmapp_rollout_machines", "Machines of the active rollouts, by wave (from 1) and result (their state in the rollout).",
		[]string{"wave", "result"}, nil)
)

// collector reads the rollouts at each scrape: there are few (they are
// made by people), and the machines of the active ones only are counted.
type collector struct{ s *Service }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rolloutsDesc
	ch <- machinesDesc
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	byState := map[string]int{}
	type key struct{ wave, result string }
	machines := map[key]int{}
	_ = c.s.o.DB.View(context.Background(), func(tx *state.Tx) error {
		return state.Rollouts.Scan(tx, nil, nil, func(_ []byte, r *pb.Rollout) (bool, error) {
			byState[r.State]++
			if pb.RolloutActive(r.State) {
				for _, m := range r.Machines {
					machines[key{strconv.Itoa(int(m.Wave) + 1), m.State}]++
				}
			}
			return true, nil
		})
	})
	for _, st := range pb.RolloutStates {
		ch <- prometheus.MustNewConstMetric(rolloutsDesc, prometheus.GaugeValue, float64(byState[st]), st)
	}
	for k, n := range machines {
		ch <- prometheus.MustNewConstMetric(machinesDesc, prometheus.GaugeValue, float64(n), k.wave, k.result)
	}
}
