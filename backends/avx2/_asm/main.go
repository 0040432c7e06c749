// Command _asm generates the kernels of packages avx2 and avx512 with avo, one package
// per run, chosen by -pkg:
//
//	go run . -out ../kernels_amd64.s -stubs ../stubs_amd64.go -pkg avx2
//	go run . -out ../../avx512/kernels_amd64.s -stubs ../../avx512/stubs_amd64.go -pkg avx512
//
// (go generate in backends/avx2 and backends/avx512, or make asm, runs exactly that).
// One generator serves both so that they share its helpers and the order of the sums:
// the AVX-512 GEMM (zmm.go) keeps the 16-lane order of the AVX2 kernels, so the two
// backends' f32 products are equal bit for bit.
//
// The AVX2 kernels: Every kernel works on
// float32 in 8-lane YMM registers; lengths that are not a multiple of 8 finish with one
// masked step (VMASKMOVPS never touches the masked-off lanes' memory), so no kernel reads
// or writes outside the slices it is given.
//
// Keep every kernel within 16 live vector registers: past that, avo's allocator hands
// out Y16–Y31, which are EVEX (AVX-512) encodings and SIGILL on an AVX2 machine.
// backends/avx2's TestAssemblyIsAVX2 fails if the output uses any.
//
// qgemm.go, the int8 GEMM of q8_0/q4_0 weights, is generated for both packages (ZMM
// with AVX512_VNNI; YMM with AVX-VNNI or VPMADDUBSW), and so is the k-quant GEMM
// (kgemm.go in ZMM with AVX512_VNNI; kgemm_ymm.go in YMM with AVX-VNNI or VPMADDWD).
// avo v0.5.0 knows neither VPDPBUSD nor VPDPWSSD, so they are emitted as raw
// instructions; their VEX forms, which the Go assembler cannot encode, are rewritten
// into bytes once the registers are allocated (vexPass), and backends/avx2's
// TestVEXEncodings disassembles them.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"

	. "github.com/mmcloughlin/avo/build"
)

func main() {
	ConstraintExpr("amd64,!purego")
	if slices.Contains(os.Args, "avx512") { // -pkg avx512
		constantsZMM()
		genGemmZMM("gemm8x2", 8, 2, false, true, false)
		genGemmZMM("gemm6x4", 6, 4, false, true, false)
		genGemmZMM("gemm4x6", 4, 6, false, true, false)
		genGemmZMM("gemm3x8", 3, 8, false, true, false)
		genGemmZMMNext("gemm3x8p", 3, 8)
		genGemmZMM("gemm4x6p", 4, 6, false, true, true)
		// Without prefetching, for the rows a T ≥ 9 product reads from L2 again.
		genGemmZMM("gemm4x6n", 4, 6, false, false, false)
		genGemmZMM("gemm4x6pn", 4, 6, false, false, true)
		genGemmZMMSrcPF("gemm4x6nf", 4, 6, false)
		genGemmZMMSrcPF("gemm4x6pnf", 4, 6, true)
		genGemmZMM("gemm1x8", 1, 8, false, false, false)
		genGemmZMM("gemv4s", 4, 1, true, true, false)
		genProbesZMM()
		genI8ProbeZMM()
		genQGemm(qgemmZMM)
		genQGemmAMX()
		genQGemmAMXW()
		genAMXGatherQ8()
		genPrepareSum()
		for nt := 1; nt <= 8; nt++ {
			genQGemv(false, nt)
			genQGemv(true, nt)
		}
		genKGemm()
		genHalfZMM()
		genBF16ZMM()
		genGemmBF16Probe()
		genStreamZMM()
		Generate()
		return
	}
	constants()
	genMatMul()
	genDot(ymmW)
	genAttention(ymmW, false)
	genHalf()
	genQuant()
	genKQuant()
	genReductions(ymmW)
	genElementwise(ymmW)
	genRoPE(ymmW)
	genRoPENeoX(ymmW)
	genProbes()
	genI8ProbesVEX()
	genQGemm(qgemmVEX)
	genQGemmMaddQ8()
	genPrepareSum()
	genQGemmTiles(qgemmMaddQ4)
	genKGemmYMM()
	Generate()
	// The AVX-VNNI instructions the Go assembler cannot encode, as bytes.
	if err := vexPass(flag.Lookup("out").Value.String()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
