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
// accumulators kept in memory between the parts, which changes no sum. Every other
// kernel (and MatMul on other weight types) is backends/avx2's.
package avx512

//go:generate sh -c "cd ../avx2/_asm && go run . -out ../../avx512/kernels_amd64.s -stubs ../../avx512/stubs_amd64.go -pkg avx512"
