package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genQuantizeQ8KZ emits quantQ8K in ZMM: backends/avx2's q8_k quantizer (genQuantizeQ8K,
// whose doc gives the arithmetic) 16 floats per register, the non-finite check in an
// opmask, the quants to bytes by VPMOVSDB (|q| ≤ 127: no saturation acts), and the 16
// sums of 16 quants — each one register's lanes — by a transposing tree of integer adds
// (exact, so their order does not matter). Its bytes are the reference's, as avx2's are.
func genQuantizeQ8KZ() {
	lb := fn("quantQ8K", "func(dst *byte, x *float32, nb int) int",
		"quantQ8K quantizes the nb super-blocks of 256 floats at x to q8_k at dst, exactly as",
		"dtype.QuantizeRowQ8_K, stopping before the first super-block with a non-finite",
		"element, all zeros, or a non-finite −127/max; it returns how many it wrote.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	done := GP64()
	XORQ(done, done)
	abs, infz := ZMM(), ZMM()
	VPBROADCASTD(vconst("absmask", 0x7fffffff), abs)
	inf := vconst("inff", 0x7f800000)
	VBROADCASTSS(inf, infz)
	loop, end := lb.next("block"), lb.next("end")
	Label(loop)
	CMPQ(done, nb)
	JGE(LabelRef(end))
	// Pass 1: amax, and whether any element is an infinity or a NaN.
	m := zmmW.vecs(4)
	bad := K()
	for i := 0; i < 16; i++ {
		a, t := ZMM(), K()
		VPANDD(Mem{Base: x, Disp: 64 * i}, abs, a)
		VCMPPS(U8(5), infz, a, t) // !(|x| < ∞)
		if i == 0 {
			KMOVW(t, bad)
		} else {
			KORW(t, bad, bad)
		}
		if i < 4 {
			VMOVAPS(a, m[i])
		} else {
			VMAXPS(a, m[i%4], m[i%4])
		}
	}
	KORTESTW(bad, bad)
	JNZ(LabelRef(end))
	VMAXPS(m[1], m[0], m[0])
	VMAXPS(m[3], m[2], m[2])
	VMAXPS(m[2], m[0], m[0])
	h := zmmW.hmax(m[0]) // amax
	z := XMM()
	VXORPS(z, z, z)
	VUCOMISS(z, h)
	JE(LabelRef(end)) // all zeros
	// Pass 2: the first element of magnitude amax, with its sign.
	ab := ZMM()
	VBROADCASTSS(h, ab)
	i := GP64()
	XORQ(i, i)
	k := GP32()
	scan, found := lb.next("scan"), lb.next("found")
	Label(scan)
	{
		a, e := ZMM(), K()
		VPANDD(Mem{Base: x, Index: i, Scale: 4}, abs, a)
		VCMPPS(U8(0), ab, a, e)
		KMOVW(e, k)
		TESTL(k, k)
		JNZ(LabelRef(found))
		ADDQ(U8(16), i)
		JMP(LabelRef(scan)) // amax is some element's magnitude: the scan ends
	}
	Label(found)
	tz := GP32()
	BSFL(k, tz)
	ADDQ(tz.As64(), i)
	mx, is := XMM(), XMM()
	VMOVSS(Mem{Base: x, Index: i, Scale: 4}, mx)
	VMOVSS(vf32("m127f", -127), is)
	VDIVSS(mx, is, is) // iscale = −127/max
	{
		a := XMM()
		VANDPS(abs.AsX(), is, a)
		VUCOMISS(inf.Offset(0), a)
		JAE(LabelRef(end)) // max so small that iscale overflows: the reference's garbage
	}
	d := XMM()
	VMOVSS(vf32("onef", 1), d)
	VDIVSS(is, d, d) // d = 1/iscale
	VMOVSS(d, Mem{Base: dst})
	isz := ZMM()
	VBROADCASTSS(is, isz)
	magic, mant, half22, i127 := ZMM(), ZMM(), ZMM(), ZMM()
	VBROADCASTSS(vf32("magicf", 12582912), magic)
	VPBROADCASTD(vconst("mant23", 0x007fffff), mant)
	VPBROADCASTD(vconst("half22", 0x00400000), half22)
	VPBROADCASTD(vconst("i127", 127), i127)
	// Quants, 16 per register (one run of the 16 sums each); the sums by groups of
	// four runs: per 128-bit block, the four runs' partial sums side by side (qs).
	var qs []VecVirtual
	for g4 := 0; g4 < 4; g4++ {
		q := zmmW.vecs(4)
		for j := range q {
			g := 4*g4 + j
			VMULPS(Mem{Base: x, Disp: 64 * g}, isz, q[j]) // rounded to float32
			VADDPS(magic, q[j], q[j])                     // a separate rounding
			VPANDD(mant, q[j], q[j])
			VPSUBD(half22, q[j], q[j])
			VPMINSD(i127, q[j], q[j])
			VPMOVSDB(q[j], Mem{Base: dst, Disp: 4 + 16*g})
		}
		p := zmmW.vecs(2)
		for j := range p {
			u := ZMM()
			VPUNPCKLDQ(q[2*j+1], q[2*j], u) // per block: a0 b0 a1 b1
			VPUNPCKHDQ(q[2*j+1], q[2*j], p[j])
			VPADDD(u, p[j], p[j]) // a0+a2 b0+b2 a1+a3 b1+b3
		}
		u := ZMM()
		VPUNPCKLQDQ(p[1], p[0], u)
		VPUNPCKHQDQ(p[1], p[0], p[0])
		VPADDD(u, p[0], p[0]) // per block: the four runs' sums over the block
		qs = append(qs, p[0])
	}
	// Add the four blocks of each: [b0 b2 | b0 b2] + [b1 b3 | b1 b3] twice.
	pairs := func(a, b VecVirtual) VecVirtual {
		t := ZMM()
		VSHUFI32X4(U8(0x88), b, a, t)
		VSHUFI32X4(U8(0xdd), b, a, a)
		VPADDD(t, a, a)
		return a
	}
	s := pairs(pairs(qs[0], qs[1]), pairs(qs[2], qs[3])) // the 16 sums in order
	VPMOVDW(s, Mem{Base: dst, Disp: 260})
	ADDQ(U32(1024), x)
	ADDQ(U32(292), dst)
	INCQ(done)
	JMP(LabelRef(loop))
	Label(end)
	Store(done, ReturnIndex(0))
	VZEROUPPER()
	RET()
}
