package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genRoPE emits the rotation of adjacent pairs for width w. A vector holds lanes/2
// pairs [a0 b0 a1 b1 ...]; with C = [c0 c0 c1 c1 ...], S = [s0 s0 s1 s1 ...] and
// X' = X with each pair swapped, FMADDSUB gives X·C ∓ X'·S: a·c - b·s in even lanes,
// b·c + a·s in odd ones. The angles are shared by every head, so C and S are built once
// per vector of pairs and applied to all heads: for YMM (4 pairs) by unpacking, for ZMM
// (8 pairs) by VPERMPS. The pairs past the last whole vector are one more step, its
// loads and stores masked (VMASKMOVPS, or an opmask). Every lane is the same
// instructions at either width, so the same bits.
func genRoPE(w width) {
	lb := fn("rope", "func(x *float32, heads int, headDim int, cos, sin *float32, pairs int)",
		"rope rotates pairs (2i, 2i+1), i < pairs, of each of heads (≥ 1) heads of width headDim in x.")
	x := Load(Param("x"), GP64())
	cs := Load(Param("cos"), GP64())
	sn := Load(Param("sin"), GP64())
	hdim := bytesOf("headDim")
	vp := w.lanes() / 2 // pairs per vector
	var idx VecVirtual  // ZMM: the VPERMPS indices 0 0 1 1 … 7 7
	if w.zmm {
		dupIdx := GLOBL("ropedup", RODATA|NOPTR)
		for i := 0; i < 16; i++ {
			DATA(4*i, U32(uint32(i/2)))
		}
		idx = ZMM()
		VMOVUPS(dupIdx, idx)
	}
	// A tail step's masks: of its pairs' cosines (rem lanes) and of their elements
	// (2·rem lanes); YMM: the masks' addresses, ZMM: opmasks.
	type tailMasks struct {
		ma, mx *Mem
		ka, kx Register
	}
	// dup builds C (or S) from the cosines (or sines) at p, all vp of them or, in the
	// tail, those of t.
	dup := func(p Register, t *tailMasks) VecVirtual {
		if w.zmm {
			v, y := ZMM(), ZMM()
			if t == nil {
				VMOVUPS(Mem{Base: p}, v.AsY())
			} else {
				VMOVUPS_Z(Mem{Base: p}, t.ka, v)
			}
			VPERMPS(v, idx, y)
			return y
		}
		v, lo, hi := XMM(), XMM(), XMM()
		if t == nil {
			VMOVUPS(Mem{Base: p}, v)
		} else {
			m := XMM()
			VMOVUPS(*t.ma, m)
			VMASKMOVPS(Mem{Base: p}, m, v)
		}
		VUNPCKLPS(v, v, lo)
		VUNPCKHPS(v, v, hi)
		y := YMM()
		VINSERTF128(U8(1), hi, lo.AsY(), y)
		return y
	}
	// rotate rotates one vector of pairs at x in every head (in the tail, t's lanes).
	rotate := func(c, s VecVirtual, t *tailMasks) {
		var m VecVirtual
		if t != nil && !w.zmm {
			m = YMM()
			VMOVUPS(*t.mx, m)
		}
		hp := GP64()
		MOVQ(x, hp)
		h := Load(Param("heads"), GP64())
		heads := lb.next("heads")
		Label(heads)
		v, sw := w.vec(), w.vec()
		switch {
		case t == nil:
			VMOVUPS(Mem{Base: hp}, v)
		case w.zmm:
			VMOVUPS_Z(Mem{Base: hp}, t.kx, v)
		default:
			VMASKMOVPS(Mem{Base: hp}, m, v)
		}
		VPERMILPS(U8(0xb1), v, sw)
		VMULPS(s, sw, sw)
		VFMADDSUB213PS(sw, c, v)
		switch {
		case t == nil:
			VMOVUPS(v, Mem{Base: hp})
		case w.zmm:
			VMOVUPS(v, t.kx, Mem{Base: hp})
		default:
			VMASKMOVPS(v, m, Mem{Base: hp})
		}
		ADDQ(hdim, hp)
		DECQ(h)
		JNZ(LabelRef(heads))
	}
	steps := Load(Param("pairs"), GP64())
	if w.zmm {
		SHRQ(U8(3), steps)
	} else {
		SHRQ(U8(2), steps)
	}
	top, tail, done := lb.next("vec"), lb.next("tail"), lb.next("done")
	Label(top)
	TESTQ(steps, steps)
	JZ(LabelRef(tail))
	c, s := dup(cs, nil), dup(sn, nil)
	rotate(c, s, nil)
	ADDQ(U8(w.bytes()), x)
	ADDQ(U8(w.bytes()/2), cs)
	ADDQ(U8(w.bytes()/2), sn)
	DECQ(steps)
	JMP(LabelRef(top))

	Label(tail)
	rem := Load(Param("pairs"), GP64())
	ANDQ(U8(vp-1), rem)
	JZ(LabelRef(done))
	rem2 := GP64()
	LEAQ(Mem{Base: rem, Index: rem, Scale: 1}, rem2)
	var t tailMasks
	if w.zmm {
		t.ka, t.kx = laneMask(rem), laneMask(rem2)
	} else {
		ma, mx := maskAddr(rem), maskAddr(rem2)
		t.ma, t.mx = &ma, &mx
	}
	c, s = dup(cs, &t), dup(sn, &t)
	rotate(c, s, &t)
	Label(done)
	w.done()
}

// genRoPENeoX emits ropeNeoX for width w: in each head, x[i] and x[i+half] for i < half
// as a stream of vectors (a masked tail), each product rounded before the difference or
// sum, as kernels.Reference computes them, so the results are its bits.
func genRoPENeoX(w width) {
	lb := fn("ropeNeoX", "func(x *float32, heads int, headDim int, cos, sin *float32, half int)",
		"ropeNeoX rotates, in each of heads (≥ 1) heads of width headDim in x, x[i] with x[i+half]",
		"for i < half by the angle of cos[i], sin[i]: x[i]·cos[i] - x[i+half]·sin[i] and",
		"x[i]·sin[i] + x[i+half]·cos[i], each product rounded (kernels.Reference's bits).")
	hp := Load(Param("x"), GP64())
	top := lb.next("head")
	Label(top)
	hi := GP64()
	hb := bytesOf("half")
	LEAQ(Mem{Base: hp, Index: hb, Scale: 1}, hi)
	cs := Load(Param("cos"), GP64())
	sn := Load(Param("sin"), GP64())
	stream(w, lb, "half", 2, func(v vec) {
		a, b := v.load(hp), v.load(hi)
		c, s := v.load(cs), v.load(sn)
		t, u := w.vec(), w.vec()
		VMULPS(c, a, t)
		VMULPS(s, b, u)
		VSUBPS(u, t, t) // a·c - b·s
		VMULPS(s, a, a)
		VMULPS(c, b, b)
		VADDPS(b, a, a) // a·s + b·c
		v.store(t, hp)
		v.store(a, hi)
	})
	hdim := bytesOf("headDim")
	ADDQ(hdim, hp)
	h := Load(Param("heads"), GP64())
	DECQ(h)
	Store(h, Param("heads"))
	JNZ(LabelRef(top))
	w.done()
}
