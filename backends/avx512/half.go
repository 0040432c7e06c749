//go:build amd64 && !purego

package avx512

import (
	"fmt"
	"unsafe"

	"github.com/lmrun/lmrun/backends/avx2"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// halfChunk is how many rows of an f16 or bf16 matrix a product with 1 < T ≤ 8 widens
// to float32 at a time before the f32 GEMM multiplies them with every token.
const halfChunk = 16

// halfRows is how many rows of cols columns a product of T > 1 tokens widens at a time:
// halfChunk for T ≤ 8, which takes each row against all its tokens at once; for more
// tokens as many as chunkBytes holds (a multiple of 4, at least halfChunk), the chunk of
// rows gemmRows keeps in L2 against one block of tokens after the other, so that each
// block's inputs serve that many rows (16 rows of 768 columns were 48 KiB, all of L1,
// next to the 18 KiB of 6 tokens' inputs).
func halfRows(T, cols int) int {
	if T <= 8 {
		return halfChunk
	}
	if halfParts(T, cols&^7) {
		return max(halfChunk, longChunkBytes/(4*(cols+halfPad))&^3)
	}
	return max(halfChunk, chunkBytes/(4*(cols+halfPad))&^3)
}

// longChunkBytes is chunkBytes for rows long enough that gemmBlockParts takes them
// (halfParts, and f32 rows as long): then the inputs of all the tokens do not stay in
// L2 anyway (128 tokens of 2048 columns are 1 MiB), and a chunk twice as long halves
// what they stream from L3 for it (3–13% at T = 128 on 2048 and 3072 columns, one
// thread; on f32 rows 3–6% over 256 KiB, weights from L3 or from memory). Shorter
// (384 KiB) or longer (640, 768 KiB) chunks were no faster on f16 rows; on f32 rows,
// copying each chunk halfPad floats apart and laying x out part by part as for f16
// rows was 3–7% slower at T = 128 and 15–30% at T = 16 and 32, and prefetching the
// next chunk's rows over the GEMM of this one (as matMulHalf does its halves) 3–7%
// slower.
const longChunkBytes = 512 << 10

// halfParts reports whether matMulHalf takes the GEMM of T tokens on rows of n8
// columns through gemmBlockParts, as gemmRows would.
func halfParts(T, n8 int) bool { return T > 8 && 4*6*n8 > 2*partInputBytes }

// halfPad is how many floats longer than a row the rows of the widened chunk and of the
// arranged x are laid out: rows of 2048 or 3072 floats (a multiple of 4 KiB) would put
// the 4 rows and the 6 tokens a GEMM step loads in the same L1 sets; a line more keeps
// them apart (7–13% at T = 128 on 2048 and 3072 columns).
const halfPad = 16

// halfScratch is the scratch matMulHalf needs: for T > 1 a chunk of widened rows
// (halfRows rows halfPad floats apart: at most max(halfChunk·(cols+halfPad),
// longChunkBytes/4) floats, so that a scratch for the longest rows also serves shorter
// ones) and every token of x in the rows' column order (halfXRow floats each), for
// T = 1 the arranged x.
func halfScratch(T, cols int) int {
	if T == 1 {
		return cols
	}
	return max(halfChunk*(cols+halfPad), longChunkBytes/4) + T*halfXRow(cols)
}

// halfXRow is the room a token of x takes in matMulHalf's scratch for T > 1: a row
// halfPad floats longer, or the parts partsX lays it out in for gemmBlockParts, each
// rounded up to 16 columns — for any first k ≤ cols columns at most 16 more per part
// gemmBlockParts would cut cols columns into.
func halfXRow(cols int) int {
	return max(cols+max(halfPad, 16*((4*6*cols+partInputBytes-1)/partInputBytes)), f32PartsRow(cols))
}

// partsX lays out the first n&^7 columns of tokens [t0, t1) of the T tokens of x (n
// apart) in the column order o, part by part as gemmBlockParts takes them: part p of
// token t at dst[p·T·pw + t·pw], pw its parts' columns. tmp (n&^7 floats) holds a token
// in the order o on the way.
func partsX(o avx2.HalfOrder, dst, x []float32, T, n, t0, t1 int, tmp []float32) {
	n8 := n &^ 7
	np, pw := blockParts(n8)
	for t := t0; t < t1; t++ {
		src := x[t*n : t*n+n8]
		if o != avx2.HalfPlain {
			arrangeX(o, tmp[:n8], src)
			src = tmp[:n8]
		}
		for p := 0; p < np; p++ {
			c0 := p * pw
			kk := min(pw, n8-c0)
			copy(dst[p*T*pw+t*pw:][:kk], src[c0:c0+kk])
		}
	}
}

// matMulHalf is MatMul for f16 and bf16 weights (Cols ≥ 8). Each row is summed in the
// column order backends/avx2 takes it in (avx2.HalfOrderOf: the columns as they are,
// or its mix kernels' order), with the same accumulators, so the results are avx2's bit
// for bit, whatever T and the row range. T = 1 widens 16 halves at a time as they are
// loaded (VCVTPH2PS, or VPMOVZXWD and a shift for bf16; a VPERMPS for the columns the
// order takes even then odd) and multiplies them with x, arranged in that order in
// scratch: gemvZ*4s over the four quarters of the rows (four long streams, each
// prefetched 1 KiB ahead, as gemv4s does), gemvZ*1
// for the rows%4 left over. T > 1 widens halfRows rows at a time into scratch in that
// order (widenZ*) and runs the f32 GEMM (gemmRowsPF) on them with x arranged to match,
// that GEMM prefetching the next chunk's halves from memory as it goes (5–15% faster at
// T = 128 on weights not in cache) and each call the inputs of the next; for rows long
// enough that gemmBlockParts takes them, x is laid out part by part (partsX), so that
// those inputs are one run.
// Either way the last Cols%8 columns and the bias are added after, in order, as avx2
// does (avx2.AddHalfTail); for T > 1 and Cols a multiple of 8 the GEMM adds the bias
// to each row's sum itself, the same one addition.
func (k Kernels) matMulHalf(dst []float32, ld int, x, xp []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if r0 >= r1 || T <= 0 {
		return
	}
	n := w.Cols
	if r0 < 0 || r1 > w.Rows || len(w.Data) < 2*w.Rows*n || ld < r1 || len(x) < T*n ||
		len(dst) < (T-1)*ld+r1 || (bias != nil && len(bias) < r1) {
		panic(fmt.Sprintf("avx512: MatMul %v rows [%d,%d) of %d×%d, T=%d, ld=%d: len(w)=%d len(x)=%d len(dst)=%d len(bias)=%d",
			w.DType, r0, r1, w.Rows, n, T, ld, len(w.Data), len(x), len(dst), len(bias)))
	}
	need := halfScratch(T, n)
	if len(scratch) < need {
		panic(fmt.Sprintf("avx512: MatMul needs %d floats of scratch, got %d", need, len(scratch)))
	}
	n8 := n &^ 7
	o := avx2.HalfOrderOf(w)
	wh := unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(w.Data))), len(w.Data)/2)
	if T == 1 {
		xo := x
		if o != avx2.HalfPlain {
			xo = scratch[:n8]
			arrangeX(o, xo, x[:n8])
		}
		halfRowsT1(dst, xo, wh, n, n8, r0, r1, w.DType == dtype.BF16, o)
	} else {
		halfGEMM(dst, ld, x, xp, T, w, bias, r0, r1, scratch, o, wh)
		if n8 == n {
			return
		}
	}
	if n8 < n || bias != nil {
		for t := 0; t < T; t++ {
			avx2.AddHalfTail(dst[t*ld:], x[t*n:(t+1)*n], w, bias, r0, r1)
		}
	}
}

