package fleet

import (
	"context"

	"github.com/vmapp/vmapp/state"
)

// InventoryCounts counts the applications on machines by region and
// instance-view state, as the agents last reported them, in this node's
// copy of the state (for vmapp_applications).
func (f *Fleet) InventoryCounts(ctx context.Context) (counts map[state.RegionState]int, err error) {
	err = f.db.View(ctx, func(tx *state.Tx) error {
		counts, err = state.InventoryCounts(tx)
		return err
	})
	return counts, err
}
