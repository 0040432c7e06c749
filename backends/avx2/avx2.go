//go:build amd64 && !purego

package avx2

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/backends/internal/stream"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

func init() {
	backends.Register(backends.Backend{
		Name:     "avx2",
		Priority: 20,
		Arch:     "amd64",
		Requires: []cpuid.FeatureID{cpuid.AVX2, cpuid.FMA3, cpuid.F16C},
		New:      func() kernels.Kernels { return Kernels{} },
	})
}

// Kernels implements kernels.Kernels and kernels.Q8Kernels with AVX2+FMA(+F16C)
// assembly. The embedded Reference serves what has no assembly: MatMulQ8 on weights
// that are not block-quantized, GELUErf, and AttentionF16 on head widths that are
// not a multiple of 8.
//
// The products on f16, bf16, q8_0, q4_0 and k-quant weights work in the caller's
// kernels.Scratch (see ScratchSize), so that, like every kernel here, they allocate
// nothing.
//
// The assembly takes raw pointers, so every method checks its slice lengths first (a
// violation panics, as the reference's bounds checks would); past those checks no
// kernel reads or writes outside the slices it was given.
type Kernels struct{ kernels.Reference }

var (
	_ kernels.Kernels    = Kernels{}
	_ kernels.PeakProber = Kernels{}
	_ kernels.Int8Prober = Kernels{}
)

// Name implements kernels.Kernels.
func (Kernels) Name() string { return "avx2" }

// ScratchSize implements kernels.Kernels. MatMul keeps in the scratch, for T > 1, up to
// two chunks of halfRowsFor(cols) rows of f16 or bf16 weights (the one the GEMM
// multiplies and the one it widens meanwhile), or one of halfChunk rows of q8_0, q4_0 or
// k-quant weights, widened to float32 for the
// f32 GEMM, for f16 and bf16 every token of x in the order the rows were widened in
// (T·cols floats), and on rows longer than gemmSeg the GEMM's accumulators between
// column segments (gemmStateFloats), and for f32 too the tokens' inputs split for
// gemm4s (T·cols floats); for T = 1, the quantRowsT1 block-quantized or f16
// rows matMulQuant or matMulHalf widens at a time, and the rearranged x of the f16 and
// bf16 mix kernels (at most cols floats). MatMulQ8 keeps one xBlock per q8_0 activation
// block of every token, or one prepared q8_k super-block (xkBlock bytes) per 256
// activations of every token, or for the int8 GEMM (package qgemm) its prepared
// activations and one repacked group of rows, or for the k-quant GEMM the same and its
// tiles' state.
func (Kernels) ScratchSize(T, cols int) int {
	rows := quantRowsT1 + 1
	if T > 1 {
		rows = 2*halfRowsFor(cols) + T
	}
	return max(rows*cols+gemmStateFloats(T, cols), T*(cols/dtype.QBlock)*xBlockFloats, T*(cols/dtype.QKBlock)*xkBlockFloats,
		gemm.ScratchFloats(T, cols), gemmMadd.ScratchFloats(T, cols), kgemm.ScratchFloats(T, cols), kgemmMadd.ScratchFloats(T, cols))
}

// scratchFor returns the first n floats of scratch, panicking, as the reference's bounds
// checks would, when the caller gave fewer.
func scratchFor(who string, scratch kernels.Scratch, n int) []float32 {
	if len(scratch) < n {
		panic(fmt.Sprintf("avx2: %s needs %d floats of scratch, got %d", who, n, len(scratch)))
	}
	return scratch[:n:n]
}

// MatMul implements kernels.Kernels. T = 1 is bandwidth-bound: it streams the weights
// once, as four long sequential streams (see mv). T > 1 runs a 4-row × 3-token
// register-blocked micro-kernel (gemm4; gemm1 for the rows%4 left over) over each block
// of four rows and all tokens, so each weight row is read from memory once while the
// inputs (T·Cols floats) stay in L2/L3; rows longer than gemmSeg (1024 or 2048) columns go a
// segment at a time, their accumulators kept in scratch in between (gemmRows); long rows,
// or many, take the tokens' inputs split in scratch into odd and even vectors (gemm4s,
// splitInputs). While it multiplies a chunk of rows, the kernel prefetches the next
// chunk's weights, a few cache lines per block of tokens: the weights come from memory
// once, often from a file mapped in 4 KiB pages, which the hardware prefetchers do not
// cross. The GEMM sums every (row, token) product exactly as matvec and matvecSpread sum a row, so a
// token's results are the bits it gets alone (T = 1), whatever T and the other tokens.
func (k Kernels) MatMul(dst []float32, ld int, x []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if (w.DType == dtype.F16 || w.DType == dtype.BF16) && w.Cols >= 8 {
		k.matMulHalf(dst, ld, x, nil, T, w, bias, r0, r1, scratch)
		return
	}
	if (w.DType == dtype.Q8_0 || w.DType == dtype.Q4_0) && w.Cols%dtype.QBlock == 0 ||
		w.DType.KQuant() && w.Cols%dtype.QKBlock == 0 {
		k.matMulQuant(dst, ld, x, T, w, bias, r0, r1, scratch)
		return
	}
	if w.DType != dtype.F32 {
		k.Reference.MatMul(dst, ld, x, T, w, bias, r0, r1, scratch)
		return
	}
	if r0 >= r1 || T <= 0 {
		return
	}
	n, wf := w.Cols, w.F32
	if wf == nil {
		wf = dtype.BytesToF32(w.Data)
	}
	if r0 < 0 || r1 > w.Rows || len(wf) < w.Rows*n || ld < r1 || len(x) < T*n ||
		len(dst) < (T-1)*ld+r1 || (bias != nil && len(bias) < r1) {
		panic(fmt.Sprintf("avx2: MatMul rows [%d,%d) of %d×%d, T=%d, ld=%d: len(x)=%d len(dst)=%d len(bias)=%d",
			r0, r1, w.Rows, n, T, ld, len(x), len(dst), len(bias)))
	}
	if T == 1 {
		var b []float32
		if bias != nil {
			b = bias[r0:]
		}
		mv(dst[r0:], x, wf[r0*n:], n, n, r1-r0, b)
		return
	}
	st := scratchFor("MatMul", scratch, gemmStateFloats(T, n))
	// Long rows, or many, take the tokens' inputs split (gemm4s), in scratch when it
	// has room.
	var xs []float32
	if splitInputs(n, r1-r0) && len(scratch) >= len(st)+T*n {
		xs = scratch[len(st) : len(st)+T*n]
		for t := 0; t < T; t++ {
			splitX(xs[t*n:(t+1)*n], x[t*n:(t+1)*n])
		}
	}
	// A chunk of rows at a time, prefetching the next chunk's: the weights come from
	// memory once, mapped in 4 KiB pages the hardware prefetchers do not cross. Unless
	// the tokens are too few to spread the prefetches over (at most gemmPrefetchLines
	// per block of three tokens): then all rows in one call, as the weights' reads are
	// then about all the call does.
	chunk := 4
	if n > gemmSeg {
		chunk = gemmStateRows
	}
	if 4*chunk*n > 64*gemmPrefetchLines*(chunk/4)*((n+gemmSeg-1)/gemmSeg)*((T+2)/3) {
		gemmRowsCv(dst[r0:], ld, x, xs, n, T, wf[r0*n:], n, n, from(bias, r0), r1-r0, st, nil, nil, cvNone)
		return
	}
	wb := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(wf))), 4*len(wf))
	for a := r0; a < r1; a += chunk {
		b := min(a+chunk, r1)
		next := wb[4*b*n : 4*min(b+chunk, r1)*n]
		gemmRowsCv(dst[a:], ld, x, xs, n, T, wf[a*n:], n, n, from(bias, a), b-a, st, next, nil, cvNone)
	}
}

