package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genDot emits dot for width w: four accumulators over blocks of four vectors, then
// single vectors into the first, the masked tail into the second, and the four added
// pairwise.
func genDot(w width) {
	lb := fn("dot", "func(a, b *float32, n int) float32",
		"dot returns Σ_{i<n} a[i]·b[i].")
	vb := w.bytes()
	a := Load(Param("a"), GP64())
	b := Load(Param("b"), GP64())
	kmain := Load(Param("n"), GP64())
	ANDQ(I32(-w.lanes()), kmain)
	SHLQ(U8(2), kmain)
	k32 := GP64()
	MOVQ(kmain, k32)
	ANDQ(I32(-4*vb), k32)
	acc := w.vecs(4)
	w.zero(acc...)
	i := GP64()
	XORQ(i, i)
	body4, check4, body1, check1, reduce := lb.next("body"), lb.next("check"), lb.next("body"), lb.next("check"), lb.next("reduce")
	JMP(LabelRef(check4))
	Label(body4)
	for u := 0; u < 4; u++ {
		x := w.vec()
		VMOVUPS(Mem{Base: a, Index: i, Scale: 1, Disp: vb * u}, x)
		VFMADD231PS(Mem{Base: b, Index: i, Scale: 1, Disp: vb * u}, x, acc[u])
	}
	if w.zmm {
		ADDQ(U32(4*vb), i)
	} else {
		ADDQ(U8(4*vb), i)
	}
	Label(check4)
	CMPQ(i, k32)
	JL(LabelRef(body4))
	JMP(LabelRef(check1))
	Label(body1)
	x := w.vec()
	VMOVUPS(Mem{Base: a, Index: i, Scale: 1}, x)
	VFMADD231PS(Mem{Base: b, Index: i, Scale: 1}, x, acc[0])
	ADDQ(U8(vb), i)
	Label(check1)
	CMPQ(i, kmain)
	JL(LabelRef(body1))

	rem := Load(Param("n"), GP64())
	ANDQ(U8(w.lanes()-1), rem)
	JZ(LabelRef(reduce))
	var m VecVirtual
	if !w.zmm {
		m = YMM()
	}
	xa, xb := w.vec(), w.vec()
	if w.zmm {
		k := laneMask(rem)
		VMOVUPS_Z(Mem{Base: a, Index: i, Scale: 1}, k, xa)
		VMOVUPS_Z(Mem{Base: b, Index: i, Scale: 1}, k, xb)
	} else {
		loadMask(rem, m)
		VMASKMOVPS(Mem{Base: a, Index: i, Scale: 1}, m, xa)
		VMASKMOVPS(Mem{Base: b, Index: i, Scale: 1}, m, xb)
	}
	VFMADD231PS(xa, xb, acc[1])

	Label(reduce)
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	Store(w.hsum(acc[0]), ReturnIndex(0))
	w.done()
}
