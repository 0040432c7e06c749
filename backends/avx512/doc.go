// Package avx512 is the AVX-512 backend for amd64: its first kernels are the float32
// matrix products, 16 lanes wide in ZMM registers, generated with avo by the same
// program as backends/avx2's kernels, backends/avx2/_asm run with -pkg avx512 (its own
// module; go generate here, or make asm, reproduces kernels_amd64.s and stubs_amd64.go
// byte for byte), sharing its helpers and its order of the sums. It registers itself as "avx512" above "avx2" and needs
// AVX2, FMA3 and F16C (for the kernels it takes from backends/avx2) and AVX-512 F, BW
// and VL; on other architectures it is listed but never available, and with the purego
// build tag the package is empty and registers nothing.
//
// MatMul on float32 weights runs a register-tiled micro-kernel (4 rows × 6 tokens, 3
// rows × 8 tokens, or 1 row × 8 tokens of 16-lane accumulators) that sums every (row,
// token) product exactly as backends/avx2 does — the even and odd 8-vectors of each 16
// columns in the low and high halves of one accumulator, avx2's whole 8-vector and
// masked tail in one masked step, the halves added and reduced pairwise as avx2 does —
// so its results equal avx2's bit for bit, for every T, shape and row split. At T = 7, 8
// rows too long for the inputs to stay in L1 go in parts of the columns, the
// accumulators kept in memory between the parts, which changes no sum. The tiles' column
// loop takes 4 steps of 16 columns an iteration. For T > 8 the rows go in chunks kept in
// L2 against one block of tokens after the other, and the next chunk is prefetched (a
// line an iteration) while this one is multiplied, as the f16 and bf16 products
// prefetch the next chunk's halves; on rows too long to go whole, x is laid out part by
// part so that each call also prefetches the next one's inputs. MatMul on
// f16 and bf16 weights sums each row in avx2's column order with the same accumulators
// (16 halves widened at a time by VCVTPH2PS, or a shift for bf16, as they are loaded for
// T = 1; rows widened to float32 in scratch for the GEMM above for T > 1), so it too
// gives avx2's bits.
//
// MatMulQ8 on q4_0 weights, and on q8_0 weights for 2 or more tokens, on CPUs with
// AVX512_VNNI, is an int8 GEMM (package backends/internal/qgemm): groups of 16 rows
// repacked so that one VPDPBUSD with a broadcast activation dword adds four quants of
// all 16 rows, tiles of up to 8 tokens (of two groups at once, 32 rows × up to 7
// tokens, each broadcast feeding two VPDPBUSD), no horizontal sums; each (row, token) sum is
// taken as the reference takes it, so the results are the reference's bit for bit.
// On CPUs with AMX_TILE and AMX_INT8 (Sapphire Rapids and later), MatMulQ8 on q8_0
// weights as loaded for 9 or more tokens, and on packed q8_0 and on q4_0 weights for
// 32 or more (16 packed), runs AMX-INT8 tiles (amx.go). The process asks Linux for the
// tiles (arch_prctl ARCH_REQ_XCOMP_PERM, checked with ARCH_GET_XCOMP_PERM) once, at the
// first such product; without the permission (or with $LMRUN_CPU_DISABLE=AMXINT8) the
// VPDPBUSD tiles run. A call takes at most 2048 blocks of 16 × 16 (about 60 µs:
// assembly is not preemptible). The instructions are machine code (the Go assembler
// has no AMX), each checked by TestAMXInstructions.
//
// On q8_0 weights as loaded nothing is repacked (qgemmAMXW): a block of 16 consecutive
// rows is an A tile as it lies in memory (16 rows × 32 quants, a row's bytes apart),
// the tokens' quants are gathered once a product into B tiles of 16 tokens (8 rows ×
// 64 bytes, amxGatherQ8; the last tile partial, its missing tokens zeros), TDPBSSD
// leaves the block's exact sums in a C tile of rows × tokens, the float epilogue runs a
// row (16 tokens) a ZMM with the VPDPBUSD tiles' operations in their order (dw·dx
// from a table of the group's scales as float32; the products commute), and the 16 ×
// 16 sums are transposed in registers at the end: their bits. Only a group cut by the
// row range takes the VPDPBUSD tiles. One thread, interleaved (BenchmarkAMX, GOP/s,
// AMX on groups repacked per product → as loaded): 2048×768 T = 32 358–363 → 498–512,
// T = 128 468–475 → 540–548; 768×2048 T = 32 347–351 → 490–498, T = 128 446–463 →
// 534–537 (T = 12: VPDPBUSD 240–265 → 322–346, see amxLoadedFrom); the models' pp128
// (stories110m, gpt2-124m q8_0) 18–26% faster at -t 1, 9–23% at -t 2, pp40 20%; now
// as fast as or faster than weights packed at load (stories110m pp128 -t 1: as loaded
// 1968–2099 tokens/s, packed 1883–1938).
//
// On packed q8_0 and on q4_0 (qgemmAMX) every 16 tokens of each whole group take the
// tiles: the repacked block of a group is an AMX B tile (8 rows × 64 bytes), 16
// tokens' prepared activations an A tile (16 rows × 32 bytes, 40 apart); TDPBSUD
// leaves each block's Σ x·(w + off) in a C tile, stored to the stack, and the float
// epilogue is the VPDPBUSD tiles' (−off·Σx added, converted, × dw·dx, summed in block
// order), so the bits are theirs. The rest (T mod 16 tokens, a group cut by the row
// range) is the VPDPBUSD tiles'. One thread, interleaved: a block of 16 tokens × 16
// rows of random quants 37.6 → 29.0 ns (BenchmarkAMXKernel; the tiles' part and the
// epilogue do not overlap on this core, see the generator's zmm_amx.go); 2048×768 at
// T = 128 q8_0 packed 434–439 → 503–506 GOP/s, q4_0 410–430 → 477–482, packed
// 444–446 → 487–508 (BenchmarkAMX); the models' pp128 (stories110m, gpt2-124m, q4_0)
// 0–10% faster at -t 1, 1–6% at -t 2.
//
// MatMulQ8 on q4_k, q5_k and q6_k weights for 2 or more tokens, with AVX512_VNNI, is
// the same kind of GEMM in int16 (package qgemm, kquant.go): the weights repacked per
// group of 16 rows already multiplied by their sub-block scales, two rows × the eight
// classes mod 8 of the k-quant contract per ZMM, one VPDPWSSD per two quants of two
// rows, tiles of up to 3 tokens; the float32 sums follow the reference's order lane by
// lane, so these too are the reference's bits.
// The kernels outside the products (Dot, Softmax, Attention, AttentionF16, RMSNorm,
// LayerNorm, GELU, SiLU, SwiGLU, ReLU, RoPE, RoPENeoX, Add, Scale, QuantizeQ8,
// QuantizeQ8K) are avx2's generators run at 16 lanes: ZMM registers, EVEX forms, and
// tails under an opmask (a masked load or store never touches the memory of its
// masked-off lanes) instead of VMASKMOVPS. The elementwise kernels give avx2's bits (the same
// instructions per lane), the quantizers the reference's bytes; the reductions sum in
// 16 lanes, within the conformance suite's tolerances. Attention's scores are MatMul's
// matrix–vector kernels (avx2's bits); at 64-wide heads attention is bound by the reads
// of the cache, not the arithmetic, so it runs about as fast as avx2's.
// Every other kernel (GELUErf, MatMul on other weight types) is backends/avx2's.
//
// MatMulBF16 (kernels.BF16Kernels) multiplies bf16 weights with activations rounded to
// bfloat16 with AVX512_BF16's VDPBF16PS, 32 products per instruction: 1.8–2.7× MatMul's
// float32-activation product on Zen 5 for a prefill (BenchmarkBF16Activations). Without
// AVX512_BF16 it widens the activations and takes MatMul's path.
//
// Instructions Go's assembler has no mnemonic for (VDPBF16PS) are emitted as machine
// code, each checked by disassembly (TestRawInstructions). gemmBF16Sx46, a VDPBF16PS
// tile that scales every 32 columns' sum as MatMulQ8's contract for bf16 weights with
// q8_0 activations asks, serves BenchmarkBF16Activations alone: that contract gains
// about 1.1× from VDPBF16PS, the per-block scaling costing what the narrower product
// saves, so MatMulQ8 on bf16 weights stays the reference's.
package avx512

//go:generate sh -c "cd ../avx2/_asm && go run . -out ../../avx512/kernels_amd64.s -stubs ../../avx512/stubs_amd64.go -pkg avx512"
