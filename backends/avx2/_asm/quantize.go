package main

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genQuantizeQ8 emits quantQ8, the activation quantizer of the q8-activation path. It
// computes what dtype.QuantizeRowQ8_0 (ggml's quantize_row_q8_0_ref) computes, byte for
// byte, for every block whose elements and 1/d are finite: amax = max |x| (a maximum, so
// its order does not matter), d = amax/127 and id = 1/d (0 when d is 0) in float32, d
// stored by VCVTPS2PH rounding to nearest even, and q = round(x·id) with ties away from
// zero — x·id = p plus h = ±(½ − 2⁻²⁵) with p's sign, truncated (VROUNDPS alone would
// round ties to even; p ± ½ would round ½ − 2⁻²⁵ up to 1). That is exact for every
// float32 |p| ≤ 256 (checked one by one; here |p| is 127 and a little at most): where
// p + ½ is a float, p + h rounds to it or to just below it, never across an integer.
// Four instructions for eight quants where truncation, plus ±1 where the fraction dropped
// was ½ or more, took nine. It stops before the first block holding an infinity
// or a NaN, or whose amax is so small that 1/d overflows, and returns how many blocks it
// wrote: the caller quantizes that block with the reference (whose NaN handling, from C's
// MAX, depends on the order of the elements) and calls it again for the rest.
func genQuantizeQ8() {
	lb := fn("quantQ8", "func(dst *byte, x *float32, nb int) int",
		"quantQ8 quantizes the nb blocks of 32 floats at x to q8_0 at dst, exactly as",
		"dtype.QuantizeRowQ8_0, stopping before the first block with a non-finite element or",
		"1/d; it returns how many blocks it wrote.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	done := GP64()
	XORQ(done, done)
	abs := vconst("absmask", 0x7fffffff)
	inf := vconst("inff", 0x7f800000)
	perm := GLOBL("q8perm", RODATA|NOPTR)
	for i, v := range []uint32{0, 4, 1, 5, 2, 6, 3, 7} {
		DATA(4*i, U32(v))
	}
	// absMax loads block j's 32 floats from x, ORs into bad the lanes where an |x| is
	// not below infinity (an infinity or a NaN), and returns max |x| in an XMM
	// register's low lane.
	absMax := func(j int, bad VecVirtual, first bool) VecVirtual {
		a := ymms(4)
		for i := range a {
			VMOVUPS(Mem{Base: x, Disp: 128*j + 32*i}, a[i])
			VANDPS(abs, a[i], a[i])
			t := YMM()
			VCMPPS(U8(5), inf, a[i], t) // !(|x| < ∞): infinity or NaN
			if first && i == 0 {
				VMOVAPS(t, bad)
			} else {
				VORPS(t, bad, bad)
			}
		}
		VMAXPS(a[1], a[0], a[0])
		VMAXPS(a[3], a[2], a[2])
		VMAXPS(a[2], a[0], a[0])
		h := XMM()
		VEXTRACTF128(U8(1), a[0], h)
		VMAXPS(h, a[0].AsX(), h)
		t := XMM()
		VMOVHLPS(h, h, t)
		VMAXPS(t, h, h)
		VPSHUFD(U8(1), h, t)
		VMAXSS(t, h, h) // amax
		return h
	}
	// quant writes block j's quants, q = round(x·id) with ties away from zero, id
	// broadcast in idy, after its scale at dst + 34·j.
	quant := func(j int, idy VecVirtual) {
		q := ymms(4)
		for i := range q {
			v, p, g := YMM(), YMM(), YMM()
			VMOVUPS(Mem{Base: x, Disp: 128*j + 32*i}, v)
			VMULPS(idy, v, p)
			VANDPS(vconst("signmask", 0x80000000), p, g)
			VORPS(vf32("halfm", math.Float32frombits(0x3effffff)), g, g) // ±(½ − 2⁻²⁵) with p's sign
			VADDPS(g, p, q[i])
			VCVTTPS2DQ(q[i], q[i])
		}
		VPACKSSDW(q[1], q[0], q[0]) // per lane: x0–3 x8–11 | x4–7 x12–15
		VPACKSSDW(q[3], q[2], q[2])
		VPACKSSWB(q[2], q[0], q[0]) // dwords: x0–3 x8–11 x16–19 x24–27 | x4–7 …
		pr := YMM()
		VMOVDQU(perm, pr)
		VPERMD(q[0], pr, q[0])
		VMOVDQU(q[0], Mem{Base: dst, Disp: 34*j + 2})
	}

	// Four blocks at a time: their scales divided together (VDIVPS on the four amax),
	// so that the two divisions of each block's chain overlap; any block the quantizer
	// leaves to the caller sends the four to the loop of one block at a time.
	loop4, loop, end := lb.next("block4"), lb.next("block"), lb.next("end")
	Label(loop4)
	left := GP64()
	MOVQ(nb, left)
	SUBQ(done, left)
	CMPQ(left, U8(4))
	JL(LabelRef(loop))
	{
		bad := YMM()
		hs := make([]VecVirtual, 4)
		for j := range hs {
			hs[j] = absMax(j, bad, j == 0)
		}
		m := GP32()
		VMOVMSKPS(bad, m)
		TESTL(m, m)
		JNZ(LabelRef(loop))
		for j := 1; j < 4; j++ {
			VINSERTPS(U8(j<<4), hs[j], hs[0], hs[0]) // amax of block j in lane j
		}
		d, id := XMM(), XMM()
		VDIVPS(vf32("f127", 127), hs[0], d) // d = amax/127
		VMOVUPS(vf32("onef", 1), id)
		VDIVPS(d, id, id) // 1/d: +Inf when d is 0 or too small
		z := XMM()
		VXORPS(z, z, z)
		VCMPPS(U8(0), z, d, z) // d == 0
		VANDNPS(id, z, id)     // id = 0 when d is 0
		o := XMM()
		VCMPPS(U8(0x1d), inf, id, o) // 1/d ≥ ∞: overflowed
		VMOVMSKPS(o, m)
		TESTL(m, m)
		JNZ(LabelRef(loop))
		hd := XMM()
		VCVTPS2PH(U8(0), d, hd)
		for j := 0; j < 4; j++ {
			VPEXTRW(U8(j), hd, Mem{Base: dst, Disp: 34 * j})
		}
		for j := 0; j < 4; j++ {
			idy := YMM()
			if j == 0 {
				VBROADCASTSS(id, idy)
			} else {
				t := XMM()
				VPSHUFD(U8(0x55*j), id, t) // lane j in every lane
				VBROADCASTSS(t, idy)
			}
			quant(j, idy)
		}
	}
	ADDQ(U32(4*128), x)
	ADDQ(U8(4*34), dst)
	ADDQ(U8(4), done)
	JMP(LabelRef(loop4))

	Label(loop)
	CMPQ(done, nb)
	JGE(LabelRef(end))
	bad := YMM()
	h := absMax(0, bad, true)
	m := GP32()
	VMOVMSKPS(bad, m)
	TESTL(m, m)
	JNZ(LabelRef(end))
	id := q8Scale(h, dst, inf, end)
	idy := YMM()
	VBROADCASTSS(id, idy)
	quant(0, idy)
	ADDQ(U8(128), x)
	ADDQ(U8(34), dst)
	INCQ(done)
	JMP(LabelRef(loop))
	Label(end)
	Store(done, ReturnIndex(0))
	VZEROUPPER()
	RET()
}

// q8Scale computes a q8_0 block's d = amax/127 (amax in h's low lane) and stores it as
// a half at dst; it returns id = 1/d (0 when d is 0) in an XMM register, or jumps to end
// when 1/d overflows. The scalar part of quantQ8 at either width.
func q8Scale(h, dst Register, inf Mem, end string) Register {
	d, id := XMM(), XMM()
	VDIVSS(vf32("f127", 127), h, d) // d = amax/127
	VMOVSS(vf32("onef", 1), id)
	VDIVSS(d, id, id) // 1/d: +Inf when d is 0 or too small
	z := XMM()
	VXORPS(z, z, z)
	VCMPSS(U8(0), z, d, z) // d == 0
	VANDNPS(id, z, id)     // id = 0 when d is 0
	VUCOMISS(inf.Offset(0), id)
	JAE(LabelRef(end)) // 1/d overflowed: the reference's NaNs and infinities, not ours
	hd := XMM()
	VCVTPS2PH(U8(0), d, hd)
	VPEXTRW(U8(0), hd, Mem{Base: dst})
	return id
}

// genDequant emits dequantQ8_0 and dequantQ4_0: dst[i] = float32(q_i·d) for the nb
// blocks at src, each value exactly dtype.DequantizeRow's (one float32 product).
func genDequant(q4 bool) {
	name, bsz := "dequantQ8_0", 34
	if q4 {
		name, bsz = "dequantQ4_0", 18
	}
	lb := fn(name, "func(dst *float32, src *byte, nb int)",
		name+" widens the nb blocks at src to float32 at dst, as dtype.DequantizeRow.")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	nb := Load(Param("nb"), GP64())
	var nib, eight VecVirtual
	if q4 {
		nib, eight = XMM(), YMM()
		VMOVDQU(vconst("nibble", 0x0f0f0f0f).Offset(0), nib)
		VMOVDQU(vconst("eight32", 8), eight)
	}
	loop := lb.next("block")
	Label(loop)
	h, d := XMM(), YMM()
	VPBROADCASTW(Mem{Base: src}, h)
	VCVTPH2PS(h, d)
	var parts [4]Op // four groups of 8 quants, as bytes in memory or an XMM
	if q4 {
		lo, hi := XMM(), XMM()
		VMOVDQU(Mem{Base: src, Disp: 2}, lo)
		VPSRLW(U8(4), lo, hi)
		VPAND(nib, lo, lo)
		VPAND(nib, hi, hi)
		lo8, hi8 := XMM(), XMM()
		VPSRLDQ(U8(8), lo, lo8)
		VPSRLDQ(U8(8), hi, hi8)
		parts = [4]Op{lo, lo8, hi, hi8}
	} else {
		for i := range parts {
			parts[i] = Mem{Base: src, Disp: 2 + 8*i}
		}
	}
	for i, p := range parts {
		v := YMM()
		if q4 {
			VPMOVZXBD(p, v)
			VPSUBD(eight, v, v)
		} else {
			VPMOVSXBD(p, v)
		}
		VCVTDQ2PS(v, v)
		VMULPS(d, v, v)
		VMOVUPS(v, Mem{Base: dst, Disp: 32 * i})
	}
	ADDQ(U8(bsz), src)
	ADDQ(U32(128), dst)
	DECQ(nb)
	JNZ(LabelRef(loop))
	VZEROUPPER()
	RET()
}
