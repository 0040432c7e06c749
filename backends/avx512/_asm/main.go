// Command _asm generates the AVX-512 kernels of package avx512 with avo:
//
//	go run . -out ../kernels_amd64.s -stubs ../stubs_amd64.go -pkg avx512
//
// (go generate in backends/avx512, or make asm, runs exactly that). The kernels work on
// float32 in 16-lane ZMM registers; lengths that are not a multiple of 16 finish with
// one masked step (AVX-512 masked loads never touch the masked-off lanes' memory), so
// no kernel reads or writes outside the slices it is given.
package main

import (
	. "github.com/mmcloughlin/avo/build"
)

func main() {
	ConstraintExpr("amd64,!purego")
	constants()
	genGemm("gemm8x2", 8, 2, false, true)
	genGemm("gemm6x4", 6, 4, false, true)
	genGemm("gemm4x6", 4, 6, false, true)
	genGemm("gemm3x8", 3, 8, false, true)
	genGemm("gemm1x8", 1, 8, false, false)
	genGemm("gemv4s", 4, 1, true, false)
	genProbes()
	Generate()
}
