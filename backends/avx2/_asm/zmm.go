package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// tailMasks holds, for rem = k%16 (1..15), the 16-bit lane mask of the GEMM's last,
// masked step: lanes 0..rem-1 for rem ≥ 8 (the whole 8-vector of backends/avx2's order
// in lanes 0–7, its masked tail in lanes 8..rem-1), and lanes 8..8+rem-1 for rem < 8
// (the step then starts 8 columns early, so lane 8+j holds column k-rem+j).
var tailMasks Mem

// zeros is 64 zero bytes.
var zeros Mem

// constantsZMM emits the AVX-512 kernels' constants.
func constantsZMM() {
	tailMasks = GLOBL("tailmasks", RODATA|NOPTR)
	for rem := 0; rem < 16; rem++ {
		m := uint16(1)<<rem - 1
		if rem < 8 {
			m <<= 8
		}
		DATA(2*rem, U16(m))
	}
	zeros = GLOBL("zeros", RODATA|NOPTR)
	DATA(0, U64(0))
	DATA(56, U64(0))
}

// fnStack is fn for the AVX-512 kernels: their frames (the GEMM's accumulators, 1.5
// KiB) are past what NOSPLIT allows, so they get the stack check.
func fnStack(name, sig string, doc ...string) *labels {
	TEXT(name, 0, sig)
	Pragma("noescape")
	Doc(doc...)
	return &labels{fn: name}
}

// strided addresses the vectors of up to 8 rows that lie a stride apart: row j at
// base + j·stride (rows 4..7 from a second base 4·stride further).
type strided struct {
	base, base4, stride, stride3 Register
}

func newStrided(base, stride Register, n int) strided {
	s := strided{base: base, stride: stride}
	if n > 3 {
		s.stride3 = GP64()
		LEAQ(Mem{Base: stride, Index: stride, Scale: 2}, s.stride3)
	}
	if n > 4 {
		s.base4 = GP64()
		LEAQ(Mem{Base: base, Index: stride, Scale: 4}, s.base4)
	}
	return s
}

func (s strided) at(j, disp int) Mem {
	b := s.base
	if j >= 4 {
		b, j = s.base4, j-4
	}
	switch j {
	case 0:
		return Mem{Base: b, Disp: disp}
	case 1:
		return Mem{Base: b, Index: s.stride, Scale: 1, Disp: disp}
	case 2:
		return Mem{Base: b, Index: s.stride, Scale: 2, Disp: disp}
	}
	return Mem{Base: b, Index: s.stride3, Scale: 1, Disp: disp}
}

// immBytes is b as an immediate, 8 bits when it fits.
func immBytes(b int) Op {
	if b < 128 {
		return U8(uint8(b))
	}
	return U32(uint32(b))
}

func (s strided) add(v Op) {
	ADDQ(v, s.base)
	if s.base4 != nil {
		ADDQ(v, s.base4)
	}
}

// partNext, set while genGemmZMMNext runs, gives a part kernel the argument next: the
// rows its last group prefetches.
var partNext bool

// genGemmZMMNext is genGemmZMM for a part kernel (prefetching) whose last group
// prefetches the rows at its argument next rather than those after it: for gemmParts,
// where what comes after a part's last group is the first group's next part, so that
// every line of the weights is prefetched (otherwise one group in partGroups went
// unprefetched in every part but the first).
func genGemmZMMNext(name string, R, Tb int) {
	partNext = true
	genGemmZMM(name, R, Tb, false, true, true)
	partNext = false
}