// splitInputs reports whether a GEMM on rows of k columns (k the columns the GEMM
// sums) takes the tokens' inputs split (gemm4s): on at least splitMinRows rows of whole
// 16-column steps, longer than splitMinK, or at least 2k rows of them. At T = 128, on
// 2048 and 3072 columns it gains 1–15%; on 768 columns 0–9% with 2048 and 3072 rows,
// from −3 to +2% with 768. The split costs a copy of the inputs, T·k floats, which
// fewer rows would not repay. Splitting from k rows on (768 × 768) measured from −4 to
// +8%, no gain; neither did a token stride padded by 16 floats off the 4 KiB multiples
// (2048 and 3072 columns), a gemmSeg of 512, 16 rather than gemmStateRows rows per GEMM
// call on longer rows, nor blocks of 6–12 tokens taken over many rows at a time (slower).
func splitInputs(k, rows int) bool {
	return k%16 == 0 && rows >= splitMinRows && (k > splitMinK || rows >= 2*k)
}

// splitMinK is the columns past which splitInputs splits the inputs whatever the rows.
const splitMinK = 1024

// splitMinRows is the fewest rows splitInputs splits the inputs for.
const splitMinRows = 16

// splitX writes one token's inputs x (len(x) a multiple of 16) as gemm4s takes them,
// one gemmSeg-column segment at a time: in each, the odd 8 columns of every 16 first,
// then the even ones.
func splitX(dst, x []float32) {
	for k0 := 0; k0 < len(x); k0 += gemmSeg {
		k1 := min(k0+gemmSeg, len(x))
		splitSeg(dst[k0:k1], x[k0:k1])
	}
}

// splitXInPlace is splitX(x, x).
func splitXInPlace(x []float32) {
	var tmp [gemmSegMax]float32
	for k0 := 0; k0 < len(x); k0 += gemmSeg {
		k1 := min(k0+gemmSeg, len(x))
		copy(tmp[:], x[k0:k1])
		splitSeg(x[k0:k1], tmp[:k1-k0])
	}
}

// splitSeg writes the segment s (len(s) a multiple of 16) to d split: the odd 8 columns
// of every 16 first, then the even ones.
func splitSeg(d, s []float32) {
	h := len(s) / 2
	d = d[:len(s)]
	for j := 0; j < h; j += 8 {
		*(*[8]float32)(d[j:]) = *(*[8]float32)(s[2*j+8:])
		*(*[8]float32)(d[h+j:]) = *(*[8]float32)(s[2*j:])
	}
}

// gemmPrefetchLines is the most cache lines of the next f32 rows the GEMM prefetches per
// block of tokens, twice that of the rows to widen next: with fewer tokens the
// prefetches would take a good part of the time.
const gemmPrefetchLines = 12

// gemmChunkBytes is how many bytes of weight rows (of one column segment) one gemm4
// call takes when the accumulators go to scratch between segments: it bounds that
// scratch.
const gemmChunkBytes = 128 << 10

// gemmSeg is the column segment of the GEMM on longer rows: 1024, where four rows and
// three tokens' inputs, 28 KiB, then stay in L1 for the micro-kernel's second pass over
// them; or, on cores whose L1d holds at least 48 KiB (gemmSegFor), 2048: rows that long
// take the inputs split (splitInputs), each pass reading only its half of them, so only
// the four rows (32 KiB) need stay in L1 from one block of tokens to the next, and rows
// of 2048 columns go whole (no accumulators to scratch and back, four rows a call). The
// accumulators go to scratch between segments, so the sums are the same either way.
// Measured on a Sapphire Rapids-class Xeon (48 KiB L1d) as AVX2-only, BenchmarkPrefill
// at T = 128, 1024 → 2048: K2048_N768 f32 78–81 → 79–83 %peak, f16 75–80 → 80–82, bf16
// 74–79 → 79–84; K3072_N768 within the spread; a prefill 0–3% faster. Not measured on Zen 5 (48 KiB too);
// Zen 1's 32 KiB keeps 1024. Tried, no gain: segments of equal length (3072 columns in
// 1536 + 1536 rather than 2048 + 1024: K3072_N768 72–78 → 72–81 %peak, the same).
var gemmSeg = gemmSegFor(cpuid.CPU.Cache.L1D)

// gemmSegMax is the longest gemmSeg.
const gemmSegMax = 2048

