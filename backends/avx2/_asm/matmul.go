package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

func genMatMul() {
	genGemm("gemm2", 2, 3)
	genGemm("gemm1", 1, 6)
	genMatVec()
	genMatVecSpread()
}

// genGemm emits a kernel for R consecutive weight rows against all T tokens, Tb tokens
// at a time (then Tb-1, ..., 1 for the remainder). Every (row, token) dot product is
// summed exactly as matvec sums a row — two 8-lane accumulators over the even and odd
// vectors of every 16 columns, one more whole vector into the first, the masked tail
// into the second, the two added and reduced pairwise, then the bias added — so that
// a token's results do not depend on T, on the other tokens, or on the rows' ranges
// (a batched decode step gives every sequence the bits it would get alone). The
// micro-kernel keeps those 2·R·Tb accumulators in registers and loads each of the R
// weight and Tb input vectors once per 8 columns: 2×3 and 1×6 use 12 accumulators.
func genGemm(name string, R, Tb int) {
	lb := fn(name, "func(dst *float32, ldd int, x *float32, ldx int, T int, w *float32, ldw int, k int, bias *float32)",
		name+" computes, for r < "+itoa(R)+" and t < T,",
		"  dst[t*ldd+r] = Σ_{i<k} x[t*ldx+i]·w[r*ldw+i] (+ bias[r] if bias != nil),",
		"each sum exactly as matvec takes it.",
	)
	ldw := bytesOf("ldw")
	wr := make([]Register, R)
	wr[0] = GP64()
	Load(Param("w"), wr[0])
	for r := 1; r < R; r++ {
		wr[r] = GP64()
		LEAQ(Mem{Base: wr[r-1], Index: ldw, Scale: 1}, wr[r])
	}

	block := func(Tt int) {
		Commentf("%d rows × %d tokens", R, Tt)
		xs := make([]Register, Tt)
		xs[0] = Load(Param("x"), GP64())
		if Tt > 1 {
			ldx := bytesOf("ldx")
			for t := 1; t < Tt; t++ {
				xs[t] = GP64()
				LEAQ(Mem{Base: xs[t-1], Index: ldx, Scale: 1}, xs[t])
			}
		}
		// acc[r][t][h]: row r, token t, even (h = 0) or odd vectors.
		acc := make([][][2]VecVirtual, R)
		for r := range acc {
			acc[r] = make([][2]VecVirtual, Tt)
			for t := range acc[r] {
				acc[r][t] = [2]VecVirtual{YMM(), YMM()}
				zero(acc[r][t][0], acc[r][t][1])
			}
		}
		// step multiplies the vectors at byte offset i+disp into the accumulators h.
		step := func(i Register, disp, h int) {
			ws := make([]VecVirtual, R)
			for r := range ws {
				ws[r] = YMM()
				VMOVUPS(Mem{Base: wr[r], Index: i, Scale: 1, Disp: disp}, ws[r])
			}
			for t := 0; t < Tt; t++ {
				xm := Mem{Base: xs[t], Index: i, Scale: 1, Disp: disp}
				if R == 1 {
					VFMADD231PS(xm, ws[0], acc[0][t][h])
					continue
				}
				xv := YMM()
				VMOVUPS(xm, xv)
				for r := 0; r < R; r++ {
					VFMADD231PS(ws[r], xv, acc[r][t][h])
				}
			}
		}
		i := GP64()
		XORQ(i, i)
		k16 := Load(Param("k"), GP64())
		ANDQ(I32(-16), k16)
		SHLQ(U8(2), k16)
		body, check, tail, reduce := lb.next("body"), lb.next("check"), lb.next("tail"), lb.next("reduce")
		JMP(LabelRef(check))
		Label(body)
		step(i, 0, 0)
		step(i, 32, 1)
		ADDQ(U8(64), i)
		Label(check)
		CMPQ(i, k16)
		JL(LabelRef(body))

		// One more whole vector, then the masked tail, as in matvec.
		kmain := Load(Param("k"), GP64())
		ANDQ(I32(-8), kmain)
		SHLQ(U8(2), kmain)
		CMPQ(i, kmain)
		JGE(LabelRef(tail))
		step(i, 0, 0)
		ADDQ(U8(32), i)

		Label(tail)
		rem := Load(Param("k"), GP64())
		ANDQ(U8(7), rem)
		JZ(LabelRef(reduce))
		m := YMM()
		loadMask(rem, m)
		ws := make([]VecVirtual, R)
		for r := range ws {
			ws[r] = YMM()
			VMASKMOVPS(Mem{Base: wr[r], Index: i, Scale: 1}, m, ws[r])
		}
		for t := 0; t < Tt; t++ {
			xv := YMM()
			VMASKMOVPS(Mem{Base: xs[t], Index: i, Scale: 1}, m, xv)
			for r := 0; r < R; r++ {
				VFMADD231PS(xv, ws[r], acc[r][t][1])
			}
		}

		Label(reduce)
		// The (token, row) sums, token by token, four lanes of reduce4 at a time (the
		// lanes left over sum a zeroed register); then each lane's bias by one add, and
		// the lanes stored.
		type item struct {
			t, r int
			v    VecVirtual
		}
		var items []item
		for t := 0; t < Tt; t++ {
			for r := 0; r < R; r++ {
				VADDPS(acc[r][t][1], acc[r][t][0], acc[r][t][0])
				items = append(items, item{t, r, acc[r][t][0]})
			}
		}
		d := Load(Param("dst"), GP64())
		ldd := bytesOf("ldd")
		cur := 0 // the token d points at
		for g := 0; g < len(items); g += 4 {
			grp := items[g:min(g+4, len(items))]
			vs := make([]VecVirtual, 4)
			for j := range vs {
				if j < len(grp) {
					vs[j] = grp[j].v
				} else {
					vs[j] = YMM()
					zero(vs[j])
				}
			}
			h := reduce4(vs[0], vs[1], vs[2], vs[3])
			nob := lb.next("nobias")
			b := Load(Param("bias"), GP64())
			TESTQ(b, b)
			JZ(LabelRef(nob))
			bv := XMM()
			for j, it := range grp {
				if j == 0 {
					VMOVSS(Mem{Base: b, Disp: 4 * it.r}, bv)
				} else {
					VINSERTPS(U8(j<<4), Mem{Base: b, Disp: 4 * it.r}, bv, bv)
				}
			}
			VADDPS(bv, h, h)
			Label(nob)
			for j, it := range grp {
				for ; cur < it.t; cur++ {
					ADDQ(ldd, d)
				}
				if j == 0 {
					VMOVSS(h, Mem{Base: d, Disp: 4 * it.r})
				} else {
					VEXTRACTPS(U8(j), h, Mem{Base: d, Disp: 4 * it.r})
				}
			}
		}
		// The next block's tokens.
		ADDQ(ldd, d)
		Store(d, Param("dst"))
		xn := Load(Param("x"), GP64())
		ldx := bytesOf("ldx")
		if Tt > 1 {
			IMUL3Q(Imm(uint64(Tt)), ldx, ldx)
		}
		ADDQ(ldx, xn)
		Store(xn, Param("x"))
		n := Load(Param("T"), GP64())
		SUBQ(Imm(uint64(Tt)), n)
		Store(n, Param("T"))
	}

	loop, done := lb.next("tokens"), lb.next("tokens_done")
	Label(loop)
	n := Load(Param("T"), GP64())
	CMPQ(n, Imm(uint64(Tb)))
	JL(LabelRef(done))
	block(Tb)
	JMP(LabelRef(loop))
	Label(done)
	for s := Tb - 1; s >= 1; s-- {
		skip := lb.next("skip")
		n := Load(Param("T"), GP64())
		CMPQ(n, Imm(uint64(s)))
		JL(LabelRef(skip))
		block(s)
		Label(skip)
	}
	VZEROUPPER()
	RET()
}

