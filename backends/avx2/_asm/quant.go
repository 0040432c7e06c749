package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genQuant emits the matrix–vector products of block-quantized weights (ggml's q8_0 and
// q4_0 layouts) with activations quantized to q8_0 blocks, for kernels.Q8Kernels. They
// compute exactly what kernels.Reference.MatMulQ8 computes, bit for bit:
//
//	sum_r += float32(float32(s_rb) · float32(dw_rb·dx_b))   for each block b in order,
//
// s_rb the exact integer dot product of the block's 32 weights and activations.
//
// For q8_0 matrices without a quant of −128 (kernels.Mat.Q8Sym, what every ggml
// quantizer writes) mvQ8_0Sx8 takes |x| as the unsigned operand instead, shared by all
// rows, and w·sign(x) as the signed one: one instruction less per row and block.
//
// Per row and block the integer products come from VPMADDUBSW: q8_0 weights by the sign
// trick (|w| as unsigned bytes times x·sign(w) as signed ones; |w| ≤ 128 and |x| ≤ 127
// keep each pair sum within int16), q4_0 weights as their unsigned nibbles u (then
// s = Σ u·x − 8·Σ x). The x8 kernels take eight rows at a time and sum each row's lanes
// so that one vector holds the eight rows' block sums — q8_0 by VPMADDWD by ones and an
// unpack-and-add transpose, q4_0 by two levels of VPHADDW on int16 words, then VPMADDWD —
// so the conversion to float32, the scales (eight f16 weight scales gathered through
// general registers, widened by one VCVTPH2PS) and the accumulation cost one instruction
// per eight rows instead of one per row. The x1 kernels do the same arithmetic one row
// at a time. The caller passes, per activation block, its scale already widened to
// float32 and 8·Σ x (the xBlocks of package avx2), computed once per product.
//
// Only the q8_0 kernels prefetch their streams: for q4_0 (about half the bytes per
// block and the same arithmetic) prefetching changed nothing, from memory or cache.
func genQuant() {
	vshift4()
	for _, q4 := range []bool{false, true} {
		genMatVecQ8Rows(q4, false)
		genMatVecQ1Row(q4)
	}
	genMatVecQ8Rows(false, true)
	genQuantizeQ8()
	genDequant(false)
	genDequant(true)
}

// qname returns the kernel name prefix, the weight type and its block size in bytes.
func qname(q4 bool) (string, string, int) {
	if q4 {
		return "mvQ4_0", "q4_0", 18
	}
	return "mvQ8_0", "q8_0", 34
}

// blockProducts emits the products of one row's block with the activation block into
// the 4 int32 lanes of p (an XMM register); their sum is the block's integer dot product
// (for q4_0 less the −8·Σx term, which the caller subtracts from the total). w points at
// the weight block (its f16 scale); xv holds the 32 activations, xlo and xhi their
// halves (for q4_0).
//
// With words (q4_0 only) p is left as 8 int16 lanes, each |·| ≤ 2·2·15·127 = 7620, for a
// transpose that adds them as words (see genMatVecQ8Rows).
func blockProducts(q4, sym, words bool, w Mem, xv, xlo, xhi, ones16, nib, p VecVirtual) {
	quants := w
	quants.Disp += 2
	if q4 {
		// Low nibbles are elements 0–15, high nibbles 16–31: two 16-byte products,
		// whose int16 pair sums (≤ 2·15·127 each) add without overflow.
		h := XMM()
		VMOVDQU(quants, p)
		VPSRLW(U8(4), p, h)
		VPAND(nib.AsX(), p, p)
		VPAND(nib.AsX(), h, h)
		VPMADDUBSW(xlo, p, p)
		VPMADDUBSW(xhi, h, h)
		VPADDW(h, p, p)
		if !words {
			VPMADDWD(ones16.AsX(), p, p)
		}
		return
	}
	sy := YMM()
	if sym {
		// No weight is −128, so w·sign(x) is exact and |x| (xlo) is shared by the rows.
		VMOVDQU(quants, sy)
		VPSIGNB(xv, sy, sy)
		VPMADDUBSW(sy, xlo, sy)
	} else {
		wv := YMM()
		VMOVDQU(quants, wv)
		VPSIGNB(wv, xv, sy)
		VPABSB(wv, wv)
		VPMADDUBSW(sy, wv, sy)
	}
	VPMADDWD(ones16, sy, sy)
	VEXTRACTI128(U8(1), sy, p)
	VPADDD(sy.AsX(), p, p)
}

// hsumInt leaves the sum of the 8 int32 lanes of y in every lane of y's low half.
func hsumInt(y VecVirtual) {
	t := XMM()
	VEXTRACTI128(U8(1), y, t)
	VPADDD(t, y.AsX(), y.AsX())
	hsumInt4(y.AsX())
}

// hsumInt4 leaves the sum of the 4 int32 lanes of x in every lane.
func hsumInt4(x Register) {
	t := XMM()
	VPSHUFD(U8(0x4e), x, t)
	VPADDD(t, x, x)
	VPSHUFD(U8(0xb1), x, t)
	VPADDD(t, x, x)
}

// loadX loads the 32 activations of the block at xp (past its scale): for q8_0 as one
// YMM register (and with sym their magnitudes in xlo); for q4_0 also as its two halves.
func loadX(q4, sym bool, xp Register) (xv, xlo, xhi VecVirtual) {
	if !q4 {
		xv = YMM()
		VMOVDQU(Mem{Base: xp, Disp: 2}, xv)
	}
	if sym {
		xlo = YMM()
		VPABSB(xv, xlo)
	}
	if q4 {
		xlo, xhi = XMM(), XMM()
		VMOVDQU(Mem{Base: xp, Disp: 2}, xlo)
		VMOVDQU(Mem{Base: xp, Disp: 18}, xhi)
	}
	return xv, xlo, xhi
}

func genMatVecQ8Rows(q4, sym bool) {
	name, wt, bsz := qname(q4)
	if sym {
		name += "S"
		wt += " (no quant −128)"
	}
	lb := fn(name+"x8", "func(dst *float32, xq *byte, w *byte, ldw int, nb int, groups int, gap int, step int, xi *float32)",
		name+"x8 computes, for g < groups, the rows r = g·step + q·gap, q < 8, of the "+wt+" matrix w",
		"(row r at w + r·ldw bytes, nb blocks) times the q8_0 activation blocks xq: dst[r] =",
		"Σ_b float32(float32(s_rb)·float32(dw_rb·dx_b)) in block order, as the reference. For q4_0,",
		"xi points at the xBlocks of the activation blocks: scale dx_b as float32 and, for q4_0, 8·Σ_j x_bj.")
	dst := Load(Param("dst"), GP64())
	wg := Load(Param("w"), GP64())     // the group's first row
	gapW := Load(Param("gap"), GP64()) // gap rows, in bytes
	{
		ldw := Load(Param("ldw"), GP64())
		IMULQ(ldw, gapW)
	}
	gapW3 := GP64()
	LEAQ(Mem{Base: gapW, Index: gapW, Scale: 2}, gapW3)
	ones16, nib := quantConsts(q4)

	group := lb.next("group")
	Label(group)
	acc := YMM()
	zero(acc)
	xp, b0, b4 := GP64(), GP64(), GP64()
	Load(Param("xq"), xp)
	xip := Load(Param("xi"), GP64())
	MOVQ(wg, b0)
	LEAQ(Mem{Base: wg, Index: gapW, Scale: 4}, b4)
	rowAt := func(q int) Mem {
		b := b0
		if q >= 4 {
			b, q = b4, q-4
		}
		switch q {
		case 0:
			return Mem{Base: b}
		case 1:
			return Mem{Base: b, Index: gapW, Scale: 1}
		case 2:
			return Mem{Base: b, Index: gapW, Scale: 2}
		}
		return Mem{Base: b, Index: gapW3, Scale: 1}
	}
	nb := Load(Param("nb"), GP64())
	blk := lb.next("block")
	Label(blk)
	xv, xlo, xhi := loadX(q4, sym, xp)
	p := make([]VecVirtual, 8)
	for q := range p {
		p[q] = XMM()
		if !q4 {
			pf := rowAt(q)
			pf.Disp += prefetchAhead
			PREFETCHT0(pf)
		}
		blockProducts(q4, sym, q4, rowAt(q), xv, xlo, xhi, ones16, nib, p[q])
	}
	// Transpose-and-add: lanes of p0..p7 → one vector of the 8 row totals.
	var tot VecVirtual
	if q4 {
		// As words, which never overflow: two levels of VPHADDW leave each row's sum
		// in two words of at most 4·7620 = 30480; VPMADDWD by ones adds those as dwords.
		h := func(a, b VecVirtual) VecVirtual {
			VPHADDW(b, a, a)
			return a
		}
		t0 := h(h(p[0], p[1]), h(p[2], p[3]))
		t1 := h(h(p[4], p[5]), h(p[6], p[7]))
		VPMADDWD(ones16.AsX(), t0, t0)
		VPMADDWD(ones16.AsX(), t1, t1)
		tot = YMM()
		VINSERTI128(U8(1), t1, t0.AsY(), tot) // rows 0–3 | rows 4–7
	} else {
		pair := func(a, b VecVirtual) VecVirtual { // [a02 b02 a13 b13]
			lo := XMM()
			VPUNPCKLDQ(b, a, lo)
			VPUNPCKHDQ(b, a, a)
			VPADDD(lo, a, a)
			return a
		}
		quad := func(a, b VecVirtual) VecVirtual { // [a0–3 b0–3 c0–3 d0–3]
			lo := XMM()
			VPUNPCKLQDQ(b, a, lo)
			VPUNPCKHQDQ(b, a, a)
			VPADDD(lo, a, a)
			return a
		}
		t0 := quad(pair(p[0], p[1]), pair(p[2], p[3]))
		t1 := quad(pair(p[4], p[5]), pair(p[6], p[7]))
		tot = YMM()
		VINSERTI128(U8(1), t1, t0.AsY(), tot) // rows 0–3 | rows 4–7
	}
	if q4 {
		s8 := YMM()
		VPBROADCASTD(Mem{Base: xip, Disp: 4}, s8)
		VPSUBD(s8, tot, tot)
	}
	VCVTDQ2PS(tot, tot)
	// The eight weight scales, gathered as halves through two general registers.
	g0, g1, t := GP64(), GP64(), GP64()
	for half, g := range []Register{g0, g1} {
		for q := 0; q < 4; q++ {
			if q == 0 {
				MOVWQZX(rowAt(4*half), g)
				continue
			}
			MOVWQZX(rowAt(4*half+q), t)
			SHLQ(U8(16*q), t)
			ORQ(t, g)
		}
	}
	sc, dx := YMM(), YMM()
	VMOVQ(g0, sc.AsX())
	VPINSRQ(U8(1), g1, sc.AsX(), sc.AsX())
	VCVTPH2PS(sc.AsX(), sc)
	VBROADCASTSS(Mem{Base: xip}, dx)
	VMULPS(dx, sc, sc)    // float32(dw·dx)
	VMULPS(sc, tot, tot)  // float32(s)·that
	VADDPS(tot, acc, acc) // sum += that
	ADDQ(U8(34), xp)
	ADDQ(U8(8), xip)
	ADDQ(U8(bsz), b0)
	ADDQ(U8(bsz), b4)
	DECQ(nb)
	JNZ(LabelRef(blk))

	// Store the 8 results at dst + q·gap floats.
	gapF := Load(Param("gap"), GP64())
	SHLQ(U8(2), gapF)
	d := GP64()
	MOVQ(dst, d)
	h := XMM()
	VEXTRACTF128(U8(1), acc, h)
	for q := 0; q < 8; q++ {
		src := acc.AsX()
		if q >= 4 {
			src = h
		}
		if q%4 == 0 {
			VMOVSS(src, Mem{Base: d})
		} else {
			VEXTRACTPS(U8(q%4), src, Mem{Base: d})
		}
		if q < 7 {
			ADDQ(gapF, d)
		}
	}
	step := Load(Param("step"), GP64())
	LEAQ(Mem{Base: dst, Index: step, Scale: 4}, dst)
	ldw := Load(Param("ldw"), GP64())
	IMULQ(ldw, step)
	ADDQ(step, wg)
	groups := Load(Param("groups"), GP64())
	DECQ(groups)
	Store(groups, Param("groups"))
	JNZ(LabelRef(group))
	VZEROUPPER()
	RET()
}

func genMatVecQ1Row(q4 bool) {
	name, _, bsz := qname(q4)
	lb := fn(name+"x1", "func(dst *float32, xq *byte, w *byte, ldw int, nb int, rows int, xi *float32)",
		name+"x1 is "+name+"x8 for the rows r < rows (≥ 1), one at a time.")
	dst := Load(Param("dst"), GP64())
	wr := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	ones16, nib := quantConsts(q4)

	row := lb.next("row")
	Label(row)
	acc := XMM()
	VXORPS(acc, acc, acc)
	xp, wb := GP64(), GP64()
	Load(Param("xq"), xp)
	xip := Load(Param("xi"), GP64())
	MOVQ(wr, wb)
	nb := Load(Param("nb"), GP64())
	blk := lb.next("block")
	Label(blk)
	xv, xlo, xhi := loadX(q4, false, xp)
	p := XMM()
	blockProducts(q4, false, false, Mem{Base: wb}, xv, xlo, xhi, ones16, nib, p)
	hsumInt4(p)
	if q4 {
		s8 := XMM()
		VPBROADCASTD(Mem{Base: xip, Disp: 4}, s8)
		VPSUBD(s8, p, p)
	}
	VCVTDQ2PS(p, p)
	dw, dx := XMM(), XMM()
	VPBROADCASTW(Mem{Base: wb}, dw)
	VCVTPH2PS(dw, dw)
	VMOVSS(Mem{Base: xip}, dx)
	VMULSS(dx, dw, dw)
	VMULSS(dw, p, p)
	VADDSS(p, acc, acc)
	ADDQ(U8(34), xp)
	ADDQ(U8(8), xip)
	ADDQ(U8(bsz), wb)
	DECQ(nb)
	JNZ(LabelRef(blk))
	VMOVSS(acc, Mem{Base: dst})
	ADDQ(U8(4), dst)
	ldw := Load(Param("ldw"), GP64())
	ADDQ(ldw, wr)
	DECQ(rows)
	JNZ(LabelRef(row))
	VZEROUPPER()
	RET()
}

// prefetchAhead is how far ahead of the block being multiplied the x8 kernels prefetch
// each of their eight row streams, in bytes.
const prefetchAhead = 512

// quantConsts loads the constants every pass of the quantized kernels keeps in
// registers: int16 ones for VPMADDWD and, for q4_0, the nibble mask.
func quantConsts(q4 bool) (ones16, nib VecVirtual) {
	ones16 = YMM()
	VMOVDQU(vconst("ones16", 0x00010001), ones16)
	if q4 {
		nib = YMM()
		VMOVDQU(vconst("nibble", 0x0f0f0f0f), nib)
	}
	return ones16, nib
}

var shift4 Mem

// vshift4 is the VPSRLVD count vector {0,0,0,0,4,4,4,4}.
func vshift4() Mem {
	if shift4.Symbol.Name == "" {
		shift4 = GLOBL("shift4", RODATA|NOPTR)
		for i := 0; i < 8; i++ {
			v := uint32(0)
			if i >= 4 {
				v = 4
			}
			DATA(4*i, U32(v))
		}
	}
	return shift4
}
