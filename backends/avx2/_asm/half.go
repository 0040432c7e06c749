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
	for _, h := range []halfKind{{}, {bf16: true}, {mix: true}, {bf16: true, mix: true}} {
		genMatVecHalf(h)
		genMatVecHalfSpread(h)
	}
	genWsumHalf()
	genWiden(false)
	genWiden(true)
	genWidenSplit(false)
	genWidenSplit(true)
	genArrange(false)
	genArrange(true)
}

// genArrange: arrangeHM and arrangeBFM, the tokens' inputs of a prefill on f16 or bf16
// weights in the column order widenHM or widenBFM lays the rows out in (a copy, no
// arithmetic), 32 columns at a time: VPERMPS gathers each 8 columns' even ones in the
// low half and the odd ones in the high half, VPERM2F128 joins two such halves.
func genArrange(bf16 bool) {
	name := "arrangeHM"
	doc := []string{
		"arrangeHM writes the n floats at x (n a multiple of 32) to dst in widenHM's order: in",
		"every 32, columns 0–15 as they are, then the even columns of 16–31, then the odd ones.",
	}
	if bf16 {
		name = "arrangeBFM"
		doc = []string{
			"arrangeBFM writes the n floats at x (n a multiple of 32) to dst in widenBFM's order:",
			"every 16 columns as their 8 even ones, then their 8 odd ones.",
		}
	}
	lb := fn(name, "func(dst *float32, x *float32, n int)", doc...)
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	SHLQ(U8(2), n)
	idx := YMM()
	VMOVDQU(evenOddIndex(), idx)
	i := GP64()
	XORQ(i, i)
	body, check := lb.next("body"), lb.next("check")
	JMP(LabelRef(check))
	Label(body)
	// split writes the 16 columns at byte offset disp as their even, then odd ones.
	split := func(disp int) {
		a, b, e, o := YMM(), YMM(), YMM(), YMM()
		VPERMPS(Mem{Base: x, Index: i, Scale: 1, Disp: disp}, idx, a)
		VPERMPS(Mem{Base: x, Index: i, Scale: 1, Disp: disp + 32}, idx, b)
		VPERM2F128(U8(0x20), b, a, e)
		VPERM2F128(U8(0x31), b, a, o)
		VMOVUPS(e, Mem{Base: dst, Index: i, Scale: 1, Disp: disp})
		VMOVUPS(o, Mem{Base: dst, Index: i, Scale: 1, Disp: disp + 32})
	}
	if bf16 {
		split(0)
	} else {
		for d := 0; d < 64; d += 32 {
			y := YMM()
			VMOVUPS(Mem{Base: x, Index: i, Scale: 1, Disp: d}, y)
			VMOVUPS(y, Mem{Base: dst, Index: i, Scale: 1, Disp: d})
		}
	}
	split(64)
	ADDQ(U8(128), i)
	Label(check)
	CMPQ(i, n)
	JL(LabelRef(body))
	VZEROUPPER()
	RET()
}

// evenOddIndex returns the VPERMPS index that puts the even lanes of 8 in the low half
// and the odd ones in the high half.
func evenOddIndex() Mem {
	const name = "evenodd8"
	if m, ok := vconsts[name]; ok {
		return m
	}
	m := GLOBL(name, RODATA|NOPTR)
	for j, v := range []uint32{0, 2, 4, 6, 1, 3, 5, 7} {
		DATA(4*j, U32(v))
	}
	vconsts[name] = m
	return m
}

