//go:build arm64 && !purego

// Package neon is the NEON (Advanced SIMD) backend for arm64. It registers itself as
// "neon" when the CPU has ASIMD (every ARMv8-A core does; the feature comes from the
// kernel's HWCAP on Linux) and implements the float32 kernels in Go assembly
// (neon_arm64.s): matrix products, dot products, attention, softmax, the norms, the
// activations, RoPE, Add and Scale. GELUErf, ReLU, AttentionF16 and matrix products
// with weights that are not float32 are the embedded reference's.
package neon

import (
	"math"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/kernels"
)

func init() {
	backends.Register(backends.Backend{
		Name:     "neon",
		Priority: 20,
		Arch:     "arm64",
		Requires: []cpuid.FeatureID{cpuid.ASIMD},
		New:      func() kernels.Kernels { return Kernels{} },
	})
}

// Kernels implements kernels.Kernels with NEON assembly. The embedded Reference supplies
// the kernels it does not override (GELUErf, ReLU, AttentionF16).
type Kernels struct{ kernels.Reference }

var _ kernels.Kernels = Kernels{}

// Name implements kernels.Kernels.
func (Kernels) Name() string { return "neon" }

// Dot implements kernels.Kernels.
func (Kernels) Dot(a, b []float32) float32 { return dotAsm(a, b[:len(a)]) }

// MatMul implements kernels.Kernels. Rows are computed four at a time by matmulF32 and
// the (r1-r0)%4 left over one at a time by rowDotAsm, both over the first n&^3 columns
// and in the same order; the last n%4 columns are added here. So an output does not
// depend on the row range it was computed in, and results are bit-identical for every
// thread count. Matrices that are not float32 go to the reference.
func (k Kernels) MatMul(dst []float32, ld int, x []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int) {
	if w.DType != format.F32 {
		k.Reference.MatMul(dst, ld, x, T, w, bias, r0, r1)
		return
	}
	if r0 >= r1 || T <= 0 {
		return
	}
	wf := w.F32
	if wf == nil { // as in the reference: a view on Data when it is aligned
		wf = format.BytesToF32(w.Data)
	}
	n := w.Cols
	x = x[:T*n]
	d := dst[r0 : (T-1)*ld+r1] // dst[t*ld + r] is d[t*ld + r - r0]
	nr := r1 - r0
	rows4 := nr &^ 3
	kn := n &^ 3
	if kn == 0 {
		for t := 0; t < T; t++ {
			clear(d[t*ld : t*ld+nr])
		}
	} else {
		if rows4 > 0 {
			matmulF32(d, ld, x, T, wf[r0*n:(r0+rows4)*n], n, rows4)
		}
		for r := rows4; r < nr; r++ {
			wr := wf[(r0+r)*n : (r0+r)*n+kn]
			for t := 0; t < T; t++ {
				d[t*ld+r] = rowDotAsm(x[t*n:t*n+kn], wr)
			}
		}
	}
	if kn < n {
		for t := 0; t < T; t++ {
			xt := x[t*n+kn : (t+1)*n]
			for r := 0; r < nr; r++ {
				wr := wf[(r0+r)*n+kn : (r0+r+1)*n]
				s := d[t*ld+r]
				for i, v := range xt {
					s += v * wr[i]
				}
				d[t*ld+r] = s
			}
		}
	}
	if bias != nil {
		b := bias[r0:r1]
		for t := 0; t < T; t++ {
			addAsm(d[t*ld:t*ld+nr], b)
		}
	}
}

// Softmax implements kernels.Kernels. The maximum (NaN if any entry is NaN) decides the
// special cases exactly as the reference does; the +Inf case, rare and not worth
// vectorising, is the reference's.
func (k Kernels) Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	m := maxAsm(x)
	switch {
	case m != m:
		nan := float32(math.NaN())
		for i := range x {
			x[i] = nan
		}
		return
	case m > math.MaxFloat32:
		k.Reference.Softmax(x)
		return
	}
	// If every entry is -Inf, x - m is NaN everywhere, as in the reference.
	sum := expSubAsm(x, m)
	scaleAsm(x, 1/sum)
}

// Attention implements kernels.Kernels.
func (k Kernels) Attention(out, q, kc, vc []float32, n, stride int, scale float32, scores []float32) {
	hd := len(q)
	if n <= 0 || stride < 0 {
		k.Reference.Attention(out, q, kc, vc, n, stride, scale, scores)
		return
	}
	end := (n-1)*stride + hd // one past the last element of row n-1
	s := scores[:n]
	attnScoresAsm(s, q, kc[:end], stride, scale)
	k.Softmax(s)
	o := out[:hd]
	clear(o)
	attnAccumAsm(o, s, vc[:end], stride)
}

// RMSNorm implements kernels.Kernels. dst may alias x.
func (Kernels) RMSNorm(dst, x, w []float32, eps float32) {
	n := len(x)
	ss := sumSqDevAsm(x, 0)
	inv := float32(1 / math.Sqrt(float64(ss/float32(n)+eps)))
	mulScaleAsm(dst[:n], x, w[:n], inv)
}

// LayerNorm implements kernels.Kernels. dst may alias x.
func (Kernels) LayerNorm(dst, x, w, b []float32, eps float32) {
	n := len(x)
	mean := sumAsm(x) / float32(n)
	variance := sumSqDevAsm(x, mean) / float32(n)
	inv := float32(1 / math.Sqrt(float64(variance+eps)))
	if b != nil {
		b = b[:n]
	}
	layerNormAsm(dst[:n], x, w[:n], b, mean, inv)
}

// GELU implements kernels.Kernels.
func (Kernels) GELU(x []float32) { geluAsm(x) }

// SiLU implements kernels.Kernels.
func (Kernels) SiLU(x []float32) { siluAsm(x) }

// SwiGLU implements kernels.Kernels.
func (Kernels) SwiGLU(gate, up []float32) { swigluAsm(gate, up[:len(gate)]) }

// RoPE implements kernels.Kernels.
func (k Kernels) RoPE(x []float32, nHeads, headDim int, cos, sin []float32) {
	half := len(cos)
	if 2*half > headDim {
		k.Reference.RoPE(x, nHeads, headDim, cos, sin) // out of range: panics as the reference does
		return
	}
	sin = sin[:half]
	for h := 0; h < nHeads; h++ {
		ropeAsm(x[h*headDim:h*headDim+2*half], cos, sin)
	}
}

// Add implements kernels.Kernels.
func (Kernels) Add(dst, x []float32) { addAsm(dst, x[:len(dst)]) }

// Scale implements kernels.Kernels.
func (Kernels) Scale(x []float32, s float32) { scaleAsm(x, s) }