// gemmSegFor returns gemmSeg for an L1d of l1d bytes (0 when unknown).
func gemmSegFor(l1d int) int {
	if l1d >= 48<<10 {
		return gemmSegMax
	}
	return 1024
}

// gemmStateRows bounds the rows of one gemm4 call on rows longer than gemmSeg, whose
// accumulators (16 floats per row and token) are kept in scratch between segments.
var gemmStateRows = gemmChunkBytes / (4 * gemmSeg)

// gemmStateFloats is the scratch gemmRows needs for T tokens on rows of k columns.
func gemmStateFloats(T, k int) int {
	if k <= gemmSeg {
		return 0
	}
	return gemmStateRows * T * 16
}

// gemmRows computes dst[t*ld+r] = x_t·w_r (+ bias[r]) for r < rows and t < T, x_t =
// x[t*ldx : t*ldx+k] and w_r = w[r*ldw : r*ldw+k]: gemm4 over blocks of four rows and
// gemm1 for the rows%4 left over; rows longer than gemmSeg a segment at a time, about
// gemmChunkBytes of them per call, with st (gemmStateFloats(T, k)) keeping the
// accumulators. Meanwhile the kernels prefetch pf (the weights the caller takes next),
// spread over their blocks of tokens. Callers have checked the lengths.
func gemmRows(dst []float32, ld int, x []float32, ldx, T int, w []float32, ldw, k int, bias []float32, rows int, st []float32, pf []byte) {
	gemmRowsCv(dst, ld, x, nil, ldx, T, w, ldw, k, bias, rows, st, pf, nil, cvNone)
}

// The kinds of gemmRowsCv's widening of the next rows: none (prefetch them), or the
// order of widenH, widenBF, widenHM or widenBFM.
const (
	cvNone = iota
	cvH
	cvBF
	cvHM
	cvBFM
)

// cvKind returns the gemm kernels' kind of widening for rows of dtype dt in the order o.
func cvKind(dt dtype.DType, o halfOrder) int {
	switch {
	case o == orderMixBF:
		return cvBFM
	case o == orderMixH:
		return cvHM
	case dt == dtype.BF16:
		return cvBF
	}
	return cvH
}

// gemmRowsCv is gemmRows that, for kind ≠ cvNone, widens the halves pf (a multiple of 64
// bytes) to cv (len(pf)/2 floats) in the order of kind rather than prefetching them,
// spread over the kernels' blocks of tokens like the prefetches, so that the widening
// runs beside the products. With xs non-nil (k a multiple of 16), the blocks
// of four rows take the tokens' inputs from xs, laid out as splitX writes x (gemm4s);
// the rows%4 left over take them from x (which may be nil when there are none).
func gemmRowsCv(dst []float32, ld int, x, xs []float32, ldx, T int, w []float32, ldw, k int, bias []float32, rows int, st []float32, pf []byte, cv []float32, kind int) {
	rc := rows
	var sp *float32
	if k > gemmSeg {
		rc, sp = gemmStateRows, &st[0]
	}
	// pfl lines per block of tokens cover pf over the calls' blocks.
	var pfp *byte
	pfl, pfo := 0, 0
	if len(pf) > 0 {
		pfp = &pf[0]
		segs := (k + gemmSeg - 1) / gemmSeg
		blocks := segs * ((rows/4)*((T+2)/3) + (rows%4)*((T+5)/6))
		pfl = ((len(pf)+63)/64 + blocks - 1) / max(blocks, 1)
		if pfl > 2*gemmPrefetchLines && kind == cvNone { // too few tokens: the reads would as well come on demand
			pfp, pfl, pf = nil, 0, nil
		}
	}
	for r := 0; r < rows; {
		g, R := min(rc, rows-r)/4, 4
		if g == 0 {
			g, R = 1, 1
		}
		for k0 := 0; ; k0 += gemmSeg {
			k1, seg := k, 3
			if k > gemmSeg {
				k1, seg = min(k0+gemmSeg, k), 0
				if k0 == 0 {
					seg |= 1
				}
				if k1 == k {
					seg |= 2
				}
			}
			p, pn, tb := pfp, len(pf)-pfo, 3
			var c *float32
			if pn > 0 {
				p = &pf[pfo]
				if kind != cvNone {
					c = &cv[pfo/2]
				}
			}
			if R == 4 && xs != nil {
				gemm4s(&dst[r], ld, &xs[k0], ldx, T, &w[r*ldw+k0], ldw, k1-k0, at(bias, r), g, sp, seg, p, pn, pfl, c, kind)
			} else if R == 4 {
				gemm4(&dst[r], ld, &x[k0], ldx, T, &w[r*ldw+k0], ldw, k1-k0, at(bias, r), g, sp, seg, p, pn, pfl, c, kind)
			} else {
				gemm1(&dst[r], ld, &x[k0], ldx, T, &w[r*ldw+k0], ldw, k1-k0, at(bias, r), g, sp, seg, p, pn, pfl, c, kind)
				tb = 6
			}
			pfo = min(pfo+g*((T+tb-1)/tb)*pfl*64, len(pf))
			if k1 == k {
				break
			}
		}
		r += R * g
	}
}

// from returns v[i:], or nil for a nil slice.
func from(v []float32, i int) []float32 {
	if v == nil {
		return nil
	}
	return v[i:]
}

// quantRowsT1 is how many q8_0 or q4_0 rows matMulQuant widens at a time for T = 1.
const quantRowsT1 = 4

