package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
)

func genDot() {
	lb := fn("dot", "func(a, b *float32, n int) float32",
		"dot returns Σ_{i<n} a[i]·b[i].")
	a := Load(Param("a"), GP64())
	b := Load(Param("b"), GP64())
	kmain := Load(Param("n"), GP64())
	ANDQ(I32(-8), kmain)
	SHLQ(U8(2), kmain)
	k32 := GP64()
	MOVQ(kmain, k32)
	ANDQ(I32(-128), k32)
	acc := ymms(4)
	zero(acc...)
	i := GP64()
	XORQ(i, i)
	body4, check4, body1, check1, reduce := lb.next("body"), lb.next("check"), lb.next("body"), lb.next("check"), lb.next("reduce")
	JMP(LabelRef(check4))
	Label(body4)
	for u := 0; u < 4; u++ {
		x := YMM()
		VMOVUPS(Mem{Base: a, Index: i, Scale: 1, Disp: 32 * u}, x)
		VFMADD231PS(Mem{Base: b, Index: i, Scale: 1, Disp: 32 * u}, x, acc[u])
	}
	ADDQ(U8(128), i)
	Label(check4)
	CMPQ(i, k32)
	JL(LabelRef(body4))
	JMP(LabelRef(check1))
	Label(body1)
	x := YMM()
	VMOVUPS(Mem{Base: a, Index: i, Scale: 1}, x)
	VFMADD231PS(Mem{Base: b, Index: i, Scale: 1}, x, acc[0])
	ADDQ(U8(32), i)
	Label(check1)
	CMPQ(i, kmain)
	JL(LabelRef(body1))

	rem := Load(Param("n"), GP64())
	ANDQ(U8(7), rem)
	JZ(LabelRef(reduce))
	m, xa, xb := YMM(), YMM(), YMM()
	loadMask(rem, m)
	VMASKMOVPS(Mem{Base: a, Index: i, Scale: 1}, m, xa)
	VMASKMOVPS(Mem{Base: b, Index: i, Scale: 1}, m, xb)
	VFMADD231PS(xa, xb, acc[1])

	Label(reduce)
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	Store(hsum(acc[0]), ReturnIndex(0))
	VZEROUPPER()
	RET()
}
