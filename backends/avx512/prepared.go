//go:build amd64 && !purego

package avx512

import (
	"github.com/lmrun/lmrun/backends/avx2"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// layoutPadded is the layout of x an f32 product takes when padRows: the tokens
// n+halfPad floats apart. (The f16 and bf16 layouts are halfLayout's.)
const layoutPadded = layoutParts + 1

// padRows reports whether a product of T tokens on f32 rows of n columns takes x with
// its tokens n+halfPad apart: for T > 8 on rows a multiple of 2 KiB long.
func padRows(T, n int) bool { return T > 8 && n > 0 && n%512 == 0 }

// layoutF32Parts is the layout of x an f32 product takes when f32Parts: part by part
// (f32PartsX).
const layoutF32Parts = layoutPadded + 1

// f32Parts reports whether a product of T tokens on f32 rows of n columns takes x part
// by part (f32PartsX) through f32BlockGEMM: where gemmRows would take gemmBlockParts
// (T > 8 and 6 tokens' inputs more than twice partInputBytes).
func f32Parts(T, n int) bool { return halfParts(T, n) }

// f32PartPitch is how many floats apart f32PartsX lays out the tokens of one part of
// cols columns: a line more than cols when cols is a multiple of 512 (rows 2 KiB apart
// would put the 6 tokens of a step in the same L1 sets, as padRows says).
func f32PartPitch(cols int) int {
	if cols%512 == 0 {
		return cols + halfPad
	}
	return cols
}

// f32PartsRow is the room a token of x of n columns takes laid out by f32PartsX.
func f32PartsRow(n int) int {
	np, cols := partsOf(n, f32BlockPartBytes)
	return np * f32PartPitch(cols)
}

// f32PartsX copies tokens [t0, t1) of x (n apart) to dst part by part, as
// gemmBlockParts takes f32 rows (parts of about f32BlockPartBytes of 6 tokens' inputs):
// part p of token t at dst[p·T·pw + t·pw], pw = f32PartPitch of the part's columns, so
// that one block of tokens' inputs of one part are one run of floats.
func f32PartsX(dst, x []float32, T, n, t0, t1 int) {
	np, cols := partsOf(n, f32BlockPartBytes)
	pw := f32PartPitch(cols)
	for t := t0; t < t1; t++ {
		for p := 0; p < np; p++ {
			c0 := p * cols
			kk := min(cols, n-c0)
			copy(dst[p*T*pw+t*pw:][:kk], x[t*n+c0:t*n+c0+kk])
		}
	}
}

// padTokens copies tokens [t0, t1) of x (n apart) to dst, n+halfPad apart.
func padTokens(dst, x []float32, n, t0, t1 int) {
	ldx := n + halfPad
	for t := t0; t < t1; t++ {
		copy(dst[t*ldx:t*ldx+n], x[t*n:(t+1)*n])
	}
}

// XLayout implements kernels.XPreparer: for T > 1 the layout of x halfLayout gives f16
// and bf16 rows (the row length and the column order in the value, as the layouts of
// two matrices of different ones differ), layoutF32Parts for f32 rows that f32Parts,
// else layoutPadded for f32 rows that padRows;
// 0 for every other product.
func (k Kernels) XLayout(T int, w *kernels.Mat) int {
	n := w.Cols
	switch {
	case T <= 1:
	case (w.DType == dtype.F16 || w.DType == dtype.BF16) && n >= 8:
		o := avx2.HalfOrderOf(w)
		if l := halfLayout(T, n, o); l != layoutAsIs {
			return n<<8 | int(o)<<4 | l
		}
	case w.DType == dtype.F32 && f32Parts(T, n):
		return n<<8 | layoutF32Parts
	case w.DType == dtype.F32 && padRows(T, n):
		return n<<8 | layoutPadded
	}
	return 0
}

// PreparedXSize implements kernels.XPreparer.
func (k Kernels) PreparedXSize(T, cols int) int { return T * halfXRow(cols) }

// PrepareX implements kernels.XPreparer.
func (k Kernels) PrepareX(xp, x []float32, T int, w *kernels.Mat, t0, t1 int, scratch kernels.Scratch) {
	n := w.Cols
	if t0 < 0 || t1 > T || len(x) < T*n || len(xp) < k.PreparedXSize(T, n) || len(scratch) < n {
		panic("avx512: PrepareX: short slices or tokens out of range")
	}
	l := k.XLayout(T, w)
	o := avx2.HalfOrder(l >> 4 & 15)
	switch l & 15 {
	case layoutParts:
		partsX(o, xp, x, T, n, t0, t1, scratch[:n&^7])
	case layoutArranged:
		arrangeTokens(o, xp, x, n, t0, t1)
	case layoutPadded:
		padTokens(xp, x, n, t0, t1)
	case layoutF32Parts:
		f32PartsX(xp, x, T, n, t0, t1)
	default:
		panic("avx512: PrepareX on a product that takes x as it is")
	}
}

// MatMulPrepared implements kernels.XPreparer.
func (k Kernels) MatMulPrepared(dst []float32, ld int, x, xp []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	l := k.XLayout(T, w)
	if l != 0 && len(xp) < k.PreparedXSize(T, w.Cols) {
		panic("avx512: MatMulPrepared: prepared x too short")
	}
	switch {
	case l == 0:
		k.MatMul(dst, ld, x, T, w, bias, r0, r1, scratch)
	case w.DType == dtype.F32:
		k.matMulF32(dst, ld, x, xp, T, w, bias, r0, r1, scratch)
	default:
		k.matMulHalf(dst, ld, x, xp, T, w, bias, r0, r1, scratch)
	}
}

var _ kernels.XPreparer = Kernels{}
