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

// RoPETail rotates the pairs (2i, 2i+1), from ≤ i < len(cos), of each of nHeads heads of
// width headDim in x one at a time: the pairs RoPE's vector kernel (4 pairs per step)
// leaves. backends/avx512 finishes its RoPE with it, so that both give the same bits.
// The caller has checked the lengths.
func RoPETail(x []float32, nHeads, headDim int, cos, sin []float32, from int) {
	half := len(cos)
	for h := 0; h < nHeads; h++ {
		hx := x[h*headDim : (h+1)*headDim]
		for i := from; i < half; i++ {
			a, b := hx[2*i], hx[2*i+1]
			hx[2*i] = a*cos[i] - b*sin[i]
			hx[2*i+1] = a*sin[i] + b*cos[i]
		}
	}
}