// matMulQuant is MatMul for q8_0, q4_0 and k-quant weights with float32 activations (the
// engine's exact-activation mode): rows are widened to float32 (dequantQ8_0,
// dequantQ4_0, or dtype.DequantizeRow for the k-quants: each value exactly the
// reference's) in scratch and multiplied by the f32 kernels — quantRowsT1 rows at a time
// by matvec for T = 1, halfChunk at a time by the GEMM for T > 1. Only the order of the
// sums differs from the reference.
func (k Kernels) matMulQuant(dst []float32, ld int, x []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if r0 >= r1 || T <= 0 {
		return
	}
	n := w.Cols
	rb := dtype.RowBytes(w.DType, n)
	if r0 < 0 || r1 > w.Rows || len(w.Data) < w.Rows*rb || ld < r1 || len(x) < T*n ||
		len(dst) < (T-1)*ld+r1 || (bias != nil && len(bias) < r1) {
		panic(fmt.Sprintf("avx2: MatMul %v rows [%d,%d) of %d×%d, T=%d, ld=%d: len(w)=%d len(x)=%d len(dst)=%d len(bias)=%d",
			w.DType, r0, r1, w.Rows, n, T, ld, len(w.Data), len(x), len(dst), len(bias)))
	}
	chunk := halfChunk
	if T == 1 {
		chunk = quantRowsT1
	}
	nb, ns := min(chunk, r1-r0)*n, 0
	if T > 1 {
		ns = gemmStateFloats(T, n)
	}
	sc := scratchFor("MatMul", scratch, nb+ns)
	quantRows(dst, ld, x, T, w, bias, r0, r1, chunk, sc[:nb], sc[nb:])
}

// quantRows is matMulQuant past its checks: chunk rows at a time widened into buf (st
// for the GEMM's accumulators).
func quantRows(dst []float32, ld int, x []float32, T int, w *kernels.Mat, bias []float32, r0, r1, chunk int, buf, st []float32) {
	n := w.Cols
	rb := dtype.RowBytes(w.DType, n)
	nb := n / dtype.QBlock
	for a := r0; a < r1; a += chunk {
		b := min(a+chunk, r1)
		for r := a; r < b; r++ {
			switch w.DType {
			case dtype.Q4_0:
				dequantQ4_0(&buf[(r-a)*n], &w.Data[r*rb], nb)
			case dtype.Q8_0:
				dequantQ8_0(&buf[(r-a)*n], &w.Data[r*rb], nb)
			default:
				dtype.DequantizeRow(w.DType, w.Data[r*rb:(r+1)*rb], buf[(r-a)*n:(r-a+1)*n])
			}
		}
		if T == 1 {
			matvec(&dst[a], &x[0], &buf[0], n, n, b-a, at(bias, a))
			continue
		}
		var next []byte
		if b < r1 {
			next = w.Data[b*rb : min(b+chunk, r1)*rb]
		}
		gemmRows(dst[a:], ld, x, n, T, buf, n, n, from(bias, a), b-a, st, next)
	}
}

// halfChunk is how many rows of an f16, bf16 or block-quantized matrix a prefill (T > 1)
// widens to float32 at a time before the f32 GEMM multiplies them with every token (for
// f16 and bf16, on rows of at most gemmSeg columns: see halfRowsFor).
const halfChunk = 16

// halfRowsFor is how many rows of n columns of an f16 or bf16 matrix a prefill widens at
// a time: halfChunk, or on rows longer than gemmSeg the gemmStateRows the GEMM takes
// through its column segments together, so that each segment of the tokens' inputs,
// read from L2, serves that many rows (2–3% on 2048 and 3072 columns at T = 128).
func halfRowsFor(n int) int {
	if n > gemmSeg {
		return max(halfChunk, gemmStateRows)
	}
	return halfChunk
}

// halfOrder is the column order in which a product on f16 or bf16 weights sums a row's
// first Cols&^7 products, whatever T: the order of matvecH and matvecBF, of the mix
// kernels matvecHM (f16) and matvecBFM (bf16), or of the f32 GEMM on rows widened
// in the same order (widenH and widenBF, widenHM and widenBFM). It depends only on
// the matrix, so a token's results do not depend on how many others share the product.
type halfOrder int

const (
	orderPlain halfOrder = iota // columns as they are
	orderMixH                   // matvecHM's: f16 without infinities or NaNs
	orderMixBF                  // matvecBFM's
)

// halfOrderOf returns the order of products on w (Cols ≥ 8).
func halfOrderOf(w *kernels.Mat) halfOrder {
	n8 := w.Cols &^ 7
	switch {
	case n8 < 32 || n8 > mixMaxCols:
		return orderPlain
	case w.DType == dtype.BF16:
		return orderMixBF
	case w.F16Finite():
		return orderMixH
	}
	return orderPlain
}

