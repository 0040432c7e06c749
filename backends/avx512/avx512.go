//go:build amd64 && !purego

package avx512

import (
	"fmt"
	"unsafe"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/backends/avx2"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

func init() {
	backends.Register(backends.Backend{
		Name:     "avx512",
		Priority: 30,
		Arch:     "amd64",
		Requires: requires,
		New:      func() kernels.Kernels { return Kernels{} },
	})
}

// Kernels implements kernels.Kernels, kernels.Q8Kernels, kernels.BF16Kernels,
// kernels.PeakProber and kernels.Int8Prober: MatMul on float32, f16 and bf16 weights
// (matMulHalf), MatMulBF16, the FMA and int8 probes, and every kernel outside the
// products (stream.go: Dot, Softmax, Attention, AttentionF16, the norms, the
// activations, RoPE, RoPENeoX, Add, Scale, QuantizeQ8 and QuantizeQ8K) with AVX-512;
// everything else (GELUErf, MatMulQ8 where it has no int8 GEMM) by the embedded
// avx2.Kernels.
//
// The assembly takes raw pointers, so every method checks its slice lengths first (a
// violation panics, as the reference's bounds checks would); past those checks no
// kernel reads or writes outside the slices it was given.
type Kernels struct{ avx2.Kernels }

var (
	_ kernels.Kernels    = Kernels{}
	_ kernels.Q8Kernels  = Kernels{}
	_ kernels.PeakProber = Kernels{}
	_ kernels.Int8Prober = Kernels{}
)

// Name implements kernels.Kernels.
func (Kernels) Name() string { return "avx512" }

// ScratchSize implements kernels.Kernels: avx2's (the f32 products need none, though
// with T > 8 they use halfScratch's room for x when there is), or
// more for the int8 GEMM of MatMulQ8 (its prepared activations and one repacked group
// of rows), the f16 and bf16 products (matMulHalf) or MatMulBF16.
func (k Kernels) ScratchSize(T, cols int) int {
	return max(k.Kernels.ScratchSize(T, cols), gemm.ScratchFloats(T, cols), gemmAMX.ScratchFloats(T, cols), kgemm.ScratchFloats(T, cols), halfScratch(T, cols), bf16Scratch(T, cols))
}

// MatMul implements kernels.Kernels. On float32 weights it runs the 16-lane
// register-tiled micro-kernels over blocks of rows and all T tokens (see tiles:
// 8 rows × 2 tokens for T = 2 up to 3 rows × 8 tokens for T = 7, 8 — over parts of
// long rows, gemmParts — and 4 × 6 for T ≥ 9, over parts of long rows gemmBlockParts),
// gemm1x8 for the rows left over, and for
// T = 1 gemv4s, four rows a quarter of the matrix apart (four long streams for the
// prefetchers). Each (row, token) sum is taken exactly as avx2's
// MatMul takes it, so the results are avx2's bit for bit — in particular a token's
// results do not depend on T nor on the row split. For T > 8, x is first laid out in
// scratch when scratch holds it: on rows long enough for gemmBlockParts part by part
// (f32PartsX, for f32BlockGEMM), else on rows a multiple of 512 columns a line further
// apart (see halfPad). f16 and bf16 weights (Cols ≥ 8) go to matMulHalf, other weight types
// to avx2.
func (k Kernels) MatMul(dst []float32, ld int, x []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if (w.DType == dtype.F16 || w.DType == dtype.BF16) && w.Cols >= 8 {
		k.matMulHalf(dst, ld, x, nil, T, w, bias, r0, r1, scratch)
		return
	}
	if w.DType != dtype.F32 {
		k.Kernels.MatMul(dst, ld, x, T, w, bias, r0, r1, scratch)
		return
	}
	k.matMulF32(dst, ld, x, nil, T, w, bias, r0, r1, scratch)
}

// matMulF32 is MatMul on f32 weights, with x also laid out in xp by PrepareX (rows
// padded, layoutPadded) or, when xp is nil, laid out here if scratch has room.
func (k Kernels) matMulF32(dst []float32, ld int, x, xp []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if r0 >= r1 || T <= 0 {
		return
	}
	n, wf := w.Cols, w.F32
	if wf == nil {
		wf = dtype.BytesToF32(w.Data)
	}
	if r0 < 0 || r1 > w.Rows || len(wf) < w.Rows*n || ld < r1 || len(x) < T*n ||
		len(dst) < (T-1)*ld+r1 || (bias != nil && len(bias) < r1) {
		panic(fmt.Sprintf("avx512: MatMul rows [%d,%d) of %d×%d, T=%d, ld=%d: len(x)=%d len(dst)=%d len(bias)=%d",
			r0, r1, w.Rows, n, T, ld, len(x), len(dst), len(bias)))
	}
	if n == 0 { // nothing to point the kernels at: an empty sum, plus the bias
		for t := 0; t < T; t++ {
			for r := r0; r < r1; r++ {
				var s float32
				if bias != nil {
					s += bias[r]
				}
				dst[t*ld+r] = s
			}
		}
		return
	}
	if f32Parts(T, n) {
		// x part by part (in xp, else here in scratch when it has room): every row
		// range with xp, as xp is laid out so, and any shorter than a tile (gemm1x8 alone,
		// on x as it is).
		xs := xp
		if need := T * f32PartsRow(n); xs == nil && r1-r0 >= 4 && len(scratch) >= need {
			xs = scratch[:need]
			f32PartsX(xs, x, T, n, 0, T)
		}
		if xs != nil || r1-r0 < 4 {
			f32BlockGEMM(dst, ld, x, xs, T, wf, w.Rows, n, bias, r0, r1)
			return
		}
	}
	xs, ldx := x, n
	if padRows(T, n) {
		// Rows a multiple of 2 KiB long: the tokens a GEMM step loads would share L1
		// sets; copied a line further apart, they do not (as matMulHalf lays them out).
		switch ldx = n + halfPad; {
		case xp != nil:
			xs = xp
		case len(scratch) >= T*ldx:
			xs = scratch[:T*ldx]
			padTokens(xs, x, n, 0, T)
		default:
			ldx = n
		}
	}
	gemmRows(dst[r0:], ld, xs, ldx, T, wf[r0*n:], n, n, from(bias, r0), r1-r0)
}

// f32BlockGEMM is matMulF32 for f32Parts, with x laid out by f32PartsX in xp: chunks of
// rows (longChunkBytes, as gemmBlockParts cuts them) through gemmBlockParts, each
// prefetching over its blocks of tokens the next chunk's rows from memory (after the
// last, the rows after r1: the start of the range the caller, a thread of a row split,
// is likely to take next) and each call the next call's inputs (one run, as on f16
// rows); gemm1x8 on x as it is for the rows%4 left over. The sums are gemmRows' (the
// same kernels, whole 16-column steps a part), so the results are avx2's bits.
//
// On a Sapphire Rapids-class Xeon, one thread, T = 128, the GEMM alone: 2048 columns
// 137.7 → 144.5 GFLOP/s, 3072 columns 126.5 → 136.5 (against x as it is, rows padded
// and chunks taking their own rows from memory). Either prefetch alone gained nothing:
// x part by part without the next chunk's rows (-1–2%), the next chunk's rows with x as
// it is (-1–3%): the first block of each chunk waits for memory either way. At T = 16,
// 32 and 64 it was as fast or up to 5% faster.
//
// Tried there, no gain: each chunk's rows copied into scratch halfPad floats apart (so
// that a tile's 4 rows, 8 KiB apart at 2048 columns, do not share L1 sets) before
// gemmBlockParts, with or without the next chunk prefetched, parts of 16 or 24 KiB:
// 3–8% slower (the copy costs more than the sets gain); parts of 16, 20, 36 or 48 KiB
// of inputs rather than f32BlockPartBytes (2–9% slower; 48 KiB is one part at 2048
// columns); the tokens of a part cols apart rather than a line more (1% slower); the
// first chunk's first block of tokens prefetching its own rows (gemm4x6p), on 24
// matrices in turn so that the weights come from memory (within 1%). With
// one token's inputs for all (ldx 0) and one chunk's rows for all (both in cache) the
// GEMM ran at 157–159 GFLOP/s, as on 768-column rows, against 137/126 before this and
// 143/135 with it (2048/3072 columns).
func f32BlockGEMM(dst []float32, ld int, x, xp []float32, T int, wf []float32, rows, n int, bias []float32, r0, r1 int) {
	_, cols := partsOf(n, f32BlockPartBytes)
	pw := f32PartPitch(cols)
	g := (r1 - r0) / 4
	gc := min(blockPartGroups, max(1, longChunkBytes/(4*n*4)))
	for g0 := 0; g0 < g; g0 += gc {
		m := min(gc, g-g0)
		a := r0 + 4*g0
		b := a + 4*m
		var next []uint16
		if e := min(b+4*gc, rows); e > b {
			nw := wf[b*n : e*n]
			next = unsafe.Slice((*uint16)(unsafe.Pointer(&nw[0])), 2*len(nw))
		}
		gemmBlockParts(dst[a:], ld, xp, pw, T, wf[a*n:], n, n, from(bias, a), m, next, pw, longChunkBytes, f32BlockPartBytes)
	}
	if r := r0 + 4*g; r < r1 {
		gemm1x8(&dst[r], ld, &x[0], n, T, &wf[r*n], n, n, at(bias, r), r1-r)
	}
}

// tile is one of the GEMM micro-kernels: rows × the tokens it keeps in registers.
type tile struct {
	rows, tokens int
	f            func(dst *float32, ldd int, x *float32, ldx int, T int, w *float32, ldw int, k int, bias *float32, groups int)
	// parts: for long rows gemmParts, which runs gemm3x8p, f over parts of the columns
	// (called directly, so that its accumulators stay on the stack).
	parts bool
}

// tiles picks the micro-kernel for T tokens (index min(T, 9)): as many accumulators
// as fit, with as many rows as the tokens leave room for. Each prefetches the next
// group's rows as it goes (a 1.7× gain at T = 8 on weights from DRAM).
//
// From DRAM (BenchmarkDecodeDRAM) gemm3x8 reads the weights at about 60–70% of the
// read probe on one thread, and about as fast at T = 2 as at T = 8: the limit is how
// many lines its software prefetches keep in flight, not the FMAs. Prefetching 2, 4 or
// 8 groups ahead, with PREFETCHT1, T2 or NTA, a second farther stream, the next group
// as one sequential run, or three rows a third of the matrix apart (spread) was no
// faster; neither were the inputs as FMA memory operands.
var tiles = [10]tile{
	2: {8, 2, gemm8x2, false},
	3: {6, 4, gemm6x4, false}, 4: {6, 4, gemm6x4, false},
	5: {4, 6, gemm4x6, false}, 6: {4, 6, gemm4x6, false},
	7: {3, 8, gemm3x8, true}, 8: {3, 8, gemm3x8, true},
	9: {4, 6, gemm4x6, false},
}

// chunkBytes bounds the weight rows one pass over the token blocks takes when T is more
// than a tile's tokens: the chunk stays in L2 while each block's inputs sit in L1
// (10–17% faster at T = 64 than taking each group of rows against all tokens).
//
// Tried on a Sapphire Rapids-class Xeon at T = 128 on 768-column rows, no faster (within
// the noise of a shared machine): chunks of 128 KiB, 512 KiB or 1 MiB; gemm4x6
// (prefetching the next group's rows) for every block of tokens; each row prefetched
// 256, 512 or 1024 bytes ahead every step; a 3 × 8 tile rather than 4 × 6 (5–10%
// slower). The 4 × 6 kernel on rows in L1 ran at about 89% of the FMA peak there, on a
// chunk in L2 at 76–86%, the whole product at 72–80%.
const chunkBytes = 256 << 10

// gemmRows computes dst[t*ld+r] = x_t·w_r (+ bias[r]) for r < rows and t < T, x_t =
// x[t*ldx : t*ldx+k] and w_r = w[r*ldw : r*ldw+k] (k ≥ 1): for T = 1 gemv4s over the
// four quarters of the rows, for T > 1 the tile for T over blocks of its rows (for
// more tokens than the tile takes at once, chunks of rows against one block of tokens
// after the other), and gemm1x8 for the rows left over. Callers have checked the lengths.
func gemmRows(dst []float32, ld int, x []float32, ldx, T int, w []float32, ldw, k int, bias []float32, rows int) {
	gemmRowsPF(dst, ld, x, ldx, T, w, ldw, k, bias, rows, nil)
}

// gemmRowsPF is gemmRows that, for T > 8, also prefetches the halves pf (the next chunk
// of rows matMulHalf widens, from memory) spread evenly over the 4 × 6 tile's column
// loop iterations (gemm4x6nf, gemm4x6pnf; loopIters), so that they are in cache when widened. Those kernels then
// take every block of tokens, the first too: the chunk they read was just widened.
func gemmRowsPF(dst []float32, ld int, x []float32, ldx, T int, w []float32, ldw, k int, bias []float32, rows int, pf []uint16) {
	r := 0
	if T == 1 {
		if q := rows / 4; q > 0 {
			gemv4s(&dst[0], ld, &x[0], ldx, 1, &w[0], ldw, k, at(bias, 0), q, q)
			r = 4 * q
		}
	} else {
		tl := tiles[min(T, 9)]
		g := rows / tl.rows
		r = tl.rows * g
		switch {
		case g == 0:
		case T <= tl.tokens && tl.parts && 4*T*k > 2*partInputBytes:
			gemmParts(dst, ld, x, ldx, T, w, ldw, k, bias, g)
		case T <= tl.tokens:
			tl.f(&dst[0], ld, &x[0], ldx, T, &w[0], ldw, k, at(bias, 0), g)
		case tl.tokens == 6 && 4*6*k > 2*partInputBytes:
			pb := partInputBytes
			if pf == nil {
				pb = f32BlockPartBytes
			}
			gemmBlockParts(dst, ld, x, ldx, T, w, ldw, k, bias, g, pf, 0, longChunkBytes, pb)
		default:
			// More tokens than one block: a chunk of rows (from L2) against each
			// block's inputs (in L1) in turn. The first block prefetches the chunk's
			// rows as it goes; the others, reading them from L2, run faster without
			// (gemm4x6n: 10–20% at T = 128 on rows of 2048 columns).
			//
			// On f32 rows (pf nil) with the 4 × 6 tile, the blocks of a chunk instead
			// prefetch the next chunk's rows, spread over the chunk's column loops
			// (gemm4x6nf: a line every gemmUnroll steps), so that only the first chunk
			// waits for memory: where the first block took each chunk from memory at
			// the rate its own prefetches kept up, pp128 of stories110M (f32) went from
			// 719 to 770 t/s and of GPT-2 124M from 694 to 736 on a Sapphire
			// Rapids-class Xeon, one thread. (Prefetching a line every step gained
			// half as much: 750 t/s.)
			gc := max(1, chunkBytes/(4*k*tl.rows))
			nb := (T + tl.tokens - 1) / tl.tokens
			ps := newPFStream(pf, nb*g*loopIters(k))
			ahead := pf == nil && tl.tokens == 6
			for g0 := 0; g0 < g; g0 += gc {
				n, r0 := min(gc, g-g0), g0*tl.rows
				if ahead {
					ps = pfStream{}
					if ng := min(gc, g-g0-n); ng > 0 {
						nw := w[(r0+n*tl.rows)*ldw:]
						nw = nw[:(ng*tl.rows-1)*ldw+k]
						ps = newPFStream(unsafe.Slice((*uint16)(unsafe.Pointer(&nw[0])), 2*len(nw)), nb*n*loopIters(k))
					}
				}
				for i, t0 := 0, 0; t0 < T; i++ {
					tt := blockTokens(T, tl.tokens, i)
					d, xt, wr, b := &dst[t0*ld+r0], &x[t0*ldx], &w[r0*ldw], at(bias, r0)
					switch {
					case ahead && g0 == 0 && t0 == 0:
						tl.f(d, ld, xt, ldx, tt, wr, ldw, k, b, n) // the first chunk: its own rows
					case ps.on() && tl.tokens == 6:
						// The stream (ahead: the next chunk's rows), and the next block's
						// inputs, one run of rows (after the last block the first's, which
						// the next chunk takes first).
						steps := n * loopIters(k)
						p, step := ps.next(steps, unsafe.Pointer(xt))
						nt, ntt := t0+tt, blockTokens(T, 6, i+1)
						if nt == T {
							nt, ntt = 0, blockTokens(T, 6, 0)
						}
						q, qstep := xRun(x, nt*ldx, ntt*ldx, steps)
						gemm4x6nf(d, ld, xt, ldx, tt, wr, ldw, k, b, n, p, step, q, qstep)
					case ahead: // the last chunk, prefetched by the one before
						gemm4x6n(d, ld, xt, ldx, tt, wr, ldw, k, b, n)
					case t0 > 0 && tl.tokens == 6:
						gemm4x6n(d, ld, xt, ldx, tt, wr, ldw, k, b, n) // the chunk is in L2 now
					default:
						tl.f(d, ld, xt, ldx, tt, wr, ldw, k, b, n)
					}
					t0 += tt
				}
			}
		}
	}
	if r < rows {
		gemm1x8(&dst[r], ld, &x[0], ldx, T, &w[r*ldw], ldw, k, at(bias, r), rows-r)
	}
}

// gemmUnroll is how many 16-column steps the GEMM kernels' column loop takes an
// iteration (the generator's gemmUnroll).
const gemmUnroll = 4

// loopIters is how many iterations the GEMM kernels' column loop takes over k columns:
// one per gemmUnroll steps and one per step left over.
func loopIters(k int) int {
	s := k >> 4
	return s/gemmUnroll + s%gemmUnroll
}

// blockTokens is the size of block i when T tokens go through a tile of tb tokens in
// ⌈T/tb⌉ blocks as alike as can be (the larger ones first): T = 128 takes 18 blocks of 6
// and 4 of 5 rather than 21 of 6 and one of 2, whose 4 × 2 tile loads 4 weight vectors
// for every 8 FMAs and ran at 57% of the 4 × 6 tile's rate (the 4 × 5 tile at its rate).
func blockTokens(T, tb, i int) int {
	nb := (T + tb - 1) / tb
	if i < T%nb {
		return T/nb + 1
	}
	return T / nb
}

// partInputBytes is about the inputs (T rows of a part of the columns) a tile takes in
// one pass when all T rows would be more than twice that: then they would not stay in
// L1 next to the weights streaming through (8 tokens of 1536 columns are 48 KiB, all of
// L1), and every input load, 8 of the 11 per 16 columns, would come from L2.
const partInputBytes = 16 << 10

// partGroups is how many groups of rows gemmParts takes through the column parts
// together: their accumulators (1.5 KiB a group at T = 8) stay in L1 between parts.
const partGroups = 8

// gemmParts is gemm3x8 (T ≤ 8) on g groups of rows when the T inputs of k columns are
// more than L1 holds: partGroups groups at a time go over the columns in parts whose
// inputs fit, each part's accumulators left in memory for the next one (gemm3x8p), the
// last part reducing them as gemm3x8 does. An accumulator is only stored and loaded
// again between the parts, and the parts are whole 16-column steps, so every sum is
// taken exactly as gemm3x8 takes it. Each part's last group prefetches the rows read
// next (gemm3x8p's next), so that every line of the weights is prefetched.
func gemmParts(dst []float32, ld int, x []float32, ldx, T int, w []float32, ldw, k int, bias []float32, g int) {
	var acc [partGroups * 8 * 3 * 16]float32 // partGroups groups of T ≤ 8 tokens × 3 rows
	cols := partInputBytes / (4 * T) &^ 15
	for g0 := 0; g0 < g; g0 += partGroups {
		n, r0 := min(partGroups, g-g0), 3*g0
		for c0 := 0; c0 < k; c0 += cols {
			flags, kk := 0, cols
			if c0 > 0 {
				flags |= 1 // start from the accumulators of the parts before
			}
			if c0+cols < k {
				flags |= 2 // leave the accumulators for the next part
			} else {
				kk = k - c0
			}
			// The rows the last group prefetches: the first group's next part, else the
			// next groups' first part, else (nothing after) the first group's own.
			next := &w[r0*ldw+c0]
			if flags&2 != 0 {
				next = &w[r0*ldw+c0+cols]
			} else if g0+n < g {
				next = &w[(r0+3*n)*ldw]
			}
			gemm3x8p(&dst[r0], ld, &x[c0], ldx, T, &w[r0*ldw+c0], ldw, kk, at(bias, r0), n, &acc[0], flags, next)
		}
	}
}

// blockPartGroups bounds the groups of rows gemmBlockParts takes through the column
// parts of one block of tokens: their accumulators (1.5 KiB a group) stay in L1.
const blockPartGroups = 16

// gemmBlockParts is the 4 × 6 tile (gemm4x6) on g groups of rows and T > 6 tokens when
// 6 tokens' inputs of k columns are more than L1 holds next to the weights (k = 2048:
// 48 KiB, all of L1, so every input load came from L2). A chunk of rows (from L2) goes
// against one block of 6 tokens after the other, as gemmRows does, but each block over
// the columns in parts whose inputs fit in L1 (gemm4x6p), the chunk's accumulators left
// in memory from one part to the next. Parts are whole 16-column steps and an
// accumulator is only stored and loaded again between them, so every sum is taken
// exactly as gemm4x6 takes it. As in gemmRows, only the first block of tokens
// prefetches the rows, unless pf is given (gemmRowsPF).
//
// The chunks are about chunk bytes of rows (longChunkBytes, for f32 rows as for the
// widened ones of matMulHalf). With pw > 0, x is laid out part by part (partsX): part p
// of token t at x[p·T·pw + t·pw], ldx = pw, so that the inputs of one call are one run
// of floats, which the call before prefetches (gemm4x6pnf) as it goes.
//
// Tried at T = 128, one thread, on 2048 and 3072 columns, and no faster: fewer groups
// per call (6 or 8 rather than up to 16: 5–10% slower), parts of 512, 768 or 1024
// columns rather than blockParts' (about 16 KiB of inputs), the next call's inputs
// prefetched to L2 only or only over a call's last groups, and every block of tokens
// prefetching the rows (gemm4x6p). With the inputs in L1 and the rows in L2 the part
// kernel runs at 85–95% of the FMA peak; the whole product at 65–80%.
//
// Tried on a Sapphire Rapids-class Xeon (T = 128, f32 rows of 2048 and 3072 columns),
// no faster within the noise: the next chunk's rows prefetched over this one's blocks
// as gemmRows does (+0.8% at pp128), the next block's accumulators prefetched as a part
// starts, x laid out part by part for f32 rows too (partsX: 2% slower; but both
// together pay, see f32BlockGEMM), parts of about
// 24 KiB of inputs on f16 rows (f32BlockPartBytes: none there). A part kernel alone, on 16 groups of 688 columns in L2, ran at 75–80% of the peak on rows
// 2048 floats apart and 80–84% on rows 2064 apart (f32 weights are read in place, so
// their rows keep the 8 KiB stride).
func gemmBlockParts(dst []float32, ld int, x []float32, ldx, T int, w []float32, ldw, k int, bias []float32, g int, pf []uint16, pw, chunk, partBytes int) {
	var acc [blockPartGroups * 6 * 4 * 16]float32
	np, cols := partsOf(k, partBytes)
	gc := min(blockPartGroups, max(1, chunk/(4*k*4)))
	ps := newPFStream(pf, (T+5)/6*g*((np-1)*loopIters(cols)+loopIters(k-(np-1)*cols)))
	for g0 := 0; g0 < g; g0 += gc {
		n, r0 := min(gc, g-g0), 4*g0
		for i, t0 := 0, 0; t0 < T; i, t0 = i+1, t0+blockTokens(T, 6, i) {
			tt := blockTokens(T, 6, i)
			for pi, c0 := 0, 0; c0 < k; pi, c0 = pi+1, c0+cols {
				flags, kk := 0, cols
				if c0 > 0 {
					flags |= 1 // start from the accumulators of the parts before
				}
				if c0+cols < k {
					flags |= 2 // leave the accumulators for the next part
				} else {
					kk = k - c0
				}
				xo := t0*ldx + c0
				if pw > 0 {
					xo = pi*T*pw + t0*pw
				}
				d, xt, wr, b := &dst[t0*ld+r0], &x[xo], &w[r0*ldw+c0], at(bias, r0)
				switch {
				case pw > 0:
					// The next call's inputs: the next part, else the next block's
					// first part, else (the last call) the first call's.
					steps := n * loopIters(kk)
					p, step := ps.next(steps, unsafe.Pointer(xt))
					nx, nt := (pi+1)*T*pw+t0*pw, tt
					if pi+1 == np {
						nx, nt = (t0+tt)*pw, blockTokens(T, 6, i+1)
						if t0+tt == T {
							nx, nt = 0, blockTokens(T, 6, 0)
						}
					}
					q, qstep := xRun(x, nx, nt*pw, steps)
					gemm4x6pnf(d, ld, xt, ldx, tt, wr, ldw, kk, b, n, &acc[0], flags, p, step, q, qstep)
				case ps.on():
					p, step := ps.next(n*loopIters(kk), unsafe.Pointer(xt))
					gemm4x6pnf(d, ld, xt, ldx, tt, wr, ldw, kk, b, n, &acc[0], flags, p, step, xt, 0)
				case t0 == 0:
					gemm4x6p(d, ld, xt, ldx, tt, wr, ldw, kk, b, n, &acc[0], flags)
				default: // the chunk is in L2 now
					gemm4x6pn(d, ld, xt, ldx, tt, wr, ldw, kk, b, n, &acc[0], flags)
				}
			}
		}
	}
}

// pfStream spreads the prefetch of the halves h (or of any memory seen as halves) over
// steps iterations of the GEMM kernels' column loops (loopIters): one line at each,
// step bytes on from the last.
type pfStream struct {
	h    []uint16
	step int // bytes
	done int // iterations handed out
}

func newPFStream(h []uint16, steps int) pfStream {
	if len(h) == 0 || steps <= 0 {
		return pfStream{}
	}
	return pfStream{h: h, step: (2*len(h) + steps - 1) / steps}
}

// on reports whether there is anything to prefetch.
func (s *pfStream) on() bool { return s.h != nil }

// next returns where a kernel call of n loop iterations starts prefetching, and its step: with
// nothing to prefetch, alt (memory the call reads anyway) and 0.
func (s *pfStream) next(n int, alt unsafe.Pointer) (*uint16, int) {
	if s.h == nil {
		return (*uint16)(alt), 0
	}
	i := min(s.done*s.step/2, len(s.h)-1)
	s.done += n
	return &s.h[i], s.step
}

// xRun returns where a kernel call of steps loop iterations prefetches the n floats at
// x[off:], one line an iteration, and its step in bytes.
func xRun(x []float32, off, n, steps int) (*float32, int) {
	if steps <= 0 {
		return &x[off], 0
	}
	return &x[off], (4*n + steps - 1) / steps
}

// blockParts returns how gemmBlockParts splits k columns of f16 or bf16 rows (and how
// partsX lays x out for them): np parts of cols columns (a multiple of 16), the last one
// shorter.
func blockParts(k int) (np, cols int) { return partsOf(k, partInputBytes) }

// f32BlockPartBytes is partInputBytes for gemmBlockParts on f32 rows (x as it is, no
// halves to prefetch): parts of about 24 KiB of inputs, 2 of 1024 columns at k = 2048
// rather than 3 of 688, one store and reload of the accumulators fewer. On a Sapphire
// Rapids-class Xeon, one thread, T = 128, 4 interleaved rounds: BenchmarkPrefill f32
// K2048_N768 60.2 → 62.7% of the peak (K3072_N768 62.6 → 61.6), pp128 of stories110M
// (f32) 841 → 867 t/s, of GPT-2 124M 797 → 802; on Zen 5 parts of 1024 columns were no
// slower (see gemmBlockParts).
const f32BlockPartBytes = 24 << 10

// partsOf splits k columns in np parts of cols columns (a multiple of 16, the last part
// shorter) of about bytes of the 6 tokens' inputs each.
func partsOf(k, bytes int) (np, cols int) {
	n := (4*6*k + bytes - 1) / bytes
	cols = ((k+n-1)/n + 15) &^ 15
	return (k + cols - 1) / cols, cols
}

// from returns v[i:], or nil for a nil slice.
func from(v []float32, i int) []float32 {
	if v == nil {
		return nil
	}
	return v[i:]
}

// at returns &v[i], or nil for a nil slice.
func at(v []float32, i int) *float32 {
	if v == nil {
		return nil
	}
	return &v[i]
}

// FMAProbe runs iters iterations of 16 independent 16-lane FMAs and returns the flops
// done: the machine's FMA peak at this backend's width, for benchmarks
// (kernels.PeakProber).
func (Kernels) FMAProbe(iters int) int64 {
	if iters <= 0 {
		return 0
	}
	fmaLoop(iters)
	return int64(iters) * 16 * 32
}

// Int8Probe runs iters iterations of the loop of the int8 products MatMulQ8 takes on
// this CPU and returns the int8 operations done (2 per multiply-add of a byte pair;
// kernels.Int8Prober): with AVX512_VNNI 16 independent VPDPBUSD on 16 dword lanes
// (2048 ops an iteration), else avx2's probe, as MatMulQ8 then takes avx2's kernels.
func (k Kernels) Int8Probe(iters int) int64 {
	if iters <= 0 {
		return 0
	}
	if !useVNNI {
		return k.Kernels.Int8Probe(iters)
	}
	i8VNNILoop(iters)
	return int64(iters) * i8ProbeOps
}

// i8ProbeOps is the int8 operations of one iteration of i8VNNILoop: 16 instructions of
// 16 lanes × 4 byte pairs × 2.
const i8ProbeOps = 16 * 16 * 4 * 2
