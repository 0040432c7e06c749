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

// genGemm emits a kernel for groups of R consecutive weight rows against all T tokens:
// Tb tokens at a time (then Tb-1, ..., 1 for the remainder), and for each of those
// blocks every group of rows, so that the block's inputs stay in L1 while the rows
// (which the caller keeps to a few hundred KiB) come from L2. Every (row, token) dot
// product is summed exactly as matvec sums a row — two 8-lane accumulators over the
// even and odd vectors of every 16 columns, one more whole vector into the first, the
// masked tail into the second, the two added and reduced pairwise, then the bias added
// — so that a token's results do not depend on T, on the other tokens, or on the rows'
// ranges (a batched decode step gives every sequence the bits it would get alone). The
// micro-kernel keeps those 2·R·Tb accumulators in registers and loads each of the R
// weight and Tb input vectors once per 8 columns: 2×3 and 1×6 use 12 accumulators.
func genGemm(name string, R, Tb int) {
	lb := fn(name, "func(dst *float32, ldd int, x *float32, ldx int, T int, w *float32, ldw int, k int, bias *float32, groups int, st *float32, seg int)",
		name+" computes, for r < "+itoa(R)+"·groups (groups ≥ 1) and t < T,",
		"  dst[t*ldd+r] = Σ_{i<k} x[t*ldx+i]·w[r*ldw+i] (+ bias[r] if bias != nil),",
		"each sum exactly as matvec takes it; or a segment of those sums: unless seg&1, the",
		"accumulators start from the 16 floats at st[(t*"+itoa(R)+"*groups+r)*16] rather than zero,",
		"and unless seg&2 they are stored there and nothing else is (k then a multiple of 16).",
	)
	wcur, goff, gleft := AllocLocal(8), AllocLocal(8), AllocLocal(8)

	block := func(Tt int) {
		Commentf("%d rows × %d tokens", R, Tt)
		{
			z := GP64()
			XORQ(z, z)
			MOVQ(z, goff)
			w := Load(Param("w"), GP64())
			MOVQ(w, wcur)
			g := Load(Param("groups"), GP64())
			MOVQ(g, gleft)
		}
		group := lb.next("group")
		Label(group)
		xs := make([]Register, Tt)
		xs[0] = Load(Param("x"), GP64())
		if Tt > 1 {
			ldx := bytesOf("ldx")
			for t := 1; t < Tt; t++ {
				xs[t] = GP64()
				LEAQ(Mem{Base: xs[t-1], Index: ldx, Scale: 1}, xs[t])
			}
		}
		wr := make([]Register, R)
		wr[0] = GP64()
		MOVQ(wcur, wr[0])
		if R > 1 {
			ldw := bytesOf("ldw")
			for r := 1; r < R; r++ {
				wr[r] = GP64()
				LEAQ(Mem{Base: wr[r-1], Index: ldw, Scale: 1}, wr[r])
			}
		}
		// acc[r][t][h]: row r, token t, even (h = 0) or odd vectors.
		acc := make([][][2]VecVirtual, R)
		for r := range acc {
			acc[r] = make([][2]VecVirtual, Tt)
			for t := range acc[r] {
				acc[r][t] = [2]VecVirtual{YMM(), YMM()}
			}
		}
		// stateAt calls f with the address of each (row, token)'s saved accumulators.
		stateAt := func(f func(r, t int, m Mem)) {
			sp := Load(Param("st"), GP64())
			o := GP64()
			MOVQ(goff, o)
			SHLQ(U8(4), o) // R·4 bytes per group → R·64
			ADDQ(o, sp)
			ldst := Load(Param("groups"), GP64())
			SHLQ(U8(uint8(6+log2(R))), ldst) // R·groups·64 bytes per token
			for t := 0; t < Tt; t++ {
				if t > 0 {
					ADDQ(ldst, sp)
				}
				for r := 0; r < R; r++ {
					f(r, t, Mem{Base: sp, Disp: 64 * r})
				}
			}
		}
		fresh, started := lb.next("fresh"), lb.next("started")
		sg := Load(Param("seg"), GP64())
		TESTQ(U32(1), sg)
		JNZ(LabelRef(fresh))
		stateAt(func(r, t int, m Mem) {
			VMOVUPS(m, acc[r][t][0])
			m.Disp += 32
			VMOVUPS(m, acc[r][t][1])
		})
		JMP(LabelRef(started))
		Label(fresh)
		for r := range acc {
			for t := range acc[r] {
				zero(acc[r][t][0], acc[r][t][1])
			}
		}
		Label(started)
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
		final, next := lb.next("final"), lb.next("next")
		sg = Load(Param("seg"), GP64())
		TESTQ(U32(2), sg)
		JNZ(LabelRef(final))
		stateAt(func(r, t int, m Mem) {
			VMOVUPS(acc[r][t][0], m)
			m.Disp += 32
			VMOVUPS(acc[r][t][1], m)
		})
		JMP(LabelRef(next))
		Label(final)
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
		off := GP64()
		MOVQ(goff, off)
		ADDQ(off, d)
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
			ADDQ(off, b)
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
		// The next group of rows.
		Label(next)
		ADDQ(U8(4*R), goff)
		ldw := bytesOf("ldw")
		if R > 1 {
			IMUL3Q(Imm(uint64(R)), ldw, ldw)
		}
		ADDQ(ldw, wcur)
		DECQ(gleft)
		JNZ(LabelRef(group))

		// The next block's tokens.
		dn := Load(Param("dst"), GP64())
		ldd = bytesOf("ldd")
		IMUL3Q(Imm(uint64(Tt)), ldd, ldd)
		ADDQ(ldd, dn)
		Store(dn, Param("dst"))
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
		sn := Load(Param("st"), GP64())
		ldst := Load(Param("groups"), GP64())
		SHLQ(U8(uint8(6+log2(R))), ldst)
		IMUL3Q(Imm(uint64(Tt)), ldst, ldst)
		ADDQ(ldst, sn)
		Store(sn, Param("st"))
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

// log2 returns the base-2 logarithm of a power of two.
func log2(n int) int {
	l := 0
	for n > 1 {
		n >>= 1
		l++
	}
	return l
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