// genGemmZMM emits a kernel for groups of R (1, 3 or 4) consecutive weight rows against all
// T tokens, Tb tokens at a time (then the T%Tb left over in one smaller block). Every
// (row, token) dot product has one 16-lane accumulator that steps 16 columns at a time,
// so lanes 0–7 sum the even 8-vectors and lanes 8–15 the odd ones — backends/avx2's two
// accumulators side by side. The last k%16 columns go in one masked step that puts the
// whole 8-vector avx2 adds to its first accumulator in lanes 0–7 and the masked tail it
// adds to its second in lanes 8.. (see tailMasks). Each accumulator is reduced, in
// registers, as avx2 reduces its pair: lanes 0–7 plus lanes 8–15, then pairwise
// (reduce4Z: reduce4's sums with EVEX instructions), then the bias. So every result
// equals avx2's bit for bit, for any T, rows and row split. The micro-kernel keeps R·Tb accumulators, R weight vectors and
// one input vector in registers: per 16 columns, R + Tb loads for R·Tb FMAs. The column
// loop takes gemmUnroll steps an iteration (the loads at displacements 64, 128, ...),
// so its pointer updates and branch, which on Intel cores take the FMA ports' slots
// too, come once per 4 steps: 5–10% at T = 128 on 768-column rows, 4–6% on a prefill.
//
// With spread, group g takes the R rows g, gap+g, 2·gap+g, ... rather
// than R consecutive ones: with gap = rows/R each row walks its own part of the matrix,
// so the weights are read as R long sequential streams, which keeps the hardware
// prefetchers on (backends/avx2's matvecSpread does the same).
//
// With prefetch, every 16 columns also prefetch the same columns of the next group's
// rows (one cache line each; spread: each stream spreadAhead bytes on), so that the
// weights, when they come from memory, arrive while this group computes.
//
// With part, the kernel takes one part of the columns of a longer product (gemm3x8p,
// see its doc): two more arguments, acc and flags, say whether the accumulators start
// from memory rather than zero and whether they go back to memory rather than being
// reduced.
// spreadAhead is how far ahead of its 16 columns each stream of a spread kernel
// (gemv4s) prefetches, in bytes: a decode step of stories110m's f32 matrices from DRAM,
// one thread, took 8–25% less time than with no prefetch (the hardware's alone), more
// than with 512, 1536, 2048 or 4096, or with 2 or 8 streams instead of 4.
const spreadAhead = 1024

// srcPF, set while genGemmZMMSrcPF runs, gives a kernel the arguments pf, pfstep, px
// and pxstep.
var srcPF bool

// gemmUnroll is how many 16-column steps genGemmZMM's column loop takes an iteration
// (a power of two; the k/16 % gemmUnroll steps left over go one at a time first).
// Tried, no gain over 4 on a Sapphire Rapids-class Xeon: 8.
var gemmUnroll = 4

// genGemmZMMSrcPF is genGemmZMM (no prefetch of its own rows) for a kernel that, every
// iteration of its column loop (gemmUnroll steps of 16 columns, or one step left over),
// prefetches the lines at pf and px and steps them by pfstep and pxstep bytes,
// carried from one group and block to the next: matMulHalf spreads the prefetch of the
// next chunk of f16 or bf16 rows, from memory, over the GEMM of the chunk it widened
// before, so that widening them finds them in cache, and the inputs the next call
// reads over this one; gemmRows does the same with the next chunk of f32 rows. Once
// per iteration rather than every step (one line per 64 rather than 16 columns, still
// more than the streams need) was 3% faster at pp128 on f16 weights and 7% rather than
// 4% faster on f32 ones (the f32 prefetch), on a Sapphire Rapids-class Xeon. At pxstep
// past 64 bytes (the next block's 18 KiB of inputs over 21 groups of 768 columns) a line
// in 8 or so of px goes unprefetched; tried, no gain there: a second line, 64 bytes on,
// each iteration (pp128 858 → 853 t/s).
func genGemmZMMSrcPF(name string, R, Tb int, part bool) {
	srcPF = true
	genGemmZMM(name, R, Tb, false, false, part)
	srcPF = false
}

