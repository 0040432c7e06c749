//go:build amd64 && !purego

package avx2

import (
	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends/internal/qgemm"
)

// useVNNI is whether MatMulQ8 runs the AVX-VNNI GEMM (the VEX-encoded VPDPBUSD on YMM
// registers) for T ≥ minGemmT; tests clear it to check the other path too.
var useVNNI = cpuid.CPU.Supports(cpuid.AVXVNNI)

// useMadd is whether MatMulQ8 runs, on CPUs without AVX-VNNI, the GEMM with VPMADDUBSW
// (qgemmMQ8x*, qgemmMQ4x*) for T ≥ minGemmT; tests clear it to check the other path.
var useMadd = true

// minGemmT is the fewest tokens MatMulQ8 runs the GEMM for: at T = 1 the matrix–vector
// kernels stream the weights faster than the repack does; from T = 2 the GEMM is ahead
// (2048×768, one thread: T = 2 q8_0 1.2×, q4_0 2×; T = 8 2–4×).
const minGemmT = 2

// gemm is the 8-row × up to 4-token int8 GEMM (qgemmVx1..4, see package qgemm).
var gemm = qgemm.Kernels{
	Name: "avx2", Lanes: 8, Tokens: 4,
	RepackQ8: repackQ8, RepackQ4: repackQ4,
	RepackQ8Full: repackQ8Full, RepackQ4Full: repackQ4Full,
	Tile: tileV,
}

// gemmMadd is gemm for CPUs without AVX-VNNI: the same repack, VPMADDUBSW tiles.
var gemmMadd = qgemm.Kernels{
	Name: "avx2", Lanes: 8, Tokens: 4,
	RepackQ8: repackQ8, RepackQ4: repackQ4,
	RepackQ8Full: repackQ8Full, RepackQ4Full: repackQ4Full,
	Tile: tileMQ8, TileQ4: tileMQ4,
}

// tileMQ8 calls the VPMADDUBSW q8_0 tile for nt tokens (1 ≤ nt ≤ 4).
func tileMQ8(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int) {
	switch nt {
	case 1:
		qgemmMQ8x1(dst, ldd, w, x, xstride, nb)
	case 2:
		qgemmMQ8x2(dst, ldd, w, x, xstride, nb)
	case 3:
		qgemmMQ8x3(dst, ldd, w, x, xstride, nb)
	default:
		qgemmMQ8x4(dst, ldd, w, x, xstride, nb)
	}
}

// tileMQ4 calls the VPMADDUBSW q4_0 tile for nt tokens (1 ≤ nt ≤ 4).
func tileMQ4(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int) {
	switch nt {
	case 1:
		qgemmMQ4x1(dst, ldd, w, x, xstride, nb)
	case 2:
		qgemmMQ4x2(dst, ldd, w, x, xstride, nb)
	case 3:
		qgemmMQ4x3(dst, ldd, w, x, xstride, nb)
	default:
		qgemmMQ4x4(dst, ldd, w, x, xstride, nb)
	}
}

// tileV calls the tile kernel for nt tokens (1 ≤ nt ≤ 4).
func tileV(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int) {
	switch nt {
	case 1:
		qgemmVx1(dst, ldd, w, x, xstride, nb)
	case 2:
		qgemmVx2(dst, ldd, w, x, xstride, nb)
	case 3:
		qgemmVx3(dst, ldd, w, x, xstride, nb)
	default:
		qgemmVx4(dst, ldd, w, x, xstride, nb)
	}
}