// genWidenSplit: widenHM and widenBFM, the rows a prefill widens for the f32 GEMM in the
// column order the mix kernels (matvecHM, matvecBFM) take them, so that the GEMM on
// them sums each row exactly as the mix kernel does for T = 1.
func genWidenSplit(bf16 bool) {
	name := "widenHM"
	doc := []string{
		"widenHM widens the n binary16 values at src (n a multiple of 8, no infinities or NaNs)",
		"to float32 at dst in matvecHM's order: in every 32 of the first n&^31, columns 0–15",
		"as they are, then the even columns of 16–31, then the odd ones; the rest as they are.",
	}
	if bf16 {
		name = "widenBFM"
		doc = []string{
			"widenBFM widens the n bfloat16 values at src (n a multiple of 8) to float32 at dst",
			"in matvecBFM's order: every 16 of the first n&^31 as their 8 even columns, then",
			"their 8 odd ones; the rest as they are.",
		}
	}
	lb := fn(name, "func(dst *float32, src *uint16, n int)", doc...)
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	n := Load(Param("n"), GP64())
	n32 := GP64()
	MOVQ(n, n32)
	ANDQ(I32(-32), n32)
	hiWords := YMM()
	VMOVDQU(vconst("hiwords", 0xffff0000), hiWords)
	var f16Bits, scale VecVirtual
	if !bf16 {
		f16Bits, scale = YMM(), YMM()
		VMOVDQU(vconst("f16bits", 0x8fffe000), f16Bits)
		VMOVUPS(vf32("two112", 0x1p112), scale)
	}
	e := GP64()
	XORQ(e, e)
	body, check, tail, done := lb.next("body"), lb.next("check"), lb.next("tail"), lb.next("done")
	JMP(LabelRef(check))
	Label(body)
	// split widens the 16 halves at byte offset disp into their even and odd columns.
	split := func(disp int) (VecVirtual, VecVirtual) {
		ev, od := YMM(), YMM()
		VMOVDQU(Mem{Base: src, Index: e, Scale: 2, Disp: disp}, od)
		VPSLLD(U8(16), od, ev)
		VPAND(hiWords, od, od)
		if !bf16 {
			// As matvecHM: h·2⁻¹¹² by integer operations, then exactly h.
			VPSRAD(U8(3), ev, ev)
			VPSRAD(U8(3), od, od)
			VPAND(f16Bits, ev, ev)
			VPAND(f16Bits, od, od)
			VMULPS(scale, ev, ev)
			VMULPS(scale, od, od)
		}
		return ev, od
	}
	var ys []VecVirtual
	if bf16 {
		e0, o0 := split(0)
		e1, o1 := split(32)
		ys = []VecVirtual{e0, o0, e1, o1}
	} else {
		a, b := YMM(), YMM()
		VCVTPH2PS(Mem{Base: src, Index: e, Scale: 2}, a)
		VCVTPH2PS(Mem{Base: src, Index: e, Scale: 2, Disp: 16}, b)
		ev, od := split(32)
		ys = []VecVirtual{a, b, ev, od}
	}
	for i, y := range ys {
		VMOVUPS(y, Mem{Base: dst, Index: e, Scale: 4, Disp: 32 * i})
	}
	ADDQ(U8(32), e)
	Label(check)
	CMPQ(e, n32)
	JL(LabelRef(body))
	Label(tail)
	CMPQ(e, n)
	JGE(LabelRef(done))
	y := YMM()
	cvtHalf(bf16, Mem{Base: src, Index: e, Scale: 2}, y)
	VMOVUPS(y, Mem{Base: dst, Index: e, Scale: 4})
	ADDQ(U8(8), e)
	JMP(LabelRef(tail))
	Label(done)
	VZEROUPPER()
	RET()
}

