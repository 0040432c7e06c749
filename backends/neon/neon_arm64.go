//go:build arm64 && !purego

// Package neon is the NEON (Advanced SIMD) backend for arm64. It registers itself as
// "neon" when the CPU has ASIMD (every ARMv8-A core does; the feature comes from the
// kernel's HWCAP on Linux) and implements in Go assembly (neon_arm64.s): matrix
// products with f32, f16 and bf16 weights (the half-precision weights converted as they
// are loaded), matrix products of q8_0 and q4_0 weights with q8_0-quantized activations
// (kernels.Q8Kernels: integer block dot products with SDOT where the CPU has the ARMv8.2
// dot-product extension, cpuid.ASIMDDP, and with widening multiplies where it has not,
// and QuantizeQ8, the activation quantizer, with the reference's bytes exactly),
// dot products, attention, softmax, the norms, the activations, RoPE, Add and Scale.
// GELUErf, ReLU, AttentionF16, MatMul of q8_0, q4_0 and k-quant weights with float32
// activations, MatMulQ8 of f32, f16, bf16 and k-quant (q4_k, q5_k, q6_k) weights and
// QuantizeQ8K are the embedded reference's: k-quant models run on arm64, at the pure-Go
// reference's speed.
package neon

import (
	"encoding/binary"
	"math"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

func init() {
	backends.Register(backends.Backend{
		Name:     "neon",
		Priority: 20,
		Arch:     "arm64",
		Requires: []cpuid.FeatureID{cpuid.ASIMD},
		New:      func() kernels.Kernels { return New() },
	})
}

// Kernels implements kernels.Kernels and kernels.Q8Kernels with NEON assembly. The
// embedded Reference supplies the kernels it does not override (GELUErf, ReLU,
// AttentionF16, MatMul on q8_0, q4_0 and k-quant weights, MatMulQ8 on f32, f16, bf16 and
// k-quant weights, QuantizeQ8K).
// The zero value runs on every ARMv8-A CPU; New also uses the instructions this CPU has.
type Kernels struct {
	kernels.Reference

	// dotProd selects MatMulQ8's kernels with SDOT (ARMv8.2 dot product); the results
	// are the same without.
	dotProd bool
}

var (
	_ kernels.Kernels   = Kernels{}
	_ kernels.Q8Kernels = Kernels{}
)

// New returns the kernels for this CPU: MatMulQ8 uses the dot-product instructions
// when cpuid reports them (cpuid.ASIMDDP, from HWCAP on Linux).
func New() Kernels { return Kernels{dotProd: cpuid.CPU.Supports(cpuid.ASIMDDP)} }

// Name implements kernels.Kernels.
func (Kernels) Name() string { return "neon" }

// ScratchSize implements kernels.Kernels: the NEON products need no scratch (the
// outputs of their leftover rows go through a small array on the stack).
func (Kernels) ScratchSize(T, cols int) int { return 0 }

// Dot implements kernels.Kernels.
func (Kernels) Dot(a, b []float32) float32 { return dotAsm(a, b[:len(a)]) }

// MatMul implements kernels.Kernels for f32, f16 and bf16 weights; q8_0 and q4_0
// weights with float32 activations go to the reference (the engine multiplies those with
// MatMulQ8).
//
// Rows are computed four at a time by the assembly (matmulF32, matmulF16, matmulBF16),
// over the first n&^3 columns; the last n%4 columns are added here. The (r1-r0)%4 rows
// left over go through the same assembly one at a time (rowDotAsm for f32, which sums in
// the same order; for f16 and bf16 the 4-row kernel with a row stride of 0, all four
// lanes on the one row). So an output does not depend on the row range it was computed
// in, and results are bit-identical for every thread count. The f16 and bf16 weights are
// converted to float32 exactly as they are loaded, so MatMul on them equals MatMul on the
// converted f32 matrix bit for bit, as in the reference.
func (k Kernels) MatMul(dst []float32, ld int, x []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	switch w.DType {
	case dtype.F32:
		matmulF32Rows(dst, ld, x, T, w, bias, r0, r1)
	case dtype.F16, dtype.BF16:
		matmulHalfRows(dst, ld, x, T, w, bias, r0, r1)
	default:
		k.Reference.MatMul(dst, ld, x, T, w, bias, r0, r1, scratch)
	}
}

// matmulF32Rows is MatMul for f32 weights.
func matmulF32Rows(dst []float32, ld int, x []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int) {
	if r0 >= r1 || T <= 0 {
		return
	}
	wf := w.F32
	if wf == nil { // as in the reference: a view on Data when it is aligned
		wf = dtype.BytesToF32(w.Data)
	}
	n := w.Cols
	wf = exact(wf)
	x = exact(x)[:T*n]
	d := outRows(dst, ld, T, r0, r1) // dst[t*ld + r] is d[t*ld + r - r0]
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
	addBias(d, ld, T, nr, bias, r0, r1)
}

// leftoverTokens is how many tokens a leftover row is computed for per call: the 4-row
// kernels then write 4·leftoverTokens outputs to a scratch array on the stack.
const leftoverTokens = 16

// matmulHalfRows is MatMul for f16 and bf16 weights.
func matmulHalfRows(dst []float32, ld int, x []float32, T int, w *kernels.Mat, bias []float32, r0, r1 int) {
	if r0 >= r1 || T <= 0 {
		return
	}
	n := w.Cols
	rb := 2 * n
	data := exact(w.Data)[r0*rb : r1*rb] // the rows r0..r1-1: panics on short weights
	x = exact(x)[:T*n]
	d := outRows(dst, ld, T, r0, r1)
	bf := w.DType == dtype.BF16
	nr := r1 - r0
	rows4 := nr &^ 3
	kn := n &^ 3
	if kn == 0 {
		for t := 0; t < T; t++ {
			clear(d[t*ld : t*ld+nr])
		}
	} else {
		if rows4 > 0 {
			matmulHalf(bf, d, ld, x, T, data[:rows4*rb], n, rb, rows4)
		}
		if rows4 < nr {
			var tmp [4 * leftoverTokens]float32
			for r := rows4; r < nr; r++ {
				wr := data[r*rb : (r+1)*rb]
				for t0 := 0; t0 < T; t0 += leftoverTokens {
					tn := min(leftoverTokens, T-t0)
					matmulHalf(bf, tmp[:4*tn], 4, x[t0*n:(t0+tn)*n], tn, wr, n, 0, 4)
					for t := 0; t < tn; t++ {
						d[(t0+t)*ld+r] = tmp[4*t]
					}
				}
			}
		}
	}
	if kn < n {
		for t := 0; t < T; t++ {
			xt := x[t*n+kn : (t+1)*n]
			for r := 0; r < nr; r++ {
				wr := data[r*rb+2*kn : (r+1)*rb]
				s := d[t*ld+r]
				for i, v := range xt {
					h := binary.LittleEndian.Uint16(wr[2*i:])
					if bf {
						s += v * dtype.BF16ToF32(h)
					} else {
						s += v * dtype.F16ToF32(h)
					}
				}
				d[t*ld+r] = s
			}
		}
	}
	addBias(d, ld, T, nr, bias, r0, r1)
}

// addBias adds bias[r0:r1] to the nr = r1-r0 outputs of each of the T tokens in d (which
// starts at row r0) when bias is not nil.
func addBias(d []float32, ld, T, nr int, bias []float32, r0, r1 int) {
	if bias == nil {
		return
	}
	b := exact(bias)[r0:r1]
	for t := 0; t < T; t++ {
		addAsm(d[t*ld:t*ld+nr], b)
	}
}

// outRows returns dst[r0 : (T-1)*ld+r1], what a kernel writes for rows r0..r1-1 of T
// tokens, and panics, as the reference would on its first bad index, when that is not
// within len(dst) or when ld is negative.
func outRows(dst []float32, ld, T, r0, r1 int) []float32 {
	if ld < 0 && T > 1 {
		panic("neon: negative ld")
	}
	return exact(dst)[r0 : (T-1)*ld+r1]
}

// exact returns s with its capacity cut to its length, so that slicing it panics where
// indexing would: the assembly must not touch the elements between len(s) and cap(s).
func exact[E any](s []E) []E { return s[:len(s):len(s)] }

// MatMulQ8 implements kernels.Q8Kernels. q8_0 and q4_0 weights are the assembly's
// (matQ8Sdot, matQ4Sdot with the dot-product instructions, matQ8Mull, matQ4Mull without);
// f32, f16 and bf16 weights, and rows that are not whole blocks, the reference's.
//
// Every output is computed as in the reference — per block an exact integer dot product,
// converted to float32 and multiplied by dw·dx, added in block order in float32 — so it
// equals the reference's bit for bit, and does not depend on the row range, the batch or
// which instructions the CPU has. The assembly takes rows four at a time (one per vector
// lane) and, for T > 1, tokens four at a time per block of weights; the (r1-r0)%4 rows
// left over go through the same assembly with a row stride of 0.
func (k Kernels) MatMulQ8(dst []float32, ld int, xq []byte, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	var bb int // weight block bytes
	switch w.DType {
	case dtype.Q8_0:
		bb = dtype.BlockQ8_0
	case dtype.Q4_0:
		bb = dtype.BlockQ4_0
	}
	q4 := w.DType == dtype.Q4_0
	n := w.Cols
	if bb == 0 || n%dtype.QBlock != 0 {
		k.Reference.MatMulQ8(dst, ld, xq, T, w, bias, r0, r1, scratch)
		return
	}
	if r0 >= r1 || T <= 0 {
		return
	}
	nb := n / dtype.QBlock
	rb := nb * bb              // bytes per weight row
	xb := nb * dtype.BlockQ8_0 // bytes per token
	xq = exact(xq)[:T*xb]
	data := exact(w.Data)[r0*rb : r1*rb]
	d := outRows(dst, ld, T, r0, r1)
	nr := r1 - r0
	rows4 := nr &^ 3
	if rows4 > 0 {
		k.matQ(q4, d, ld, xq, T, data[:rows4*rb], rb, nb, rows4)
	}
	if rows4 < nr {
		var tmp [4 * leftoverTokens]float32
		for r := rows4; r < nr; r++ {
			wr := data[r*rb : (r+1)*rb]
			for t0 := 0; t0 < T; t0 += leftoverTokens {
				tn := min(leftoverTokens, T-t0)
				k.matQ(q4, tmp[:4*tn], 4, xq[t0*xb:(t0+tn)*xb], tn, wr, 0, nb, 4)
				for t := 0; t < tn; t++ {
					d[(t0+t)*ld+r] = tmp[4*t]
				}
			}
		}
	}
	addBias(d, ld, T, nr, bias, r0, r1)
}

// matQ calls the assembly for q4_0 or q8_0 weights, with SDOT when k has it. (Direct
// calls, not function values, so that the scratch arrays stay on the stack.)
func (k Kernels) matQ(q4 bool, dst []float32, ld int, xq []byte, T int, w []byte, wstride, nb, rows int) {
	switch {
	case q4 && k.dotProd:
		matQ4Sdot(dst, ld, xq, T, w, wstride, nb, rows)
	case q4:
		matQ4Mull(dst, ld, xq, T, w, wstride, nb, rows)
	case k.dotProd:
		matQ8Sdot(dst, ld, xq, T, w, wstride, nb, rows)
	default:
		matQ8Mull(dst, ld, xq, T, w, wstride, nb, rows)
	}
}

// QuantizeQ8 implements kernels.Q8Kernels: quantQ8's blocks, byte for byte the
// reference's, with the reference itself for the blocks quantQ8 leaves (a non-finite
// element, or an amax so small that 1/d overflows).
func (Kernels) QuantizeQ8(x []float32, dst []byte) {
	kernels.QuantizeQ8With("neon", x, dst, quantQ8)
}

// matmulHalf calls matmulBF16 or matmulF16.
func matmulHalf(bf bool, dst []float32, ld int, x []float32, T int, w []byte, n, wstride, rows int) {
	if bf {
		matmulBF16(dst, ld, x, T, w, n, wstride, rows)
	} else {
		matmulF16(dst, ld, x, T, w, n, wstride, rows)
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
