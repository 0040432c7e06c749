package engine

import "github.com/lmrun/lmrun/dtype"

// kvBuf is one layer's keys (or values): rows of kvDim elements stored as float32 or,
// in a half-size cache, as IEEE binary16. Exactly one of f and h is set.
type kvBuf struct {
	f []float32
	h []uint16
}

func newKV(half bool, n int) kvBuf {
	if half {
		return kvBuf{h: make([]uint16, n)}
	}
	return kvBuf{f: make([]float32, n)}
}

// size returns the number of elements.
func (b kvBuf) size() int { return max(len(b.f), len(b.h)) }

// bytes returns the memory the buffer occupies.
func (b kvBuf) bytes() int64 { return int64(len(b.f))*4 + int64(len(b.h))*2 }

// put stores src at element offset off, rounding to binary16 in a half cache.
func (b kvBuf) put(off int, src []float32) {
	if b.h == nil {
		copy(b.f[off:off+len(src)], src)
		return
	}
	dst := b.h[off : off+len(src)]
	for i, x := range src {
		dst[i] = dtype.F32ToF16(x)
	}
}

// copyFrom copies n elements from offset so of c (of the same kind) to offset do.
func (b kvBuf) copyFrom(do int, c kvBuf, so, n int) {
	if b.h == nil {
		copy(b.f[do:do+n], c.f[so:so+n])
		return
	}
	copy(b.h[do:do+n], c.h[so:so+n])
}

// grow returns a buffer of n elements holding the first keep elements of b.
func (b kvBuf) grow(n, keep int) kvBuf {
	nb := newKV(b.h != nil, n)
	nb.copyFrom(0, b, 0, keep)
	return nb
}
