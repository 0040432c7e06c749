//go:build amd64 && !purego

package avx2

import (
	"unsafe"

	"github.com/lmrun/lmrun/kernels"
)

// The order of the f16 and bf16 products, exported so that backends/avx512 can sum each
// row exactly as this package does (and so give its results bit for bit).

// HalfOrder is the column order in which the f16 and bf16 products sum a row's first
// Cols&^7 products (see matMulHalf): HalfPlain, HalfMixH or HalfMixBF.
type HalfOrder = halfOrder

// The orders of HalfOrder.
const (
	HalfPlain = orderPlain // columns as they are
	HalfMixH  = orderMixH  // in every 32 of the first Cols&^31: 0–15, then the even of 16–31, then the odd
	HalfMixBF = orderMixBF // every 16 of the first Cols&^31 as its 8 even columns, then its 8 odd ones
)

// HalfOrderOf returns the order in which MatMul sums the rows of the f16 or bf16 matrix
// w (Cols ≥ 8), whatever T and the row range.
func HalfOrderOf(w *kernels.Mat) HalfOrder { return halfOrderOf(w) }

// ArrangeHalfX writes x (len(x) a multiple of 8, len(dst) ≥ len(x)) in the column order
// o, unscaled: the x that a row widened in order o multiplies.
func ArrangeHalfX(o HalfOrder, dst, x []float32) { arrangeX(o, dst, x) }

// AddHalfTail adds to dst[r], r0 ≤ r < r1, the products of x with the last Cols%8
// columns of the f16 or bf16 matrix w (len(x) = w.Cols) in column order, then bias[r]
// when bias is not nil: how MatMul finishes each row after its first Cols&^7 columns.
func AddHalfTail(dst, x []float32, w *kernels.Mat, bias []float32, r0, r1 int) {
	wh := unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(w.Data))), len(w.Data)/2)
	halfTail(dst, x, wh, w.DType, w.Cols&^7, bias, r0, r1)
}