// halfGEMM is matMulHalf for T > 1 up to the last Cols%8 columns: halfRows rows widened
// at a time in the order o, multiplied with x laid out as halfLayout says, either in
// xp (by prepareHalfX, for every call of a product) or, when xp is nil, here in scratch.
func halfGEMM(dst []float32, ld int, x, xp []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch, o avx2.HalfOrder, wh []uint16) {
	n := w.Cols
	n8 := n &^ 7
	hr, lb := halfRows(T, n), n+halfPad
	nb := min(hr, r1-r0) * lb
	buf, xs := scratch[:nb], scratch[nb:nb+T*halfXRow(n)]
	// x in the rows' column order, tokens lb apart (or x itself), in scratch.
	standard := func() ([]float32, int) {
		if o == avx2.HalfPlain {
			return x, n
		}
		arrangeTokens(o, xs, x, n, 0, T)
		return xs, lb
	}
	// Where gemmRows would take gemmBlockParts (T > 8, long rows), x goes part by part
	// (partsX), so that each call's inputs are one run the call before prefetches; the
	// rows%4 left over after the last chunk take gemm1x8 on x arranged as usual.
	var xo []float32
	ldx, pw := 0, 0
	lay := halfLayout(T, n, o)
	switch {
	case lay == layoutParts && r1-r0 >= 4:
		_, pw = blockParts(n8)
		if xp == nil {
			xp = xs
			partsX(o, xp, x, T, n, 0, T, buf)
		}
	case lay == layoutArranged && xp != nil:
		xo, ldx = xp, lb
	default:
		xo, ldx = standard()
	}
	// With no columns past n8 the GEMM adds the bias itself, after each row's sum as
	// AddHalfTail would.
	gb := bias
	if n8 < n {
		gb = nil
	}
	for a := r0; a < r1; a += hr {
		b := min(a+hr, r1)
		for r := a; r < b; r++ {
			widenRow(&buf[(r-a)*lb], &wh[r*n], n8, w.DType == dtype.BF16, o)
		}
		// The next chunk's halves, from memory: prefetched as this one multiplies.
		// After the last chunk, the rows after r1: the start of the range the caller
		// (a thread of a row split) is likely to take next.
		next := wh[b*n : min(b+hr, w.Rows)*n]
		if pw == 0 {
			gemmRowsPF(dst[a:], ld, xo, ldx, T, buf, lb, n8, from(gb, a), b-a, next)
			continue
		}
		if g := (b - a) / 4; g > 0 {
			gemmBlockParts(dst[a:], ld, xp, pw, T, buf, lb, n8, from(gb, a), g, next, pw, longChunkBytes, partInputBytes)
		}
		if r := a + (b-a)&^3; r < b { // the last chunk: hr is a multiple of 4
			xo, ldx = standard()
			gemmRows(dst[r:], ld, xo, ldx, T, buf[(r-a)*lb:], lb, n8, from(gb, r), b-r)
		}
	}
}

