package tokenizer

import "math/bits"

// pairTable is an open-addressing hash table from a pair of ids (left<<32 | right)
// to a uint64, for the merge tables: faster to build and to probe than a Go map,
// which matters because every Encode probes it once or more per byte. Keys and
// values are separate arrays: most probes are misses (pairs that do not merge) and
// touch only the keys.
type pairTable struct {
	keys  []uint64 // emptyPair where free
	vals  []uint64
	shift uint8 // 64 - log2(len(keys))
}

// emptyPair marks a free slot; no pair of int32 ids has it.
const emptyPair = ^uint64(0)

// newPairTable returns a table for up to n entries (load factor ≤ 1/2).
func newPairTable(n int) pairTable {
	size := 16
	for size < 2*n {
		size *= 2
	}
	keys := make([]uint64, size)
	for i := range keys {
		keys[i] = emptyPair
	}
	return pairTable{keys: keys, vals: make([]uint64, size), shift: uint8(64 - bits.TrailingZeros(uint(size)))}
}

func (t *pairTable) slot(k uint64) uint64 { return (k * 0x9E3779B97F4A7C15) >> t.shift }

// get returns the value of k.
func (t *pairTable) get(k uint64) (uint64, bool) {
	mask := uint64(len(t.keys) - 1)
	for i := t.slot(k); ; i = (i + 1) & mask {
		switch t.keys[i] {
		case k:
			return t.vals[i], true
		case emptyPair:
			return 0, false
		}
	}
}

// insert adds k unless it is present; it reports whether it did. The table must
// have been sized for every insertion.
func (t *pairTable) insert(k, v uint64) bool {
	mask := uint64(len(t.keys) - 1)
	for i := t.slot(k); ; i = (i + 1) & mask {
		switch t.keys[i] {
		case k:
			return false
		case emptyPair:
			t.keys[i], t.vals[i] = k, v
			return true
		}
	}
}
