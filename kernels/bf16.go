package kernels

import (
	"encoding/binary"
	"fmt"

	"github.com/lmrun/lmrun/dtype"
)

// BF16Kernels is implemented by backends with a faster product for bf16 weights when the
// activations are rounded to bfloat16 first, as llama.cpp does for bf16 weights on CPU:
// two bfloat16 values multiply exactly in float32, so hardware that takes pairs of them
// (AVX512_BF16's VDPBF16PS) does twice the products per instruction of a float32 FMA.
// It is a separate interface, which Reference does not implement, so that a caller (the
// engine) takes this path only on a backend made faster by it (see FastBF16); the
// function MatMulBF16 is its specification.
type BF16Kernels interface {
	// MatMulBF16 is MatMul on bf16 weights (w.DType == dtype.BF16) with activations
	// rounded to bfloat16 (RoundBF16): xb holds T rows of w.Cols values. For t < T and
	// r0 ≤ r < r1 it computes
	//   dst[t*ld + r] = Σ_i w[r, i] · xb[t*w.Cols + i]  (+ bias[r] when bias is not nil).
	// scratch holds at least ScratchSize(T, w.Cols) floats. Every product is exact in
	// float32 (8 + 8 significant bits), so only the sums round: a backend may sum in its
	// own order, one order per (matrix, row), so that, as for MatMul, row t of the result
	// depends only on row t of xb — bit for bit, not on T, the other rows, or the row
	// range. It may also take denormal weights, activations and partial sums (|v| <
	// 2⁻¹²⁶) as zero, as VDPBF16PS does. Against the function MatMulBF16 the difference
	// is then at most a few float32 roundings of Σ_i |w_i·x_i| (the reordered sum), plus
	// the flushed products, plus Cols·2⁻¹²⁶ (the flushed partial sums).
	MatMulBF16(dst []float32, ld int, xb []uint16, T int, w *Mat, bias []float32, r0, r1 int, scratch Scratch)

	// RoundBF16 rounds x to bfloat16 into dst, bit for bit as the package's RoundBF16
	// does (len(dst) ≥ len(x)).
	RoundBF16(x []float32, dst []uint16)

	// FastBF16 reports whether MatMulBF16 is faster on this CPU than MatMul on the same
	// bf16 weights (it may be there, and correct, on CPUs where it is not): a caller
	// that may take either path takes this one only then.
	FastBF16() bool
}

// RoundBF16 rounds x to bfloat16 into dst (len(dst) ≥ len(x)): to nearest with ties to
// even, as dtype.F32ToBF16 (infinities kept, a NaN quiet with its sign): the activations
// of BF16Kernels.MatMulBF16.
func RoundBF16(x []float32, dst []uint16) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = dtype.F32ToBF16(v)
	}
}

// MatMulBF16 is the specification of BF16Kernels.MatMulBF16: each dot product summed in
// float32 in column order, then the bias added. It panics when w is not bf16 or a slice
// is short.
func MatMulBF16(dst []float32, ld int, xb []uint16, T int, w *Mat, bias []float32, r0, r1 int) {
	if r0 >= r1 || T <= 0 {
		return
	}
	n := w.Cols
	if w.DType != dtype.BF16 || r0 < 0 || r1 > w.Rows || len(w.Data) < 2*w.Rows*n || ld < r1 ||
		len(xb) < T*n || len(dst) < (T-1)*ld+r1 || (bias != nil && len(bias) < r1) {
		panic(fmt.Sprintf("kernels: MatMulBF16 %v rows [%d,%d) of %d×%d, T=%d, ld=%d: len(w)=%d len(xb)=%d len(dst)=%d len(bias)=%d",
			w.DType, r0, r1, w.Rows, n, T, ld, len(w.Data), len(xb), len(dst), len(bias)))
	}
	for r := r0; r < r1; r++ {
		row := w.Data[2*r*n : 2*(r+1)*n]
		for t := 0; t < T; t++ {
			x := xb[t*n : (t+1)*n]
			var s float32
			for i, v := range x {
				s += dtype.BF16ToF32(binary.LittleEndian.Uint16(row[2*i:])) * dtype.BF16ToF32(v)
			}
			if bias != nil {
				s += bias[r]
			}
			dst[t*ld+r] = s
		}
	}
}
