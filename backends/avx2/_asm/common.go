package main

import (
	"fmt"
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// tailMask is 8 all-ones int32 lanes followed by 8 zero lanes: the 32 bytes at
// tailMask+4·(8-r) select the first r lanes of a vector.
var tailMask Mem

// vconsts are 32-byte constants (a value in all 8 lanes), by name.
var vconsts = map[string]Mem{}

func constants() {
	tailMask = GLOBL("tailmask", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		v := uint32(0)
		if i < 8 {
			v = 0xffffffff
		}
		DATA(4*i, U32(v))
	}
}

// vf32 returns a 32-byte read-only constant holding v in every lane.
func vf32(name string, v float32) Mem {
	return vconst(name, math.Float32bits(v))
}

func vconst(name string, bits uint32) Mem {
	if m, ok := vconsts[name]; ok {
		return m
	}
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 8; i++ {
		DATA(4*i, U32(bits))
	}
	vconsts[name] = m
	return m
}

// labels makes unique label names within one function.
type labels struct {
	fn string
	n  int
}

func (l *labels) next(what string) string {
	l.n++
	return fmt.Sprintf("%s_%s%d", l.fn, what, l.n)
}

// maskAddr returns the address of the tail mask for rem (1..7) lanes.
func maskAddr(rem Register) Mem {
	off, base := GP64(), GP64()
	LEAQ(tailMask, base)
	MOVQ(U32(8), off)
	SUBQ(rem, off)
	return Mem{Base: base, Index: off, Scale: 4}
}

// loadMask sets m to the tail mask for rem (1..7) lanes.
func loadMask(rem Register, m VecVirtual) {
	VMOVUPS(maskAddr(rem), m)
}

// hsum reduces the 8 lanes of y into the low lane of y's XMM half; y's other lanes are
// clobbered.
func hsum(y VecVirtual) Register {
	x, t := y.AsX(), XMM()
	VEXTRACTF128(U8(1), y, t)
	VADDPS(t, x, x)
	VMOVHLPS(x, x, t)
	VADDPS(t, x, x)
	VMOVSHDUP(x, t)
	VADDSS(t, x, x)
	return x
}

// hmax is hsum with max.
func hmax(y VecVirtual) Register {
	x, t := y.AsX(), XMM()
	VEXTRACTF128(U8(1), y, t)
	VMAXPS(t, x, x)
	VMOVHLPS(x, x, t)
	VMAXPS(t, x, x)
	VMOVSHDUP(x, t)
	VMAXSS(t, x, x)
	return x
}

// hsumPairwise reduces y like one lane of reduce4 — ((y0+y1)+(y2+y3))+((y4+y5)+(y6+y7))
// — so that a row's result does not depend on whether it was computed in a block of
// four or alone (the engine promises bit-identical results for any thread count, and
// the thread split decides which rows end up in a tail).
func hsumPairwise(y VecVirtual) Register {
	VHADDPS(y, y, y)
	VHADDPS(y, y, y)
	t := XMM()
	VEXTRACTF128(U8(1), y, t)
	VADDSS(t, y.AsX(), y.AsX())
	return y.AsX()
}

// reduce4 returns an XMM register holding the lane sums of a0..a3 (all clobbered).
func reduce4(a0, a1, a2, a3 VecVirtual) Register {
	VHADDPS(a1, a0, a0)
	VHADDPS(a3, a2, a2)
	VHADDPS(a2, a0, a0)
	t := XMM()
	VEXTRACTF128(U8(1), a0, t)
	VADDPS(t, a0.AsX(), a0.AsX())
	return a0.AsX()
}

// zero clears vector registers.
func zero(vs ...VecVirtual) {
	for _, v := range vs {
		VXORPS(v, v, v)
	}
}

func ymms(n int) []VecVirtual {
	v := make([]VecVirtual, n)
	for i := range v {
		v[i] = YMM()
	}
	return v
}

// bytesOf loads an element count or stride parameter and converts it to bytes.
func bytesOf(name string) Register {
	r := GP64()
	Load(Param(name), r)
	SHLQ(U8(2), r)
	return r
}

// fn starts a kernel: TEXT, its doc and //go:noescape (no kernel keeps a pointer).
func fn(name, sig string, doc ...string) *labels {
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	Doc(doc...)
	return &labels{fn: name}
}

// spreadRows returns pointers to the rows w, w+gap, w+2·gap and w+3·gap of a matrix
// whose rows are ldwBytes apart (the spread kernels' four streams; gap from Param("gap")).
func spreadRows(w, ldwBytes Register) []Register {
	wr := make([]Register, 4)
	wr[0] = w
	gw := Load(Param("gap"), GP64())
	IMULQ(ldwBytes, gw) // gap rows, in bytes
	for r := 1; r < 4; r++ {
		wr[r] = GP64()
		LEAQ(Mem{Base: wr[r-1], Index: gw, Scale: 1}, wr[r])
	}
	return wr
}

// storeSpread stores the four lanes of h at dst, dst+gap, dst+2·gap, dst+3·gap floats
// (dst and gap from Param), then advances Param("dst") by one float. g holds gap·4.
func storeSpread(h, g Register) {
	d, d3 := Load(Param("dst"), GP64()), GP64()
	VMOVSS(h, Mem{Base: d})
	VEXTRACTPS(U8(1), h, Mem{Base: d, Index: g, Scale: 1})
	VEXTRACTPS(U8(2), h, Mem{Base: d, Index: g, Scale: 2})
	LEAQ(Mem{Base: d, Index: g, Scale: 2}, d3)
	VEXTRACTPS(U8(3), h, Mem{Base: d3, Index: g, Scale: 1})
	ADDQ(U8(4), d)
	Store(d, Param("dst"))
}

// nextSpreadBlock advances the four row pointers by a row and loops to label while
// Param("blocks"), decremented, is not zero.
func nextSpreadBlock(wr []Register, ldwBytes Register, label string) {
	for _, w := range wr {
		ADDQ(ldwBytes, w)
	}
	n := Load(Param("blocks"), GP64())
	DECQ(n)
	Store(n, Param("blocks"))
	JNZ(LabelRef(label))
}

// initGroups starts a GEMM's walk over its row groups: no group done (goff, the byte
// offset of the group's first result, 0), the weights at w, groups of them left.
func initGroups(goff, wcur, gleft Mem) {
	z := GP64()
	XORQ(z, z)
	MOVQ(z, goff)
	w := Load(Param("w"), GP64())
	MOVQ(w, wcur)
	g := Load(Param("groups"), GP64())
	MOVQ(g, gleft)
}

// startGroup starts a row group of a GEMM: the tokens from x again, the results at dst +
// goff, T tokens left. It returns the register holding goff.
func startGroup(xcur, dcur, tleft, goff Mem) Register {
	x := Load(Param("x"), GP64())
	MOVQ(x, xcur)
	d := Load(Param("dst"), GP64())
	o := GP64()
	MOVQ(goff, o)
	ADDQ(o, d)
	MOVQ(d, dcur)
	n := Load(Param("T"), GP64())
	MOVQ(n, tleft)
	return o
}
