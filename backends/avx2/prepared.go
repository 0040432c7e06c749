//go:build amd64 && !purego

package avx2

import (
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// arrangeTokens writes tokens [t0, t1) of x (n apart) in the column order o at dst,
// n&^7 apart: up to their last n%8 columns, as matMulHalf's GEMM takes them.
func arrangeTokens(o halfOrder, dst, x []float32, n, t0, t1 int) {
	n8 := n &^ 7
	for t := t0; t < t1; t++ {
		arrangeX(o, dst[t*n8:(t+1)*n8], x[t*n:t*n+n8])
	}
}

// XLayout implements kernels.XPreparer: f16 and bf16 rows over T > 1 tokens summed in a
// mix order (halfOrderOf) take x arranged in it, the value holding the row length and
// the order; every other product takes x as it is (0).
func (k Kernels) XLayout(T int, w *kernels.Mat) int {
	if T <= 1 || w.Cols < 8 || w.DType != dtype.F16 && w.DType != dtype.BF16 {
		return 0
	}
	if o := halfOrderOf(w); o != orderPlain {
		return w.Cols<<8 | int(o)
	}
	return 0
}

// PreparedXSize implements kernels.XPreparer.
func (k Kernels) PreparedXSize(T, cols int) int { return T * cols }

// PrepareX implements kernels.XPreparer.
func (k Kernels) PrepareX(xp, x []float32, T int, w *kernels.Mat, t0, t1 int, _ kernels.Scratch) {
	n := w.Cols
	l := k.XLayout(T, w)
	if l == 0 || t0 < 0 || t1 > T || len(x) < T*n || len(xp) < k.PreparedXSize(T, n) {
		panic("avx2: PrepareX: a product that takes x as it is, short slices or tokens out of range")
	}
	arrangeTokens(halfOrder(l&255), xp, x, n, t0, t1)
}

// MatMulPrepared implements kernels.XPreparer.
func (k Kernels) MatMulPrepared(dst []float32, ld int, x, xp []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if k.XLayout(T, w) == 0 {
		k.MatMul(dst, ld, x, T, w, bias, r0, r1, scratch)
		return
	}
	if len(xp) < k.PreparedXSize(T, w.Cols) {
		panic("avx2: MatMulPrepared: prepared x too short")
	}
	k.matMulHalf(dst, ld, x, xp, T, w, bias, r0, r1, scratch)
}

var _ kernels.XPreparer = Kernels{}
