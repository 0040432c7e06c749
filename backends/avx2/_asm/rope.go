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
// per vector of pairs and applied to all heads. The kernel takes 4·quads pairs: YMM
// vectors of 4 pairs (C and S by unpacking); ZMM vectors of 8 (C and S by VPERMPS),
// an odd 4 at the end as one vector with its upper half masked off. Every lane is the
// same instructions at either width, so the same bits.
func genRoPE(w width) {
	lb := fn("rope", "func(x *float32, heads int, headDim int, cos, sin *float32, quads int)",
		"rope rotates pairs (2i, 2i+1), i < 4·quads, of each of heads heads of width headDim in x.")
	x := Load(Param("x"), GP64())
	cs := Load(Param("cos"), GP64())
	sn := Load(Param("sin"), GP64())
	q := Load(Param("quads"), GP64())
	hdim := bytesOf("headDim")
	var idx VecVirtual // ZMM: the VPERMPS indices 0 0 1 1 … 7 7
	if w.zmm {
		dupIdx := GLOBL("ropedup", RODATA|NOPTR)
		for i := 0; i < 16; i++ {
			DATA(4*i, U32(uint32(i/2)))
		}
		idx = ZMM()
		VMOVUPS(dupIdx, idx)
	}
	// dup builds C (or S) from the lanes/2 cosines (or sines) at p; quad: only 4 of
	// them are there (the ZMM tail).
	dup := func(p Register, quad bool) VecVirtual {
		if w.zmm {
			t, y := ZMM(), ZMM()
			if quad {
				VMOVUPS(Mem{Base: p}, t.AsX())
			} else {
				VMOVUPS(Mem{Base: p}, t.AsY())
			}
			VPERMPS(t, idx, y)
			return y
		}
		t, lo, hi := XMM(), XMM(), XMM()
		VMOVUPS(Mem{Base: p}, t)
		VUNPCKLPS(t, t, lo)
		VUNPCKHPS(t, t, hi)
		y := YMM()
		VINSERTF128(U8(1), hi, lo.AsY(), y)
		return y
	}
	// rotate rotates one vector of pairs at x in every head (with k, only its lanes).
	rotate := func(c, s VecVirtual, k Register) {
		hp := GP64()
		MOVQ(x, hp)
		h := Load(Param("heads"), GP64())
		heads := lb.next("heads")
		Label(heads)
		v, sw := w.vec(), w.vec()
		if k == nil {
			VMOVUPS(Mem{Base: hp}, v)
		} else {
			VMOVUPS_Z(Mem{Base: hp}, k, v)
		}
		VPERMILPS(U8(0xb1), v, sw)
		VMULPS(s, sw, sw)
		VFMADDSUB213PS(sw, c, v)
		if k == nil {
			VMOVUPS(v, Mem{Base: hp})
		} else {
			VMOVUPS(v, k, Mem{Base: hp})
		}
		ADDQ(hdim, hp)
		DECQ(h)
		JNZ(LabelRef(heads))
	}
	steps := q // vectors of pairs
	if w.zmm {
		steps = GP64()
		MOVQ(q, steps)
		SHRQ(U8(1), steps)
	}
	top, done := lb.next("quad"), lb.next("done")
	tail := done
	if w.zmm {
		tail = lb.next("tail")
	}
	Label(top)
	TESTQ(steps, steps)
	JZ(LabelRef(tail))
	c, s := dup(cs, false), dup(sn, false)
	rotate(c, s, nil)
	ADDQ(U8(w.bytes()), x)
	ADDQ(U8(w.bytes()/2), cs)
	ADDQ(U8(w.bytes()/2), sn)
	DECQ(steps)
	JMP(LabelRef(top))
	if w.zmm {
		Label(tail)
		TESTQ(U32(1), q)
		JZ(LabelRef(done))
		k, r := K(), GP32()
		MOVL(U32(0xff), r)
		KMOVW(r, k)
		c, s := dup(cs, true), dup(sn, true)
		rotate(c, s, k)
	}
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
