package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The AVX512_VNNI matrix–vector products of q8_0 and q4_0 weights with one q8_0
// activation (MatMulQ8 at T = 1), on the weights as loaded: no repack; and their forms
// for two to eight tokens, which share each block's loads (up to three tokens, all the
// partial sums are taken before they are reduced; past that the block's weights stay
// in registers and each token's sums are reduced as soon as they are taken).
//
// Sixteen rows a gap apart are walked together, so that each of the sixteen is one
// long sequential stream through gap consecutive rows (rows of a q8_0 or q4_0 matrix
// follow each other without padding), each prefetched a fixed distance ahead. Per
// block, row q's quants go to 128-bit lane q/4 of register q%4 (q8_0: its two halves
// to two registers; q4_0: its 16 bytes of nibbles, then masked and shifted into low
// and high nibbles, elements 0–15 and 16–31), as unsigned bytes (q8_0 w XOR 0x80 =
// w+128; q4_0 the nibbles), and VPDPBUSD with the activation's halves broadcast to
// every lane leaves four partial sums per row in its lane. Two levels of unpack-and-add
// then leave in dword q of one register row q's exact block sum Σ u·x, to which the
// caller's −off·Σx is added (it starts one of each row's four partial sums): the block's s.
// From there each row's sum is the reference's,
//
//	sum_q += float32(float32(s_qb) · float32(dw_qb·dx_b))   block by block,
//
// one instruction per 16 rows, so the results are kernels.Reference's bit for bit; the
// 16 weight scales come through general registers, four to one.

// qgemvAhead is how far ahead of the block being multiplied each of the 16 streams is
// prefetched, in bytes (0: no prefetch). Over stories110m's q4_0 matrices and its q8_0
// classifier from DRAM, one thread, the kernels alternating in one process: 256 bytes
// 32–36 GB/s, 512 32–36, 1024 29–37, 128 28–32, none 24–29.
var qgemvAhead = map[bool]int{false: 256, true: 256}

