package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// width is the vector width a width-generic generator (the elementwise kernels, the
// reductions, softmax's passes, dot and attention's wsum) emits for: 8 float32 lanes
// in YMM registers with VEX instructions and VMASKMOVPS tails (backends/avx2), or 16
// lanes in ZMM registers with EVEX instructions and opmask tails (backends/avx512).
// The algorithm — the loops, the polynomials, the order of each lane's operations —
// is the same code for both, so what the AVX2 tests exercise is what runs on AVX-512.
//
// ZMM code uses only AVX-512 F instructions (the backend requires F, BW and VL, not
// DQ): VPANDD, VPXORD and VPORD for the bitwise operations, VEXTRACTF64X4 for the
// upper half, and no VEX-only instruction on a register past 15.
type width struct{ zmm bool }

var (
	ymmW = width{}
	zmmW = width{zmm: true}
)

// lanes is the float32 lanes of one vector.
func (w width) lanes() int {
	if w.zmm {
		return 16
	}
	return 8
}

// bytes is the size of one vector.
func (w width) bytes() int { return 4 * w.lanes() }

// vec allocates a vector register.
func (w width) vec() VecVirtual {
	if w.zmm {
		return ZMM()
	}
	return YMM()
}

// vecs allocates n vector registers.
func (w width) vecs(n int) []VecVirtual {
	v := make([]VecVirtual, n)
	for i := range v {
		v[i] = w.vec()
	}
	return v
}

// zero clears vector registers.
func (w width) zero(vs ...VecVirtual) {
	for _, v := range vs {
		if w.zmm {
			VPXORD(v, v, v)
		} else {
			VXORPS(v, v, v)
		}
	}
}

// xor computes dst = a ^ b.
func (w width) xor(a Op, b, dst VecVirtual) {
	if w.zmm {
		VPXORD(a, b, dst)
	} else {
		VXORPS(a, b, dst)
	}
}

// bcastMem broadcasts the float32 at m into a new register.
func (w width) bcastMem(m Mem) VecVirtual {
	v := w.vec()
	VBROADCASTSS(m, v)
	return v
}

// bcast broadcasts the float32 parameter name into a new register.
func (w width) bcast(name string) VecVirtual {
	b, err := Param(name).Resolve()
	if err != nil {
		panic(err)
	}
	return w.bcastMem(b.Addr)
}

// constant returns the named constant (constBits) as an operand: the 32-byte memory
// constant for YMM; for ZMM a new register it is broadcast into (one load, as the
// memory operand is).
func (w width) constant(name string) Op {
	if w.zmm {
		return w.bcastMem(vconst(name, constBits[name]))
	}
	return vconst(name, constBits[name])
}

// half reduces a ZMM to the YMM of its low half plus its high half (y unchanged for
// YMM), lane i of the result holding lanes i and i+8 combined by op.
func (w width) half(y VecVirtual, op func(a, b, dst Op)) VecVirtual {
	if !w.zmm {
		return y
	}
	t := YMM()
	VEXTRACTF64X4(U8(1), y, t)
	op(t, y.AsY(), t)
	return t
}

// hsum reduces the lanes of y into the low lane of an XMM register (y clobbered): for
// YMM avx2's hsum, for ZMM the two halves added first.
func (w width) hsum(y VecVirtual) Register {
	if !w.zmm {
		return hsum(y)
	}
	return hsumEVEX(w.half(y, func(a, b, dst Op) { VADDPS(a, b, dst) }))
}

// hmax is hsum with max.
func (w width) hmax(y VecVirtual) Register {
	if !w.zmm {
		return hmax(y)
	}
	return hmaxEVEX(w.half(y, func(a, b, dst Op) { VMAXPS(a, b, dst) }))
}

// hsumEVEX is hsum in instructions that have EVEX forms (so that any of Y0–Y31 will
// do): the same sums in the same order.
func hsumEVEX(y VecVirtual) Register {
	x, t := y.AsX(), XMM()
	VEXTRACTF32X4(U8(1), y, t)
	VADDPS(t, x, x)
	VMOVHLPS(x, x, t)
	VADDPS(t, x, x)
	VMOVSHDUP(x, t)
	VADDSS(t, x, x)
	return x
}

// hmaxEVEX is hsumEVEX with max.
func hmaxEVEX(y VecVirtual) Register {
	x, t := y.AsX(), XMM()
	VEXTRACTF32X4(U8(1), y, t)
	VMAXPS(t, x, x)
	VMOVHLPS(x, x, t)
	VMAXPS(t, x, x)
	VMOVSHDUP(x, t)
	VMAXSS(t, x, x)
	return x
}

// laneMasks holds, for r = 0..15, the 16-bit opmask of lanes 0..r-1: the ZMM tail of r
// elements.
var laneMasks Mem

// laneMask sets a new opmask register to the first rem (1..15) lanes.
func laneMask(rem Register) Register {
	if laneMasks.Symbol.Name == "" {
		laneMasks = GLOBL("lanemasks", RODATA|NOPTR)
		for r := 0; r < 16; r++ {
			DATA(2*r, U16(uint16(1)<<r-1))
		}
	}
	k, tb := K(), GP64()
	LEAQ(laneMasks, tb)
	KMOVW(Mem{Base: tb, Index: rem, Scale: 2}, k)
	return k
}

// done ends a width-generic kernel: VZEROUPPER (needed after either width's upper
// halves are dirtied) and RET.
func (w width) done() {
	VZEROUPPER()
	RET()
}
