package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genHalf emits the two halves of attention over a binary16 KV cache, converting 8
// halves at a time with F16C's VCVTPH2PS as they are loaded. The caller guarantees
// k (and hd) are multiples of 8, so there are no tails; other shapes take the
// reference's path.
func genHalf() {
	genMatVecHalf(false)
	genMatVecHalf(true)
	genMatVecHalfSpread(false)
	genMatVecHalfSpread(true)
	genWsumHalf()
}

// cvtHalf loads 8 halves from m and widens them to float32 in y: binary16 by F16C's
// VCVTPH2PS, bfloat16 (the upper half of a float32) by zero-extending and shifting.
func cvtHalf(bf16 bool, m Mem, y VecVirtual) {
	if bf16 {
		VPMOVZXWD(m, y)
		VPSLLD(U8(16), y, y)
		return
	}
	VCVTPH2PS(m, y)
}

// genMatVecHalf: matvec (4 rows, 2 accumulators per row) on half rows: the attention
// scores over a binary16 cache, and f16 or bf16 weights.
func genMatVecHalf(bf16 bool) {
	var lb *labels
	if bf16 {
		lb = fn("matvecBF", "func(dst *float32, x *float32, w *uint16, ldw int, k int, rows int)",
			"matvecBF is matvecH for bfloat16 w.")
	} else {
		lb = fn("matvecH", "func(dst *float32, x *float32, w *uint16, ldw int, k int, rows int)",
			"matvecH computes dst[r] = Σ_{i<k} x[i]·w[r*ldw+i] for r < rows, w binary16, k a multiple of 8.")
	}
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	ldw := Load(Param("ldw"), GP64())
	SHLQ(U8(1), ldw) // bytes
	k := Load(Param("k"), GP64())
	k16 := GP64()
	MOVQ(k, k16)
	ANDQ(I32(-16), k16)

	rowBlock := func(R int) {
		wr := make([]Register, R)
		wr[0] = w
		for r := 1; r < R; r++ {
			wr[r] = GP64()
			LEAQ(Mem{Base: wr[r-1], Index: ldw, Scale: 1}, wr[r])
		}
		acc := halfDots(lb, bf16, x, wr, k, k16)
		if R == 4 {
			VMOVUPS(reduce4(acc[0], acc[1], acc[2], acc[3]), Mem{Base: dst})
			ADDQ(U8(16), dst)
		} else {
			VMOVSS(hsumPairwise(acc[0]), Mem{Base: dst})
			ADDQ(U8(4), dst)
		}
		for r := 0; r < R; r++ {
			ADDQ(ldw, w)
		}
		SUBQ(Imm(uint64(R)), rows)
	}

	quad, single, done := lb.next("quad"), lb.next("single"), lb.next("done")
	Label(quad)
	CMPQ(rows, U8(4))
	JL(LabelRef(single))
	rowBlock(4)
	JMP(LabelRef(quad))
	Label(single)
	TESTQ(rows, rows)
	JZ(LabelRef(done))
	rowBlock(1)
	JMP(LabelRef(single))
	Label(done)
	VZEROUPPER()
	RET()
}

// halfDots emits the dot products of x[:k] with the half rows at wr (k a multiple of 8,
// k16 = k rounded down to 16): two accumulators per row over 16 elements at a time, then
// one more step of 8; it returns each row's accumulators added (8 lanes to reduce).
func halfDots(lb *labels, bf16 bool, x Register, wr []Register, k, k16 Register) []VecVirtual {
	acc := make([][2]VecVirtual, len(wr))
	for r := range acc {
		acc[r] = [2]VecVirtual{YMM(), YMM()}
		zero(acc[r][0], acc[r][1])
	}
	e := GP64() // element index
	XORQ(e, e)
	body, check, reduce := lb.next("body"), lb.next("check"), lb.next("reduce")
	JMP(LabelRef(check))
	Label(body)
	x0, x1 := YMM(), YMM()
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4}, x0)
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4, Disp: 32}, x1)
	for r := 0; r < len(wr); r++ {
		t0, t1 := YMM(), YMM()
		cvtHalf(bf16, Mem{Base: wr[r], Index: e, Scale: 2}, t0)
		cvtHalf(bf16, Mem{Base: wr[r], Index: e, Scale: 2, Disp: 16}, t1)
		VFMADD231PS(t0, x0, acc[r][0])
		VFMADD231PS(t1, x1, acc[r][1])
	}
	ADDQ(U8(16), e)
	Label(check)
	CMPQ(e, k16)
	JL(LabelRef(body))
	CMPQ(e, k)
	JGE(LabelRef(reduce))
	x0 = YMM()
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4}, x0)
	for r := 0; r < len(wr); r++ {
		t0 := YMM()
		cvtHalf(bf16, Mem{Base: wr[r], Index: e, Scale: 2}, t0)
		VFMADD231PS(t0, x0, acc[r][0])
	}
	Label(reduce)
	for r := 0; r < len(wr); r++ {
		VADDPS(acc[r][1], acc[r][0], acc[r][0])
	}
	sums := make([]VecVirtual, len(wr))
	for r := range acc {
		sums[r] = acc[r][0]
	}
	return sums
}