// genWiden: dst[i] = float32(src[i]) for i < n (n a multiple of 8), 32 halves at a time
// then 8: the rows a prefill widens before the f32 GEMM multiplies them.
func genWiden(bf16 bool) {
	name, what := "widenH", "binary16"
	if bf16 {
		name, what = "widenBF", "bfloat16"
	}
	lb := fn(name, "func(dst *float32, src *uint16, n int)",
		name+" widens the n "+what+" values at src (n a multiple of 8) to float32 at dst.")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	n := Load(Param("n"), GP64())
	n32 := GP64()
	MOVQ(n, n32)
	ANDQ(I32(-32), n32)
	e := GP64()
	XORQ(e, e)
	body, check, tail, done := lb.next("body"), lb.next("check"), lb.next("tail"), lb.next("done")
	JMP(LabelRef(check))
	Label(body)
	ys := ymms(4)
	for i, y := range ys {
		cvtHalf(bf16, Mem{Base: src, Index: e, Scale: 2, Disp: 16 * i}, y)
	}
	for i, y := range ys {
		VMOVUPS(y, Mem{Base: dst, Index: e, Scale: 4, Disp: 32 * i})
	}
	ADDQ(U8(32), e)
	Label(check)
	CMPQ(e, n32)
	JL(LabelRef(body))
	Label(tail)
	CMPQ(e, n)
	JGE(LabelRef(done))
	y := YMM()
	cvtHalf(bf16, Mem{Base: src, Index: e, Scale: 2}, y)
	VMOVUPS(y, Mem{Base: dst, Index: e, Scale: 4})
	ADDQ(U8(8), e)
	JMP(LabelRef(tail))
	Label(done)
	VZEROUPPER()
	RET()
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

// halfKind selects a half-precision matvec: binary16 widened by VCVTPH2PS, bfloat16
// (bf16), and with mix their twins that widen columns by integer operations on x
// rearranged to match.
//
// Zen 1 widens a YMM of halves with VCVTPH2PS only every ~2.4 cycles, slower than its
// FMA pipes and its memory: the mix kernels widen columns 16–31 of every 32 on the
// integer pipes instead, which run beside the conversion. Each dword of 16 loaded halves
// holds an even and an odd column; shifted into the dword's top (even: VPSLLD 16; odd:
// masked), arithmetically shifted right by 3 and masked with 0x8FFFE000, a binary16 h
// becomes the float32 with h's sign, exponent and mantissa bits in place: h·2⁻¹¹²
// exactly, subnormals and zeros included (not infinities or NaNs). The caller passes x
// in that order, those columns scaled by 2¹¹², so each product equals w·x exactly.
//
// bfloat16 with mix (matvecBFM) splits every 16 columns of the first k&^31 the same way
// but needs no more: a bfloat16 in a dword's top half is its float32. One shift and one
// AND per 16 columns replace two VPMOVZXWD and two shifts.
type halfKind struct{ bf16, mix bool }

// name returns the kernel's name.
func (h halfKind) name() string {
	switch {
	case h.bf16 && h.mix:
		return "matvecBFM"
	case h.bf16:
		return "matvecBF"
	case h.mix:
		return "matvecHM"
	}
	return "matvecH"
}

// doc returns the kernel's doc comment (spread: of its Spread twin).
func (h halfKind) doc(spread bool) []string {
	name, what, rows, twin := h.name(), "binary16", "r < rows", h.name()+"Spread"
	if spread {
		name, rows, twin = twin, "r = q·gap + b, q < 4, b < blocks (blocks ≥ 1)", name
	}
	if h.bf16 {
		what = "bfloat16"
	}
	if h.mix && h.bf16 {
		return []string{name + " is matvecBF" + map[bool]string{false: "", true: "Spread"}[spread] +
			" for x as splitBFX arranges it (even and odd columns of every 16 of the",
			"first k&^31 apart), each row exactly as " + twin + " would."}
	}
	if h.mix {
		return []string{name + " is matvecH" + map[bool]string{false: "", true: "Spread"}[spread] +
			" for w without infinities or NaNs and x as mixHalfX arranges it",
			"(columns 16–31 of every 32 reordered and scaled, widened by integer operations);",
			"each row exactly as " + twin + " would."}
	}
	return []string{name + " computes dst[r] = Σ_{i<k} x[i]·w[r*ldw+i] for " + rows + ",",
		"w " + what + ", k a multiple of 8; each row exactly as " + twin + " would."}
}

// genMatVecHalf: matvec (4 rows, 2 accumulators per row) on half rows: the attention
// scores over a binary16 cache, and f16 or bf16 weights.
func genMatVecHalf(hk halfKind) {
	lb := fn(hk.name(), "func(dst *float32, x *float32, w *uint16, ldw int, k int, rows int)", hk.doc(false)...)
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	w := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	ldw := Load(Param("ldw"), GP64())
	SHLQ(U8(1), ldw) // bytes
	k := Load(Param("k"), GP64())
	kb := GP64()
	MOVQ(k, kb)
	ANDQ(I32(-hk.step()), kb)

	rowBlock := func(R int) {
		wr := make([]Register, R)
		wr[0] = w
		for r := 1; r < R; r++ {
			wr[r] = GP64()
			LEAQ(Mem{Base: wr[r-1], Index: ldw, Scale: 1}, wr[r])
		}
		acc := halfDots(lb, hk, x, wr, k, kb)
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

// halfPrefetch is how far ahead the mix kernels prefetch each row, in bytes.
var halfPrefetch = 256

// step is how many columns the main loop of halfDots takes at a time.
func (h halfKind) step() int {
	if h.mix {
		return 32
	}
	return 16
}

// bf16Split emits the main loop's body of matvecBFM: 32 columns of each row at wr,
// as two groups of 16 whose even columns (VPSLLD 16) and odd ones (masked with
// hiWords) are float32 as they stand; x0 and x1 hold the first group's x (even, odd),
// and x at e+16 has the second's.
func bf16Split(x Register, wr []Register, e Register, hiWords, x0, x1 VecVirtual, acc [][2]VecVirtual) {
	x2, x3 := YMM(), YMM()
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4, Disp: 64}, x2)
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4, Disp: 96}, x3)
	for r := range wr {
		PREFETCHT0(Mem{Base: wr[r], Index: e, Scale: 2, Disp: halfPrefetch})
		for g, xs := range [][2]VecVirtual{{x0, x1}, {x2, x3}} {
			t0, t1 := YMM(), YMM()
			VMOVDQU(Mem{Base: wr[r], Index: e, Scale: 2, Disp: 32 * g}, t1)
			VPSLLD(U8(16), t1, t0)
			VPAND(hiWords, t1, t1)
			VFMADD231PS(t0, xs[0], acc[r][0])
			VFMADD231PS(t1, xs[1], acc[r][1])
		}
	}
}

