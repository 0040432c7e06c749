package tokenizer

import (
	"hash/maphash"
	"math/bits"
)

// strTable is an open-addressing hash table from the strings of a slice to their
// lowest index, built in one pass: cheaper than a map[string]int32 for the one-off
// lookups of loading a vocabulary. Each slot holds 32 bits of the hash and index+1.
type strTable struct {
	keys  []string
	slots []uint64 // 0: free; else hash>>32<<32 | index+1
	seed  maphash.Seed
	shift uint8
	dup   []bool // dup[i]: keys[i] equals a key of a lower index
}

func newStrTable(keys []string) strTable {
	size := 16
	for size < 2*len(keys) {
		size *= 2
	}
	t := strTable{keys: keys, slots: make([]uint64, size), seed: maphash.MakeSeed(), shift: uint8(64 - bits.TrailingZeros(uint(size))), dup: make([]bool, len(keys))}
	mask := uint64(size - 1)
outer:
	for i, k := range keys {
		h := maphash.String(t.seed, k)
		tag := h >> 32 << 32
		for s := (h * 0x9E3779B97F4A7C15) >> t.shift; ; s = (s + 1) & mask {
			v := t.slots[s]
			if v == 0 {
				t.slots[s] = tag | uint64(i+1)
				continue outer
			}
			if v>>32<<32 == tag && keys[uint32(v)-1] == k {
				t.dup[i] = true // the lower index stays
				continue outer
			}
		}
	}
	return t
}

// get returns the lowest index of k.
func (t *strTable) get(k string) (int32, bool) {
	h := maphash.String(t.seed, k)
	tag := h >> 32 << 32
	mask := uint64(len(t.slots) - 1)
	for s := (h * 0x9E3779B97F4A7C15) >> t.shift; ; s = (s + 1) & mask {
		v := t.slots[s]
		if v == 0 {
			return 0, false
		}
		if v>>32<<32 == tag && t.keys[uint32(v)-1] == k {
			return int32(uint32(v) - 1), true
		}
	}
}

// lowest reports whether keys[id] has no duplicate of a lower index.
func (t *strTable) lowest(id int32) bool { return !t.dup[id] }
