// Package avx2 is the AVX2+FMA backend for amd64: float32 kernels in Go assembly,
// generated with avo by the program in _asm (its own module; go generate here, or make
// asm, reproduces kernels_amd64.s and stubs_amd64.go byte for byte). It registers itself
// as "avx2" and needs AVX2, FMA3 and F16C (every AVX2 CPU has F16C); on other
// architectures and with the purego build tag the package is empty and registers
// nothing.
//
// The kernels: MatMul (a 4-row streaming matrix–vector product for T = 1, a 4-row ×
// 3-token register-blocked micro-kernel for T > 1 that sums each row as the T = 1
// kernel does, so that a token's results do not depend on T), Dot, Attention and
// AttentionF16 (the scores by the matrix–vector kernel over the strided keys, softmax,
// then the weighted sum of the values with the output kept in registers; F16C converts
// a binary16 cache as it is read), Softmax, RMSNorm, LayerNorm, GELU, SiLU, SwiGLU, RoPE,
// Add and Scale; MatMul on f16 and bf16 weights (widened as they are loaded: for T = 1
// half of an f16 row by F16C's VCVTPH2PS and half by integer shifts and masks on x
// rearranged to match, a bf16 row by one shift or mask per 8 columns); and MatMulQ8
// (kernels.Q8Kernels) on q8_0 and q4_0 weights, with integer dot products per 32-element
// block (VPMADDUBSW, VPMADDWD) scaled and accumulated in float32 — from 2 (q4_0) or 3
// (q8_0) tokens an int8 GEMM instead (package backends/internal/qgemm: 8 rows × up to
// 4 tokens per tile; on CPUs with AVX-VNNI the VEX-encoded VPDPBUSD, which the Go
// assembler lacks, emitted as bytes, TestVEXEncodings disassembles them; elsewhere
// VPMADDUBSW in forms whose int16 sums cannot saturate) — and on the k-quants
// (q4_k, q5_k, q6_k) with q8_k activations, ggml's generic dot product reproduced
// operation for operation (_asm/kquant.go) — from 2 tokens a k-quant GEMM instead
// (package qgemm's kquant.go, _asm/kgemm_ymm.go: rows repacked with their sub-block
// scales as int16, 4 rows × up to 3 tokens per tile; the VEX-encoded VPDPWSSD with
// AVX-VNNI, emitted as bytes like VPDPBUSD, elsewhere VPMADDWD); QuantizeQ8 and QuantizeQ8K, the activation
// quantizers (byte for byte the reference's). The quantized products equal the
// reference's bit for bit. What the other kernels do differently from kernels.Reference,
// all within the tolerances stated in backends/conformance_test.go:
//   - sums (dot products, norms, softmax's denominator) are taken in 8 lanes with several
//     accumulators, so they round differently — but a MatMul row's result never depends
//     on how the rows were split into ranges, nor on how many tokens share the product,
//     so results stay identical for every thread count and batch;
//   - exp is a float32 polynomial (≤ 1 ulp over [-86.6, 88.7]; TestExpAccuracy) where
//     the reference rounds float64 math.Exp; results below 2^-125 are flushed to zero;
//   - GELU uses the identity 0.5·(1+tanh(u)) = 1/(1+e^(-2u)), which avoids the
//     reference's cancellation for x ≪ 0, and RoPE a fused multiply-add.
//
// NaN and ±Inf behave exactly as in the reference. ReLU and RoPENeoX compute the
// reference's operations (RoPENeoX rounds each product, as the reference does), so they
// give its bits. GELUErf is the reference's, as is AttentionF16 for head widths that are
// not a multiple of 8. MatMul on q8_0/q4_0
// weights with float32 activations widens the rows (dequantQ8_0, dequantQ4_0; for the
// k-quants dtype.DequantizeRow) and runs the f32 kernels on them.
package avx2

//go:generate sh -c "cd _asm && go run . -out ../kernels_amd64.s -stubs ../stubs_amd64.go -pkg avx2"
