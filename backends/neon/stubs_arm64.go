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