// The layouts of x a product of T > 1 tokens on f16 or bf16 rows takes (halfLayout).
const (
	layoutAsIs     = iota // x itself: columns in order, tokens Cols apart
	layoutArranged        // each token in the rows' column order, n+halfPad apart
	layoutParts           // part by part as gemmBlockParts takes them (partsX)
)

// halfLayout returns the layout of x a product of T > 1 tokens on rows of n halves
// summed in the order o takes.
func halfLayout(T, n int, o avx2.HalfOrder) int {
	switch {
	case halfParts(T, n&^7):
		return layoutParts
	case o != avx2.HalfPlain:
		return layoutArranged
	}
	return layoutAsIs
}

// arrangeTokens writes tokens [t0, t1) of x (n apart) in the column order o at dst,
// n+halfPad apart, up to their last n%8 columns.
func arrangeTokens(o avx2.HalfOrder, dst, x []float32, n, t0, t1 int) {
	n8, lb := n&^7, n+halfPad
	for t := t0; t < t1; t++ {
		arrangeX(o, dst[t*lb:t*lb+n8], x[t*n:t*n+n8])
	}
}

// arrangeX writes x (len(x) a multiple of 8, len(dst) ≥ len(x)) in the column order o
// as avx2.ArrangeHalfX does, the f16 mix order's whole 32s with arrangeZHM.
func arrangeX(o avx2.HalfOrder, dst, x []float32) {
	if o != avx2.HalfMixH {
		avx2.ArrangeHalfX(o, dst, x)
		return
	}
	dst = dst[:len(x)]
	n32 := len(x) &^ 31
	if n32 > 0 {
		arrangeZHM(&dst[0], &x[0], n32)
	}
	copy(dst[n32:], x[n32:])
}

// widenRow widens the first n8 halves at src to float32 at dst in the order o.
func widenRow(dst *float32, src *uint16, n8 int, bf16 bool, o avx2.HalfOrder) {
	switch {
	case o == avx2.HalfMixBF:
		widenZBFM(dst, src, n8)
	case o == avx2.HalfMixH:
		widenZHM(dst, src, n8)
	case bf16:
		widenZBF(dst, src, n8)
	default:
		widenZH(dst, src, n8)
	}
}

// halfRowsT1 computes dst[r], r0 ≤ r < r1, over the first n8 columns of the half rows
// wh (n halves each) for x arranged in the order o: the four quarters of the rows as
// four streams, then the rows%4 left over.
func halfRowsT1(dst, x []float32, wh []uint16, n, n8, r0, r1 int, bf16 bool, o avx2.HalfOrder) {
	q := (r1 - r0) / 4
	if q > 0 {
		d, w := &dst[r0], &wh[r0*n]
		switch {
		case o == avx2.HalfMixBF:
			gemvZBFM4s(d, &x[0], w, n, n8, q, q)
		case o == avx2.HalfMixH:
			gemvZHM4s(d, &x[0], w, n, n8, q, q)
		case bf16:
			gemvZBF4s(d, &x[0], w, n, n8, q, q)
		default:
			gemvZH4s(d, &x[0], w, n, n8, q, q)
		}
	}
	if rem := r1 - r0 - 4*q; rem > 0 {
		a := r0 + 4*q
		d, w := &dst[a], &wh[a*n]
		switch {
		case o == avx2.HalfMixBF:
			gemvZBFM1(d, &x[0], w, n, n8, rem)
		case o == avx2.HalfMixH:
			gemvZHM1(d, &x[0], w, n, n8, rem)
		case bf16:
			gemvZBF1(d, &x[0], w, n, n8, rem)
		default:
			gemvZH1(d, &x[0], w, n, n8, rem)
		}
	}
}
