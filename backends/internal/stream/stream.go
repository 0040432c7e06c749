// Package stream is the Go side, shared by the amd64 backends, of the kernels outside
// the matrix products (Dot, Softmax, the norms, the activations, RoPE, Add, Scale): the
// slice checks and scalar steps around each backend's assembly, which it is given as an
// Asm (the generator emits the same functions in YMM for avx2 and ZMM for avx512).
package stream

import (
	"fmt"
	"math"

	"github.com/lmrun/lmrun/kernels"
)

// Asm is one backend's assembly for these kernels. Every function takes raw pointers
// and a count; the methods check the slices first.
type Asm struct {
	Name string // the backend's, for panics

	Dot        func(a, b *float32, n int) float32
	MaxNaN     func(x *float32, n int) (max float32, nan bool)
	ExpSub     func(x *float32, n int, m float32) float32
	Scale      func(x *float32, n int, s float32)
	Sum, Sumsq func(x *float32, n int) float32
	Sumsqdev   func(x *float32, n int, mean float32) float32
	RMSOut     func(dst, x, w *float32, n int, inv float32)
	LNOut      func(dst, x, w *float32, n int, mean, inv float32)
	LNOutBias  func(dst, x, w, b *float32, n int, mean, inv float32)
	// WSum writes Σ_j p[j]·v[j·stride : j·stride+hd] over j < n to out (attention's
	// weighted sum of the values).
	WSum func(out, v *float32, stride int, p *float32, n, hd int)
}

// DotOf is kernels.Kernels.Dot.
func (a *Asm) DotOf(x, y []float32) float32 {
	if len(x) == 0 {
		return 0
	}
	y = y[:len(x)]
	return a.Dot(&x[0], &y[0], len(x))
}

// Softmax is kernels.Kernels.Softmax. The special cases are decided on the maximum,
// exactly as the reference does: a NaN anywhere, or every entry -Inf, gives NaN
// everywhere; a +Inf maximum leaves the mass to the +Inf entries (the reference's own
// code).
func (a *Asm) Softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	m, nan := a.MaxNaN(&x[0], len(x))
	switch {
	case nan || math.IsInf(float64(m), -1):
		nanv := float32(math.NaN())
		for i := range x {
			x[i] = nanv
		}
	case math.IsInf(float64(m), 1):
		kernels.Reference{}.Softmax(x)
	default:
		s := a.ExpSub(&x[0], len(x), m)
		a.Scale(&x[0], len(x), 1/s)
	}
}

// RMSNorm is kernels.Kernels.RMSNorm.
func (a *Asm) RMSNorm(dst, x, w []float32, eps float32) {
	n := len(x)
	if n == 0 {
		return
	}
	dst, w = dst[:n], w[:n]
	ss := a.Sumsq(&x[0], n)
	inv := float32(1 / math.Sqrt(float64(ss/float32(n)+eps)))
	a.RMSOut(&dst[0], &x[0], &w[0], n, inv)
}

// LayerNorm is kernels.Kernels.LayerNorm.
func (a *Asm) LayerNorm(dst, x, w, b []float32, eps float32) {
	n := len(x)
	if n == 0 {
		return
	}
	dst, w = dst[:n], w[:n]
	mean := a.Sum(&x[0], n) / float32(n)
	variance := a.Sumsqdev(&x[0], n, mean) / float32(n)
	inv := float32(1 / math.Sqrt(float64(variance+eps)))
	if b == nil {
		a.LNOut(&dst[0], &x[0], &w[0], n, mean, inv)
		return
	}
	b = b[:n]
	a.LNOutBias(&dst[0], &x[0], &w[0], &b[0], n, mean, inv)
}

// InPlace applies f, an elementwise kernel (GELU, SiLU, ReLU), to x.
func InPlace(f func(x *float32, n int), x []float32) {
	if len(x) > 0 {
		f(&x[0], len(x))
	}
}

// Pairwise applies f, a two-operand kernel (SwiGLU, Add), to dst and the first len(dst)
// elements of x.
func Pairwise(f func(dst, x *float32, n int), dst, x []float32) {
	if len(dst) > 0 {
		x = x[:len(dst)]
		f(&dst[0], &x[0], len(dst))
	}
}

// AttendScores is kernels.ScoredAttention.AttendScores for a backend whose Attention
// is its MatMul's scores, then ScaleBy, Softmax and WSum, as these are.
func (a *Asm) AttendScores(out, s, vc []float32, n, stride int, scale float32) {
	hd := len(out)
	if n <= 0 { // no positions: an empty sum, as Attention's
		clear(out)
		return
	}
	if hd == 0 {
		return
	}
	if stride < 0 || len(s) < n || len(vc) < (n-1)*stride+hd {
		panic(fmt.Sprintf("%s: AttendScores over %d positions of stride %d, head %d: len(s)=%d len(v)=%d",
			a.Name, n, stride, hd, len(s), len(vc)))
	}
	s = s[:n]
	a.ScaleBy(s, scale)
	a.Softmax(s)
	a.WSum(&out[0], &vc[0], stride, &s[0], n, hd)
}

// ScaleBy is kernels.Kernels.Scale.
func (a *Asm) ScaleBy(x []float32, s float32) {
	if len(x) > 0 {
		a.Scale(&x[0], len(x), s)
	}
}

// Rotate is kernels.Kernels.RoPE or RoPENeoX, by f, the backend's rope or ropeNeoX (what
// names it in panics).
func (a *Asm) Rotate(what string, f func(x *float32, heads, headDim int, cos, sin *float32, pairs int), x []float32, nHeads, headDim int, cos, sin []float32) {
	half := len(cos)
	if nHeads <= 0 || half == 0 {
		return
	}
	sin = sin[:half]
	if 2*half > headDim || len(x) < nHeads*headDim {
		panic(fmt.Sprintf("%s: %s of %d pairs over %d heads of %d in %d floats", a.Name, what, half, nHeads, headDim, len(x)))
	}
	f(&x[0], nHeads, headDim, &cos[0], &sin[0], half)
}
