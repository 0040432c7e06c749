//go:build amd64 && !purego

// Package avx2 is the AVX2+FMA backend for amd64. It registers itself as "avx2" and
// overrides the kernels that dominate a forward pass — the dot products inside matrix
// products and attention, and the vector adds — with viterin/vek's AVX2 routines; every
// other kernel is the reference's.
package avx2

import (
	"github.com/klauspost/cpuid/v2"
	"github.com/viterin/vek/vek32"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/kernels"
)

func init() {
	backends.Register(backends.Backend{
		Name:     "avx2",
		Priority: 20,
		Arch:     "amd64",
		Requires: []cpuid.FeatureID{cpuid.AVX2, cpuid.FMA3},
		New:      func() kernels.Kernels { return Kernels{} },
	})
}

// Kernels implements kernels.Kernels with AVX2+FMA where it pays.
type Kernels struct{ kernels.Reference }

// Name implements kernels.Kernels.
func (Kernels) Name() string { return "avx2" }

// Dot implements kernels.Kernels.
func (Kernels) Dot(a, b []float32) float32 {
	if len(a) == 0 {
		return 0
	}
	return vek32.Dot(a, b[:len(a)])
}

// MatMul implements kernels.Kernels.
func (k Kernels) MatMul(dst []float32, ld int, x []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int) {
	if w.DType != format.F32 {
		k.Reference.MatMul(dst, ld, x, T, w, bias, r0, r1)
		return
	}
	n := w.Cols
	for r := r0; r < r1; r++ {
		wr := w.F32[r*n : (r+1)*n]
		var b float32
		if bias != nil {
			b = bias[r]
		}
		for t := 0; t < T; t++ {
			dst[t*ld+r] = vek32.Dot(x[t*n:(t+1)*n], wr) + b
		}
	}
}

// Attention implements kernels.Kernels.
func (k Kernels) Attention(out, q, kc, vc []float32, n, stride int, scale float32, scores []float32) {
	hd := len(q)
	s := scores[:n]
	for j := range s {
		s[j] = vek32.Dot(q, kc[j*stride:j*stride+hd]) * scale
	}
	k.Softmax(s)
	clear(out[:hd])
	for j, p := range s {
		vj := vc[j*stride : j*stride+hd]
		for i := range out[:hd] {
			out[i] += p * vj[i]
		}
	}
}

// Add implements kernels.Kernels.
func (Kernels) Add(dst, x []float32) {
	if len(dst) == 0 {
		return
	}
	vek32.Add_Inplace(dst, x[:len(dst)])
}
