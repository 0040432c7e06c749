// Package kernels defines the numeric kernels the engine calls — the contract every
// backend implements — and Reference, their pure-Go implementation. Reference is the
// executable specification: every other backend is tested against it.
//
// Kernels work on whole rows or row ranges; the engine splits work across threads by
// calling a kernel on disjoint ranges, so a kernel itself is single-threaded, allocation
// free and deterministic.
//
// Weights come in every dtype (f32, f16, bf16, q8_0, q4_0, and ggml's k-quants q4_k,
// q5_k, q6_k). MatMul multiplies any of them with float32 activations, exactly as their
// dequantized f32 matrix would be. Block-quantized weights also have the faster path of
// Q8Kernels: MatMulQ8 takes activations quantized once per product, in the type
// ActivationDType(w.DType) names — q8_0 blocks of 32 for q8_0 and q4_0, q8_k super-blocks
// of 256 for the k-quants, as llama.cpp does on CPU — from the backend's QuantizeQ8 or
// QuantizeQ8K (QuantizeActivations picks), and multiplies with integer block dot
// products whose float32 scaling follows one fixed order (ggml's generic C for the
// k-quants, kquant.go), so every backend gives the reference's bits.
package kernels

import (
	"fmt"

	"github.com/lmrun/lmrun/dtype"
)

// Mat is a weight matrix of Rows × Cols elements stored row-major ([out, in]) in DType.
// Data aliases the checkpoint; F32 is its float32 view when DType is F32.
type Mat struct {
	DType dtype.DType
	Rows  int
	Cols  int
	Data  []byte
	F32   []float32
	// Packed is a backend's prepared copy of the matrix (Repacker), nil when none. It
	// is set once, before the matrix is shared, and only read afterwards.
	Packed *Packed
	// facts holds what NewMat's matrices learn by reading all of Data (Q8Sym,
	// F16Finite), found on first use; nil for a Mat built otherwise.
	facts *matFacts
}

// Q8Sym reports that a q8_0 matrix has no quant of −128. ggml's quantizers never write
// one (they round x/d with |x/d| ≤ 127), and SIMD kernels then have a cheaper exact
// form of the signed byte product. A matrix from NewMat reads its data to find out on
// the first call (so that loading a model touches none of its weights); any other Mat
// reports false, which is always safe. It is safe for concurrent use.
func (m *Mat) Q8Sym() bool {
	if m.DType != dtype.Q8_0 || m.facts == nil {
		return false
	}
	return m.facts.get(m).q8Sym
}

// F16Finite reports that an f16 matrix holds no infinity or NaN, so SIMD kernels may
// widen its halves with integer operations that only finite values survive. Like
// Q8Sym, a matrix from NewMat finds out on the first call, any other Mat reports false
// (always safe), and it is safe for concurrent use.
func (m *Mat) F16Finite() bool {
	if m.DType != dtype.F16 || m.facts == nil {
		return false
	}
	return m.facts.get(m).f16Finite
}

// Packed is a weight matrix laid out for one backend's kernels. Layout names the
// producer and its layout ("avx512/qgemm16"): a backend uses Data only when Layout is
// its own, so a Mat packed by one backend is still read correctly by every other.
type Packed struct {
	Layout string
	Data   []byte
}

// Repacker is implemented by backends that can prepare a weight matrix once, at load,
// in the layout their kernels read (llama.cpp's "repack"), instead of on every product.
// Repack sets w.Packed and reports true when it did; it returns false, leaving w as it
// is, for matrices it has no layout for. It must not be called while w is in use: the
// engine packs every matrix before any product runs. Products on a packed matrix give
// the same bits as on the matrix unpacked.
type Repacker interface {
	Repack(w *Mat) bool
}

// NewMatF32 wraps a row-major float32 matrix.
func NewMatF32(v []float32, rows, cols int) (*Mat, error) {
	if rows <= 0 || cols <= 0 || len(v) != rows*cols {
		return nil, fmt.Errorf("matrix of %d elements cannot be %d×%d", len(v), rows, cols)
	}
	return &Mat{DType: dtype.F32, Rows: rows, Cols: cols, Data: dtype.F32ToBytes(v), F32: v}, nil
}

// Row returns row r of an f32 matrix.
func (m *Mat) Row(r int) []float32 { return m.F32[r*m.Cols : (r+1)*m.Cols] }

// Scratch is working memory for the kernels that need more than a small, bounded stack
// array — the rows of f16 weights a prefill widens to float32 for an f32 GEMM, say, or
// the per-block activation scales of MatMulQ8 — so that no kernel allocates: the caller
// makes one per thread, once, of at least Kernels.ScratchSize floats for the largest
// product it will run, and passes it to every MatMul and MatMulQ8 that thread runs.
// A kernel leaves its contents unspecified; calls running at the same time need one each.
type Scratch []float32

