package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The AVX-512 kernels on f16 and bf16 weights (backends/avx512). They take each row in
// backends/avx2's column order (its halfOrder: halfKind's plain kernels, or the mix
// kernels' order for mix), so that the sums are avx2's bit for bit:
//
//   - widenZ* widen rows to float32 in that order for the f32 GEMM (T > 1), as avx2's
//     widenH, widenBF, widenHM and widenBFM do;
//   - gemvZ*4s and gemvZ*1 are the matrix–vector products (T = 1), one 16-lane
//     accumulator per row whose low and high halves are avx2's two 8-lane accumulators,
//     reduced as avx2 reduces them.
//
// Both take 16 halves at a time, widened by one VCVTPH2PS (f16) or VPMOVZXWD and a shift
// (bf16). Where avx2's order takes 16 columns as their 8 even then their 8 odd ones (the
// second 16 of every 32 of the first k&^31 for f16 with mix, every 16 of them for bf16
// with mix), a VPERMPS puts the widened columns in that order (bf16: masked shifts, see
// halfZ): for the products x comes
// arranged to match (unscaled: the integer widening that needs avx2's scaled x is not
// used here, so f16 rows with infinities or NaNs and large |x| would take this order too).

// evenOdd is the VPERMPS index that puts 16 lanes' even lanes first, then the odd ones.
var evenOdd Mem

// constantsHalfZMM emits the constants of the f16 and bf16 kernels.
func constantsHalfZMM() {
	evenOdd = GLOBL("evenodd", RODATA|NOPTR)
	for i := 0; i < 16; i++ { // lane i takes lane 2i (i < 8), 2(i−8)+1 (i ≥ 8)
		DATA(4*i, U32(uint32(2*i%16+i/8)))
	}
}

// genHalfZMM emits the f16 and bf16 kernels of backends/avx512 for each of avx2's orders.
func genHalfZMM() {
	constantsHalfZMM()
	for _, h := range []halfKind{{}, {bf16: true}, {mix: true}, {bf16: true, mix: true}} {
		genWidenZ(h)
		genGemvHalfZ(h, true)
		genGemvHalfZ(h, false)
	}
	genArrangeZHM()
}

// genArrangeZHM emits arrangeZHM, which lays out x in the f16 mix order (HalfMixH) for
// the products, 32 floats at a time: the first 16 as they are, then the even of the next
// 16, then their odd ones (one VPERMPS).
func genArrangeZHM() {
	lb := fn("arrangeZHM", "func(dst *float32, x *float32, n int)",
		"arrangeZHM writes the n float32 at x (n a multiple of 32, n ≥ 32) to dst in the order",
		"of backends/avx2's arrangeX for f16 mix rows: in every 32, the first 16 as they are,",
		"then the even of the other 16, then their odd ones.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	idx := ZMM()
	VMOVDQU32(evenOdd, idx)
	e := GP64()
	XORQ(e, e)
	body := lb.next("body")
	Label(body)
	a, b := ZMM(), ZMM()
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4}, a)
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4, Disp: 64}, b)
	VPERMPS(b, idx, b)
	VMOVUPS(a, Mem{Base: dst, Index: e, Scale: 4})
	VMOVUPS(b, Mem{Base: dst, Index: e, Scale: 4, Disp: 64})
	ADDQ(U8(32), e)
	CMPQ(e, n)
	JL(LabelRef(body))
	VZEROUPPER()
	RET()
}

// zname returns the suffix of h's AVX-512 kernels: H, BF, HM or BFM.
func (h halfKind) zname() string { return h.name()[len("matvec"):] }

// splits reports, for the two groups of 16 columns in every 32 of the first k&^31,
// whether h's order takes the group as its even then its odd columns.
func (h halfKind) splits() [2]bool {
	switch {
	case h.mix && h.bf16:
		return [2]bool{true, true}
	case h.mix:
		return [2]bool{false, true}
	}
	return [2]bool{}
}

// splitter holds what halfZ needs for the columns it takes even then odd: for f16 the
// VPERMPS index evenOdd; for bf16 the masks of the low and high 8 lanes and 0xffff0000
// in every lane.
type splitter struct {
	idx, hiWords VecVirtual
	lo, hi       Register
}

// newSplitter loads the splitter of h's kernels (none when h takes no columns split).
func newSplitter(h halfKind) *splitter {
	sp := h.splits()
	if !sp[0] && !sp[1] {
		return nil
	}
	s := &splitter{}
	if !h.bf16 {
		s.idx = ZMM()
		VMOVDQU32(evenOdd, s.idx)
		return s
	}
	s.hiWords, s.lo, s.hi = ZMM(), K(), K()
	VPBROADCASTD(vconst("hiwords", 0xffff0000), s.hiWords)
	m := GP32()
	MOVL(U32(0x00ff), m)
	KMOVW(m, s.lo)
	KNOTW(s.lo, s.hi)
	return s
}

