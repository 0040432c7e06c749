// Command _asm generates the AVX2+FMA kernels of package avx2 with avo:
//
//	go run . -out ../kernels_amd64.s -stubs ../stubs_amd64.go -pkg avx2
//
// (go generate in backends/avx2, or make asm, runs exactly that). Every kernel works on
// float32 in 8-lane YMM registers; lengths that are not a multiple of 8 finish with one
// masked step (VMASKMOVPS never touches the masked-off lanes' memory), so no kernel reads
// or writes outside the slices it is given.
//
// Keep every kernel within 16 live vector registers: past that, avo's allocator hands
// out Y16–Y31, which are EVEX (AVX-512) encodings and SIGILL on an AVX2 machine.
// backends/avx2's TestAssemblyIsAVX2 fails if the output uses any.
package main

import (
	. "github.com/mmcloughlin/avo/build"
)

func main() {
	ConstraintExpr("amd64,!purego")
	constants()
	genMatMul()
	genDot()
	genAttention()
	genHalf()
	genQuant()
	genKQuant()
	genReductions()
	genElementwise()
	genRoPE()
	genProbes()
	Generate()
}