// halfDots emits the dot products of x[:k] with the half rows at wr (k a multiple of 8,
// kb = k rounded down to hk.step()): two accumulators per row over hk.step() elements
// at a time, then 16 more (two accumulators) and 8 (the first) as far as k goes; it
// returns each row's accumulators added (8 lanes to reduce). Each lane of the two
// accumulators sums the same products in the same order as matvec does over the
// row widened to float32 (by widenHM or widenBFM for the mix kernels, which x
// arranged by arrangeX matches).
func halfDots(lb *labels, hk halfKind, x Register, wr []Register, k, kb Register) []VecVirtual {
	acc := make([][2]VecVirtual, len(wr))
	for r := range acc {
		acc[r] = [2]VecVirtual{YMM(), YMM()}
		zero(acc[r][0], acc[r][1])
	}
	var hiWords, f16Bits VecVirtual
	if hk.mix {
		hiWords = YMM()
		VMOVDQU(vconst("hiwords", 0xffff0000), hiWords)
	}
	if hk.mix && !hk.bf16 {
		f16Bits = YMM()
		VMOVDQU(vconst("f16bits", 0x8fffe000), f16Bits)
	}
	e := GP64() // element index
	XORQ(e, e)
	body, check, tail, reduce := lb.next("body"), lb.next("check"), lb.next("tail"), lb.next("reduce")
	JMP(LabelRef(check))
	Label(body)
	x0, x1 := YMM(), YMM()
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4}, x0)
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4, Disp: 32}, x1)
	if hk.bf16 && hk.mix {
		bf16Split(x, wr, e, hiWords, x0, x1, acc)
	}
	for r := 0; r < len(wr) && !(hk.bf16 && hk.mix); r++ {
		t0, t1 := YMM(), YMM()
		cvtHalf(hk.bf16, Mem{Base: wr[r], Index: e, Scale: 2}, t0)
		cvtHalf(hk.bf16, Mem{Base: wr[r], Index: e, Scale: 2, Disp: 16}, t1)
		VFMADD231PS(t0, x0, acc[r][0])
		VFMADD231PS(t1, x1, acc[r][1])
		if !hk.mix {
			continue
		}
		PREFETCHT0(Mem{Base: wr[r], Index: e, Scale: 2, Disp: halfPrefetch})
		// Columns 16–31 on the integer pipes: even ones in t0, odd ones in t1.
		VMOVDQU(Mem{Base: wr[r], Index: e, Scale: 2, Disp: 32}, t1)
		VPSLLD(U8(16), t1, t0)
		VPAND(hiWords, t1, t1)
		VPSRAD(U8(3), t0, t0)
		VPSRAD(U8(3), t1, t1)
		VPAND(f16Bits, t0, t0)
		VPAND(f16Bits, t1, t1)
		VFMADD231PS(Mem{Base: x, Index: e, Scale: 4, Disp: 64}, t0, acc[r][0])
		VFMADD231PS(Mem{Base: x, Index: e, Scale: 4, Disp: 96}, t1, acc[r][1])
	}
	ADDQ(U8(hk.step()), e)
	Label(check)
	CMPQ(e, kb)
	JL(LabelRef(body))
	// What the main loop leaves (fewer than hk.step() columns): 16 columns more into
	// both accumulators, then 8 into the first — as matvec, and so the f32 GEMM on the
	// widened rows, takes them.
	Label(tail)
	if hk.step() > 16 {
		one := lb.next("tail_one")
		e16 := GP64()
		LEAQ(Mem{Base: e, Disp: 16}, e16)
		CMPQ(e16, k)
		JG(LabelRef(one))
		x0, x1 := YMM(), YMM()
		VMOVUPS(Mem{Base: x, Index: e, Scale: 4}, x0)
		VMOVUPS(Mem{Base: x, Index: e, Scale: 4, Disp: 32}, x1)
		for r := 0; r < len(wr); r++ {
			t0, t1 := YMM(), YMM()
			cvtHalf(hk.bf16, Mem{Base: wr[r], Index: e, Scale: 2}, t0)
			cvtHalf(hk.bf16, Mem{Base: wr[r], Index: e, Scale: 2, Disp: 16}, t1)
			VFMADD231PS(t0, x0, acc[r][0])
			VFMADD231PS(t1, x1, acc[r][1])
		}
		ADDQ(U8(16), e)
		Label(one)
	}
	CMPQ(e, k)
	JGE(LabelRef(reduce))
	x0 = YMM()
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4}, x0)
	for r := 0; r < len(wr); r++ {
		t0 := YMM()
		cvtHalf(hk.bf16, Mem{Base: wr[r], Index: e, Scale: 2}, t0)
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
func genMatVecHalfSpread(hk halfKind) {
	lb := fn(hk.name()+"Spread", "func(dst *float32, x *float32, w *uint16, ldw int, k int, blocks int, gap int)", hk.doc(true)...)
	x := Load(Param("x"), GP64())
	ldw := Load(Param("ldw"), GP64())
	SHLQ(U8(1), ldw) // bytes
	k := Load(Param("k"), GP64())
	kb := GP64()
	MOVQ(k, kb)
	ANDQ(I32(-hk.step()), kb)
	wr := spreadRows(Load(Param("w"), GP64()), ldw)
	block := lb.next("block")
	Label(block)
	acc := halfDots(lb, hk, x, wr, k, kb)
	h := reduce4(acc[0], acc[1], acc[2], acc[3])
	g := Load(Param("gap"), GP64())
	SHLQ(U8(2), g) // gap floats, in bytes
	storeSpread(h, g)
	nextSpreadBlock(wr, ldw, block)
	VZEROUPPER()
	RET()
}
