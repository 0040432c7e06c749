package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genRoPE emits the rotation of adjacent pairs. A vector holds 4 pairs
// [a0 b0 a1 b1 a2 b2 a3 b3]; with C = [c0 c0 c1 c1 ...], S = [s0 s0 s1 s1 ...] and
// X' = X with each pair swapped, FMADDSUB gives X·C ∓ X'·S: a·c - b·s in even lanes,
// b·c + a·s in odd ones. The angles are shared by every head, so C and S are built once
// per 4 pairs and applied to all heads.
func genRoPE() {
	lb := fn("rope", "func(x *float32, heads int, headDim int, cos, sin *float32, quads int)",
		"rope rotates pairs (2i, 2i+1), i < 4·quads, of each of heads heads of width headDim in x.")
	x := Load(Param("x"), GP64())
	cs := Load(Param("cos"), GP64())
	sn := Load(Param("sin"), GP64())
	q := Load(Param("quads"), GP64())
	hdim := bytesOf("headDim")
	dup := func(p Register) VecVirtual {
		t, lo, hi := XMM(), XMM(), XMM()
		VMOVUPS(Mem{Base: p}, t)
		VUNPCKLPS(t, t, lo)
		VUNPCKHPS(t, t, hi)
		y := YMM()
		VINSERTF128(U8(1), hi, lo.AsY(), y)
		return y
	}
	top, done := lb.next("quad"), lb.next("done")
	Label(top)
	TESTQ(q, q)
	JZ(LabelRef(done))
	c, s := dup(cs), dup(sn)
	hp := GP64()
	MOVQ(x, hp)
	h := Load(Param("heads"), GP64())
	heads := lb.next("heads")
	Label(heads)
	v, sw := YMM(), YMM()
	VMOVUPS(Mem{Base: hp}, v)
	VPERMILPS(U8(0xb1), v, sw)
	VMULPS(s, sw, sw)
	VFMADDSUB213PS(sw, c, v)
	VMOVUPS(v, Mem{Base: hp})
	ADDQ(hdim, hp)
	DECQ(h)
	JNZ(LabelRef(heads))
	ADDQ(U8(32), x)
	ADDQ(U8(16), cs)
	ADDQ(U8(16), sn)
	DECQ(q)
	JMP(LabelRef(top))
	Label(done)
	VZEROUPPER()
	RET()
}
