package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genStreamZMM emits backends/avx512's 16-lane forms of the kernels outside the
// products: the width-generic generators (the same code as backends/avx2's, with ZMM
// registers and opmask tails) and the ZMM forms of quantQ8 and quantQ8K.
func genStreamZMM() {
	genDot(zmmW)
	genAttention(zmmW, false)
	genAttention(zmmW, true)
	genReductions(zmmW)
	genElementwise(zmmW)
	genRoPENeoX(zmmW)
	genRoPE(zmmW)
	genQuantizeQ8Z()
	genQuantizeQ8KZ()
}

// genQuantizeQ8Z emits quantQ8 in ZMM: backends/avx2's quantizer (genQuantizeQ8, whose
// doc gives the arithmetic; the same scalar part, q8Scale) on a block of 32 floats as two
// 16-lane vectors, the non-finite check in opmasks, the rounding half away from zero by
// an addition rounded toward zero (EVEX embedded rounding), VPMOVSDB to bytes.
// Its bytes are the reference's, as avx2's are.
func genQuantizeQ8Z() {
	lb := fn("quantQ8", "func(dst *byte, x *float32, nb int) int",
		"quantQ8 quantizes the nb blocks of 32 floats at x to q8_0 at dst, exactly as",
		"dtype.QuantizeRowQ8_0, stopping before the first block with a non-finite element or",
		"1/d; it returns how many blocks it wrote.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	done := GP64()
	XORQ(done, done)
	absm := vconst("absmask", 0x7fffffff)
	inf := vconst("inff", 0x7f800000)
	abs, infz, half, sign := ZMM(), ZMM(), ZMM(), ZMM()
	VBROADCASTSS(absm, abs)
	VBROADCASTSS(inf, infz)
	VBROADCASTSS(vf32("halff", 0.5), half)
	VBROADCASTSS(vconst("signmask", 0x80000000), sign)
	loop, end := lb.next("block"), lb.next("end")
	Label(loop)
	CMPQ(done, nb)
	JGE(LabelRef(end))
	v, a := ZMM(), ZMM()
	v1, a1 := ZMM(), ZMM()
	VMOVUPS(Mem{Base: x}, v)
	VMOVUPS(Mem{Base: x, Disp: 64}, v1)
	VPANDD(abs, v, a)
	VPANDD(abs, v1, a1)
	b0, b1 := K(), K()
	VCMPPS(U8(5), infz, a, b0) // !(|x| < ∞): infinity or NaN
	VCMPPS(U8(5), infz, a1, b1)
	KORTESTW(b0, b1)
	JNZ(LabelRef(end))
	VMAXPS(a1, a, a)
	h := zmmW.hmax(a) // amax
	id := q8Scale(h, dst, inf, end)
	idz := ZMM()
	VBROADCASTSS(id, idz)
	for i, vi := range []VecVirtual{v, v1} {
		// round(p) with ties away from zero is trunc(p ± ½) with the sum rounded toward
		// zero: at least the next integer exactly when the fraction is at least ½, and
		// below it otherwise (the rounding never crosses an integer). Five vector
		// instructions rather than ten (truncation, the fraction, its test and ±1):
		// one thread, 768 and 3072 floats: 243–248 → 183–184 ns and 963–967 → 720–725 ns.
		p, g := ZMM(), ZMM()
		VMULPS(idz, vi, p)
		VPANDD(sign, p, g)
		VPORD(half, g, g)      // ±½ with p's sign
		VADDPS_RZ_SAE(g, p, g) // p ± ½, toward zero
		VCVTTPS2DQ(g, g)
		VPMOVSDB(g, Mem{Base: dst, Disp: 2 + 16*i})
	}
	ADDQ(U8(128), x)
	ADDQ(U8(34), dst)
	INCQ(done)
	JMP(LabelRef(loop))
	Label(end)
	Store(done, ReturnIndex(0))
	VZEROUPPER()
	RET()
}
