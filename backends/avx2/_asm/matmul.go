package main

import (
	"strconv"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

func genMatMul() {
	genGemm("gemm4", 4, 3, false)
	genGemm("gemm1", 1, 6, false)
	// gemm4 with the inputs split (long rows, or many: see the Go side's splitInputs).
	genGemm("gemm4s", 4, 3, true)
	genMatVec()
	genMatVecSpread()
}

// gemmUnrollYMM is how many 16-column steps genGemm's column loop takes an iteration
// (2 or 4).
var gemmUnrollYMM = 4

// genGemm emits a kernel for groups of R consecutive weight rows against all T tokens,
// Tb tokens at a time (then Tb-1, ..., 1 for the remainder). Every (row, token) dot
// product is summed exactly as matvec sums a row — over every 16 columns the even
// vector into one accumulator and the odd one into another, one more whole vector into
// the first, the masked tail into the second, the two added (first + second) and
// reduced pairwise, then the bias added — so that a token's results do not depend on
// T, on the other tokens, or on the rows' ranges (a batched decode step gives every
// sequence the bits it would get alone). The two accumulators are independent sums,
// so where both do not fit the registers (4 rows × 2 or 3 tokens) the micro-kernel
// takes them one after the other, each in one register per (row, token): the odd
// vectors and the tail first, saved on the stack, then the even ones and the whole
// vector, to which the saved sums are added. So it keeps 12 accumulators in registers
// and loads each of the 4 weight and 3 input vectors once per 8 columns; the second
// pass finds the rows and inputs in L1 (the caller keeps k to a segment that fits).
// 4 rows × 1 token and 1 row × up to 6 tokens take both halves in one pass.
//
// With split, the kernel takes each token's inputs split (k a multiple of 16): the odd
// 8 columns of every 16 first, then the even ones, so that each pass reads only its own
// half of the inputs, one sequential run, and the inputs need not stay in L1 from the
// first pass to the second: on rows of 2048 and 3072 columns at T = 128, where a
// segment's four rows and three tokens fill much of L1, 1–10% for f32 weights and 4–15%
// for f16 and bf16 (widened in the GEMM, which takes L1 too); on 768 columns 0–9% with
// 2048 or 3072 rows, from −3 to +2% with 768 (see splitInputs). The weights, which stay
// in L1 across the blocks of tokens, are read as they are; the products and their order
// are the same.
//
// The column loop takes gemmUnrollYMM (4) 16-column steps an iteration (then 2, then 1
// for the steps left over; the same sums): its index update and branch, which on Intel
// cores take the FMA ports' slots too, come once per 4 steps rather than 2 — 1–3 points
// of %peak at T = 128 on an AVX2-only run of a Sapphire Rapids-class Xeon.
//
// Tried on rows of 768–3072 columns at T = 128 without a gain that held up against the
// run-to-run spread (±5–10% on a shared machine; compare kernels call by call, in one
// process, with an A/A control): a 6-row × 2-token tile (the same sums; 2–5% faster than
// 4 × 3 on inputs as they are, none on split inputs, which the long and many rows
// already take); prefetching the next block of tokens' inputs to L1 inside the loop
// (10–20% slower); prefetching only the first 8 lines of each input stream the next
// pass reads, once per pass (4–9% faster for the kernel alone on 768 columns, from −11
// to +5% in MatMul); the next f32 rows' prefetches as PREFETCHT1 rather than PREFETCHT0
// (they are used a call later, after the inputs have streamed through L1: every f32
// shape's %peak unchanged within ±2 points).
func genGemm(name string, R, Tb int, split bool) {
	doc := []string{
		name + " computes, for r < " + itoa(R) + "·groups (groups ≥ 1) and t < T,",
		"  dst[t*ldd+r] = Σ_{i<k} x[t*ldx+i]·w[r*ldw+i] (+ bias[r] if bias != nil),",
		"each sum exactly as matvec takes it; or a segment of those sums: unless seg&1, the",
		"accumulators start from the 16 floats at st[(t*" + itoa(R) + "*groups+r)*16] rather than zero,",
		"and unless seg&2 they are stored there and nothing else is (k then a multiple of 16).",
		"Meanwhile it prefetches the pfn bytes at pf (the weights that come next), pfl cache",
		"lines at the start of every block of tokens, so that they arrive during the products;",
		"or, for kind ≠ 0, widens them: pfl 64-byte units of 32 halves a block, each to 32",
		"floats at cv onwards (kind 1 as widenH, 2 widenBF, 3 widenHM, 4 widenBFM; pfn a",
		"multiple of 64), prefetching the halves 8 units ahead.",
	}
	if split {
		doc = append(doc, "x holds each token's inputs split: the odd 8 of every 16 columns (in order), then",
			"the even ones, k/2 floats on; k is a multiple of 16.")
	}
	lb := fn(name, "func(dst *float32, ldd int, x *float32, ldx int, T int, w *float32, ldw int, k int, bias *float32, groups int, st *float32, seg int, pf *byte, pfn int, pfl int, cv *float32, kind int)", doc...)
	wcur, goff, gleft := AllocLocal(8), AllocLocal(8), AllocLocal(8)
	xcur, dcur, tleft, scur := AllocLocal(8), AllocLocal(8), AllocLocal(8), AllocLocal(8)
	pfcur, pfleft, cvcur := AllocLocal(8), AllocLocal(8), AllocLocal(8)
	saved := AllocLocal(32 * R * Tb) // the odd accumulators, (t·R + r)·32 bytes

	initGroups(goff, wcur, gleft)
	{
		p := Load(Param("pf"), GP64())
		MOVQ(p, pfcur)
		n := Load(Param("pfn"), GP64())
		MOVQ(n, pfleft)
		c := Load(Param("cv"), GP64())
		MOVQ(c, cvcur)
	}
	group := lb.next("group")
	Label(group)
	{
		o := startGroup(xcur, dcur, tleft, goff)
		sp := Load(Param("st"), GP64())
		SHLQ(U8(4), o) // R·4 bytes per group → R·64
		ADDQ(o, sp)
		MOVQ(sp, scur)
	}
	// ldstBytes loads R·groups·64, the state's bytes per token.
	ldstBytes := func() Register {
		r := Load(Param("groups"), GP64())
		SHLQ(U8(uint8(6+log2(R))), r)
		return r
	}

	block := func(Tt int) {
		Commentf("%d rows × %d tokens", R, Tt)
		{
			// pfl lines of the next weights, while any are left.
			p, n, c := GP64(), GP64(), GP64()
			MOVQ(pfcur, p)
			MOVQ(pfleft, n)
			Load(Param("pfl"), c)
			more, end, conv := lb.next("pf"), lb.next("pf_done"), lb.next("cv")
			kd := Load(Param("kind"), GP64())
			TESTQ(kd, kd)
			JNZ(LabelRef(conv))
			Label(more)
			TESTQ(n, n)
			JLE(LabelRef(end))
			TESTQ(c, c)
			JZ(LabelRef(end))
			PREFETCHT0(Mem{Base: p})
			ADDQ(U8(64), p)
			SUBQ(U8(64), n)
			DECQ(c)
			JMP(LabelRef(more))

			// The next rows widened a unit at a time, in the order of their kind.
			Label(conv)
			q := GP64()
			MOVQ(cvcur, q)
			unit, unitDone, cvEnd := lb.next("cv_unit"), lb.next("cv_unit_done"), lb.next("cv_done")
			Label(unit)
			TESTQ(n, n)
			JLE(LabelRef(cvEnd))
			TESTQ(c, c)
			JZ(LabelRef(cvEnd))
			PREFETCHT0(Mem{Base: p, Disp: 8 * 64})
			kinds := []string{lb.next("cv_h"), lb.next("cv_bf"), lb.next("cv_hm"), lb.next("cv_bfm")}
			for k := 1; k < 4; k++ {
				CMPQ(kd, U8(uint8(k)))
				JE(LabelRef(kinds[k-1]))
			}
			JMP(LabelRef(kinds[3]))
			for k, l := range kinds {
				Label(l)
				widenUnit(k+1, p, q)
				JMP(LabelRef(unitDone))
			}
			Label(unitDone)
			ADDQ(U8(64), p)
			SUBQ(U8(64), n)
			ADDQ(U32(128), q)
			DECQ(c)
			JMP(LabelRef(unit))
			Label(cvEnd)
			MOVQ(q, cvcur)

			Label(end)
			MOVQ(p, pfcur)
			MOVQ(n, pfleft)
		}
		xs := make([]Register, Tt)
		xs[0] = GP64()
		MOVQ(xcur, xs[0])
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
		// stateAt calls f with the address of half h of each (row, token)'s saved
		// accumulators.
		stateAt := func(h int, f func(r, t int, m Mem)) {
			sp := GP64()
			MOVQ(scur, sp)
			ldst := ldstBytes()
			for t := 0; t < Tt; t++ {
				if t > 0 {
					ADDQ(ldst, sp)
				}
				for r := 0; r < R; r++ {
					f(r, t, Mem{Base: sp, Disp: 64*r + 32*h})
				}
			}
		}
		savedAt := func(r, t int) Mem {
			m := saved
			m.Disp += 32 * (t*R + r)
			return m
		}

		// pass sums the halves hs (even vectors: 0, odd ones: 1) of every (row, token)
		// into acc[h].
		pass := func(hs ...int) [2][][]VecVirtual {
			var acc [2][][]VecVirtual
			for _, h := range hs {
				acc[h] = make([][]VecVirtual, R)
				for r := range acc[h] {
					acc[h][r] = ymms(Tt)
				}
			}
			fresh, started := lb.next("fresh"), lb.next("started")
			sg := Load(Param("seg"), GP64())
			TESTQ(U32(1), sg)
			JNZ(LabelRef(fresh))
			for _, h := range hs {
				stateAt(h, func(r, t int, m Mem) { VMOVUPS(m, acc[h][r][t]) })
			}
			JMP(LabelRef(started))
			Label(fresh)
			for _, h := range hs {
				for r := range acc[h] {
					zero(acc[h][r]...)
				}
			}
			Label(started)

			// The inputs of half h: as they are, or split (the odd vectors of
			// every 16 columns first, then the even ones, k/2 floats further).
			xh := [2][]Register{xs, xs}
			if split {
				for _, h := range hs {
					if h == 0 {
						hb := Load(Param("k"), GP64())
						SHLQ(U8(1), hb) // k/2 floats
						xh[0] = make([]Register, Tt)
						for t := range xh[0] {
							xh[0][t] = GP64()
							LEAQ(Mem{Base: xs[t], Index: hb, Scale: 1}, xh[0][t])
						}
					}
				}
			}
			// step multiplies the vectors of half h at byte offset i+disp (the
			// weights; split inputs at i/2+disp/2-32h) into acc.
			step := func(i Register, disp, h int, acc [][]VecVirtual) {
				xm := func(t int) Mem { return Mem{Base: xh[h][t], Index: i, Scale: 1, Disp: disp} }
				wm := func(r int) Mem { return Mem{Base: wr[r], Index: i, Scale: 1, Disp: disp} }
				if split {
					// i counts the split inputs' bytes, half the weights'.
					xm = func(t int) Mem { return Mem{Base: xh[h][t], Index: i, Scale: 1, Disp: (disp - 32*h) / 2} }
					wm = func(r int) Mem { return Mem{Base: wr[r], Index: i, Scale: 2, Disp: disp} }
				}
				if R == 1 {
					w := YMM()
					VMOVUPS(wm(0), w)
					for t := 0; t < Tt; t++ {
						VFMADD231PS(xm(t), w, acc[0][t])
					}
					return
				}
				xv := ymms(Tt)
				for t := 0; t < Tt; t++ {
					VMOVUPS(xm(t), xv[t])
				}
				for r := 0; r < R; r++ {
					w := YMM()
					VMOVUPS(wm(r), w)
					for t := 0; t < Tt; t++ {
						VFMADD231PS(xv[t], w, acc[r][t])
					}
				}
			}
			sh := uint8(2) // bytes of i per column
			ib := 128      // i per iteration
			if split {
				sh, ib = 1, 64
			}
			// gemmUnrollYMM 16-column steps an iteration, then the ones left over
			// (two, then one): fewer pointer updates and loop branches, which take
			// the FMA ports' slots on Intel cores too.
			i := GP64()
			XORQ(i, i)
			u := gemmUnrollYMM
			kU := Load(Param("k"), GP64())
			ANDQ(I32(int32(-16*u)), kU)
			SHLQ(U8(sh), kU)
			body, check, done := lb.next("body"), lb.next("check"), lb.next("pass_done")
			JMP(LabelRef(check))
			Label(body)
			for s := 0; s < u; s++ {
				for _, h := range hs {
					step(i, 64*s+32*h, h, acc[h])
				}
			}
			ADDQ(U32(uint32(ib*u/2)), i)
			Label(check)
			CMPQ(i, kU)
			JL(LabelRef(body))
			if u > 2 {
				k32 := Load(Param("k"), GP64())
				ANDQ(I32(-32), k32)
				SHLQ(U8(sh), k32)
				two := lb.next("two")
				CMPQ(i, k32)
				JGE(LabelRef(two))
				for s := 0; s < 2; s++ {
					for _, h := range hs {
						step(i, 64*s+32*h, h, acc[h])
					}
				}
				ADDQ(U8(uint8(ib)), i)
				Label(two)
			}
			k16 := Load(Param("k"), GP64())
			ANDQ(I32(-16), k16)
			SHLQ(U8(sh), k16)
			odd16 := lb.next("odd16")
			CMPQ(i, k16)
			JGE(LabelRef(odd16))
			for _, h := range hs {
				step(i, 32*h, h, acc[h])
			}
			ADDQ(U8(uint8(ib/2)), i)
			Label(odd16)
			if split { // k is a multiple of 16: no columns left
				Label(done)
				return acc
			}

			kmain := Load(Param("k"), GP64())
			ANDQ(I32(-8), kmain)
			SHLQ(U8(2), kmain)
			for _, h := range hs {
				if h == 0 {
					// One more whole vector, as in matvec.
					more := lb.next("more")
					CMPQ(i, kmain)
					JGE(LabelRef(more))
					step(i, 0, 0, acc[0])
					Label(more)
					continue
				}
				// The masked tail, past that vector.
				rem := Load(Param("k"), GP64())
				ANDQ(U8(7), rem)
				JZ(LabelRef(done))
				m := YMM()
				loadMask(rem, m)
				for t := 0; t < Tt; t++ {
					xv := YMM()
					VMASKMOVPS(Mem{Base: xs[t], Index: kmain, Scale: 1}, m, xv)
					for r := 0; r < R; r++ {
						wv := YMM()
						VMASKMOVPS(Mem{Base: wr[r], Index: kmain, Scale: 1}, m, wv)
						VFMADD231PS(xv, wv, acc[1][r][t])
					}
				}
			}
			Label(done)
			return acc
		}

		// Both halves at once when their accumulators fit the registers (4 rows × 1
		// token, 1 row × up to 6 tokens); else the odd ones first, saved.
		var even [][]VecVirtual
		var odd func(r, t int) Op
		if 2*R*Tt <= 12 {
			acc := pass(0, 1)
			even = acc[0]
			odd = func(r, t int) Op { return acc[1][r][t] }
		} else {
			// The odd sums go where they are needed next: on a segment before the
			// last straight to the state, else to the stack for the final sums.
			acc := pass(1)
			toState, stored := lb.next("odd_state"), lb.next("odd_stored")
			sg := Load(Param("seg"), GP64())
			TESTQ(U32(2), sg)
			JZ(LabelRef(toState))
			for r := range acc[1] {
				for t := range acc[1][r] {
					VMOVUPS(acc[1][r][t], savedAt(r, t))
				}
			}
			JMP(LabelRef(stored))
			Label(toState)
			stateAt(1, func(r, t int, m Mem) { VMOVUPS(acc[1][r][t], m) })
			Label(stored)
			even = pass(0)[0]
			odd = func(r, t int) Op { return savedAt(r, t) }
		}

		final, next := lb.next("final"), lb.next("next")
		sg := Load(Param("seg"), GP64())
		TESTQ(U32(2), sg)
		JNZ(LabelRef(final))
		stateAt(0, func(r, t int, m Mem) { VMOVUPS(even[r][t], m) })
		if 2*R*Tt <= 12 {
			stateAt(1, func(r, t int, m Mem) { VMOVUPS(odd(r, t), m) })
		}
		JMP(LabelRef(next))

		Label(final)
		d := GP64()
		MOVQ(dcur, d)
		ldd := bytesOf("ldd")
		for t := 0; t < Tt; t++ {
			if t > 0 {
				ADDQ(ldd, d)
			}
			for r := 0; r < R; r++ {
				VADDPS(odd(r, t), even[r][t], even[r][t])
			}
			var h Register
			if R == 4 {
				h = reduce4(even[0][t], even[1][t], even[2][t], even[3][t])
			} else {
				h = hsumPairwise(even[0][t])
			}
			nob := lb.next("nobias")
			b := Load(Param("bias"), GP64())
			TESTQ(b, b)
			JZ(LabelRef(nob))
			o := GP64()
			MOVQ(goff, o)
			if R == 4 {
				VADDPS(Mem{Base: b, Index: o, Scale: 1}, h, h)
			} else {
				VADDSS(Mem{Base: b, Index: o, Scale: 1}, h, h)
			}
			Label(nob)
			if R == 4 {
				VMOVUPS(h, Mem{Base: d})
			} else {
				VMOVSS(h, Mem{Base: d})
			}
		}

		// The next block's tokens.
		Label(next)
		ldd = bytesOf("ldd")
		IMUL3Q(Imm(uint64(Tt)), ldd, ldd)
		ADDQ(ldd, dcur)
		ldx := bytesOf("ldx")
		if Tt > 1 {
			IMUL3Q(Imm(uint64(Tt)), ldx, ldx)
		}
		ADDQ(ldx, xcur)
		ldst := ldstBytes()
		if Tt > 1 {
			IMUL3Q(Imm(uint64(Tt)), ldst, ldst)
		}
		ADDQ(ldst, scur)
		SUBQ(Imm(uint64(Tt)), tleft)
	}

	loop, done := lb.next("tokens"), lb.next("tokens_done")
	Label(loop)
	CMPQ(tleft, Imm(uint64(Tb)))
	JL(LabelRef(done))
	block(Tb)
	JMP(LabelRef(loop))
	Label(done)
	for s := Tb - 1; s >= 1; s-- {
		skip := lb.next("skip")
		CMPQ(tleft, Imm(uint64(s)))
		JL(LabelRef(skip))
		block(s)
		Label(skip)
	}

	// The next group of rows.
	ADDQ(U8(4*R), goff)
	ldw := bytesOf("ldw")
	if R > 1 {
		IMUL3Q(Imm(uint64(R)), ldw, ldw)
	}
	ADDQ(ldw, wcur)
	DECQ(gleft)
	JNZ(LabelRef(group))
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

func itoa(i int) string { return strconv.Itoa(i) }

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

// widenUnit widens the 32 halves at src to the 32 floats at dst in the order of kind (1
// as widenH, 2 widenBF, 3 widenHM, 4 widenBFM: the same instructions, so the same bits).
func widenUnit(kind int, src, dst Register) {
	// split widens the 16 halves at byte offset disp into their even and odd columns.
	split := func(disp int, f16 bool) (VecVirtual, VecVirtual) {
		ev, od := YMM(), YMM()
		VMOVDQU(Mem{Base: src, Disp: disp}, od)
		VPSLLD(U8(16), od, ev)
		VPAND(vconst("hiwords", 0xffff0000), od, od)
		if f16 {
			VPSRAD(U8(3), ev, ev)
			VPSRAD(U8(3), od, od)
			VPAND(vconst("f16bits", 0x8fffe000), ev, ev)
			VPAND(vconst("f16bits", 0x8fffe000), od, od)
			VMULPS(vf32("two112", 0x1p112), ev, ev)
			VMULPS(vf32("two112", 0x1p112), od, od)
		}
		return ev, od
	}
	var ys []VecVirtual
	switch kind {
	case 1, 2:
		ys = ymms(4)
		for i, y := range ys {
			cvtHalf(kind == 2, Mem{Base: src, Disp: 16 * i}, y)
		}
	case 3:
		a, b := YMM(), YMM()
		VCVTPH2PS(Mem{Base: src}, a)
		VCVTPH2PS(Mem{Base: src, Disp: 16}, b)
		ev, od := split(32, true)
		ys = []VecVirtual{a, b, ev, od}
	default:
		e0, o0 := split(0, false)
		e1, o1 := split(32, false)
		ys = []VecVirtual{e0, o0, e1, o1}
	}
	for i, y := range ys {
		VMOVUPS(y, Mem{Base: dst, Disp: 32 * i})
	}
}
