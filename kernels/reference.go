package kernels

import (
	"math"

	"github.com/lmrun/lmrun/dtype"
)

// Reference is the pure-Go implementation of Kernels, the semantics every backend must
// reproduce. It is written for clarity first, with only the cheap speed-ups that keep the
// maths identical in spirit (several independent accumulators in dot products).
type Reference struct{}

var _ Kernels = Reference{}

// Name implements Kernels.
func (Reference) Name() string { return "generic" }

// ScratchSize implements Kernels: the reference needs no scratch.
func (Reference) ScratchSize(T, cols int) int { return 0 }

// MatMul implements Kernels. Each weight row is read once and applied to all T inputs,
// which is what makes a batched prefill cheaper than T matrix–vector products.
// Weights of every dtype are supported: row by row, the dot product is taken with the
// row's dequantized values in the order dot uses (see quant.go), so the result equals
// MatMul on the dequantized f32 matrix exactly.
func (r Reference) MatMul(dst []float32, ld int, x []float32, T int, w *Mat, bias []float32, r0, r1 int, _ Scratch) {
	n := w.Cols
	if w.DType == dtype.F32 {
		wf := w.F32
		if wf == nil {
			wf = dtype.BytesToF32(w.Data)
		}
		for row := r0; row < r1; row++ {
			wr := wf[row*n : (row+1)*n]
			var b float32
			if bias != nil {
				b = bias[row]
			}
			for t := 0; t < T; t++ {
				dst[t*ld+row] = dot(x[t*n:(t+1)*n], wr) + b
			}
		}
		return
	}
	var rowDot func(x []float32, w []byte) float32
	switch w.DType {
	case dtype.F16:
		rowDot = dotF16
	case dtype.BF16:
		rowDot = dotBF16
	case dtype.Q8_0:
		rowDot = dotQ8_0
	case dtype.Q4_0:
		rowDot = dotQ4_0
	case dtype.Q4_K:
		rowDot = dotQ4_K
	case dtype.Q5_K:
		rowDot = dotQ5_K
	case dtype.Q6_K:
		rowDot = dotQ6_K
	default:
		panic("kernels: MatMul: unknown weight dtype " + w.DType.String())
	}
	for row := r0; row < r1; row++ {
		wr := matRow(w, row)
		var b float32
		if bias != nil {
			b = bias[row]
		}
		for t := 0; t < T; t++ {
			dst[t*ld+row] = rowDot(x[t*n:(t+1)*n], wr) + b
		}
	}
}

// Dot implements Kernels.
func (Reference) Dot(a, b []float32) float32 { return dot(a, b) }

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Softmax implements Kernels.
func (Reference) Softmax(x []float32) { softmax(x) }

func softmax(x []float32) {
	if len(x) == 0 {
		return
	}
	maxv := float32(math.Inf(-1))
	for _, v := range x {
		if v != v {
			for i := range x {
				x[i] = float32(math.NaN())
			}
			return
		}
		if v > maxv {
			maxv = v
		}
	}
	if math.IsInf(float64(maxv), 1) {
		// Only the +Inf entries carry weight.
		var n float32
		for _, v := range x {
			if math.IsInf(float64(v), 1) {
				n++
			}
		}
		for i, v := range x {
			if math.IsInf(float64(v), 1) {
				x[i] = 1 / n
			} else {
				x[i] = 0
			}
		}
		return
	}
	var sum float32
	for i, v := range x {
		e := float32(math.Exp(float64(v - maxv)))
		x[i] = e
		sum += e
	}
	inv := 1 / sum
	for i := range x {
		x[i] *= inv
	}
}

// Attention implements Kernels.
func (Reference) Attention(out, q, k, v []float32, n, stride int, scale float32, scores []float32) {
	hd := len(q)
	s := scores[:n]
	for j := range s {
		s[j] = dot(q, k[j*stride:j*stride+hd]) * scale
	}
	softmax(s)
	clear(out[:hd])
	for j, p := range s {
		vj := v[j*stride : j*stride+hd]
		for i := range out[:hd] {
			out[i] += p * vj[i]
		}
	}
}

// RMSNorm implements Kernels.
func (Reference) RMSNorm(dst, x, w []float32, eps float32) {
	var ss float32
	for _, v := range x {
		ss += v * v
	}
	inv := float32(1 / math.Sqrt(float64(ss/float32(len(x))+eps)))
	for i, v := range x {
		dst[i] = v * inv * w[i]
	}
}

// LayerNorm implements Kernels.
func (Reference) LayerNorm(dst, x, w, b []float32, eps float32) {
	var mean float32
	for _, v := range x {
		mean += v
	}
	mean /= float32(len(x))
	var variance float32
	for _, v := range x {
		d := v - mean
		variance += d * d
	}
	variance /= float32(len(x))
	inv := float32(1 / math.Sqrt(float64(variance+eps)))
	for i, v := range x {
		y := (v - mean) * inv * w[i]
		if b != nil {
			y += b[i]
		}
		dst[i] = y
	}
}

// GELU implements Kernels.
func (Reference) GELU(x []float32) {
	const c = 0.7978845608028654 // √(2/π)
	for i, v := range x {
		f := float64(v)
		x[i] = float32(0.5 * f * (1 + math.Tanh(c*(f+0.044715*f*f*f))))
	}
}

// GELUErf implements Kernels.
func (Reference) GELUErf(x []float32) {
	for i, v := range x {
		f := float64(v)
		x[i] = float32(0.5 * f * (1 + math.Erf(f/math.Sqrt2)))
	}
}

// SiLU implements Kernels.
func (Reference) SiLU(x []float32) {
	for i, v := range x {
		x[i] = silu(v)
	}
}

func silu(v float32) float32 { return float32(float64(v) / (1 + math.Exp(-float64(v)))) }

// SwiGLU implements Kernels.
func (Reference) SwiGLU(gate, up []float32) {
	for i, g := range gate {
		gate[i] = silu(g) * up[i]
	}
}

// ReLU implements Kernels.
func (Reference) ReLU(x []float32) {
	for i, v := range x {
		if v < 0 {
			x[i] = 0
		}
	}
}

// RoPE implements Kernels.
func (Reference) RoPE(x []float32, nHeads, headDim int, cos, sin []float32) {
	for h := 0; h < nHeads; h++ {
		hx := x[h*headDim : (h+1)*headDim]
		for i := range cos {
			a, b := hx[2*i], hx[2*i+1]
			hx[2*i] = a*cos[i] - b*sin[i]
			hx[2*i+1] = a*sin[i] + b*cos[i]
		}
	}
}

// RoPENeoX implements Kernels.
func (Reference) RoPENeoX(x []float32, nHeads, headDim int, cos, sin []float32) {
	half := len(cos)
	for h := 0; h < nHeads; h++ {
		hx := x[h*headDim : (h+1)*headDim]
		lo, hi := hx[:half], hx[half:2*half]
		for i := range lo {
			a, b := lo[i], hi[i]
			lo[i] = a*cos[i] - b*sin[i]
			hi[i] = a*sin[i] + b*cos[i]
		}
	}
}

// Add implements Kernels.
func (Reference) Add(dst, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] += x[i]
	}
}

// Scale implements Kernels.
func (Reference) Scale(x []float32, s float32) {
	for i := range x {
		x[i] *= s
	}
}
