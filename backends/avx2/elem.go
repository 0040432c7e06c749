//go:build amd64 && !purego

package avx2

import "fmt"

// ReLU implements kernels.Kernels: a compare and a masked clear, the reference's bits
// (NaN and -0 stay as they are).
func (Kernels) ReLU(x []float32) {
	if len(x) > 0 {
		relu(&x[0], len(x))
	}
}

// RoPENeoX implements kernels.Kernels: each head's halves as two streams of vectors, the
// products rounded before their difference or sum as the reference rounds them, so the
// results are its bits.
func (Kernels) RoPENeoX(x []float32, nHeads, headDim int, cos, sin []float32) {
	half := len(cos)
	if nHeads <= 0 || half == 0 {
		return
	}
	sin = sin[:half]
	if 2*half > headDim || len(x) < nHeads*headDim {
		panic(fmt.Sprintf("avx2: RoPENeoX of %d pairs over %d heads of %d in %d floats", half, nHeads, headDim, len(x)))
	}
	ropeNeoX(&x[0], nHeads, headDim, &cos[0], &sin[0], half)
}
