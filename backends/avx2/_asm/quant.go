package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genQuant emits the matrix–vector products of block-quantized weights (ggml's q8_0 and
// q4_0 layouts) with activations quantized to q8_0 blocks, for kernels.Q8Kernels.
//
// Per 32-element block the integer dot product is exact: q8_0 weights by the sign trick
// (VPMADDUBSW takes |w| as unsigned bytes and x·sign(w) as signed ones; |w| ≤ 128 and
// |x| ≤ 127 keep each pair sum within int16), q4_0 weights as their unsigned nibbles u
// (VPMADDUBSW(u, x), then minus 8·Σx: u − 8 is the weight). VPMADDWD by ones widens the
// pair sums to 8 int32 lanes; those become float32 and are accumulated, scaled by the
// block's dw·dx, with one FMA per lane. Both halves of every scale are converted by F16C
// from a VPBROADCASTW, so the scales need no table.
//
// Every row is computed by the same instruction sequence whether it is one of four rows
// walked together or a row on its own, and its eight lanes are reduced as one lane of
// reduce4, so a result never depends on the row range it was computed in.
func genQuant() {
	vshift4()
	for _, q4 := range []bool{false, true} {
		genMatVecQ(q4, 4)
		genMatVecQ(q4, 1)
	}
}

func genMatVecQ(q4 bool, R int) {
	name, wt, bsz := "mvQ8_0", "q8_0", 34
	if q4 {
		name, wt, bsz = "mvQ4_0", "q4_0", 18
	}
	var lb *labels
	if R == 4 {
		lb = fn(name+"x4", "func(dst *float32, xq *byte, w *byte, ldw int, nb int, blocks int, gap int)",
			name+"x4 computes dst[r] = Σ_b float32(Σ_j w_bj·x_bj)·(dw_b·dx_b) for the rows r = q·gap + i,",
			"q < 4, i < blocks (blocks ≥ 1), of "+wt+" weights w (row r at w + r·ldw bytes, nb blocks)",
			"and the q8_0 activation blocks xq.")
	} else {
		lb = fn(name+"x1", "func(dst *float32, xq *byte, w *byte, ldw int, nb int, blocks int, gap int)",
			name+"x1 is "+name+"x4 for the rows r < blocks (gap is unused), one at a time.")
	}
	dst := Load(Param("dst"), GP64())
	xq := Load(Param("xq"), GP64())
	ldw := Load(Param("ldw"), GP64())
	blocks := Load(Param("blocks"), GP64())
	wr := make([]Register, R)
	wr[0] = Load(Param("w"), GP64())
	var gapB Register // gap floats, in bytes
	if R == 4 {
		gw := Load(Param("gap"), GP64())
		IMULQ(ldw, gw) // gap rows, in bytes
		for r := 1; r < R; r++ {
			wr[r] = GP64()
			LEAQ(Mem{Base: wr[r-1], Index: gw, Scale: 1}, wr[r])
		}
		gapB = Load(Param("gap"), GP64())
		SHLQ(U8(2), gapB)
	}
	ones16 := YMM()
	VMOVDQU(vconst("ones16", 0x00010001), ones16)
	var ones8 VecVirtual
	if q4 {
		ones8 = YMM()
		VMOVDQU(vconst("ones8", 0x01010101), ones8)
	}

	row := lb.next("row")
	Label(row)
	acc := ymms(R)
	zero(acc...)
	xp, wo := GP64(), GP64() // xq block pointer, offset in the weight rows
	MOVQ(xq, xp)
	XORQ(wo, wo)
	nb := Load(Param("nb"), GP64())
	// emit emits the products of U consecutive blocks for every row.
	emit := func(U int) {
		for ub := 0; ub < U; ub++ {
			dxv, xv, t := YMM(), YMM(), XMM()
			VPBROADCASTW(Mem{Base: xp, Disp: 34 * ub}, t)
			VCVTPH2PS(t, dxv)
			VMOVDQU(Mem{Base: xp, Disp: 34*ub + 2}, xv)
			var sx8 VecVirtual
			if q4 {
				// 8·(lane sums of x), for u − 8 = w.
				sx8 = YMM()
				VPMADDUBSW(xv, ones8, sx8)
				VPMADDWD(ones16, sx8, sx8)
				VPSLLD(U8(3), sx8, sx8)
			}
			for r := 0; r < R; r++ {
				p := YMM()
				if q4 {
					// The 16 bytes in both halves, the upper half shifted by 4 bits: masked to
					// 4 bits, the low nibbles (elements 0–15) then the high ones (16–31).
					u := YMM()
					VBROADCASTI128(Mem{Base: wr[r], Index: wo, Scale: 1, Disp: bsz*ub + 2}, u)
					VPSRLVD(vshift4(), u, u)
					VPAND(vconst("nibble", 0x0f0f0f0f), u, u)
					VPMADDUBSW(xv, u, p)
				} else {
					wv, sy := YMM(), YMM()
					VMOVDQU(Mem{Base: wr[r], Index: wo, Scale: 1, Disp: bsz*ub + 2}, wv)
					VPSIGNB(wv, xv, sy)
					VPABSB(wv, wv)
					VPMADDUBSW(sy, wv, p)
				}
				VPMADDWD(ones16, p, p)
				if q4 {
					VPSUBD(sx8, p, p)
				}
				VCVTDQ2PS(p, p)
				dw, h := YMM(), XMM()
				VPBROADCASTW(Mem{Base: wr[r], Index: wo, Scale: 1, Disp: bsz * ub}, h)
				VCVTPH2PS(h, dw)
				VMULPS(dxv, dw, dw)
				VFMADD231PS(p, dw, acc[r])
			}
		}
		ADDQ(U8(34*U), xp)
		ADDQ(U8(bsz*U), wo)
	}
	// An odd block first, then two at a time.
	pairs := lb.next("pairs")
	TESTQ(U32(1), nb)
	JZ(LabelRef(pairs))
	emit(1)
	DECQ(nb)
	JZ(LabelRef(lb.fn + "_reduce"))
	Label(pairs)
	emit(2)
	SUBQ(U8(2), nb)
	JNZ(LabelRef(pairs))
	Label(lb.fn + "_reduce")

	if R == 4 {
		h := reduce4(acc[0], acc[1], acc[2], acc[3])
		d3 := GP64()
		VMOVSS(h, Mem{Base: dst})
		VEXTRACTPS(U8(1), h, Mem{Base: dst, Index: gapB, Scale: 1})
		VEXTRACTPS(U8(2), h, Mem{Base: dst, Index: gapB, Scale: 2})
		LEAQ(Mem{Base: dst, Index: gapB, Scale: 2}, d3)
		VEXTRACTPS(U8(3), h, Mem{Base: d3, Index: gapB, Scale: 1})
	} else {
		VMOVSS(hsumPairwise(acc[0]), Mem{Base: dst})
	}
	ADDQ(U8(4), dst)
	for r := 0; r < R; r++ {
		ADDQ(ldw, wr[r])
	}
	DECQ(blocks)
	JNZ(LabelRef(row))
	VZEROUPPER()
	RET()
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
