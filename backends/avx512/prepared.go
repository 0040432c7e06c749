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

// padTokens copies tokens [t0, t1) of x (n apart) to dst, n+halfPad apart.
func padTokens(dst, x []float32, n, t0, t1 int) {
	ldx := n + halfPad
	for t := t0; t < t1; t++ {
		copy(dst[t*ldx:t*ldx+n], x[t*n:(t+1)*n])
	}
}

// XLayout implements kernels.XPreparer: for T > 1 the layout of x halfLayout gives f16
// and bf16 rows (the row length and the column order in the value, as the layouts of
// two matrices of different ones differ), and layoutPadded for f32 rows that padRows;
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