// matMulHalf is MatMul for f16 and bf16 weights (Cols ≥ 8). T = 1 widens the halves as
// they are loaded (matvecHSpread and matvecH, or their BF twins: VCVTPH2PS, or a shift
// for bf16) over the first Cols&^7 columns, then adds the last Cols%8 products in
// order, then the bias. f16 matrices without infinities or NaNs (Mat.F16Finite) take
// the HM twins instead, which widen half the columns on the integer pipes (1.15–1.2×
// on Zen 1, where VCVTPH2PS is the bottleneck), unless a row is longer than mixMaxCols;
// the products are the same exact ones, only summed in another order (halfOrder). bf16
// takes the BFM twins (rows up to mixMaxCols), which split every 16 columns into even
// and odd ones with a shift and an AND; the mix kernels' x is rearranged in scratch.
// When x holds a finite |x| ≥ 2¹⁶, which matvecHM cannot take, the rows are widened in
// its order (widenHM) and multiplied by matvec. T > 1 widens halfRowsFor(Cols) rows at a
// time into scratch, in the order T = 1 sums them, and runs the f32 GEMM on them with x
// arranged to match, so that every token gets the bits it would get alone. On rows of
// whole 32-column units that GEMM widens the next chunk into a second buffer a few
// units per block of tokens (gemmRowsCv), where the conversions overlap the FMAs;
// otherwise it prefetches the next chunk's halves, widened after it. When splitInputs
// says so and the rows are whole blocks of four, the GEMM takes x split (gemm4s). When
// Cols is a multiple of 8 the GEMM adds the bias after each row's sum, as halfTail does.
// xp, when not nil, is x already arranged in the rows' order by PrepareX.
func (k Kernels) matMulHalf(dst []float32, ld int, x, xp []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if r0 >= r1 || T <= 0 {
		return
	}
	n := w.Cols
	if r0 < 0 || r1 > w.Rows || len(w.Data) < 2*w.Rows*n || ld < r1 || len(x) < T*n ||
		len(dst) < (T-1)*ld+r1 || (bias != nil && len(bias) < r1) {
		panic(fmt.Sprintf("avx2: MatMul %v rows [%d,%d) of %d×%d, T=%d, ld=%d: len(w)=%d len(x)=%d len(dst)=%d len(bias)=%d",
			w.DType, r0, r1, w.Rows, n, T, ld, len(w.Data), len(x), len(dst), len(bias)))
	}
	n8 := n &^ 7
	order := halfOrderOf(w)
	if T > 1 {
		hc := halfRowsFor(n)
		nb := min(hc, r1-r0) * n
		// On rows of whole 32-column units, each chunk's GEMM widens the next chunk into
		// the other buffer as it goes (gemmRowsCv), where the widening overlaps the
		// products; other rows are widened between the GEMMs.
		kind, nbuf := cvNone, nb
		if n%32 == 0 && r1-r0 > hc {
			kind, nbuf = cvKind(w.DType, order), 2*nb
		}
		sc := scratchFor("MatMul", scratch, nbuf+T*n8+gemmStateFloats(T, n8))
		bufs := [2][]float32{sc[:nb], sc[nbuf-nb : nbuf]}
		st, xo, ldx := sc[nbuf+T*n8:], x, n
		// Long rows take the inputs split as well (gemm4s), when no rows are left over
		// for gemm1 (which takes them as they are).
		split := splitInputs(n8, r1-r0) && (r1-r0)%4 == 0
		switch {
		case xp != nil && !split: // arranged by PrepareX
		case order != orderPlain || split:
			src, lds, arranged := x, n, xp != nil
			if arranged {
				src, lds = xp, n8
			}
			xp = sc[nbuf : nbuf+T*n8]
			for t := 0; t < T; t++ {
				row := xp[t*n8 : (t+1)*n8]
				if order != orderPlain && !arranged {
					arrangeX(order, row, src[t*lds:t*lds+n8])
				} else {
					copy(row, src[t*lds:t*lds+n8])
				}
				if split {
					splitXInPlace(row)
				}
			}
		}
		if xp != nil {
			xo, ldx = xp, n8
		}
		xg, xs := xo, []float32(nil)
		if split {
			xg, xs = nil, xo
		}
		// With no columns past n8 the GEMM adds the bias itself, after each row's sum,
		// the one addition halfTail would make.
		gb := bias
		if n8 < n {
			gb = nil
		}
		cur := 0
		for a := r0; a < r1; a += hc {
			b := min(a+hc, r1)
			buf := bufs[cur]
			if kind == cvNone || a == r0 {
				for r := a; r < b; r++ {
					widenRow(buf[(r-a)*n:(r-a+1)*n], w, r, order)
				}
			}
			next := w.Data[2*b*n : 2*min(b+hc, r1)*n]
			gemmRowsCv(dst[a:], ld, xg, xs, ldx, T, buf, n, n8, from(gb, a), b-a, st, next, bufs[1-cur], kind)
			if kind != cvNone {
				cur = 1 - cur
			}
		}
		if n8 == n {
			return
		}
	} else {
		halfRows(dst, x, w, r0, r1, order, scratchFor("MatMul", scratch, min(n8, mixMaxCols)+quantRowsT1*n))
	}
	if n8 < n || bias != nil {
		wh := unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(w.Data))), len(w.Data)/2)
		for t := 0; t < T; t++ {
			halfTail(dst[t*ld:], x[t*n:(t+1)*n], wh, w.DType, n8, bias, r0, r1)
		}
	}
}

// halfTail adds to dst[r], r0 ≤ r < r1, the products of the last len(x)%8 columns of
// the f16 or bf16 rows wh (len(x) halves each) in order, then bias[r].
func halfTail(dst, x []float32, wh []uint16, dt dtype.DType, n8 int, bias []float32, r0, r1 int) {
	n := len(x)
	for r := r0; r < r1; r++ {
		s := dst[r]
		for i := n8; i < n; i++ {
			s += x[i] * halfAt(dt, wh[r*n+i])
		}
		if bias != nil {
			s += bias[r]
		}
		dst[r] = s
	}
}

// arrangeX writes x (len(x) a multiple of 8) in the column order o sums it in.
func arrangeX(o halfOrder, dst, x []float32) {
	n32 := len(x) &^ 31
	dst = dst[:len(x)]
	if n32 > 0 {
		if o == orderMixBF {
			arrangeBFM(&dst[0], &x[0], n32)
		} else {
			arrangeHM(&dst[0], &x[0], n32)
		}
	}
	copy(dst[n32:], x[n32:])
}

// halfRows computes dst[r] for r0 ≤ r < r1 over the first Cols&^7 columns of the f16 or
// bf16 matrix w (T = 1) in the order o, with sc (at least min(Cols&^7, mixMaxCols) +
// quantRowsT1·Cols floats) as the mix kernels' scratch: the four quarters of the rows
// as four long streams, then the rows%4 left over (each row computed alike either way).
func halfRows(dst, x []float32, w *kernels.Mat, r0, r1 int, o halfOrder, sc []float32) {
	n := w.Cols
	n8 := n &^ 7
	wh := unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(w.Data))), len(w.Data)/2)
	q := (r1 - r0) / 4
	rem := r1 - r0 - 4*q
	d, wq := &dst[r0], &wh[r0*n]
	d1, w1 := d, wq // the rows left over
	if rem > 0 {
		d1, w1 = &dst[r0+4*q], &wh[(r0+4*q)*n]
	}
	xm := sc[:n8]
	switch {
	case o == orderMixBF:
		splitBFX(xm, x[:n8])
		if q > 0 {
			matvecBFMSpread(d, &xm[0], wq, n, n8, q, q)
		}
		if rem > 0 {
			matvecBFM(d1, &xm[0], w1, n, n8, rem)
		}
	case o == orderMixH && mixHalfX(xm, x[:n8]):
		if q > 0 {
			matvecHMSpread(d, &xm[0], wq, n, n8, q, q)
		}
		if rem > 0 {
			matvecHM(d1, &xm[0], w1, n, n8, rem)
		}
	case o == orderMixH:
		// x too large for matvecHM's scaling: its order, by matvec on widened rows.
		arrangeX(o, xm, x[:n8])
		buf := sc[n8 : n8+quantRowsT1*n]
		for a := r0; a < r1; a += quantRowsT1 {
			b := min(a+quantRowsT1, r1)
			for r := a; r < b; r++ {
				widenRow(buf[(r-a)*n:(r-a+1)*n], w, r, o)
			}
			matvec(&dst[a], &xm[0], &buf[0], n, n8, b-a, nil)
		}
	case w.DType == dtype.BF16:
		if q > 0 {
			matvecBFSpread(d, &x[0], wq, n, n8, q, q)
		}
		if rem > 0 {
			matvecBF(d1, &x[0], w1, n, n8, rem)
		}
	default:
		if q > 0 {
			matvecHSpread(d, &x[0], wq, n, n8, q, q)
		}
		if rem > 0 {
			matvecH(d1, &x[0], w1, n, n8, rem)
		}
	}
}