// genMatVec emits the T = 1 product one row at a time, for the rows that
// matvecSpread's blocks of four leave over. Each row has two accumulators (even and
// odd vectors; the masked tail goes to the second), summed, then reduced pairwise —
// exactly as a lane of matvecSpread, so a row's result does not depend on which kernel
// computed it.
func genMatVec() {
	lb := fn("matvec", "func(dst *float32, x *float32, w *float32, ldw int, k int, rows int, bias *float32)",
		"matvec computes dst[r] = Σ_{i<k} x[i]·w[r*ldw+i] (+ bias[r] if bias != nil) for r < rows.",
	)
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	bias := Load(Param("bias"), GP64())
	ldw := bytesOf("ldw")
	kmain := Load(Param("k"), GP64())
	ANDQ(I32(-8), kmain)
	SHLQ(U8(2), kmain)
	k16 := GP64()
	MOVQ(kmain, k16)
	ANDQ(I32(-64), k16)

	row, done := lb.next("row"), lb.next("done")
	Label(row)
	TESTQ(rows, rows)
	JZ(LabelRef(done))
	acc0, acc1 := YMM(), YMM()
	zero(acc0, acc1)
	i := GP64()
	XORQ(i, i)
	body, check, tail, reduce := lb.next("body"), lb.next("check"), lb.next("tail"), lb.next("reduce")
	JMP(LabelRef(check))
	Label(body)
	x0, x1 := YMM(), YMM()
	VMOVUPS(Mem{Base: x, Index: i, Scale: 1}, x0)
	VMOVUPS(Mem{Base: x, Index: i, Scale: 1, Disp: 32}, x1)
	VFMADD231PS(Mem{Base: w, Index: i, Scale: 1}, x0, acc0)
	VFMADD231PS(Mem{Base: w, Index: i, Scale: 1, Disp: 32}, x1, acc1)
	ADDQ(U8(64), i)
	Label(check)
	CMPQ(i, k16)
	JL(LabelRef(body))

	CMPQ(i, kmain)
	JGE(LabelRef(tail))
	x0 = YMM()
	VMOVUPS(Mem{Base: x, Index: i, Scale: 1}, x0)
	VFMADD231PS(Mem{Base: w, Index: i, Scale: 1}, x0, acc0)
	ADDQ(U8(32), i)

	Label(tail)
	rem := Load(Param("k"), GP64())
	ANDQ(U8(7), rem)
	JZ(LabelRef(reduce))
	m, xv, wv := YMM(), YMM(), YMM()
	loadMask(rem, m)
	VMASKMOVPS(Mem{Base: x, Index: i, Scale: 1}, m, xv)
	VMASKMOVPS(Mem{Base: w, Index: i, Scale: 1}, m, wv)
	VFMADD231PS(xv, wv, acc1)

	Label(reduce)
	VADDPS(acc1, acc0, acc0)
	h := hsumPairwise(acc0)
	nob := lb.next("nobias")
	TESTQ(bias, bias)
	JZ(LabelRef(nob))
	VADDSS(Mem{Base: bias}, h, h)
	ADDQ(U8(4), bias)
	Label(nob)
	VMOVSS(h, Mem{Base: dst})
	ADDQ(U8(4), dst)
	ADDQ(ldw, w)
	DECQ(rows)
	JMP(LabelRef(row))
	Label(done)
	VZEROUPPER()
	RET()
}