// genWsumHalf: out = Σ_j p[j]·v_j over half rows, 64 columns (8 accumulators) at a time,
// then 8 at a time.
func genWsumHalf() {
	lb := fn("wsumH", "func(out *float32, v *uint16, stride int, p *float32, n int, hd int)",
		"wsumH computes out[i] = Σ_{j<n} p[j]·v[j*stride+i] for i < hd (n ≥ 1, v binary16, hd a multiple of 8).")
	out := Load(Param("out"), GP64())
	v := Load(Param("v"), GP64())
	hd := Load(Param("hd"), GP64())
	stride := Load(Param("stride"), GP64())
	SHLQ(U8(1), stride)

	chunk := func(W int) {
		top, skip := lb.next("chunk"), lb.next("chunk_done")
		Label(top)
		CMPQ(hd, U8(8*W))
		JL(LabelRef(skip))
		acc := ymms(W)
		zero(acc...)
		vp := GP64()
		MOVQ(v, vp)
		pp := Load(Param("p"), GP64())
		cnt := Load(Param("n"), GP64())
		rows := lb.next("rows")
		Label(rows)
		pv := YMM()
		VBROADCASTSS(Mem{Base: pp}, pv)
		for m := 0; m < W; m++ {
			t := YMM()
			VCVTPH2PS(Mem{Base: vp, Disp: 16 * m}, t)
			VFMADD231PS(t, pv, acc[m])
		}
		ADDQ(stride, vp)
		ADDQ(U8(4), pp)
		DECQ(cnt)
		JNZ(LabelRef(rows))
		for m := 0; m < W; m++ {
			VMOVUPS(acc[m], Mem{Base: out, Disp: 32 * m})
		}
		ADDQ(U32(32*W), out)
		ADDQ(U32(16*W), v)
		SUBQ(U8(8*W), hd)
		JMP(LabelRef(top))
		Label(skip)
	}
	chunk(8)
	chunk(1)
	VZEROUPPER()
	RET()
}

// genMatVecHalfSpread: matvecH/matvecBF over the four quarters of the rows at once, each
// a long sequential stream (as matvecSpread for f32), for half-precision weights.
func genMatVecHalfSpread(bf16 bool) {
	name, what := "matvecHSpread", "binary16"
	if bf16 {
		name, what = "matvecBFSpread", "bfloat16"
	}
	lb := fn(name, "func(dst *float32, x *float32, w *uint16, ldw int, k int, blocks int, gap int)",
		name+" computes dst[r] = Σ_{i<k} x[i]·w[r*ldw+i] for r = q·gap + b, q < 4, b < blocks",
		"(blocks ≥ 1), w "+what+", k a multiple of 8; each row exactly as matvecH/matvecBF would.")
	x := Load(Param("x"), GP64())
	ldw := Load(Param("ldw"), GP64())
	SHLQ(U8(1), ldw) // bytes
	k := Load(Param("k"), GP64())
	k16 := GP64()
	MOVQ(k, k16)
	ANDQ(I32(-16), k16)
	wr := spreadRows(Load(Param("w"), GP64()), ldw)
	block := lb.next("block")
	Label(block)
	acc := halfDots(lb, bf16, x, wr, k, k16)
	h := reduce4(acc[0], acc[1], acc[2], acc[3])
	g := Load(Param("gap"), GP64())
	SHLQ(U8(2), g) // gap floats, in bytes
	storeSpread(h, g)
	nextSpreadBlock(wr, ldw, block)
	VZEROUPPER()
	RET()
}