// mixMaxCols bounds the rows the mix kernels (matvecHM, matvecHMSpread, and the BFM
// twins) take, and so the scratch their rearranged x needs (64 KiB at most); longer rows
// take matvecH (or matvecBF).
const mixMaxCols = 16384

// mixScale is 2¹¹², the factor between a binary16 value and the float32 whose bits the
// mix kernels make of it (see the generator's halfKind).
const mixScale = 0x1p112

// mixHalfX writes x (len(x) a multiple of 8) as the mix kernels take it: in every 32
// columns, columns 0–15 as they are, then the even columns of 16–31, then the odd ones,
// those 16 times 2¹¹²; columns past the last whole 32 as they are. It reports false,
// leaving dst unspecified, when a scaled column would overflow (a finite |x| ≥ 2¹⁶):
// the caller then widens the rows in the same order (widenHM) for matvec.
func mixHalfX(dst, x []float32) bool {
	n32 := len(x) &^ 31
	dst = dst[:len(x)]
	for c := 0; c < n32; c += 32 {
		copy(dst[c:c+16], x[c:c+16])
		hi := x[c+16 : c+32]
		d := dst[c+16 : c+32]
		for j := 0; j < 8; j++ {
			e, o := hi[2*j], hi[2*j+1]
			if a, b := abs32(e), abs32(o); (a >= 0x1p16 && a <= math.MaxFloat32) || (b >= 0x1p16 && b <= math.MaxFloat32) {
				return false
			}
			d[j], d[8+j] = e*mixScale, o*mixScale
		}
	}
	copy(dst[n32:], x[n32:])
	return true
}

// splitBFX writes x (len(x) a multiple of 8) as the matvecBFM kernels take it: every 16
// columns of the first len(x)&^31 as their 8 even columns then their 8 odd ones, the
// columns past those as they are.
func splitBFX(dst, x []float32) {
	n32 := len(x) &^ 31
	dst = dst[:len(x)]
	for c := 0; c < n32; c += 16 {
		s, d := x[c:c+16], dst[c:c+16]
		for j := 0; j < 8; j++ {
			d[j], d[8+j] = s[2*j], s[2*j+1]
		}
	}
	copy(dst[n32:], x[n32:])
}

func abs32(v float32) float32 { return math.Float32frombits(math.Float32bits(v) &^ (1 << 31)) }

// widenRow writes row r of the f16 or bf16 matrix w to dst[:w.Cols] as float32
// (exactly), its first Cols&^7 columns in the order o.
func widenRow(dst []float32, w *kernels.Mat, r int, o halfOrder) {
	n := w.Cols
	n8 := n &^ 7
	src := unsafe.Slice((*uint16)(unsafe.Pointer(&w.Data[2*r*n])), n)
	dst = dst[:n]
	if n8 > 0 {
		switch {
		case o == orderMixBF:
			widenBFM(&dst[0], &src[0], n8)
		case o == orderMixH:
			widenHM(&dst[0], &src[0], n8)
		case w.DType == dtype.BF16:
			widenBF(&dst[0], &src[0], n8)
		default:
			widenH(&dst[0], &src[0], n8)
		}
	}
	for i := n8; i < n; i++ {
		dst[i] = halfAt(w.DType, src[i])
	}
}

// halfAt widens one f16 or bf16 weight.
func halfAt(dt dtype.DType, h uint16) float32 {
	if dt == dtype.BF16 {
		return math.Float32frombits(uint32(h) << 16)
	}
	return dtype.F16ToF32(h)
}

// mv computes dst[r] = x·w_r (+ bias[r]) for r < rows, w_r = w[r*ldw : r*ldw+k]: the
// four quarters of the rows walked in parallel, each a long sequential stream, then the
// last rows%4 one at a time. Walking four adjacent rows instead restarts four short
// streams every block, which on short rows (288 columns) halves the bandwidth the
// hardware prefetchers deliver. Callers have checked the lengths.
func mv(dst, x, w []float32, ldw, k, rows int, bias []float32) {
	q := rows / 4
	if q > 0 {
		matvecSpread(&dst[0], &x[0], &w[0], ldw, k, q, q, at(bias, 0))
	}
	if rem := rows - 4*q; rem > 0 {
		matvec(&dst[4*q], &x[0], &w[4*q*ldw], ldw, k, rem, at(bias, 4*q))
	}
}

// at returns &v[i], or nil for a nil slice.
func at(v []float32, i int) *float32 {
	if v == nil {
		return nil
	}
	return &v[i]
}

// FMAProbe runs iters iterations of 12 independent 8-lane FMAs and returns the flops
// done: the machine's FMA peak, for benchmarks (kernels.PeakProber).
func (Kernels) FMAProbe(iters int) int64 {
	if iters <= 0 {
		return 0
	}
	fmaLoop(iters)
	return int64(iters) * 12 * 16
}

