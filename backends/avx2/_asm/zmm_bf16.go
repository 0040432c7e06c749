package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// wordMasks holds, for rem = k%32 (0..31), the 32-bit mask of the first rem 16-bit lanes.
var wordMasks Mem

// constantsBF16ZMM emits the constants of the bf16 × bf16 products.
func constantsBF16ZMM() {
	wordMasks = GLOBL("wordmasks", RODATA|NOPTR)
	for rem := 0; rem < 32; rem++ {
		DATA(4*rem, U32(uint32(1)<<rem-1))
	}
}

// genBF16ZMM emits the products of bf16 weights with activations rounded to bfloat16
// (backends/avx512's MatMulBF16), with AVX512_BF16's VDPBF16PS.
func genBF16ZMM() {
	constantsBF16ZMM()
	genGemmBF16("gemmBF16x4", 4, 6, false)
	genGemmBF16("gemmBF16x1", 1, 8, false)
	genGemmBF16("gemvBF16x4s", 4, 1, true)
	genRoundBF16()
}

// genGemmBF16 emits a kernel for groups of R (1 or 4) consecutive rows of bfloat16
// weights against all T tokens of bfloat16 activations, Tb tokens at a time (then the
// T%Tb left over in one smaller block). Every (row, token) dot product has one 16-lane
// float32 accumulator; each VDPBF16PS adds the products of 32 columns, lane i those of
// columns 2i and 2i+1, and the last k%32 columns go in one more step whose loads are
// masked (the lanes past k are zero, so they add +0). The accumulators go to the stack
// and each is reduced as the f32 GEMM reduces its own (lanes 0–7 plus lanes 8–15, then
// pairwise): every sum is taken in the same order whatever R, Tb, T or the row split.
//
// With spread, group g takes the R rows g, gap+g, 2·gap+g, ... rather than R
// consecutive ones: with gap = rows/R each row walks its own part of the matrix, so the
// weights are read as R long sequential streams, which keeps the hardware prefetchers
// on (for T = 1, where the weights come from memory; as the f32 gemv4s); each stream
// also prefetches the line halfSpreadAhead bytes on every 32 columns, since the
// hardware's stop at every 4 KiB page of a mapped weight file.
//
// VDPBF16PS, which Go's assembler lacks, is emitted as machine code on physical
// registers, so the micro-kernel's vectors are physical: the R·Tb ≤ 24 accumulators in
// Z0–Z23, the R rows' 32 weights in Z24–Z27, a token's 32 activations in Z28–Z30 in turn.
func genGemmBF16(name string, R, Tb int, spread bool) {
	sig, rows := "func(dst *float32, ldd int, x *uint16, ldx int, T int, w *uint16, ldw int, k int, groups int)", "r < "+itoa(R)+"·groups"
	if spread {
		sig, rows = "func(dst *float32, ldd int, x *uint16, ldx int, T int, w *uint16, ldw int, k int, groups int, gap int)", "r = q·gap + g, q < "+itoa(R)+", g < groups"
	}
	lb := fnStack(name, sig,
		name+" computes, for "+rows+" (groups ≥ 1), t < T and k ≥ 1,",
		"  dst[t*ldd+r] = Σ_{i<k} x[t*ldx+i]·w[r*ldw+i],",
		"x and w bfloat16, with VDPBF16PS (AVX512_BF16): denormal inputs and partial sums",
		"are taken as zero.")
	accs := []Register{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15, Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23}
	wz := []Register{Z24, Z25, Z26, Z27}
	xz := []Register{Z28, Z29, Z30}
	wcur, goff, gleft := AllocLocal(8), AllocLocal(8), AllocLocal(8)
	xcur, dcur, tleft := AllocLocal(8), AllocLocal(8), AllocLocal(8)
	sums := AllocLocal(64 * R * Tb) // the accumulators, (t·R + r)·64 bytes

	initGroups(goff, wcur, gleft)
	group := lb.next("group")
	Label(group)
	startGroup(xcur, dcur, tleft, goff)

	block := func(Tt int) {
		Commentf("%d rows × %d tokens", R, Tt)
		acc := func(r, t int) Register { return accs[t*R+r] }
		for t := 0; t < Tt; t++ {
			for r := 0; r < R; r++ {
				VMOVUPS(zeros, acc(r, t)) // (not VPXORD, which avo takes as a read)
			}
		}
		xa, wa := GP64(), GP64()
		MOVQ(xcur, xa)
		MOVQ(wcur, wa)
		ldx := Load(Param("ldx"), GP64())
		SHLQ(U8(1), ldx)
		ldw := Load(Param("ldw"), GP64())
		SHLQ(U8(1), ldw)
		if spread {
			g := Load(Param("gap"), GP64())
			IMULQ(g, ldw)
		}
		xs, ws := newStrided(xa, ldx, Tt), newStrided(wa, ldw, R)
		// step multiplies 32 columns, its loads masked by m when m is not nil.
		step := func(m Register) {
			for r := 0; r < R; r++ {
				if m != nil {
					VMOVDQU16_Z(ws.at(r, 0), m, wz[r])
				} else {
					VMOVDQU16(ws.at(r, 0), wz[r])
				}
			}
			for t := 0; t < Tt; t++ {
				x := xz[t%len(xz)]
				if m != nil {
					VMOVDQU16_Z(xs.at(t, 0), m, x)
				} else {
					VMOVDQU16(xs.at(t, 0), x)
				}
				for r := 0; r < R; r++ {
					VDPBF16PSraw(x, wz[r], acc(r, t))
				}
			}
			if spread && m == nil {
				for r := 0; r < R; r++ {
					PREFETCHT0(ws.at(r, halfSpreadAhead))
				}
			}
		}
		n := Load(Param("k"), GP64())
		SHRQ(U8(5), n)
		loop, tail, reduce := lb.next("cols"), lb.next("tail"), lb.next("reduce")
		JZ(LabelRef(tail))
		Label(loop)
		step(nil)
		xs.add(U8(64))
		ws.add(U8(64))
		DECQ(n)
		JNZ(LabelRef(loop))

		Label(tail)
		rem := Load(Param("k"), GP64())
		ANDQ(U8(31), rem)
		JZ(LabelRef(reduce))
		{
			tb := GP64()
			LEAQ(wordMasks, tb)
			KMOVD(Mem{Base: tb, Index: rem, Scale: 4}, K1)
			step(K1)
		}

		Label(reduce)
		sumAt := func(r, t, disp int) Mem {
			s := sums
			s.Disp += 64*(t*R+r) + disp
			return s
		}
		// Pairs of tokens of 4 consecutive rows in registers (reduce8Z, with the free
		// Z24 and Z25), the rest through the stack.
		paired := 0
		if R == 4 && !spread {
			paired = Tt &^ 1
		}
		d := GP64()
		MOVQ(dcur, d)
		ldd := bytesOf("ldd")
		for t := 0; t < paired; t += 2 {
			if t > 0 {
				ADDQ(ldd, d)
			}
			var a, b [4]Vec
			for r := 0; r < 4; r++ {
				a[r], b[r] = acc(r, t).(Vec), acc(r, t+1).(Vec)
			}
			h := reduce8Z(a, b, Z24, Z25)
			VMOVUPS(h.AsX(), Mem{Base: d})
			ADDQ(ldd, d)
			VEXTRACTF32X4(U8(1), h.AsY(), Mem{Base: d})
		}
		for t := paired; t < Tt; t++ {
			for r := 0; r < R; r++ {
				VMOVUPS(acc(r, t), sumAt(r, t, 0))
			}
		}
		for t := paired; t < Tt; t++ {
			if t > 0 {
				ADDQ(ldd, d)
			}
			y := make([]VecVirtual, R)
			for r := range y {
				y[r] = YMM()
				VMOVUPS(sumAt(r, t, 0), y[r])
				VADDPS(sumAt(r, t, 32), y[r], y[r])
			}
			switch {
			case spread:
				h := reduce4(y[0], y[1], y[2], y[3])
				ds := newStrided(d, bytesOf("gap"), R)
				VMOVSS(h, ds.at(0, 0))
				for j := 1; j < R; j++ {
					VEXTRACTPS(U8(uint8(j)), h, ds.at(j, 0))
				}
			case R == 4:
				VMOVUPS(reduce4(y[0], y[1], y[2], y[3]), Mem{Base: d})
			default:
				VMOVSS(hsumPairwise(y[0]), Mem{Base: d})
			}
		}

		// The next block's tokens.
		ldd = bytesOf("ldd")
		IMUL3Q(Imm(uint64(Tt)), ldd, ldd)
		ADDQ(ldd, dcur)
		lx := Load(Param("ldx"), GP64())
		IMUL3Q(Imm(uint64(2*Tt)), lx, lx)
		ADDQ(lx, xcur)
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
	lw := Load(Param("ldw"), GP64())
	if spread {
		ADDQ(U8(4), goff)
		SHLQ(U8(1), lw)
	} else {
		ADDQ(U8(4*R), goff)
		IMUL3Q(Imm(uint64(2*R)), lw, lw)
	}
	ADDQ(lw, wcur)
	DECQ(gleft)
	JNZ(LabelRef(group))
	VZEROUPPER()
	RET()
}

// genRoundBF16 emits roundBF16, kernels.RoundBF16 16 lanes at a time: each float32's
// bits b become (b + 0x7fff + (b>>16 & 1)) >> 16 (to nearest, ties to even; an overflow
// carries into the exponent and gives an infinity), a NaN (|b| > 0x7f800000) b>>16 | 0x40
// (quiet, its sign kept), as dtype.F32ToBF16 does; the last n%16 with masked loads and
// stores.
func genRoundBF16() {
	lb := fn("roundBF16", "func(dst *uint16, x *float32, n int)",
		"roundBF16 rounds the n float32 at x to bfloat16 at dst (n ≥ 0), bit for bit as",
		"dtype.F32ToBF16.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	c := func(name string, v uint32) VecVirtual {
		z := ZMM()
		VPBROADCASTD(vconst(name, v), z)
		return z
	}
	one, half, abs, inf, quiet := c("dw1", 1), c("dw7fff", 0x7fff), c("dw7fffffff", 0x7fffffff), c("dw7f800000", 0x7f800000), c("dw40", 0x40)
	// round returns z's lanes rounded, each bfloat16 in its dword's low half.
	round := func(z VecVirtual) VecVirtual {
		t, a := ZMM(), ZMM()
		VPSRLD(U8(16), z, t)
		VPANDD(one, t, t)
		VPADDD(half, t, t)
		VPADDD(z, t, t) // b + 0x7fff + lsb
		VPANDD(abs, z, a)
		nan := K()
		VPCMPUD(U8(6), inf, a, nan) // |b| > 0x7f800000
		VPSRLD(U8(16), t, t)
		VPSRLD(U8(16), z, nan, t) // NaNs: b >> 16
		VPORD(quiet, t, nan, t)   // ... | 0x40
		return t
	}
	body, check, tail, done := lb.next("body"), lb.next("check"), lb.next("tail"), lb.next("done")
	n16 := GP64()
	MOVQ(n, n16)
	ANDQ(I32(-16), n16)
	e := GP64()
	XORQ(e, e)
	JMP(LabelRef(check))
	Label(body)
	z := ZMM()
	VMOVDQU32(Mem{Base: x, Index: e, Scale: 4}, z)
	VPMOVDW(round(z), Mem{Base: dst, Index: e, Scale: 2})
	ADDQ(U8(16), e)
	Label(check)
	CMPQ(e, n16)
	JL(LabelRef(body))
	Label(tail)
	rem := GP64()
	MOVQ(n, rem)
	ANDQ(U8(15), rem)
	JZ(LabelRef(done))
	m, tb := K(), GP64()
	LEAQ(wordMasks, tb)
	KMOVW(Mem{Base: tb, Index: rem, Scale: 4}, m)
	zt := ZMM()
	VMOVDQU32_Z(Mem{Base: x, Index: e, Scale: 4}, m, zt)
	VPMOVDW(round(zt), m, Mem{Base: dst, Index: e, Scale: 2})
	Label(done)
	VZEROUPPER()
	RET()
}
