//go:build amd64 && !purego

package avx2

import "github.com/lmrun/lmrun/backends/internal/stream"

// ReLU implements kernels.Kernels: a compare and a masked clear, the reference's bits
// (NaN and -0 stay as they are).
func (Kernels) ReLU(x []float32) { stream.InPlace(relu, x) }

// RoPENeoX implements kernels.Kernels: each head's halves as two streams of vectors, the
// products rounded before their difference or sum as the reference rounds them, so the
// results are its bits.
func (Kernels) RoPENeoX(x []float32, nHeads, headDim int, cos, sin []float32) {
	asm.Rotate("RoPENeoX", ropeNeoX, x, nHeads, headDim, cos, sin)
}
