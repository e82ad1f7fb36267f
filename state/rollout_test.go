package state

import (
	"context"
	"errors"
	"fmt"
	"testing"

	pb "github.com/vmapp/vmapp/proto/vmapp/v1"
)

// TestRolloutPins follows the rollout steps of the scenario: a rollout
// pins the machines it moves, and one that succeeds writes its version
// into the scale set's profile and drops its pins and its place among the
// active rollouts.
func TestRolloutPins(t *testing.T) {
	steps := scenario()
	base := len(steps) - 3 - len(rollouts(0))
	db := openTemp(t)
	read := func() (pin string, active int, profile string) {
		t.Helper()
		err := db.View(context.Background(), func(tx *Tx) error {
			p, ok, err := RolloutPins.Get(tx, RolloutPinKey("t", "r-0", "g/a"))
			if ok {
				pin = p.Rollout + "@" + p.Version
			}
			rs, err2 := tx.ActiveRolloutsOf("t", "g/a")
			active = len(rs)
			ss, err3 := tx.ScaleSet("t", "r")
			profile = ss.GetApplicationProfile().GetGalleryApplications()[0].GetPackageReferenceId()
			return errors.Join(err, err2, err3)
		})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	for i, s := range steps[:base+10] {
		err := db.Propose(context.Background(), command(i, s))
		checkOutcome(t, i, s, err)
		switch i - base {
		case 3:
			if pin, active, profile := read(); pin != "" || active != 1 || profile != "g/a/1.0.0" {
				t.Fatalf("created: pin %q, %d active, profile %s", pin, active, profile)
			}
		case 7:
			if pin, active, _ := read(); pin != "ro@2.0.0" || active != 1 {
				t.Fatalf("r-0 updating: pin %q, %d active", pin, active)
			}
		case 9:
			if pin, active, profile := read(); pin != "" || active != 0 || profile != "g/a/2.0.0" {
				t.Fatalf("succeeded: pin %q, %d active, profile %s", pin, active, profile)
			}
		}
	}
	var r *pb.Rollout
	db.View(context.Background(), func(tx *Tx) (err error) {
		r, _, err = Rollouts.Get(tx, RolloutKey("t", "ro"))
		return err
	})
	if r.State != pb.RolloutSucceeded || r.Etag != fmt.Sprintf(`"e%d"`, base+9) || r.CreateTime.AsTime().Unix() != 1_700_000_000+int64(base+3) {
		t.Fatalf("stored rollout: %v", r)
	}
}
