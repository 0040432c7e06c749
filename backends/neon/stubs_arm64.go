//go:build arm64 && !purego

package neon

// The assembly in neon_arm64.s. Every routine handles any length, including 0 and
// lengths that are not a multiple of the vector width; the Go callers slice their
// arguments first so that the bounds checks happen in Go.

// dotAsm returns Σ a[i]·b[i] over len(a) elements; len(b) ≥ len(a).
//
//go:noescape
func dotAsm(a, b []float32) float32

// sumAsm returns Σ x[i].
//
//go:noescape
func sumAsm(x []float32) float32

// sumSqDevAsm returns Σ (x[i] - m)².
//
//go:noescape
func sumSqDevAsm(x []float32, m float32) float32

// maxAsm returns max x[i], NaN if any x[i] is NaN, and -Inf for an empty x.
//
//go:noescape
func maxAsm(x []float32) float32

// expSubAsm replaces x[i] by exp(x[i] - m) and returns their sum.
//
//go:noescape
func expSubAsm(x []float32, m float32) float32

// matmulF32 computes, for t < T and r < rows,
//
//	dst[t*ld + r] = Σ_{i < n&^3} x[t*n + i] · w[r*n + i]
//
// rows must be a multiple of 4; the caller adds the last n%4 products. Each output's
// summation order is fixed (see neon_arm64.s) and shared with rowDotAsm.
//
//go:noescape
func matmulF32(dst []float32, ld int, x []float32, T int, w []float32, n, rows int)

// rowDotAsm returns Σ_{i < len(x)&^3} x[i]·w[i] summed in exactly the order matmulF32
// uses for one output; len(w) ≥ len(x).
//
//go:noescape
func rowDotAsm(x, w []float32) float32

// attnScoresAsm computes s[j] = scale · Σ_i q[i]·k[j*stride + i] for j < len(s).
//
//go:noescape
func attnScoresAsm(s, q, k []float32, stride int, scale float32)

// attnAccumAsm computes out[i] += Σ_j p[j]·v[j*stride + i] for i < len(out), j < len(p).
//
//go:noescape
func attnAccumAsm(out, p, v []float32, stride int)

// addAsm computes dst[i] += x[i] over len(dst).
//
//go:noescape
func addAsm(dst, x []float32)

// scaleAsm computes x[i] *= s.
//
//go:noescape
func scaleAsm(x []float32, s float32)

// mulScaleAsm computes dst[i] = x[i]·s·w[i] over len(dst).
//
//go:noescape
func mulScaleAsm(dst, x, w []float32, s float32)

// layerNormAsm computes dst[i] = (x[i] - mean)·inv·w[i] (+ b[i] when len(b) > 0) over
// len(dst).
//
//go:noescape
func layerNormAsm(dst, x, w, b []float32, mean, inv float32)

// siluAsm computes x[i] = x[i] / (1 + exp(-x[i])).
//
//go:noescape
func siluAsm(x []float32)

// swigluAsm computes gate[i] = silu(gate[i]) · up[i] over len(gate).
//
//go:noescape
func swigluAsm(gate, up []float32)

// geluAsm computes the tanh-form GELU in place, as x / (1 + exp(-2u)) with
// u = √(2/π)·(x + 0.044715·x³), which equals 0.5·x·(1 + tanh u).
//
//go:noescape
func geluAsm(x []float32)

// ropeAsm rotates the len(cos) adjacent pairs (x[2i], x[2i+1]) by the angles whose
// cosines and sines are cos[i], sin[i].
//
//go:noescape
func ropeAsm(x, cos, sin []float32)

// matQ8Sdot computes, for t < T and r < rows (a multiple of 4),
//
//	dst[t*ld + r] = Σ_{b < nb} float32(Σ_j wq_j·xq_j) · (dw_b·dx_b)
//
// for q8_0 weight rows at w[r*wstride:] (nb blocks of 34 bytes each) and q8_0 activations
// at xq[t*34*nb:], in block order with float32 rounding after every operation, exactly
// as kernels.Reference.MatMulQ8 does before the bias. The block sums use SDOT, which the
// CPU must have (cpuid.ASIMDDP). The caller checks len(w) ≥ (rows-1)·wstride + 34·nb,
// len(xq) ≥ 34·nb·T and len(dst) ≥ (T-1)·ld + rows.
//
//go:noescape
func matQ8Sdot(dst []float32, ld int, xq []byte, T int, w []byte, wstride, nb, rows int)

// matQ8Mull is matQ8Sdot without SDOT (SMULL, SMLAL and pairwise adds, plain NEON), with
// identical results as long as every activation is in [-127, 127], as QuantizeQ8 makes
// them (two products share a 16-bit lane before they are widened).
//
//go:noescape
func matQ8Mull(dst []float32, ld int, xq []byte, T int, w []byte, wstride, nb, rows int)

// matQ4Sdot is matQ8Sdot for q4_0 weights: blocks of 18 bytes, so the caller checks
// len(w) ≥ (rows-1)·wstride + 18·nb.
//
//go:noescape
func matQ4Sdot(dst []float32, ld int, xq []byte, T int, w []byte, wstride, nb, rows int)

// matQ4Mull is matQ4Sdot without SDOT, as matQ8Mull is for q8_0.
//
//go:noescape
func matQ4Mull(dst []float32, ld int, xq []byte, T int, w []byte, wstride, nb, rows int)

// matmulF16 computes, for t < T and r < rows (a multiple of 4),
//
//	dst[t*ld + r] = Σ_{i < n&^3} x[t*n + i] · w_r[i]
//
// where w_r, weight row r, is the binary16 values at w[r*wstride:], converted to float32.
// Each output is summed in matmulF32's order, so it equals matmulF32 on the converted
// matrix bit for bit; the caller adds the last n%4 products. The caller checks
// len(w) ≥ (rows-1)·wstride + 2·(n&^3), len(x) ≥ (T-1)·n + n&^3 and
// len(dst) ≥ (T-1)·ld + rows.
//
//go:noescape
func matmulF16(dst []float32, ld int, x []float32, T int, w []byte, n, wstride, rows int)

// matmulBF16 is matmulF16 for bfloat16 weights.
//
//go:noescape
func matmulBF16(dst []float32, ld int, x []float32, T int, w []byte, n, wstride, rows int)

// quantQ8 quantizes the nb blocks of 32 floats at x to q8_0 at dst, exactly as
// dtype.QuantizeRowQ8_0, stopping before the first block with a non-finite element or
// 1/d; it returns how many blocks it wrote.
//
//go:noescape
func quantQ8(dst *byte, x *float32, nb int) int
