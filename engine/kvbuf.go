package engine

import (
	"math"

	"github.com/lmrun/lmrun/dtype"
)

// kvBuf is one layer's keys (or values) for rows positions, stored head by head:
// element i of KV head h at position p is at (h·rows + p)·hd + i, so one head's
// positions are one contiguous run that attention streams through (a position-major
// layout would make each head read hd elements a kvDim stride apart, which the hardware
// prefetchers do not follow). Elements are float32 or, in a half-size cache, IEEE
// binary16; exactly one of f and h is set.
type kvBuf struct {
	f           []float32
	h           []uint16
	rows, heads int
	hd          int
}

func newKV(half bool, heads, hd, rows int) kvBuf {
	b := kvBuf{rows: rows, heads: heads, hd: hd}
	if half {
		b.h = make([]uint16, heads*rows*hd)
	} else {
		b.f = make([]float32, heads*rows*hd)
	}
	return b
}

// off returns the offset of head h at position pos.
func (b kvBuf) off(h, pos int) int { return (h*b.rows + pos) * b.hd }

// bytes returns the memory the buffer occupies.
func (b kvBuf) bytes() int64 { return int64(len(b.f))*4 + int64(len(b.h))*2 }

// put stores src, whole positions of heads·hd elements each, from position pos on,
// rounding to binary16 in a half cache.
func (b kvBuf) put(pos int, src []float32) {
	kvd := b.heads * b.hd
	for t := 0; t < len(src)/kvd; t++ {
		row := src[t*kvd : (t+1)*kvd]
		for h := 0; h < b.heads; h++ {
			o := b.off(h, pos+t)
			x := row[h*b.hd : (h+1)*b.hd]
			if b.h == nil {
				copy(b.f[o:o+b.hd], x)
				continue
			}
			dst := b.h[o : o+b.hd]
			for i, v := range x {
				dst[i] = toHalf(v)
			}
		}
	}
}

// copyRows copies n positions from position sp of c (of the same kind and head shape)
// to position dp of b.
func (b kvBuf) copyRows(dp int, c kvBuf, sp, n int) {
	m := n * b.hd
	for h := 0; h < b.heads; h++ {
		do, so := b.off(h, dp), c.off(h, sp)
		if b.h == nil {
			copy(b.f[do:do+m], c.f[so:so+m])
		} else {
			copy(b.h[do:do+m], c.h[so:so+m])
		}
	}
}

// grow returns a buffer of rows positions holding the first keep positions of b.
func (b kvBuf) grow(rows, keep int) kvBuf {
	nb := newKV(b.h != nil, b.heads, b.hd, rows)
	nb.copyRows(0, b, 0, keep)
	return nb
}

// toHalf is dtype.F32ToF16, the same bits, with a short path for the values whose
// exponent is a normal binary16 one before rounding (|v| in [2⁻¹⁴, 2¹⁶)), nearly all of
// a cache's: round to nearest even by adding 0xfff and the kept mantissa's lowest bit
// below the 13 dropped ones, then rebias; a carry out of the mantissa steps the exponent
// up, to the infinity when it was the largest.
func toHalf(v float32) uint16 {
	b := math.Float32bits(v)
	a := b & 0x7fffffff
	if a < 0x38800000 || a >= 0x47800000 {
		return dtype.F32ToF16(v)
	}
	a += 0xfff + (a>>13)&1
	return uint16(b>>16)&0x8000 | uint16((a-(127-15)<<23)>>13)
}