// genQGemv emits qgemvQ8Z or qgemvQ4Z (nt = 1), or their forms for nt tokens,
// qgemvQ8Zx<nt> and qgemvQ4Zx<nt>, which load each weight block once for all of them.
func genQGemv(q4 bool, nt int) {
	name, wt, bsz := "qgemvQ8Z", "q8_0", 34
	if q4 {
		name, wt, bsz = "qgemvQ4Z", "q4_0", 18
	}
	if nt == 1 {
		fn(name, "func(dst *float32, w *byte, ldw int, nb int, groups int, gap int, x *byte)",
			fmt.Sprintf("%s computes, for g < groups and q < 16, row r = g + q·gap of the %s matrix w", name, wt),
			"(ldw = nb·"+fmt.Sprint(bsz)+" bytes a row, nb ≥ 1 blocks) times one prepared activation x (block b at",
			"x + 40·b: 32 quants, dx float32, −off·Σx int32, as the GEMM tiles take it):",
			"",
			"\tdst[r] = Σ_b float32(float32(s_rb)·float32(dw_rb·dx_b))",
			"",
			"in block order, as the reference. 16·gap must fit in an int32.")
	} else {
		name += fmt.Sprintf("x%d", nt)
		fn(name, "func(dst *float32, ldd int, w *byte, ldw int, nb int, groups int, gap int, x *byte)",
			fmt.Sprintf("%s is %s for the %d tokens t of x (token t of block b at x + 40·(%d·b+t)),", name, name[:8], nt, nt),
			"token t's results at dst + t·ldd.")
	}
	lb := &labels{fn: name}
	dst := Load(Param("dst"), GP64())
	gapW := Load(Param("gap"), GP64())
	{
		ldw := Load(Param("ldw"), GP64())
		IMULQ(ldw, gapW)
	}
	gapW3 := GP64()
	LEAQ(Mem{Base: gapW, Index: gapW, Scale: 2}, gapW3)
	// The scatter's offsets of the 16 rows' results (q·gap·4).
	sidx := ZMM()
	{
		g4 := Load(Param("gap"), GP64())
		SHLQ(U8(2), g4)
		VPBROADCASTD(g4.(GPVirtual).As32(), sidx)
		VPMULLD(iota16(), sidx, sidx)
	}
	kc, kall := K(), K() // dword 0 of each 128-bit lane: where −off·Σx starts; all lanes
	{
		t := GP32()
		MOVL(U32(0x1111), t)
		KMOVW(t, kc)
		MOVL(U32(0xffff), t)
		KMOVW(t, kall)
	}
	kl := []Op{nil, K(), K(), K()} // the dwords of 128-bit lane l
	for l := 1; l < 4; l++ {
		t := GP32()
		MOVL(U32(0xf<<(4*l)), t)
		KMOVW(t, kl[l])
	}
	b0 := Load(Param("w"), GP64())
	bases := []Register{b0}
	for l := 1; l < 4; l++ {
		b := GP64()
		LEAQ(Mem{Base: bases[l-1], Index: gapW, Scale: 4}, b)
		bases = append(bases, b)
	}
	stream := func(q, disp int) Mem {
		m := []Mem{{Base: bases[q/4]}, {Base: bases[q/4], Index: gapW, Scale: 1}, {Base: bases[q/4], Index: gapW, Scale: 2}, {Base: bases[q/4], Index: gapW3, Scale: 1}}[q%4]
		m.Disp = disp
		return m
	}
	groups := Load(Param("groups"), GP64())

	group := lb.next("group")
	Label(group)
	acc := make([]VecVirtual, nt)
	for t := range acc {
		acc[t] = ZMM()
		VMOVUPS(zeros, acc[t])
	}
	xp := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	blk := lb.next("block")
	Label(blk)
	if d := qgemvAhead[q4]; d > 0 {
		for q := 0; q < 16; q++ {
			PREFETCHT0(stream(q, d))
		}
	}
	// lane4 loads the 16 bytes at disp of rows k, 4+k, 8+k, 12+k into the lanes of v.
	lane4 := func(k, disp int) VecVirtual {
		v := ZMM()
		VMOVDQU32(stream(k, disp), v.AsX())
		for l := 1; l < 4; l++ {
			// A broadcast merged into lane l: no shuffle, as VINSERTI32X4 takes.
			VBROADCASTI32X4(stream(4*l+k, disp), kl[l], v)
		}
		return v
	}
	// Lane l of p[t][k] holds row 4l+k's four partial sums: [a02 b02 a13 b13], then
	// [a b c d], the rows in order.
	pair := func(a, b VecVirtual) VecVirtual {
		lo := ZMM()
		VPUNPCKLDQ(b, a, lo)
		VPUNPCKHDQ(b, a, a)
		VPADDD(lo, a, a)
		return a
	}
	quad := func(a, b VecVirtual) VecVirtual {
		lo := ZMM()
		VPUNPCKLQDQ(b, a, lo)
		VPUNPCKHQDQ(b, a, a)
		VPADDD(lo, a, a)
		return a
	}
	scales := func() VecVirtual {
		// The 16 scales, through general registers, four to one (a gather took as long as
		// all the rest; loads and unpacks in vector registers, twice what this takes).
		dw := ZMM()
		{
			g := make([]GPVirtual, 4)
			for i := range g {
				g[i] = GP64()
				for q := 4 * i; q < 4*i+4; q++ {
					if q%4 == 0 {
						MOVWQZX(stream(q, 0), g[i])
						continue
					}
					t := GP64()
					MOVWQZX(stream(q, 0), t)
					SHLQ(U8(16*(q%4)), t)
					ORQ(t, g[i])
				}
			}
			lo, hi := XMM(), XMM()
			VMOVQ(g[0], lo)
			VPINSRQ(U8(1), g[1], lo, lo)
			VMOVQ(g[2], hi)
			VPINSRQ(U8(1), g[3], hi, hi)
			h := YMM()
			VINSERTI32X4(U8(1), hi, lo.AsY(), h) // EVEX: the registers may be past X15
			VCVTPH2PS(h, dw)
		}
		return dw
	}
	if nt <= 3 {
		xlo, xhi := make([]VecVirtual, nt), make([]VecVirtual, nt)
		for t := range xlo {
			xlo[t], xhi[t] = ZMM(), ZMM()
			VBROADCASTI32X4(Mem{Base: xp, Disp: 40 * t}, xlo[t])
			VBROADCASTI32X4(Mem{Base: xp, Disp: 40*t + 16}, xhi[t])
		}
		p := make([][]VecVirtual, nt)
		for t := range p {
			p[t] = make([]VecVirtual, 4)
		}
		for k := 0; k < 4; k++ {
			var lo, hi VecVirtual
			if q4 {
				lo, hi = ZMM(), lane4(k, 2)
				VPANDD_BCST(vconst("nibble", 0x0f0f0f0f), hi, lo)
				VPSRLW(U8(4), hi, hi)
				VPANDD_BCST(vconst("nibble", 0x0f0f0f0f), hi, hi)
			} else {
				lo, hi = lane4(k, 2), lane4(k, 18)
				VPXORD_BCST(vconst("signbytes", 0x80808080), lo, lo)
				VPXORD_BCST(vconst("signbytes", 0x80808080), hi, hi)
			}
			for t := range p {
				p[t][k] = ZMM()
				VPBROADCASTD_Z(Mem{Base: xp, Disp: 40*t + 36}, kc, p[t][k]) // −off·Σx, once per row
				dotZ(p[t][k], lo, xlo[t])
				dotZ(p[t][k], hi, xhi[t])
			}
		}
		s := make([]VecVirtual, nt)
		for t := range s {
			s[t] = quad(pair(p[t][0], p[t][1]), pair(p[t][2], p[t][3]))
		}
		dw := scales()
		for t := range s {
			f := ZMM()
			VMULPS_BCST(Mem{Base: xp, Disp: 40*t + 32}, dw, f) // float32(dw·dx)
			VCVTDQ2PS(s[t], s[t])
			VMULPS(f, s[t], s[t])        // float32(s)·that
			VADDPS(s[t], acc[t], acc[t]) // sum += that
		}
	} else {
		// Past three tokens the weights stay in registers and each token's partial sums
		// are reduced as soon as they are taken.
		dw := scales()
		wl, wh := make([]VecVirtual, 4), make([]VecVirtual, 4)
		for k := 0; k < 4; k++ {
			if q4 {
				wl[k], wh[k] = ZMM(), lane4(k, 2)
				VPANDD_BCST(vconst("nibble", 0x0f0f0f0f), wh[k], wl[k])
				VPSRLW(U8(4), wh[k], wh[k])
				VPANDD_BCST(vconst("nibble", 0x0f0f0f0f), wh[k], wh[k])
			} else {
				wl[k], wh[k] = lane4(k, 2), lane4(k, 18)
				VPXORD_BCST(vconst("signbytes", 0x80808080), wl[k], wl[k])
				VPXORD_BCST(vconst("signbytes", 0x80808080), wh[k], wh[k])
			}
		}
		for t := 0; t < nt; t++ {
			xl, xh := ZMM(), ZMM()
			VBROADCASTI32X4(Mem{Base: xp, Disp: 40 * t}, xl)
			VBROADCASTI32X4(Mem{Base: xp, Disp: 40*t + 16}, xh)
			pk := make([]VecVirtual, 4)
			for k := range pk {
				pk[k] = ZMM()
				VPBROADCASTD_Z(Mem{Base: xp, Disp: 40*t + 36}, kc, pk[k]) // −off·Σx, once per row
				dotZ(pk[k], wl[k], xl)
				dotZ(pk[k], wh[k], xh)
			}
			st := quad(pair(pk[0], pk[1]), pair(pk[2], pk[3]))
			f := ZMM()
			VMULPS_BCST(Mem{Base: xp, Disp: 40*t + 32}, dw, f) // float32(dw·dx)
			VCVTDQ2PS(st, st)
			VMULPS(f, st, st)          // float32(s)·that
			VADDPS(st, acc[t], acc[t]) // sum += that
		}
	}
	for _, b := range bases {
		ADDQ(U8(bsz), b)
	}
	ADDQ(U32(40*nt), xp)
	DECQ(nb)
	JNZ(LabelRef(blk))
	// The bases are now at the next row of each stream.
	d := dst
	for t := range acc {
		if t == 1 {
			d = GP64()
			MOVQ(dst, d)
		}
		if t > 0 {
			ADDQ(bytesOf("ldd"), d)
		}
		k := K()
		KMOVW(kall, k) // the scatter clears it
		VSCATTERDPS(acc[t], k, Mem{Base: d, Index: sidx, Scale: 1})
	}
	ADDQ(U8(4), dst)
	DECQ(groups)
	JNZ(LabelRef(group))
	VZEROUPPER()
	RET()
}

// dotZ emits VPDPBUSD acc, u, x (ZMM registers): acc += Σ u8(u)·s8(x) per dword lane.
func dotZ(acc, u, x VecVirtual) {
	// avo v0.5.0 lacks the AVX512_VNNI instructions; the Go assembler has them.
	Instruction(&ir.Instruction{
		Opcode:   "VPDPBUSD",
		Operands: []Op{x, u, acc}, Inputs: []Op{x, u, acc}, Outputs: []Op{acc},
		ISA: []string{"AVX512F", "AVX512_VNNI"},
	})
}