// Int8Probe runs iters iterations of the loop of the int8 products MatMulQ8 takes on
// this CPU and returns the int8 operations done (2 per multiply-add of a byte pair;
// kernels.Int8Prober): with AVX-VNNI 12 independent VPDPBUSD on 8 dword lanes (768 ops
// an iteration), else 12 steps VPMADDUBSW, VPMADDWD by ones, VPADDD into 6 accumulators
// (the same 768 ops: only VPMADDUBSW's byte products count).
func (Kernels) Int8Probe(iters int) int64 {
	if iters <= 0 {
		return 0
	}
	if useVNNI {
		i8VNNILoop(iters)
	} else {
		i8MaddLoop(iters)
	}
	return int64(iters) * i8ProbeOps
}

// i8ProbeOps is the int8 operations of one iteration of i8VNNILoop or i8MaddLoop: 12
// instructions of 8 lanes × 4 byte pairs × 2.
const i8ProbeOps = 12 * 8 * 4 * 2

// Dot implements kernels.Kernels.
func (Kernels) Dot(a, b []float32) float32 { return asm.DotOf(a, b) }

// Softmax implements kernels.Kernels. The special cases are decided on the maximum,
// exactly as the reference does: a NaN anywhere, or every entry -Inf, gives NaN
// everywhere; a +Inf maximum leaves the mass to the +Inf entries.
func (Kernels) Softmax(x []float32) { asm.Softmax(x) }

// Attention implements kernels.Kernels: scores by the matrix–vector kernel over the
// cached keys (rows of stride floats), softmax, then wsum over the cached values.
func (k Kernels) Attention(out, q, kc, vc []float32, n, stride int, scale float32, scores []float32) {
	hd := len(q)
	if hd == 0 || n <= 0 {
		k.Reference.Attention(out, q, kc, vc, n, stride, scale, scores)
		return
	}
	if stride < 0 || len(out) < hd || len(scores) < n || len(kc) < (n-1)*stride+hd || len(vc) < (n-1)*stride+hd {
		panic(fmt.Sprintf("avx2: Attention over %d positions of stride %d, head %d: len(k)=%d len(v)=%d len(out)=%d len(scores)=%d",
			n, stride, hd, len(kc), len(vc), len(out), len(scores)))
	}
	s := scores[:n]
	mv(s, q, kc, stride, hd, n, nil)
	asm.AttendScores(out[:hd], s, vc, n, stride, scale)
}

// AttentionF16 implements kernels.Kernels: Attention over a binary16 cache, converted
// with F16C as it is loaded. Head widths that are not a multiple of 8 (none of the
// models lmrun runs) take the reference's path.
func (k Kernels) AttentionF16(out, q []float32, kc, vc []uint16, n, stride int, scale float32, scores []float32) {
	hd := len(q)
	if hd == 0 || hd%8 != 0 || n <= 0 {
		k.Reference.AttentionF16(out, q, kc, vc, n, stride, scale, scores)
		return
	}
	if stride < 0 || len(out) < hd || len(scores) < n || len(kc) < (n-1)*stride+hd || len(vc) < (n-1)*stride+hd {
		panic(fmt.Sprintf("avx2: AttentionF16 over %d positions of stride %d, head %d: len(k)=%d len(v)=%d len(out)=%d len(scores)=%d",
			n, stride, hd, len(kc), len(vc), len(out), len(scores)))
	}
	s := scores[:n]
	matvecH(&s[0], &q[0], &kc[0], stride, hd, n)
	k.Scale(s, scale)
	k.Softmax(s)
	wsumH(&out[0], &vc[0], stride, &s[0], n, hd)
}

// RMSNorm implements kernels.Kernels.
func (Kernels) RMSNorm(dst, x, w []float32, eps float32) { asm.RMSNorm(dst, x, w, eps) }

// LayerNorm implements kernels.Kernels.
func (Kernels) LayerNorm(dst, x, w, b []float32, eps float32) { asm.LayerNorm(dst, x, w, b, eps) }

// GELU implements kernels.Kernels.
func (Kernels) GELU(x []float32) { stream.InPlace(gelu, x) }

// SiLU implements kernels.Kernels.
func (Kernels) SiLU(x []float32) { stream.InPlace(silu, x) }

// SwiGLU implements kernels.Kernels.
func (Kernels) SwiGLU(gate, up []float32) { stream.Pairwise(swiglu, gate, up) }

// RoPE implements kernels.Kernels: four pairs per vector, the pairs past the last whole
// vector in one masked step.
func (Kernels) RoPE(x []float32, nHeads, headDim int, cos, sin []float32) {
	asm.Rotate("RoPE", rope, x, nHeads, headDim, cos, sin)
}

// Add implements kernels.Kernels.
func (Kernels) Add(dst, x []float32) { stream.Pairwise(add, dst, x) }

// Scale implements kernels.Kernels.
func (Kernels) Scale(x []float32, s float32) { asm.ScaleBy(x, s) }

var _ kernels.Q8Kernels = Kernels{}

// qChunk is how many rows of a block-quantized matrix a prefill (T > 1) multiplies with
// every token before moving on: 16 rows of 4096 q8_0 columns are 68 KiB, so the rows
// stay in L2 while each token streams past them.
const qChunk = 16

// QuantizeQ8 implements kernels.Q8Kernels: quantQ8's blocks, byte for byte the
// reference's, with the reference itself for the blocks quantQ8 leaves (a non-finite
// element, or an amax so small that 1/d overflows).
func (Kernels) QuantizeQ8(x []float32, dst []byte) {
	kernels.QuantizeQ8With("avx2", x, dst, quantQ8)
}

// xBlock is what the quantized kernels need of one q8_0 activation block besides its
// quants: its scale widened to float32 once per product rather than once per eight rows,
// and for q4_0 weights 8·Σ_j x_j (the −8 of every nibble, applied to the block's sum).
type xBlock struct {
	d  float32
	s8 int32
}

// xBlockFloats is the size of an xBlock in float32s of scratch.
const xBlockFloats = int(unsafe.Sizeof(xBlock{}) / 4)

