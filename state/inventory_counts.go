package state

import "bytes"

// RegionState is a region and an instance-view state (lower case, as
// InventoryByState keys it).
type RegionState struct{ Region, State string }

// InventoryCounts counts the inventory's entries of every tenant by region
// and state, from the keys of InventoryByRegion and InventoryByState
// alone: no entry is decoded, and it holds one map entry per entry
// (vmapp_applications, read at each scrape).
func InventoryCounts(tx *Tx) (map[RegionState]int, error) {
	region := map[string]string{} // entry key → its region
	err := scanBucket(InventoryByRegion.bucket(tx), nil, nil, func(k, rk []byte) (bool, error) {
		region[string(rk)] = keyPart(k, 1)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	counts := map[RegionState]int{}
	err = scanBucket(InventoryByState.bucket(tx), nil, nil, func(k, rk []byte) (bool, error) {
		counts[RegionState{region[string(rk)], keyPart(k, 1)}]++
		return true, nil
	})
	return counts, err
}

// keyPart is the i-th of a key's NUL-separated parts.
func keyPart(k []byte, i int) string {
	for ; i > 0; i-- {
		j := bytes.IndexByte(k, 0)
		if j < 0 {
			return ""
		}
		k = k[j+1:]
	}
	if j := bytes.IndexByte(k, 0); j >= 0 {
		k = k[:j]
	}
	return string(k)
}