func itoa(i int) string {
	return string(rune('0' + i))
}

// genMatVecSpread emits the T = 1 product (a bandwidth-bound stream over the weights,
// two accumulators per row, the input vector in L1) over four rows that lie gap rows
// apart:
// block b computes rows b, gap+b, 2·gap+b and 3·gap+b. With gap = rows/4 each of the
// four rows walks its own quarter of the matrix, so the weights are read as four long
// sequential streams (rows are contiguous) instead of restarting four short ones every
// block, which is what keeps the hardware prefetchers on a small model's short rows.
// Each row is accumulated and reduced exactly as by matvec.
func genMatVecSpread() {
	lb := fn("matvecSpread", "func(dst *float32, x *float32, w *float32, ldw int, k int, blocks int, gap int, bias *float32)",
		"matvecSpread computes dst[r] = Σ_{i<k} x[i]·w[r*ldw+i] (+ bias[r] if bias != nil)",
		"for r = q·gap + b, q < 4, b < blocks (blocks ≥ 1).")
	x := Load(Param("x"), GP64())
	ldw := bytesOf("ldw")
	k16 := Load(Param("k"), GP64())
	ANDQ(I32(-16), k16)
	SHLQ(U8(2), k16)
	wr := spreadRows(Load(Param("w"), GP64()), ldw)

	block := lb.next("block")
	Label(block)
	acc := make([][2]VecVirtual, 4)
	for r := range acc {
		acc[r] = [2]VecVirtual{YMM(), YMM()}
		zero(acc[r][0], acc[r][1])
	}
	i := GP64()
	XORQ(i, i)
	body, check, tail, reduce := lb.next("body"), lb.next("check"), lb.next("tail"), lb.next("reduce")
	JMP(LabelRef(check))
	Label(body)
	x0, x1 := YMM(), YMM()
	VMOVUPS(Mem{Base: x, Index: i, Scale: 1}, x0)
	VMOVUPS(Mem{Base: x, Index: i, Scale: 1, Disp: 32}, x1)
	for r := 0; r < 4; r++ {
		VFMADD231PS(Mem{Base: wr[r], Index: i, Scale: 1}, x0, acc[r][0])
		VFMADD231PS(Mem{Base: wr[r], Index: i, Scale: 1, Disp: 32}, x1, acc[r][1])
	}
	ADDQ(U8(64), i)
	Label(check)
	CMPQ(i, k16)
	JL(LabelRef(body))

	// One more whole vector, then the masked tail, as in matvec.
	kmain := Load(Param("k"), GP64())
	ANDQ(I32(-8), kmain)
	SHLQ(U8(2), kmain)
	CMPQ(i, kmain)
	JGE(LabelRef(tail))
	x0 = YMM()
	VMOVUPS(Mem{Base: x, Index: i, Scale: 1}, x0)
	for r := 0; r < 4; r++ {
		VFMADD231PS(Mem{Base: wr[r], Index: i, Scale: 1}, x0, acc[r][0])
	}
	ADDQ(U8(32), i)
	Label(tail)
	rem := Load(Param("k"), GP64())
	ANDQ(U8(7), rem)
	JZ(LabelRef(reduce))
	m, xv := YMM(), YMM()
	loadMask(rem, m)
	VMASKMOVPS(Mem{Base: x, Index: i, Scale: 1}, m, xv)
	for r := 0; r < 4; r++ {
		wv := YMM()
		VMASKMOVPS(Mem{Base: wr[r], Index: i, Scale: 1}, m, wv)
		VFMADD231PS(xv, wv, acc[r][1])
	}

	Label(reduce)
	for r := 0; r < 4; r++ {
		VADDPS(acc[r][1], acc[r][0], acc[r][0])
	}
	h := reduce4(acc[0][0], acc[1][0], acc[2][0], acc[3][0])
	g := Load(Param("gap"), GP64())
	SHLQ(U8(2), g) // gap floats, in bytes
	nob := lb.next("nobias")
	b := Load(Param("bias"), GP64())
	TESTQ(b, b)
	JZ(LabelRef(nob))
	bv, b3 := XMM(), GP64()
	VMOVSS(Mem{Base: b}, bv)
	VINSERTPS(U8(0x10), Mem{Base: b, Index: g, Scale: 1}, bv, bv)
	VINSERTPS(U8(0x20), Mem{Base: b, Index: g, Scale: 2}, bv, bv)
	LEAQ(Mem{Base: b, Index: g, Scale: 2}, b3)
	VINSERTPS(U8(0x30), Mem{Base: b3, Index: g, Scale: 1}, bv, bv)
	VADDPS(bv, h, h)
	ADDQ(U8(4), b)
	Store(b, Param("bias"))
	Label(nob)
	storeSpread(h, g)
	nextSpreadBlock(wr, ldw, block)
	VZEROUPPER()
	RET()
}