// halfZ widens the 16 halves at m to float32 in a new ZMM register; with split, in the
// order of their even columns then their odd ones (s from newSplitter). bf16 split takes
// the 8 dwords of the 16 halves into both halves of the register, then each dword's low
// half shifted up in lanes 0–7 (the even columns) and its high half masked in lanes
// 8–15 (the odd ones): no permutation.
func halfZ(bf16 bool, m Mem, split bool, s *splitter) VecVirtual {
	z := ZMM()
	switch {
	case bf16 && split:
		VBROADCASTI64X4(m, z)
		VPSLLD(U8(16), z, s.lo, z)
		VPANDD(s.hiWords, z, s.hi, z)
	case bf16:
		VPMOVZXWD(m, z)
		VPSLLD(U8(16), z, z)
	case split:
		VCVTPH2PS(m, z)
		VPERMPS(z, s.idx, z)
	default:
		VCVTPH2PS(m, z)
	}
	return z
}

// genWidenZ: widenZ<H|BF|HM|BFM>(dst, src, n), the rows a prefill widens for the f32
// GEMM, in h's order.
// widenAhead is how far ahead of its loads (in bytes of halves) widenZ* prefetches:
// the rows it widens come from memory once per product, and the prefetches keep
// more of their lines in flight than the hardware prefetchers do.
const widenAhead = 4096

func genWidenZ(h halfKind) {
	name := "widenZ" + h.zname()
	what := map[bool]string{false: "binary16", true: "bfloat16"}[h.bf16]
	lb := fn(name, "func(dst *float32, src *uint16, n int)",
		name+" widens the n "+what+" values at src (n a multiple of 8) to float32 at dst,",
		"in the order of backends/avx2's widen"+h.zname()+".")
	dst := Load(Param("dst"), GP64())
	src := Load(Param("src"), GP64())
	n := Load(Param("n"), GP64())
	n32 := GP64()
	MOVQ(n, n32)
	ANDQ(I32(-32), n32)
	sp := h.splits()
	spl := newSplitter(h)
	e := GP64()
	XORQ(e, e)
	body, check, tail, eight, done := lb.next("body"), lb.next("check"), lb.next("tail"), lb.next("eight"), lb.next("done")
	JMP(LabelRef(check))
	Label(body)
	PREFETCHT0(Mem{Base: src, Index: e, Scale: 2, Disp: widenAhead})
	for g := 0; g < 2; g++ {
		z := halfZ(h.bf16, Mem{Base: src, Index: e, Scale: 2, Disp: 32 * g}, sp[g], spl)
		VMOVUPS(z, Mem{Base: dst, Index: e, Scale: 4, Disp: 64 * g})
	}
	ADDQ(U8(32), e)
	Label(check)
	CMPQ(e, n32)
	JL(LabelRef(body))
	// The rest, fewer than 32, as they are: 16, then 8.
	Label(tail)
	e16 := GP64()
	LEAQ(Mem{Base: e, Disp: 16}, e16)
	CMPQ(e16, n)
	JG(LabelRef(eight))
	z := halfZ(h.bf16, Mem{Base: src, Index: e, Scale: 2}, false, nil)
	VMOVUPS(z, Mem{Base: dst, Index: e, Scale: 4})
	MOVQ(e16, e)
	Label(eight)
	CMPQ(e, n)
	JGE(LabelRef(done))
	y := YMM()
	cvtHalf(h.bf16, Mem{Base: src, Index: e, Scale: 2}, y)
	VMOVUPS(y, Mem{Base: dst, Index: e, Scale: 4})
	Label(done)
	VZEROUPPER()
	RET()
}

// halfSpreadAhead is how far ahead of its 32 columns (64 bytes of halves, one line)
// each stream of a spread half kernel (gemvZ*4s, gemvBF16x4s) prefetches, in bytes, as
// gemv4s does spreadAhead on: the hardware prefetchers stop at every 4 KiB page of a
// mapped weight file, and without these the f16 and bf16 one-token products read about
// half the f32 one's GB/s from DRAM on a loaded machine (BenchmarkDecodeDRAMHalf).
const halfSpreadAhead = 1024

