//go:build amd64 && !purego

package avx512

import (
	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends/internal/qgemm"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// useVNNI is whether MatMulQ8 runs the AVX-512 VNNI GEMM for T ≥ gemmFrom (CPUs without
// AVX512_VNNI take avx2's kernels); tests clear it to check that path too.
var useVNNI = cpuid.CPU.Supports(cpuid.AVX512VNNI)

// gemm is the 16-row × up to 8-token int8 GEMM (qgemmZx1..8, see package qgemm), which
// takes pairs of whole groups 32 rows × up to 7 tokens at a time (qgemmZ2x1..7: each
// activation broadcast feeds two VPDPBUSD; 2048×768 at T = 128, one thread, 5–9%
// faster, stories110m pp128 q8_0 and q4_0 +7%).
var gemm = qgemmKernels{
	Name: "avx512", Layout: "avx512/qgemm16", Lanes: 16, Tokens: 8,
	RepackQ8: repackQ8, RepackQ4: repackQ4,
	RepackQ8Full: repackQ8Full, RepackQ4Full: repackQ4Full,
	Tile: tileZ, TileBias: tileZBias,
	Tile2: tile2Z, Tokens2: 7,
	PrepareSum: prepareSum, AddBias: add,
	MatVecQ8: qgemvQ8Z, MatVecQ4: qgemvQ4Z,
	MatVecNQ8: qgemvQ8ZxN, MatVecNQ4: qgemvQ4ZxN, VecTokens: 8,
}

// qgemmKernels are package qgemm's Kernels.
type qgemmKernels = qgemm.Kernels

// qgemvQ8ZxN calls qgemvQ8Zx<nt> for 2 ≤ nt ≤ 8 tokens.
func qgemvQ8ZxN(nt int, dst *float32, ldd int, w *byte, ldw, nb, groups, gap int, x *byte) {
	switch nt {
	case 2:
		qgemvQ8Zx2(dst, ldd, w, ldw, nb, groups, gap, x)
	case 3:
		qgemvQ8Zx3(dst, ldd, w, ldw, nb, groups, gap, x)
	case 4:
		qgemvQ8Zx4(dst, ldd, w, ldw, nb, groups, gap, x)
	case 5:
		qgemvQ8Zx5(dst, ldd, w, ldw, nb, groups, gap, x)
	case 6:
		qgemvQ8Zx6(dst, ldd, w, ldw, nb, groups, gap, x)
	case 7:
		qgemvQ8Zx7(dst, ldd, w, ldw, nb, groups, gap, x)
	default:
		qgemvQ8Zx8(dst, ldd, w, ldw, nb, groups, gap, x)
	}
}

// qgemvQ4ZxN calls qgemvQ4Zx<nt> for 2 ≤ nt ≤ 8 tokens.
func qgemvQ4ZxN(nt int, dst *float32, ldd int, w *byte, ldw, nb, groups, gap int, x *byte) {
	switch nt {
	case 2:
		qgemvQ4Zx2(dst, ldd, w, ldw, nb, groups, gap, x)
	case 3:
		qgemvQ4Zx3(dst, ldd, w, ldw, nb, groups, gap, x)
	case 4:
		qgemvQ4Zx4(dst, ldd, w, ldw, nb, groups, gap, x)
	case 5:
		qgemvQ4Zx5(dst, ldd, w, ldw, nb, groups, gap, x)
	case 6:
		qgemvQ4Zx6(dst, ldd, w, ldw, nb, groups, gap, x)
	case 7:
		qgemvQ4Zx7(dst, ldd, w, ldw, nb, groups, gap, x)
	default:
		qgemvQ4Zx8(dst, ldd, w, ldw, nb, groups, gap, x)
	}
}

// tileZ calls the tile kernel for nt tokens (1 ≤ nt ≤ 8).
func tileZ(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int) {
	tileZBias(nt, dst, ldd, w, x, xstride, nb, nil)
}

// tileZBias calls the tile kernel for nt tokens (1 ≤ nt ≤ 8), which adds the 16 rows'
// bias, unless it is nil.
func tileZBias(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int, bias *float32) {
	switch nt {
	case 1:
		qgemmZx1(dst, ldd, w, x, xstride, nb, bias)
	case 2:
		qgemmZx2(dst, ldd, w, x, xstride, nb, bias)
	case 3:
		qgemmZx3(dst, ldd, w, x, xstride, nb, bias)
	case 4:
		qgemmZx4(dst, ldd, w, x, xstride, nb, bias)
	case 5:
		qgemmZx5(dst, ldd, w, x, xstride, nb, bias)
	case 6:
		qgemmZx6(dst, ldd, w, x, xstride, nb, bias)
	case 7:
		qgemmZx7(dst, ldd, w, x, xstride, nb, bias)
	default:
		qgemmZx8(dst, ldd, w, x, xstride, nb, bias)
	}
}

// tile2Z calls the two-group tile kernel for nt tokens (1 ≤ nt ≤ 7): 32 rows, the
// second group's blocks nb·576 bytes after the first's; it adds the 32 rows' bias,
// unless it is nil.
func tile2Z(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int, pf *byte, pflen int, bias *float32) {
	switch nt {
	case 1:
		qgemmZ2x1(dst, ldd, w, x, xstride, nb, pf, pflen, bias)
	case 2:
		qgemmZ2x2(dst, ldd, w, x, xstride, nb, pf, pflen, bias)
	case 3:
		qgemmZ2x3(dst, ldd, w, x, xstride, nb, pf, pflen, bias)
	case 4:
		qgemmZ2x4(dst, ldd, w, x, xstride, nb, pf, pflen, bias)
	case 5:
		qgemmZ2x5(dst, ldd, w, x, xstride, nb, pf, pflen, bias)
	case 6:
		qgemmZ2x6(dst, ldd, w, x, xstride, nb, pf, pflen, bias)
	default:
		qgemmZ2x7(dst, ldd, w, x, xstride, nb, pf, pflen, bias)
	}
}

// useKGemm is whether MatMulQ8 runs the k-quant GEMM (q4_k, q5_k, q6_k) for T ≥ kgemmFrom: it
// needs AVX512_VNNI (VPDPWSSD). Tests clear it to check avx2's kernels too.
var useKGemm = cpuid.CPU.Supports(cpuid.AVX512VNNI)

// kgemm is the 16-row × up to 3-token k-quant GEMM (kgemmQ4KZx1..3 for q4_k and q5_k,
// kgemmQ6KZx1..3; see package qgemm).
var kgemm = qgemm.KKernels{
	Name: "avx512", Lanes: 16, Tokens: 3, GroupBytes: 9280, StateBytes: 576,
	Prep:      kprepZ,
	RepackQ4K: krepQ4KZ, RepackQ5K: krepQ5KZ, RepackQ6K: krepQ6KZ,
	TileQ4K: func(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int, st *float32) {
		switch nt {
		case 1:
			kgemmQ4KZx1(dst, ldd, w, x, xstride, nb, st)
		case 2:
			kgemmQ4KZx2(dst, ldd, w, x, xstride, nb, st)
		default:
			kgemmQ4KZx3(dst, ldd, w, x, xstride, nb, st)
		}
	},
	TileQ6K: func(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int, st *float32) {
		switch nt {
		case 1:
			kgemmQ6KZx1(dst, ldd, w, x, xstride, nb, st)
		case 2:
			kgemmQ6KZx2(dst, ldd, w, x, xstride, nb, st)
		default:
			kgemmQ6KZx3(dst, ldd, w, x, xstride, nb, st)
		}
	},
}

// kgemmFrom is the fewest tokens MatMulQ8 runs the k-quant GEMM for.
const kgemmFrom = 2

// gemmFrom returns the fewest tokens MatMulQ8 runs the GEMM driver for on weights of type
// dt: T = 1 for both, where it runs the matrix–vector kernels qgemvQ8Z and qgemvQ4Z on the
// weights as loaded (16 rows a gap apart, each a long prefetched stream; no repack),
// and for T = 2..8 their x2..x8 forms (the repacking GEMM's tiles take T ≥ 9, and the
// rows a range leaves over). Over stories110m's matrices (q4_0 with its q8_0 classifier,
// or all q8_0) from DRAM, one thread, alternating in one process (the machine shared,
// so the figures move together): T = 2 q8_0 20–26 GB/s against the repacking GEMM's
// 13.5–18.5, q4_0 13–32 against 9–21; T = 3 q8_0 29–34 against 20–22, q4_0 22–23
// against 17–18; T = 4 q8_0 13–15 against 8.3–8.4; T = 8 q8_0 17–18 against 10–13,
// q4_0 9–10 against 9–11 (even).
// One thread, T = 1, bytes of weights per second (the best of 200 runs, the machine
// shared): 8192×4096 (DRAM) q4_0 26–31 GB/s against the repacking GEMM's 19–23 and
// avx2's 20–23, q8_0 31–38 against avx2's 32–41; 2048×768 (L2) q4_0 36–56 against
// 22–28, q8_0 42–69 against avx2's 34–44.
func gemmFrom(dtype.DType) int {
	return 1
}

// packedFrom returns the fewest tokens MatMulQ8 runs the GEMM for on weights of type dt
// that Repack packed (no repack per product left to pay for): T = 1 too. One thread,
// T = 1, packed against as loaded: 2048×768 (L2/L3) q8_0 19–27 µs against avx2's
// matrix–vector kernel's 35–41, q4_0 19 against the GEMM with its repack's 33–34;
// 8192×4096 (DRAM) q8_0 0.96–1.12 ms against 1.04–1.33, q4_0 0.96–1.18 against
// 1.03–1.10 (the packed q4_0 quants take a byte each, twice the bytes to stream).
func packedFrom(dtype.DType) int {
	return 1
}

// Repack implements kernels.Repacker: with AVX512_VNNI it packs q8_0 matrices in the
// layout of the GEMM (groups of 16 rows, see package qgemm); without, as avx2 does. It
// declines q4_0: packed, its quants take a byte each, twice the bytes of the file, and
// a product streaming them from DRAM is slower than one repacking the nibbles as it
// goes (8192×4096, T = 8, one thread: 2.2–2.9 ms packed against 1.8–1.9; q8_0 1.6
// against 2.0–2.2).
func (k Kernels) Repack(w *kernels.Mat) bool {
	if !useVNNI {
		return k.Kernels.Repack(w)
	}
	return w.DType == dtype.Q8_0 && gemm.Pack(w)
}

// MatMulQ8 implements kernels.Q8Kernels: on q8_0 and q4_0 weights, with AVX512_VNNI,
// the int8 GEMM of package qgemm (16 or 32 rows × up to 8 tokens in ZMM registers, VPDPBUSD;
// at T = 1 its matrix–vector kernels); on q4_k, q5_k and q6_k weights for T ≥ kgemmFrom, with
// AVX512_VNNI, its k-quant GEMM (16 rows × up to 3 tokens, VPDPWSSD); both give the
// reference's results bit for bit. Otherwise avx2's MatMulQ8.
func (k Kernels) MatMulQ8(dst []float32, ld int, xq []byte, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if useKGemm && qgemm.SupportsK(w.DType) && T >= kgemmFrom {
		kgemm.MatMulQ8K(dst, ld, xq, T, w, bias, r0, r1, scratch)
		return
	}
	if useVNNI && qgemm.Supports(w.DType) && (T >= gemmFrom(w.DType) || gemm.Packed(w) != nil && T >= packedFrom(w.DType)) {
		if T >= amxFrom || T == 16 && gemm.Packed(w) != nil || T >= amxLoadedFrom && w.DType == dtype.Q8_0 && gemm.Packed(w) == nil {
			q8gemm().MatMulQ8(dst, ld, xq, T, w, bias, r0, r1, scratch)
			return
		}
		gemm.MatMulQ8(dst, ld, xq, T, w, bias, r0, r1, scratch)
		return
	}
	k.Kernels.MatMulQ8(dst, ld, xq, T, w, bias, r0, r1, scratch)
}
