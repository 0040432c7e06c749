//go:build amd64 && !purego

package avx2

import (
	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends/internal/qgemm"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// useVNNI is whether MatMulQ8 runs the AVX-VNNI GEMM (the VEX-encoded VPDPBUSD on YMM
// registers) for T ≥ gemmFrom; tests clear it to check the other path too.
var useVNNI = cpuid.CPU.Supports(cpuid.AVXVNNI)

// useMadd is whether MatMulQ8 runs, on CPUs without AVX-VNNI, the GEMM with VPMADDUBSW
// (qgemmMQ8x*, qgemmMQ4x*) for T ≥ gemmFrom; tests clear it to check the other path.
var useMadd = true

// gemmFrom returns the fewest tokens MatMulQ8 runs the GEMM for on weights of type dt.
// At T = 1 the matrix–vector kernels stream the weights faster than the repack does.
// q4_0 gains from T = 2 (2048×768, one thread: 2×); q8_0 from T = 3 (at T = 2 the
// matrix–vector kernels, which reuse each 16-row chunk from L1 for the second token,
// took 80 µs against 89 µs with AVX-VNNI and 113 µs with VPMADDUBSW; at T = 3 173 µs
// against 96 and 128; T = 32 1.57 ms against 0.52 and 0.87).
func gemmFrom(dt dtype.DType) int {
	if dt == dtype.Q4_0 {
		return 2
	}
	return 3
}

// packedFrom returns the fewest tokens MatMulQ8 runs the GEMM for on weights of type dt
// that Repack packed (no repack per product left to pay for). One thread, T = 1, packed
// (AVX-VNNI) against the matrix–vector kernels: q4_0 from T = 1, 2048×768 (L2/L3)
// 21–23 µs against 46–49, 8192×4096 (DRAM) 1.13–1.33 ms against 1.37–1.51; q8_0 from
// T = 2: 2048×768 21–22 µs against 39–42 but 8192×4096 1.12–1.38 ms against
// 1.06–1.24, and a decoded token streams most of its weights from DRAM.
func packedFrom(dt dtype.DType) int {
	if dt == dtype.Q4_0 {
		return 1
	}
	return 2
}

// Repack implements kernels.Repacker: it packs q8_0 matrices in the layout of the GEMM
// MatMulQ8 runs (groups of 8 rows, see package qgemm; gemm's with AVX-VNNI, else
// gemmMadd's), if it runs one. It declines q4_0, whose
// packed quants take twice the bytes of the file (see avx512's Repack).
func (Kernels) Repack(w *kernels.Mat) bool {
	switch {
	case w.DType != dtype.Q8_0:
		return false
	case useVNNI:
		return gemm.Pack(w)
	case useMadd:
		return gemmMadd.Pack(w)
	}
	return false
}

// gemm is the 8-row × up to 4-token int8 GEMM (qgemmVx1..4, see package qgemm).
var gemm = qgemm.Kernels{
	Name: "avx2", Layout: "avx2/qgemm8", Lanes: 8, Tokens: 4,
	RepackQ8: repackQ8, RepackQ4: repackQ4,
	RepackQ8Full: repackQ8Full, RepackQ4Full: repackQ4Full,
	Tile: tileV, AddBias: add, PrepareSum: prepareSum,
}

// gemmMadd is gemm for CPUs without AVX-VNNI: VPMADDUBSW tiles of up to 6 tokens (spread
// evenly over a group's calls), the
// same repack of q4_0, q8_0's with its quants signed (repackQ8S; its own layout).
var gemmMadd = qgemm.Kernels{
	Name: "avx2", Layout: "avx2/qgemm8s", Lanes: 8, Tokens: 6,
	RepackQ8: repackQ8S, RepackQ4: repackQ4,
	RepackQ8Full: repackQ8SFull, RepackQ4Full: repackQ4Full,
	Tile: tileMQ8, TileBias: tileMQ8Bias, TileQ4: tileMQ4, Balance: true, PrefetchQ8: prefetchLines, NoSumQ8: true, PrepareQ8: prepareQ8, PrepareSum: prepareSum, AddBias: add,
	// The rows repacked on every product keep their quants' absolute values too, and
	// their signs as VPSHUFB indices into the activations' tables of ±x (prepareQ8T, a
	// cache line a block and token, the scales apart); the tiles sweep the tokens over
	// up to 24 blocks of them at a time (13 KiB, and a 6-token call's activations 9 KiB:
	// within L1 with room to spare, Zen 1's 32 KiB too). One thread, T = 128, 8 rounds
	// in one run, medians, against 64 (34 KiB; 3072-wide rows' 52 KiB at once gained
	// nothing): 768×2048 3.25 → 3.15 ms, 768×3072 4.83 → 4.72 (32: 3.15, 4.80; 16 on
	// 768×3072 2% faster, but on 768-wide rows, then in two chunks, 3% slower).
	ScratchQ8: &qgemm.ScratchLayout{BlockBytes: 544, Chunk: 24, Repack: repackQ8A, RepackFull: repackQ8AFull, Sweep: sweepMQ8A,
		XBytes: 64, Prepare: prepareQ8T},
}

// sweepMQ8A calls the VPMADDUBSW q8_0 tile on groups repacked by repackQ8A for nt tokens
// (1 ≤ nt ≤ 6), n times (qgemm.ScratchLayout.Sweep).
func sweepMQ8A(n, nt int, dst *float32, ldd int, w, x, xd *byte, xstride, nb int, bias *float32, pf *byte, pflen, pfstep, from int) {
	switch nt {
	case 1:
		qgemmMQ8Ax1(n, dst, ldd, w, x, xd, xstride, nb, bias, pf, pflen, pfstep, from)
	case 2:
		qgemmMQ8Ax2(n, dst, ldd, w, x, xd, xstride, nb, bias, pf, pflen, pfstep, from)
	case 3:
		qgemmMQ8Ax3(n, dst, ldd, w, x, xd, xstride, nb, bias, pf, pflen, pfstep, from)
	case 4:
		qgemmMQ8Ax4(n, dst, ldd, w, x, xd, xstride, nb, bias, pf, pflen, pfstep, from)
	case 5:
		qgemmMQ8Ax5(n, dst, ldd, w, x, xd, xstride, nb, bias, pf, pflen, pfstep, from)
	default:
		qgemmMQ8Ax6(n, dst, ldd, w, x, xd, xstride, nb, bias, pf, pflen, pfstep, from)
	}
}

// tileMQ8 calls the VPMADDUBSW q8_0 tile for nt tokens (1 ≤ nt ≤ 6).
func tileMQ8(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int) {
	tileMQ8Bias(nt, dst, ldd, w, x, xstride, nb, nil)
}

// tileMQ8Bias calls the VPMADDUBSW q8_0 tile for nt tokens (1 ≤ nt ≤ 6), which adds the
// 8 rows' bias, unless it is nil.
func tileMQ8Bias(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int, bias *float32) {
	switch nt {
	case 1:
		qgemmMQ8x1(dst, ldd, w, x, xstride, nb, bias)
	case 2:
		qgemmMQ8x2(dst, ldd, w, x, xstride, nb, bias)
	case 3:
		qgemmMQ8x3(dst, ldd, w, x, xstride, nb, bias)
	case 4:
		qgemmMQ8x4(dst, ldd, w, x, xstride, nb, bias)
	case 5:
		qgemmMQ8x5(dst, ldd, w, x, xstride, nb, bias)
	default:
		qgemmMQ8x6(dst, ldd, w, x, xstride, nb, bias)
	}
}

// tileMQ4 calls the VPMADDUBSW q4_0 tile for nt tokens (1 ≤ nt ≤ 6).
func tileMQ4(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int) {
	switch nt {
	case 1:
		qgemmMQ4x1(dst, ldd, w, x, xstride, nb)
	case 2:
		qgemmMQ4x2(dst, ldd, w, x, xstride, nb)
	case 3:
		qgemmMQ4x3(dst, ldd, w, x, xstride, nb)
	case 4:
		qgemmMQ4x4(dst, ldd, w, x, xstride, nb)
	case 5:
		qgemmMQ4x5(dst, ldd, w, x, xstride, nb)
	default:
		qgemmMQ4x6(dst, ldd, w, x, xstride, nb)
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
