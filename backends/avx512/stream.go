//go:build amd64 && !purego

package avx512

import (
	"fmt"

	"github.com/lmrun/lmrun/backends/avx2"
	"github.com/lmrun/lmrun/backends/internal/stream"
	"github.com/lmrun/lmrun/kernels"
)

// The kernels outside the products, 16 lanes wide: the same generators as avx2's
// (backends/avx2/_asm: width.go, stream.go, mathfn.go, dot.go, attention.go) emitting
// ZMM registers and opmask tails instead of YMM and VMASKMOVPS, plus ZMM forms of rope,
// quantQ8 and quantQ8K (zmm_elem.go, zmm_kquant.go). The elementwise kernels compute
// every element with avx2's instructions in avx2's order, so they give avx2's bits; the
// quantizers give the reference's bytes; the reductions (Dot, the norms' statistics,
// softmax's denominator, attention's weighted sum) sum in 16 lanes, within the
// contract's tolerances of the reference.

// Dot implements kernels.Kernels.
func (Kernels) Dot(a, b []float32) float32 { return asm.DotOf(a, b) }

// Softmax implements kernels.Kernels. The special cases are decided on the maximum,
// exactly as the reference does: a NaN anywhere, or every entry -Inf, gives NaN
// everywhere; a +Inf maximum leaves the mass to the +Inf entries.
func (Kernels) Softmax(x []float32) { asm.Softmax(x) }

// Attention implements kernels.Kernels: the scores by MatMul's matrix–vector kernel
// (gemv4s, then gemm1x8) over the cached keys (rows of stride floats) — avx2's bits —
// then Scale, Softmax and wsum over the cached values, 16 columns per register.
//
// The scores are bound by the reads of the keys. A kernel that kept the query in
// registers and reduced 16 keys' accumulators together by a transposing tree was 2.6×
// gemv4s on 128 keys of 64 held in L1, but 0.8–0.95× from L2 (512 and 2048 keys, with
// prefetching), where a decode step finds the cache: so gemv4s stays.
func (k Kernels) Attention(out, q, kc, vc []float32, n, stride int, scale float32, scores []float32) {
	hd := len(q)
	if hd == 0 || n <= 0 {
		k.Kernels.Reference.Attention(out, q, kc, vc, n, stride, scale, scores)
		return
	}
	if stride < 0 || len(out) < hd || len(scores) < n || len(kc) < (n-1)*stride+hd || len(vc) < (n-1)*stride+hd {
		panic(fmt.Sprintf("avx512: Attention over %d positions of stride %d, head %d: len(k)=%d len(v)=%d len(out)=%d len(scores)=%d",
			n, stride, hd, len(kc), len(vc), len(out), len(scores)))
	}
	s := scores[:n]
	gemmRows(s, n, q, hd, 1, kc, stride, hd, nil, n)
	asm.AttendScores(out[:hd], s, vc, n, stride, scale)
}

// AttentionF16 implements kernels.Kernels: Attention over a binary16 cache, the scores
// by the f16 matrix–vector kernels of MatMul (avx2's bits), wsumH converting the
// values with VCVTPH2PS as they are loaded. Head widths that are not a multiple of 8
// take the reference's path, as in avx2.
func (k Kernels) AttentionF16(out, q []float32, kc, vc []uint16, n, stride int, scale float32, scores []float32) {
	hd := len(q)
	if hd == 0 || hd%8 != 0 || n <= 0 {
		k.Kernels.Reference.AttentionF16(out, q, kc, vc, n, stride, scale, scores)
		return
	}
	if stride < 0 || len(out) < hd || len(scores) < n || len(kc) < (n-1)*stride+hd || len(vc) < (n-1)*stride+hd {
		panic(fmt.Sprintf("avx512: AttentionF16 over %d positions of stride %d, head %d: len(k)=%d len(v)=%d len(out)=%d len(scores)=%d",
			n, stride, hd, len(kc), len(vc), len(out), len(scores)))
	}
	s := scores[:n]
	halfRowsT1(s, q, kc, stride, hd, 0, n, false, avx2.HalfPlain)
	k.Scale(s, scale)
	k.Softmax(s)
	wsumH(&out[0], &vc[0], stride, &s[0], n, hd)
}

// RMSNorm implements kernels.Kernels.
func (Kernels) RMSNorm(dst, x, w []float32, eps float32) { asm.RMSNorm(dst, x, w, eps) }

// LayerNorm implements kernels.Kernels.
func (Kernels) LayerNorm(dst, x, w, b []float32, eps float32) { asm.LayerNorm(dst, x, w, b, eps) }

// GELU implements kernels.Kernels.
func (Kernels) GELU(x []float32) { stream.InPlace(gelu, x) }

// SiLU implements kernels.Kernels.
func (Kernels) SiLU(x []float32) { stream.InPlace(silu, x) }

// SwiGLU implements kernels.Kernels.
func (Kernels) SwiGLU(gate, up []float32) { stream.Pairwise(swiglu, gate, up) }

// ReLU implements kernels.Kernels: the reference's bits (a compare and a masked clear:
// NaN and -0 stay as they are).
func (Kernels) ReLU(x []float32) { stream.InPlace(relu, x) }

// RoPE implements kernels.Kernels: 8 pairs per register, the pairs past the last whole
// register in one step under an opmask; every element is avx2's bits (the same
// instructions per lane).
func (Kernels) RoPE(x []float32, nHeads, headDim int, cos, sin []float32) {
	asm.Rotate("RoPE", rope, x, nHeads, headDim, cos, sin)
}

// RoPENeoX implements kernels.Kernels: the reference's bits (each product rounded).
func (Kernels) RoPENeoX(x []float32, nHeads, headDim int, cos, sin []float32) {
	asm.Rotate("RoPENeoX", ropeNeoX, x, nHeads, headDim, cos, sin)
}

// Add implements kernels.Kernels.
func (Kernels) Add(dst, x []float32) { stream.Pairwise(add, dst, x) }

// Scale implements kernels.Kernels.
func (Kernels) Scale(x []float32, s float32) { asm.ScaleBy(x, s) }

// QuantizeQ8 implements kernels.Q8Kernels: quantQ8's blocks (two ZMM per block of 32),
// byte for byte the reference's, with the reference itself for the blocks quantQ8
// leaves (a non-finite element, or an amax so small that 1/d overflows).
func (Kernels) QuantizeQ8(x []float32, dst []byte) {
	kernels.QuantizeQ8With("avx512", x, dst, quantQ8)
}

// QuantizeQ8K implements kernels.Q8Kernels: quantQ8K's super-blocks (16 ZMM each), byte
// for byte the reference's, with the reference itself for the super-blocks quantQ8K
// leaves (a non-finite element, all zeros, or a non-finite −127/max).
func (Kernels) QuantizeQ8K(x []float32, dst []byte) {
	kernels.QuantizeQ8KWith("avx512", x, dst, quantQ8K)
}

// asm is this backend's assembly for the kernels outside the products, whose slice
// checks and scalar steps backends/internal/stream holds for both amd64 backends.
var asm = stream.Asm{
	Name: "avx512", Dot: dot, MaxNaN: maxNaN, ExpSub: expSub, Scale: scale,
	Sum: sum, Sumsq: sumsq, Sumsqdev: sumsqdev, RMSOut: rmsOut, LNOut: lnOut, LNOutBias: lnOutBias,
	WSum: wsum,
}