// NewScratch returns a Scratch large enough for every product of k with up to T rows of
// x and up to cols columns.
func NewScratch(k Kernels, T, cols int) Scratch { return make(Scratch, k.ScratchSize(T, cols)) }

// Kernels is the set of operations a backend provides. Slices passed in must have the
// lengths stated; kernels do not check them beyond what Go's bounds checks do, since the
// engine sizes every buffer once when a session is created.
type Kernels interface {
	// Name identifies the implementation ("generic", "avx2", ...).
	Name() string

	// ScratchSize returns how many float32s of Scratch MatMul (and MatMulQ8, on a backend
	// that implements Q8Kernels) need for a product of T ≥ 1 rows of x with a matrix of
	// cols columns, whatever its dtype and the row range. It never decreases as T or cols
	// grow, so the size for the largest T and cols a caller will use covers all its
	// products. 0 means the backend needs none.
	ScratchSize(T, cols int) int

	// MatMul computes, for t < T and r0 ≤ r < r1,
	//   dst[t*ld + r] = Σ_i x[t*w.Cols + i] · w[r, i]  (+ bias[r] when bias is not nil).
	// T = 1 is a matrix–vector product. x is [T, w.Cols]; dst has row stride ld ≥ w.Rows.
	// scratch holds at least ScratchSize(T, w.Cols) floats.
	//
	// Row t of the result depends only on row t of x, on w and on bias — bit for bit,
	// not on T, on the other rows of x, or on the row range [r0, r1): each dst[t*ld + r]
	// is the same float32 operations whatever the call it is computed in. A backend may
	// sum in its own order, but in one order per (matrix, row), so that the engine's
	// thread count never changes a result, and a sequence decoded in a batch (T > 1, one
	// row per sequence) gets the bits it would get alone (T = 1).
	MatMul(dst []float32, ld int, x []float32, T int, w *Mat, bias []float32, r0, r1 int, scratch Scratch)

	// Dot returns Σ a[i]·b[i] over len(a) elements (len(b) ≥ len(a)).
	Dot(a, b []float32) float32

	// Softmax replaces x by exp(x - max x) / Σ exp(x - max x). A NaN anywhere makes the
	// whole result NaN; +Inf entries share the mass; an empty slice is left alone.
	Softmax(x []float32)

	// Attention computes one head's output for one query over n cached positions:
	//   s_j = scale · q·k_j,  p = softmax(s),  out = Σ_j p_j v_j
	// where k_j = k[j*stride : j*stride+len(q)] and likewise v_j; len(out) = len(q).
	// scores is scratch space of at least n elements. n ≥ 1.
	Attention(out, q, k, v []float32, n, stride int, scale float32, scores []float32)

	// AttentionF16 is Attention over a KV cache stored as IEEE binary16 (half the memory
	// of an f32 cache); keys and values are converted to float32 as they are read.
	AttentionF16(out, q []float32, k, v []uint16, n, stride int, scale float32, scores []float32)

	// RMSNorm: dst = x / sqrt(mean(x²) + eps) · w.
	RMSNorm(dst, x, w []float32, eps float32)

	// LayerNorm: dst = (x - mean) / sqrt(var + eps) · w + b (b may be nil).
	LayerNorm(dst, x, w, b []float32, eps float32)

	// GELU applies the tanh approximation used by GPT-2 in place:
	//   0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
	GELU(x []float32)

	// GELUErf applies the exact GELU, 0.5·x·(1 + erf(x/√2)), in place.
	GELUErf(x []float32)

	// SiLU applies x·σ(x) in place.
	SiLU(x []float32)

	// SwiGLU computes gate[i] = silu(gate[i]) · up[i] in place over len(gate).
	SwiGLU(gate, up []float32)

	// ReLU applies max(x, 0) in place.
	ReLU(x []float32)

	// RoPE rotates adjacent pairs (2i, 2i+1), i < len(cos), of each of nHeads heads of
	// width headDim in x by the angle whose cosine and sine are cos[i], sin[i].
	RoPE(x []float32, nHeads, headDim int, cos, sin []float32)

	// RoPENeoX rotates, in each of nHeads heads of width headDim in x, dimension i with
	// dimension i + len(cos) for i < len(cos) (GPT-NeoX's "rotate half" pairing of the
	// first 2·len(cos) dimensions) by the angle whose cosine and sine are cos[i], sin[i]:
	//   x'[i] = x[i]·cos[i] − x[i+h]·sin[i],  x'[i+h] = x[i]·sin[i] + x[i+h]·cos[i].
	RoPENeoX(x []float32, nHeads, headDim int, cos, sin []float32)

	// Add computes dst[i] += x[i] over len(dst).
	Add(dst, x []float32)

	// Scale computes x[i] *= s.
	Scale(x []float32, s float32)
}
