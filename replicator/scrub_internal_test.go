package replicator

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	statepb "github.com/vmapp/vmapp/proto/vmapp/state/v1"
)

// TestNextDeep is the deep scrub's schedule, on a clock of its own: which
// replica is read back next, and when.
func TestNextDeep(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	const period = 24 * time.Hour
	// rep is replica i of eastus, completed done ago, deep-checked
	// checked ago (<0: never).
	rep := func(i int32, phase statepb.ReplicaPhase, done, checked time.Duration) *statepb.Replica {
		r := &statepb.Replica{Tenant: "t", Gallery: "g", Application: "a", Version: "1.0.0", Region: "eastus", Index: i, Phase: phase,
			CompleteTime: timestamppb.New(now.Add(-done))}
		if checked >= 0 {
			r.DeepVerifyTime = timestamppb.New(now.Add(-checked))
		}
		return r
	}
	const never = -1
	h := time.Hour
	for _, c := range []struct {
		name    string
		recs    []*statepb.Replica
		retryAt map[int32]time.Duration // replica -> retry in
		next    int32                   // -1: none
		wait    time.Duration
		due     int
	}{
		{name: "nothing", next: -1, wait: period},
		{name: "nothing completed", recs: []*statepb.Replica{
			rep(0, copying, 0, never), rep(1, failed, 0, never), rep(2, pending, 0, never), rep(3, deleting, 0, never),
		}, next: -1, wait: period},
		{name: "never checked first", recs: []*statepb.Replica{rep(0, completed, 100*h, 30*h), rep(1, completed, 2*h, never)}, next: 1, due: 2},
		{name: "never checked: the longest completed first", recs: []*statepb.Replica{rep(0, completed, 1*h, never), rep(1, completed, 5*h, never), rep(2, completed, 3*h, never)}, next: 1, due: 3},
		{name: "never checked, completed together: by key", recs: []*statepb.Replica{rep(2, completed, h, never), rep(1, completed, h, never)}, next: 1, due: 2},
		{name: "the oldest check first", recs: []*statepb.Replica{rep(0, completed, 100*h, 30*h), rep(1, completed, 100*h, 48*h), rep(2, completed, 100*h, 25*h)}, next: 1, due: 3},
		{name: "due at exactly the period", recs: []*statepb.Replica{rep(0, completed, 100*h, period)}, next: 0, due: 1},
		{name: "all checked within the period: wait for the first due", recs: []*statepb.Replica{rep(0, completed, 100*h, 20*h), rep(1, completed, 100*h, 2*h), rep(2, copying, 0, never)},
			next: -1, wait: 4 * h},
		{name: "a replica whose check failed waits for its retry", recs: []*statepb.Replica{rep(0, completed, 100*h, 48*h), rep(1, completed, 100*h, 30*h)},
			retryAt: map[int32]time.Duration{0: 10 * time.Minute}, next: 1, due: 2},
		{name: "all due waiting to retry: wait for the first retry", recs: []*statepb.Replica{rep(0, completed, 100*h, 48*h), rep(1, completed, 100*h, never)},
			retryAt: map[int32]time.Duration{0: 10 * time.Minute, 1: 20 * time.Minute}, next: -1, wait: 10 * time.Minute, due: 2},
		{name: "a retry time past is no delay", recs: []*statepb.Replica{rep(0, completed, 100*h, 48*h)},
			retryAt: map[int32]time.Duration{0: -time.Minute}, next: 0, due: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			retryAt := map[string]time.Time{}
			for i, in := range c.retryAt {
				for _, r := range c.recs {
					if r.Index == i {
						retryAt[recordKey(r)] = now.Add(in)
					}
				}
			}
			next, wait, due := nextDeep(c.recs, now, period, retryAt)
			got := int32(-1)
			if next != nil {
				got = next.Index
			}
			if got != c.next || wait != c.wait || due != c.due {
				t.Fatalf("next replica %d, wait %v, %d due; want %d, %v, %d", got, wait, due, c.next, c.wait, c.due)
			}
		})
	}
}