func genGemmZMM(name string, R, Tb int, spread, prefetch, part bool) {
	var lb *labels
	pfDoc := []string{
		"every iteration of its column loop (every " + itoa(gemmUnroll) + " steps of 16 columns, and every step",
		"left over) it prefetches the lines at pf and px and steps them by pfstep and pxstep",
		"bytes, across the groups and blocks of tokens (prefetches never fault).",
	}
	if srcPF && part {
		lb = fnStack(name, "func(dst *float32, ldd int, x *float32, ldx int, T int, w *float32, ldw int, k int, bias *float32, groups int, acc *float32, flags int, pf *uint16, pfstep int, px *float32, pxstep int)",
			append([]string{name + " is gemm" + itoa(R) + "x" + itoa(Tb) + "pn that also prefetches two other streams:"}, pfDoc...)...,
		)
	} else if srcPF {
		lb = fnStack(name, "func(dst *float32, ldd int, x *float32, ldx int, T int, w *float32, ldw int, k int, bias *float32, groups int, pf *uint16, pfstep int, px *float32, pxstep int)",
			append([]string{name + " is gemm" + itoa(R) + "x" + itoa(Tb) + "n that also prefetches two other streams:"}, pfDoc...)...,
		)
	} else if spread {
		lb = fnStack(name, "func(dst *float32, ldd int, x *float32, ldx int, T int, w *float32, ldw int, k int, bias *float32, groups int, gap int)",
			name+" computes, for r = q·gap + g, q < "+itoa(R)+", g < groups (groups ≥ 1), and t < T,",
			"  dst[t*ldd+r] = Σ_{i<k} x[t*ldx+i]·w[r*ldw+i] (+ bias[r] if bias != nil),",
			"each sum exactly as backends/avx2's MatMul takes it.",
		)
	} else if part && partNext {
		lb = fnStack(name, "func(dst *float32, ldd int, x *float32, ldx int, T int, w *float32, ldw int, k int, bias *float32, groups int, acc *float32, flags int, next *float32)",
			name+" is gemm"+itoa(R)+"x"+itoa(Tb)+" over one part of the columns: it starts each (row, token)",
			"accumulator from acc if flags&1 (else from zero) and, if flags&2, leaves it in acc",
			"instead of reducing it into dst. acc holds 16 floats per accumulator, groups·T·"+itoa(R)+" in all.",
			"Parts of k = 16·n columns each, and the last part with the rest, chained through acc,",
			"compute what one call over all the columns does, bit for bit. Each group prefetches",
			"the same columns of the next group's rows; the last group those of the "+itoa(R)+" rows",
			"(ldw apart) at next, the rows the caller reads next (prefetches never fault).",
		)
	} else if part {
		lb = fnStack(name, "func(dst *float32, ldd int, x *float32, ldx int, T int, w *float32, ldw int, k int, bias *float32, groups int, acc *float32, flags int)",
			name+" is gemm"+itoa(R)+"x"+itoa(Tb)+" over one part of the columns: it starts each (row, token)",
			"accumulator from acc if flags&1 (else from zero) and, if flags&2, leaves it in acc",
			"instead of reducing it into dst. acc holds 16 floats per accumulator, groups·T·"+itoa(R)+" in all.",
			"Parts of k = 16·n columns each, and the last part with the rest, chained through acc,",
			"compute what one call over all the columns does, bit for bit.",
		)
	} else {
		lb = fnStack(name, "func(dst *float32, ldd int, x *float32, ldx int, T int, w *float32, ldw int, k int, bias *float32, groups int)",
			name+" computes, for r < "+itoa(R)+"·groups (groups ≥ 1) and t < T,",
			"  dst[t*ldd+r] = Σ_{i<k} x[t*ldx+i]·w[r*ldw+i] (+ bias[r] if bias != nil),",
			"each sum exactly as backends/avx2's MatMul takes it.",
		)
	}
	wcur, goff, gleft := AllocLocal(8), AllocLocal(8), AllocLocal(8)
	xcur, dcur, tleft := AllocLocal(8), AllocLocal(8), AllocLocal(8)
	var pfcur, pxcur Mem // srcPF: the next lines to prefetch
	if srcPF {
		pfcur, pxcur = AllocLocal(8), AllocLocal(8)
		p := Load(Param("pf"), GP64())
		MOVQ(p, pfcur)
		q := Load(Param("px"), GP64())
		MOVQ(q, pxcur)
	}
	var acur Mem // part: the accumulators of the next block
	if part {
		acur = AllocLocal(8)
		a := Load(Param("acc"), GP64())
		MOVQ(a, acur)
	}

	initGroups(goff, wcur, gleft)
	group := lb.next("group")
	Label(group)
	startGroup(xcur, dcur, tleft, goff)

	block := func(Tt int) {
		Commentf("%d rows × %d tokens", R, Tt)
		xa := GP64()
		MOVQ(xcur, xa)
		xs := newStrided(xa, bytesOf("ldx"), Tt)
		wa := GP64()
		MOVQ(wcur, wa)
		wst := bytesOf("ldw")
		if spread {
			g := Load(Param("gap"), GP64())
			IMULQ(g, wst)
		}
		ws := newStrided(wa, wst, R)
		var ps strided // the next group's rows, to prefetch
		if prefetch {
			pa := GP64()
			if spread {
				// Each stream spreadAhead bytes on.
				LEAQ(Mem{Base: wa, Disp: spreadAhead}, pa)
			} else if R <= 4 {
				LEAQ(ws.at(R-1, 0), pa)
				ADDQ(wst, pa)
			} else {
				LEAQ(Mem{Base: ws.base4, Index: wst, Scale: 4}, pa)
			}
			if part && partNext {
				// The last group: the caller's next rows.
				notLast := lb.next("notlast")
				CMPQ(gleft, U8(1))
				JNE(LabelRef(notLast))
				Load(Param("next"), pa)
				Label(notLast)
			}
			ps = newStrided(pa, wst, R)
		}

		acc := make([][]VecVirtual, R)
		for r := range acc {
			acc[r] = make([]VecVirtual, Tt)
			for t := range acc[r] {
				acc[r][t] = ZMM()
			}
		}
		accAt := func(a Register, r, t int) Mem { return Mem{Base: a, Disp: 64 * (t*R + r)} }
		fresh, started := lb.next("fresh"), lb.next("started")
		if part {
			f := Load(Param("flags"), GP64())
			TESTQ(U32(1), f)
			JZ(LabelRef(fresh))
			a := GP64()
			MOVQ(acur, a)
			for t := 0; t < Tt; t++ {
				for r := 0; r < R; r++ {
					VMOVUPS(accAt(a, r, t), acc[r][t])
				}
			}
			JMP(LabelRef(started))
		}
		// Fresh accumulators: one load of zeros, copied register to register (avo takes
		// VPXORD's inputs as read, so it cannot clear them). Tried, no gain on a Sapphire
		// Rapids-class Xeon: VPXORD z0, z0, acc (a zeroing idiom, no execution port).
		Label(fresh)
		z0 := ZMM()
		VMOVUPS(zeros, z0)
		for r := range acc {
			for t := range acc[r] {
				VMOVAPS(z0, acc[r][t])
			}
		}
		Label(started)
		wv := make([]VecVirtual, R)
		for r := range wv {
			wv[r] = ZMM()
		}
		var pfr, pst, pxr, pxs Register
		if srcPF {
			pfr, pst = GP64(), Load(Param("pfstep"), GP64())
			MOVQ(pfcur, pfr)
			pxr, pxs = GP64(), Load(Param("pxstep"), GP64())
			MOVQ(pxcur, pxr)
		}
		n := Load(Param("k"), GP64())
		SHRQ(U8(4), n)
		loop, tail, reduce := lb.next("cols"), lb.next("tail"), lb.next("reduce")
		// step emits the loads and FMAs of the 16 columns disp bytes on.
		step := func(disp int) {
			for r := 0; r < R; r++ {
				VMOVUPS(ws.at(r, disp), wv[r])
			}
			for t := 0; t < Tt; t++ {
				xv := ZMM()
				VMOVUPS(xs.at(t, disp), xv)
				for r := 0; r < R; r++ {
					VFMADD231PS(xv, wv[r], acc[r][t])
				}
				if prefetch && t < R {
					PREFETCHT0(ps.at(t, disp))
				}
			}
			if prefetch {
				for r := Tt; r < R; r++ {
					PREFETCHT0(ps.at(r, disp))
				}
			}
			if srcPF && disp == 0 { // once per iteration
				PREFETCHT0(Mem{Base: pfr})
				ADDQ(pst, pfr)
				PREFETCHT0(Mem{Base: pxr})
				ADDQ(pxs, pxr)
			}
		}
		advance := func(b int) {
			if prefetch {
				ps.add(immBytes(b))
			}
			xs.add(immBytes(b))
			ws.add(immBytes(b))
		}
		if gemmUnroll > 1 {
			// The n%u odd steps first, then u steps an iteration: fewer pointer
			// updates and loop branches.
			u := gemmUnroll
			JZ(LabelRef(tail))
			body := lb.next("body")
			odd := GP64()
			MOVQ(n, odd)
			ANDQ(U8(uint8(u-1)), odd)
			JZ(LabelRef(body))
			one := lb.next("one")
			Label(one)
			step(0)
			advance(64)
			DECQ(odd)
			JNZ(LabelRef(one))
			Label(body)
			SHRQ(U8(uint8(log2(u))), n)
			JZ(LabelRef(tail))
			Label(loop)
			for i := 0; i < u; i++ {
				step(64 * i)
			}
			advance(64 * u)
			DECQ(n)
			JNZ(LabelRef(loop))
		} else {
			JZ(LabelRef(tail))
			Label(loop)
			step(0)
			advance(64)
			DECQ(n)
			JNZ(LabelRef(loop))
		}

		Label(tail)
		if srcPF {
			MOVQ(pfr, pfcur)
			MOVQ(pxr, pxcur)
		}
		rem := Load(Param("k"), GP64())
		ANDQ(U8(15), rem)
		JZ(LabelRef(reduce))
		{
			m, tb := K(), GP64()
			LEAQ(tailMasks, tb)
			KMOVW(Mem{Base: tb, Index: rem, Scale: 2}, m)
			whole := lb.next("whole")
			CMPQ(rem, U8(8))
			JGE(LabelRef(whole))
			xs.add(I8(-32))
			ws.add(I8(-32))
			Label(whole)
			for r := 0; r < R; r++ {
				VMOVUPS_Z(ws.at(r, 0), m, wv[r])
			}
			for t := 0; t < Tt; t++ {
				xv := ZMM()
				VMOVUPS_Z(xs.at(t, 0), m, xv)
				for r := 0; r < R; r++ {
					VFMADD231PS(xv, wv[r], m, acc[r][t])
				}
			}
		}

		Label(reduce)
		reduced := lb.next("reduced")
		if part {
			sum := lb.next("sum")
			f := Load(Param("flags"), GP64())
			TESTQ(U32(2), f)
			JZ(LabelRef(sum))
			a := GP64()
			MOVQ(acur, a)
			for t := 0; t < Tt; t++ {
				for r := 0; r < R; r++ {
					VMOVUPS(acc[r][t], accAt(a, r, t))
				}
			}
			JMP(LabelRef(reduced))
			Label(sum)
		}
		d := GP64()
		MOVQ(dcur, d)
		ldd := bytesOf("ldd")
		for t := 0; t < Tt; t++ {
			if t > 0 {
				ADDQ(ldd, d)
			}
			if R == 4 && !spread && t+1 < Tt {
				// Two tokens at once (reduce8Z), the bias on both, a store each.
				var a, b [4]Vec
				for r := 0; r < 4; r++ {
					a[r], b[r] = acc[r][t], acc[r][t+1]
				}
				h := reduce8Z(a, b, ZMM(), ZMM())
				nob := lb.next("nobias")
				bp := Load(Param("bias"), GP64())
				TESTQ(bp, bp)
				JZ(LabelRef(nob))
				ADDQ(goff, bp)
				bv := YMM()
				VBROADCASTF32X4(Mem{Base: bp}, bv)
				VADDPS(bv, h.AsY(), h.AsY())
				Label(nob)
				VMOVUPS(h.AsX(), Mem{Base: d})
				ADDQ(ldd, d)
				VEXTRACTF32X4(U8(1), h.AsY(), Mem{Base: d})
				t++
				continue
			}
			// Lanes 0–7 plus lanes 8–15, in registers (lanes 0–7 the first operand,
			// as avx2 adds its two accumulators).
			y := make([]VecVirtual, R)
			for r := range y {
				y[r] = YMM()
				VEXTRACTF32X8(U8(1), acc[r][t], y[r])
				VADDPS(y[r], acc[r][t].AsY(), y[r])
			}
			// Four rows at a time: reduce4 as avx2 does (hsumPairwise for one row),
			// the bias, the store.
			for c0 := 0; c0 < R; c0 += 4 {
				c := min(4, R-c0)
				var h Register
				switch c {
				case 4:
					h = reduce4Z(y[c0], y[c0+1], y[c0+2], y[c0+3])
				case 3:
					h = reduce4Z(y[c0], y[c0+1], y[c0+2], y[c0+2])
				case 2:
					h = reduce4Z(y[c0], y[c0+1], y[c0+1], y[c0+1])
				default:
					h = hsumPairwiseZ(y[c0])
				}
				nob := lb.next("nobias")
				b := Load(Param("bias"), GP64())
				TESTQ(b, b)
				JZ(LabelRef(nob))
				ADDQ(goff, b)
				if spread {
					gs := newStrided(b, bytesOf("gap"), R)
					bv := XMM()
					VMOVSS(gs.at(c0, 0), bv)
					for j := 1; j < c; j++ {
						VINSERTPS(U8(uint8(j<<4)), gs.at(c0+j, 0), bv, bv)
					}
					VADDPS(bv, h, h)
				} else {
					bm := Mem{Base: b, Disp: 4 * c0}
					switch c {
					case 4:
						VADDPS(bm, h, h)
					case 3:
						bv := XMM()
						VMOVSD(bm, bv)
						VINSERTPS(U8(0x20), Mem{Base: b, Disp: 4*c0 + 8}, bv, bv)
						VADDPS(bv, h, h)
					case 2:
						bv := XMM()
						VMOVSD(bm, bv)
						VADDPS(bv, h, h)
					default:
						VADDSS(bm, h, h)
					}
				}
				Label(nob)
				if spread {
					ds := newStrided(d, bytesOf("gap"), R)
					VMOVSS(h, ds.at(c0, 0))
					for j := 1; j < c; j++ {
						VEXTRACTPS(U8(uint8(j)), h, ds.at(c0+j, 0))
					}
					continue
				}
				dm := Mem{Base: d, Disp: 4 * c0}
				switch c {
				case 4:
					VMOVUPS(h, dm)
				case 3:
					VMOVSD(h, dm)
					VEXTRACTPS(U8(2), h, Mem{Base: d, Disp: 4*c0 + 8})
				case 2:
					VMOVSD(h, dm)
				default:
					VMOVSS(h, dm)
				}
			}
		}

		Label(reduced)
		if part {
			ADDQ(U32(uint32(64*R*Tt)), acur)
		}

		// The next block's tokens.
		ldd = bytesOf("ldd")
		IMUL3Q(Imm(uint64(Tt)), ldd, ldd)
		ADDQ(ldd, dcur)
		ldx := bytesOf("ldx")
		IMUL3Q(Imm(uint64(Tt)), ldx, ldx)
		ADDQ(ldx, xcur)
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
	ldw := bytesOf("ldw")
	if spread {
		ADDQ(U8(4), goff)
	} else {
		ADDQ(U8(4*R), goff)
		if R > 1 {
			IMUL3Q(Imm(uint64(R)), ldw, ldw)
		}
	}
	ADDQ(ldw, wcur)
	DECQ(gleft)
	JNZ(LabelRef(group))
	VZEROUPPER()
	RET()
}

// haddZ is VHADDPS(b, a, a) — each 128-bit lane a0+a1, a2+a3, b0+b1, b2+b3 — with
// instructions that have EVEX forms, so that a and b may be any of Y0–Y31 (the
// reductions run while the accumulators still hold the low registers). Each sum takes
// its operands as VHADDPS does (the even element first), so the results are its bits.
func haddZ(b, a VecVirtual) {
	ev, od := YMM(), YMM()
	VSHUFPS(U8(0x88), b, a, ev) // a0 a2 b0 b2
	VSHUFPS(U8(0xDD), b, a, od) // a1 a3 b1 b3
	VADDPS(od, ev, a)
}

// haddZ16 is haddZ on whole ZMM registers: in each 128-bit lane, a := a0+a1, a2+a3,
// b0+b1, b2+b3 (the even element first, as VHADDPS takes them); t1 and t2 are free.
func haddZ16(b, a, t1, t2 Vec) {
	VSHUFPS(U8(0x88), b.AsZ(), a.AsZ(), t1.AsZ()) // a0 a2 b0 b2
	VSHUFPS(U8(0xDD), b.AsZ(), a.AsZ(), t2.AsZ()) // a1 a3 b1 b3
	VADDPS(t2.AsZ(), t1.AsZ(), a.AsZ())
}

// reduce8Z reduces the 16-lane accumulators of 4 rows × 2 tokens, a[r] of one token and
// b[r] of the next (all clobbered), each as the GEMMs reduce one (lanes 0–7 plus lanes
// 8–15, then reduce4Z's pairwise sums) but two tokens' at once, in whole ZMM
// registers: it returns t1, with the first token's four sums in its low 128 bits and
// the second's in the next 128 bits, each the bits reduce4Z gives. t1 and t2 are free
// registers. 24 instructions for 8 sums, where reduce4Z takes 19 for 4.
func reduce8Z(a, b [4]Vec, t1, t2 Vec) Vec {
	for r := 0; r < 4; r++ {
		VSHUFF64X2(U8(0xEE), b[r].AsZ(), a[r].AsZ(), t1.AsZ())  // a.hi256 b.hi256
		VINSERTF64X4(U8(1), b[r].AsY(), a[r].AsZ(), a[r].AsZ()) // a.lo256 b.lo256
		VADDPS(t1.AsZ(), a[r].AsZ(), a[r].AsZ())                // lo + hi, as avx2
	}
	// 128-bit lanes: 0 and 1 the first token's halves of its 8 lanes, 2 and 3 the
	// second's; reduce4Z's three pairwise steps on all of them at once.
	haddZ16(a[1], a[0], t1, t2)
	haddZ16(a[3], a[2], t1, t2)
	haddZ16(a[2], a[0], t1, t2)
	// Low half plus high half: lanes 0+1 for the first token, 2+3 for the second.
	VSHUFF32X4(U8(0x88), a[0].AsZ(), a[0].AsZ(), t1.AsZ())
	VSHUFF32X4(U8(0xDD), a[0].AsZ(), a[0].AsZ(), t2.AsZ())
	VADDPS(t2.AsY(), t1.AsY(), t1.AsY())
	return t1
}

// reduce4Z is reduce4 for registers that may be Y16–Y31: an XMM register holding the
// lane sums of a0..a3 (all clobbered), bit for bit as reduce4 computes them.
func reduce4Z(a0, a1, a2, a3 VecVirtual) Register {
	haddZ(a1, a0)
	haddZ(a3, a2)
	haddZ(a2, a0)
	t := XMM()
	VEXTRACTF32X4(U8(1), a0, t)
	VADDPS(t, a0.AsX(), a0.AsX())
	return a0.AsX()
}

// hsumPairwiseZ is hsumPairwise for registers that may be Y16–Y31.
func hsumPairwiseZ(y VecVirtual) Register {
	haddZ(y, y)
	haddZ(y, y)
	t := XMM()
	VEXTRACTF32X4(U8(1), y, t)
	VADDSS(t, y.AsX(), y.AsX())
	return y.AsX()
}

// genProbesZMM emits fmaLoop, the 16-lane FMA peak probe: 16 independent chains (4-cycle
// latency × 2 pipes with room to spare), 512 flops per iteration.
func genProbesZMM() {
	lb := fnStack("fmaLoop", "func(n int)",
		"fmaLoop runs n ≥ 1 iterations of 16 independent 16-lane FMAs (512 flops per",
		"iteration).")
	n := Load(Param("n"), GP64())
	acc := make([]VecVirtual, 16)
	for i := range acc {
		acc[i] = ZMM()
		VMOVUPS(zeros, acc[i])
	}
	a, b := ZMM(), ZMM()
	VMOVUPS(zeros, a)
	VMOVUPS(zeros, b)
	top := lb.next("loop")
	Label(top)
	for i := range acc {
		VFMADD231PS(a, b, acc[i])
	}
	DECQ(n)
	JNZ(LabelRef(top))
	VZEROUPPER()
	RET()
}