// blockInfo fills xi from the q8_0 activation blocks xq (the sums only when sums is set).
func blockInfo(xq []byte, xi []xBlock, sums bool) {
	for b := range xi {
		blk := xq[b*dtype.BlockQ8_0 : (b+1)*dtype.BlockQ8_0]
		xi[b].d = dtype.F16ToF32(uint16(blk[0]) | uint16(blk[1])<<8)
		if !sums {
			continue
		}
		var s int32
		for _, q := range blk[2:] {
			s += int32(int8(q))
		}
		xi[b].s8 = 8 * s
	}
}

// MatMulQ8 implements kernels.Q8Kernels for q8_0 and q4_0 weights with integer dot
// products: for T ≥ gemmFrom(w.DType) (2 or 3) the int8 GEMM of package qgemm (8 rows ×
// up to 4 tokens in YMM registers with VPDPBUSD and AVX-VNNI, else up to 6 with
// VPMADDUBSW), otherwise eight rows at a time (mvQ8_0x8, or mvQ8_0Sx8 when w.Q8Sym; mvQ4_0x8; see
// backends/avx2/_asm/quant.go); and for the k-quants with q8_k activations (matMulQ8K);
// other weight types are the reference's. The results are the reference's
// bit for bit, whatever the row range.
func (k Kernels) MatMulQ8(dst []float32, ld int, xq []byte, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if w.DType.KQuant() {
		k.matMulQ8K(dst, ld, xq, T, w, bias, r0, r1, scratch)
		return
	}
	if w.DType != dtype.Q8_0 && w.DType != dtype.Q4_0 {
		k.Reference.MatMulQ8(dst, ld, xq, T, w, bias, r0, r1, scratch)
		return
	}
	if (T >= gemmFrom(w.DType) || gemm.Packed(w) != nil && T >= packedFrom(w.DType)) && useVNNI {
		gemm.MatMulQ8(dst, ld, xq, T, w, bias, r0, r1, scratch)
		return
	}
	if (T >= gemmFrom(w.DType) || gemmMadd.Packed(w) != nil && T >= packedFrom(w.DType)) && useMadd {
		gemmMadd.MatMulQ8(dst, ld, xq, T, w, bias, r0, r1, scratch)
		return
	}
	if r0 >= r1 || T <= 0 {
		return
	}
	n := w.Cols
	rb := dtype.RowBytes(w.DType, n)
	xb := dtype.RowBytes(dtype.Q8_0, n)
	if n <= 0 || n%dtype.QBlock != 0 || r0 < 0 || r1 > w.Rows || len(w.Data) < w.Rows*rb || ld < r1 ||
		len(xq) < T*xb || len(dst) < (T-1)*ld+r1 || (bias != nil && len(bias) < r1) {
		panic(fmt.Sprintf("avx2: MatMulQ8 %v rows [%d,%d) of %d×%d, T=%d, ld=%d: len(w)=%d len(xq)=%d len(dst)=%d len(bias)=%d",
			w.DType, r0, r1, w.Rows, n, T, ld, len(w.Data), len(xq), len(dst), len(bias)))
	}
	nb := n / dtype.QBlock
	// The kernels take each activation block's scale as float32 (and for q4_0 8·Σx),
	// computed once here for every token, in scratch.
	xs := scratchFor("MatMulQ8", scratch, T*nb*xBlockFloats)
	xi := unsafe.Slice((*xBlock)(unsafe.Pointer(&xs[0])), T*nb)
	blockInfo(xq[:T*xb], xi, w.DType == dtype.Q4_0)
	q := qmat{dt: w.DType, sym: w.Q8Sym(), data: w.Data, rb: rb, nb: nb}
	if T == 1 {
		q.rows(dst, xq, xi, r0, r1)
	} else {
		for a := r0; a < r1; a += qChunk {
			b := min(a+qChunk, r1)
			for t := 0; t < T; t++ {
				q.rows(dst[t*ld:], xq[t*xb:], xi[t*nb:], a, b)
			}
		}
	}
	if bias != nil {
		for t := 0; t < T; t++ {
			d := dst[t*ld+r0 : t*ld+r1]
			for i, b := range bias[r0:r1] {
				d[i] += b
			}
		}
	}
}

// qmat is a q8_0 or q4_0 matrix as MatMulQ8's kernels take it.
type qmat struct {
	dt     dtype.DType
	sym    bool // q8_0 without a quant of −128 (kernels.Mat.Q8Sym)
	data   []byte
	rb, nb int // bytes and blocks per row
}

// rows computes dst[r] for r0 ≤ r < r1 and one token (activation blocks xq, their
// xBlocks xi): the eighths of the rows walked together, each a long sequential stream
// (as mv does for f32), then the rows%8 left over one at a time. The kernels are called
// directly, not through function values, so that nothing here escapes to the heap.
func (q *qmat) rows(dst []float32, xq []byte, xi []xBlock, r0, r1 int) {
	s := &xi[0].d
	d, x, w := dst[r0:], &xq[0], q.data[r0*q.rb:]
	g := (r1 - r0) / 8
	if g > 0 {
		switch {
		case q.dt == dtype.Q4_0:
			mvQ4_0x8(&d[0], x, &w[0], q.rb, q.nb, g, g, 1, s)
		case q.sym:
			mvQ8_0Sx8(&d[0], x, &w[0], q.rb, q.nb, g, g, 1, s)
		default:
			mvQ8_0x8(&d[0], x, &w[0], q.rb, q.nb, g, g, 1, s)
		}
	}
	if rem := r1 - r0 - 8*g; rem > 0 {
		if q.dt == dtype.Q4_0 {
			mvQ4_0x1(&d[8*g], x, &w[8*g*q.rb], q.rb, q.nb, rem, s)
		} else {
			mvQ8_0x1(&d[8*g], x, &w[8*g*q.rb], q.rb, q.nb, rem, s)
		}
	}
}

// asm is this backend's assembly for the kernels outside the products, whose slice
// checks and scalar steps backends/internal/stream holds for both amd64 backends.
var asm = stream.Asm{
	Name: "avx2", Dot: dot, MaxNaN: maxNaN, ExpSub: expSub, Scale: scale,
	Sum: sum, Sumsq: sumsq, Sumsqdev: sumsqdev, RMSOut: rmsOut, LNOut: lnOut, LNOutBias: lnOutBias,
	WSum: wsum,
}
