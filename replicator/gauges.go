package replicator

import (
	"context"
	"sync"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// phaseCount counts replica records not completed by region and phase.
type phaseCount map[string]map[statepb.ReplicaPhase]int

func (c phaseCount) add(rec *statepb.Replica) {
	if c[rec.Region] == nil {
		c[rec.Region] = map[statepb.ReplicaPhase]int{}
	}
	c[rec.Region][rec.Phase]++
}

// setReplicaGauges sets vmapp_replicas from the records not completed
// (counted by dispatch as it reads them) and the records wanted: the
// wanted records that are not pending, copying or failed are completed.
// r.mu is held.
func (r *Replicator) setReplicaGauges(c phaseCount) {
	for _, region := range r.topo.Names() {
		active := 0
		for _, p := range replicaStates {
			if p == statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED {
				continue
			}
			n := c[region][p]
			if p != statepb.ReplicaPhase_REPLICA_PHASE_DELETING {
				active += n
			}
			r.m.replicas.WithLabelValues(region, phaseLabel(p)).Set(float64(n))
		}
		done := max(0, r.wantedIn[region]-active)
		r.m.replicas.WithLabelValues(region, phaseLabel(statepb.ReplicaPhase_REPLICA_PHASE_COMPLETED)).Set(float64(done))
	}
}

// clearReplicaGauges zeroes vmapp_replicas when the replicator stops (in
// a cluster, when the node stops leading): the new leader's count is the
// one that holds, and alerts take the maximum over the nodes.
func (r *Replicator) clearReplicaGauges() {
	for _, region := range r.topo.Names() {
		for _, p := range replicaStates {
			r.m.replicas.WithLabelValues(region, phaseLabel(p)).Set(0)
		}
	}
}

// lagSeen remembers the version regions whose replication lag was
// observed, so that two replicas completing a region at once count once.
// It forgets everything past lagSeenMax entries: at worst a region counts
// twice, long after.
type lagSeen struct {
	mu   sync.Mutex
	seen map[string]bool
}

const lagSeenMax = 4096

func (l *lagSeen) first(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen[key] {
		return false
	}
	if l.seen == nil || len(l.seen) >= lagSeenMax {
		l.seen = map[string]bool{}
	}
	l.seen[key] = true
	return true
}

// observeLag records, in vmapp_replication_lag_seconds, the time from the
// version's publication to now when rec's completion completed its region
// (the first time only: not a repair, not a region already counted).
func (r *Replicator) observeLag(ctx context.Context, rec *statepb.Replica) {
	v, err := r.cat.GetVersion(ctx, rec.Tenant, rec.Gallery, rec.Application, rec.Version)
	published := v.GetPublishingProfile().GetPublishedDate()
	if err != nil || published == nil {
		return
	}
	st, err := r.Status(v)
	if err != nil {
		return
	}
	for _, s := range st.Summary {
		if s.Region == rec.Region && s.State == pb.ReplicationCompleted && r.lag.first(prefixOf(v)+"\x00"+rec.Region) {
			r.m.lag.WithLabelValues(rec.Region).Observe(max(0, r.now().Sub(published.AsTime()).Seconds()))
		}
	}
}