// genGemvHalfZ: gemvZ<H|BF|HM|BFM>4s (spread: four rows a quarter of the matrix apart,
// four long streams, as avx2's matvec*Spread, each prefetched halfSpreadAhead bytes on)
// or gemvZ<...>1 (one row at a time).
func genGemvHalfZ(h halfKind, spread bool) {
	what := map[bool]string{false: "binary16", true: "bfloat16"}[h.bf16]
	order := "x as it is"
	if h.mix {
		order = "x arranged as avx2's arrangeX does for this order"
	}
	var lb *labels
	var name string
	if spread {
		name = "gemvZ" + h.zname() + "4s"
		lb = fn(name, "func(dst *float32, x *float32, w *uint16, ldw int, k int, blocks int, gap int)",
			name+" computes dst[r] = Σ_{i<k} x[i]·w[r*ldw+i] for r = q·gap + b, q < 4, b < blocks",
			"(blocks ≥ 1), w "+what+", k a multiple of 8, "+order+";",
			"each row exactly as backends/avx2's matvec"+h.zname()+"Spread sums it.")
	} else {
		name = "gemvZ" + h.zname() + "1"
		lb = fn(name, "func(dst *float32, x *float32, w *uint16, ldw int, k int, rows int)",
			name+" computes dst[r] = Σ_{i<k} x[i]·w[r*ldw+i] for r < rows (rows ≥ 1),",
			"w "+what+", k a multiple of 8, "+order+";",
			"each row exactly as backends/avx2's matvec"+h.zname()+" sums it.")
	}
	x := Load(Param("x"), GP64())
	ldw := Load(Param("ldw"), GP64())
	SHLQ(U8(1), ldw) // bytes
	k := Load(Param("k"), GP64())
	kb := GP64()
	MOVQ(k, kb)
	ANDQ(I32(-32), kb)
	sp := h.splits()
	spl := newSplitter(h)
	lo8 := K()
	{
		m := GP32()
		MOVL(U32(0xff), m)
		KMOVW(m, lo8)
	}
	var wr []Register
	if spread {
		wr = spreadRows(Load(Param("w"), GP64()), ldw)
	} else {
		wr = []Register{Load(Param("w"), GP64())}
	}
	R := len(wr)
	top := lb.next("row")
	Label(top)

	acc := make([]VecVirtual, R)
	for r := range acc {
		acc[r] = ZMM()
		VMOVUPS(zeros, acc[r])
	}
	e := GP64()
	XORQ(e, e)
	body, check, tail, eight, reduce := lb.next("body"), lb.next("check"), lb.next("tail"), lb.next("eight"), lb.next("reduce")
	JMP(LabelRef(check))
	Label(body)
	x0, x1 := ZMM(), ZMM()
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4}, x0)
	VMOVUPS(Mem{Base: x, Index: e, Scale: 4, Disp: 64}, x1)
	for r := 0; r < R; r++ {
		for g, xv := range []VecVirtual{x0, x1} {
			t := halfZ(h.bf16, Mem{Base: wr[r], Index: e, Scale: 2, Disp: 32 * g}, sp[g], spl)
			VFMADD231PS(t, xv, acc[r])
		}
		if spread {
			PREFETCHT0(Mem{Base: wr[r], Index: e, Scale: 2, Disp: halfSpreadAhead})
		}
	}
	ADDQ(U8(32), e)
	Label(check)
	CMPQ(e, kb)
	JL(LabelRef(body))
	// The rest, fewer than 32 columns, as they are: 16 (both of avx2's accumulators),
	// then 8 (its first: the low lanes).
	Label(tail)
	e16 := GP64()
	LEAQ(Mem{Base: e, Disp: 16}, e16)
	CMPQ(e16, k)
	JG(LabelRef(eight))
	{
		xv := ZMM()
		VMOVUPS(Mem{Base: x, Index: e, Scale: 4}, xv)
		for r := 0; r < R; r++ {
			t := halfZ(h.bf16, Mem{Base: wr[r], Index: e, Scale: 2}, false, nil)
			VFMADD231PS(t, xv, acc[r])
		}
		MOVQ(e16, e)
	}
	Label(eight)
	CMPQ(e, k)
	JGE(LabelRef(reduce))
	for r := 0; r < R; r++ {
		t := YMM()
		cvtHalf(h.bf16, Mem{Base: wr[r], Index: e, Scale: 2}, t)
		VFMADD231PS(Mem{Base: x, Index: e, Scale: 4}, t.AsZ(), lo8, acc[r])
	}
	Label(reduce)
	ys := make([]VecVirtual, R)
	for r := 0; r < R; r++ {
		hi := YMM()
		VEXTRACTF64X4(U8(1), acc[r], hi)
		ys[r] = YMM()
		VADDPS(hi, acc[r].AsY(), ys[r])
	}
	if spread {
		hs := reduce4(ys[0], ys[1], ys[2], ys[3])
		g := Load(Param("gap"), GP64())
		SHLQ(U8(2), g) // gap floats, in bytes
		storeSpread(hs, g)
		nextSpreadBlock(wr, ldw, top)
	} else {
		hs := hsumPairwise(ys[0])
		d := Load(Param("dst"), GP64())
		VMOVSS(hs, Mem{Base: d})
		ADDQ(U8(4), d)
		Store(d, Param("dst"))
		ADDQ(ldw, wr[0])
		n := Load(Param("rows"), GP64())
		DECQ(n)
		Store(n, Param("rows"))
		JNZ(LabelRef(top))
	}
	VZEROUPPER()
	RET()
}
