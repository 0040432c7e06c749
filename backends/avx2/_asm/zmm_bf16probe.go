package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genGemmBF16Probe emits gemmBF16Sx46, a register tile of bfloat16 weights times
// bfloat16 activations with VDPBF16PS (AVX512_BF16) that scales every 32 columns' sum
// before adding it, as MatMulQ8's contract for bf16 weights with q8_0 activations asks
// (Σ over blocks of the block's sum times its scale; here one scale for all blocks,
// which costs the same arithmetic). backends/avx512 uses it only to measure what that
// contract would gain from VDPBF16PS; gemmBF16x4 (zmm_bf16.go) is the unscaled product.
//
// The tile is 4 rows × 6 tokens: 24 accumulators in Z0–Z23, the rows' 32 weights in
// Z24–Z27, a token's 32 activations in Z28, the scale in Z29, a block's sums in Z30 and
// Z31 in turn. The operands of VDPBF16PS, emitted as raw bytes, are physical registers,
// so the whole tile is.
func genGemmBF16Probe() {
	const R, Tb = 4, 6
	lb := fnStack("gemmBF16Sx46", "func(dst *float32, ldd int, x *uint16, ldx int, T int, w *uint16, ldw int, k int, groups int, scale float32)",
		"gemmBF16Sx46 computes, for r < 4·groups and t < T (T a multiple of 6, k of 32),",
		"  dst[t*ldd+r] = Σ_{b<k/32} scale·Σ_{32b≤i<32b+32} x[t*ldx+i]·w[r*ldw+i],",
		"x and w bfloat16, with VDPBF16PS (denormals flushed to zero), for measurements.")
	sums := AllocLocal(64 * R * Tb)
	accs := []Register{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23}
	acc := func(r, t int) Register { return accs[t*R+r] }
	wz := []Register{Z24, Z25, Z26, Z27}
	x, scaleZ := Z28, Z29
	tmps := []Register{Z30, Z31} // a block's sums

	wrow := Load(Param("w"), GP64())
	group := lb.next("group")
	Label(group)
	xb := Load(Param("x"), GP64())
	db := Load(Param("dst"), GP64())
	tleft := Load(Param("T"), GP64())
	tokens := lb.next("tokens")
	Label(tokens)
	for _, a := range accs {
		VMOVUPS(zeros, a) // (not VPXORD: avo would take a as read, and live throughout)
	}
	sc, err := Param("scale").Resolve()
	if err != nil {
		panic(err)
	}
	VBROADCASTSS(sc.Addr, scaleZ)
	ldw := Load(Param("ldw"), GP64())
	SHLQ(U8(1), ldw)
	ldx := Load(Param("ldx"), GP64())
	SHLQ(U8(1), ldx)
	xa, wa := GP64(), GP64()
	MOVQ(xb, xa)
	MOVQ(wrow, wa)
	xs, ws := newStrided(xa, ldx, Tb), newStrided(wa, ldw, R)
	n := Load(Param("k"), GP64())
	SHRQ(U8(5), n)
	loop := lb.next("cols")
	Label(loop)
	for r := 0; r < R; r++ {
		VMOVDQU16(ws.at(r, 0), wz[r])
	}
	for t, j := 0, 0; t < Tb; t++ {
		VMOVDQU16(xs.at(t, 0), x)
		for r := 0; r < R; r++ {
			s := tmps[j%len(tmps)]
			j++
			VMOVUPS(zeros, s)
			VDPBF16PSraw(x, wz[r], s)
			VFMADD231PS(s, scaleZ, acc(r, t))
		}
	}
	ws.add(U8(64))
	xs.add(U8(64))
	DECQ(n)
	JNZ(LabelRef(loop))

	// The accumulators to the stack, then each reduced as the f32 tiles reduce theirs:
	// lanes 0–7 plus lanes 8–15, then pairwise, four rows at a time.
	for t := 0; t < Tb; t++ {
		for r := 0; r < R; r++ {
			s := sums
			s.Disp += 64 * (t*R + r)
			VMOVUPS(acc(r, t), s)
		}
	}
	d := GP64()
	MOVQ(db, d)
	ldd := bytesOf("ldd")
	for t := 0; t < Tb; t++ {
		y := make([]VecVirtual, R)
		for r := range y {
			s := sums
			s.Disp += 64 * (t*R + r)
			y[r] = YMM()
			VMOVUPS(s, y[r])
			s.Disp += 32
			VADDPS(s, y[r], y[r])
		}
		VMOVUPS(reduce4(y[0], y[1], y[2], y[3]), Mem{Base: d})
		ADDQ(ldd, d)
	}
	// The next 6 tokens.
	l6 := bytesOf("ldd")
	IMUL3Q(Imm(Tb), l6, l6)
	ADDQ(l6, db)
	x6 := Load(Param("ldx"), GP64())
	IMUL3Q(Imm(2*Tb), x6, x6)
	ADDQ(x6, xb)
	SUBQ(Imm(Tb), tleft)
	JNZ(LabelRef(tokens))
	// The next 4 rows.
	l4 := Load(Param("ldw"), GP64())
	IMUL3Q(Imm(2*R), l4, l4)
	ADDQ(l4, wrow)
	dn := Load(Param("dst"), GP64())
	ADDQ(U8(4*R), dn)
	Store(dn, Param("dst"))
	g := Load(Param("groups"), GP64())
	DECQ(g)
	Store(g, Param("groups"))
	JNZ(LabelRef(group))
	VZEROUPPER()
	RET()
}
