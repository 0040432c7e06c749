//go:build amd64 && !purego

package avx2

import (
	"fmt"
	"unsafe"

	"github.com/lmrun/lmrun/backends/internal/qgemm"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// The sizes of the YMM k-quant GEMM (kvBytes and kvState of the generator): one
// repacked super-block of a group of 4 rows, a tile's state per token.
const (
	kvGroupBytes = 2336
	kvStateBytes = 160
)

// kgemm is the 4-row × up to 3-token k-quant GEMM in YMM registers with AVX-VNNI (the
// VEX-encoded VPDPWSSD; kgemmQ4KVx1..3 for q4_k and q5_k, kgemmQ6KVx1..3; see package
// qgemm and backends/avx2/_asm/kgemm_ymm.go).
var kgemm = qgemm.KKernels{
	Name: "avx2", Lanes: 4, Tokens: 3, GroupBytes: kvGroupBytes, StateBytes: kvStateBytes,
	Prep:      kprepV,
	RepackQ4K: krepQ4KV, RepackQ5K: krepQ5KV, RepackQ6K: krepQ6KV,
	TileQ4K: func(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int, st *float32) {
		switch nt {
		case 1:
			kgemmQ4KVx1(dst, ldd, w, x, xstride, nb, st)
		case 2:
			kgemmQ4KVx2(dst, ldd, w, x, xstride, nb, st)
		default:
			kgemmQ4KVx3(dst, ldd, w, x, xstride, nb, st)
		}
	},
	TileQ6K: func(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int, st *float32) {
		switch nt {
		case 1:
			kgemmQ6KVx1(dst, ldd, w, x, xstride, nb, st)
		case 2:
			kgemmQ6KVx2(dst, ldd, w, x, xstride, nb, st)
		default:
			kgemmQ6KVx3(dst, ldd, w, x, xstride, nb, st)
		}
	},
}

// kgemmMadd is kgemm for CPUs without AVX-VNNI: the same repack, tiles with VPMADDWD and
// VPADDD (kgemmQ4KMx1..3, kgemmQ6KMx1..3).
var kgemmMadd = qgemm.KKernels{
	Name: "avx2", Lanes: 4, Tokens: 3, GroupBytes: kvGroupBytes, StateBytes: kvStateBytes,
	Prep:      kprepV,
	RepackQ4K: krepQ4KV, RepackQ5K: krepQ5KV, RepackQ6K: krepQ6KV,
	TileQ4K: func(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int, st *float32) {
		switch nt {
		case 1:
			kgemmQ4KMx1(dst, ldd, w, x, xstride, nb, st)
		case 2:
			kgemmQ4KMx2(dst, ldd, w, x, xstride, nb, st)
		default:
			kgemmQ4KMx3(dst, ldd, w, x, xstride, nb, st)
		}
	},
	TileQ6K: func(nt int, dst *float32, ldd int, w, x *byte, xstride, nb int, st *float32) {
		switch nt {
		case 1:
			kgemmQ6KMx1(dst, ldd, w, x, xstride, nb, st)
		case 2:
			kgemmQ6KMx2(dst, ldd, w, x, xstride, nb, st)
		default:
			kgemmQ6KMx3(dst, ldd, w, x, xstride, nb, st)
		}
	},
}

// kgemmFrom is the fewest tokens MatMulQ8 runs the k-quant GEMM for. At T = 1 the
// matrix–vector kernels, which need no repack, are ahead. One thread, 2048×2048, the
// fastest of 15 runs on a busy machine, matrix–vector kernels against the GEMM with
// AVX-VNNI and with VPMADDWD: T = 1 q4_k 143 µs against 222 and 288, q5_k 141 against
// 188 and 185, q6_k 186 against 274 and 278; T = 2 (two runs) q4_k 231–233 against
// 201–207 and 207–208, q5_k 289–297 against 226–238 and 232–238, q6_k 281–354 against
// 237–309 and 245–353; T = 3 q4_k 336 against 230 and 258, q5_k 433 against 268 and
// 291, q6_k 535 against 375 and 370. From T = 8 the GEMM is about 2× faster, at
// T = 128 about 3× (see BenchmarkMatMulQ8K).
const kgemmFrom = 2

// xkBlock is the size in bytes of one q8_k super-block as prepQ8K prepares it for the
// k-quant kernels (see backends/avx2/_asm/kquant.go): its quants permuted, 32·(pair
// sums) for q6_k, pair sums of its bsums for the mins of q4_k and q5_k, and its scale.
const xkBlock = 544

// xkBlockFloats is xkBlock in float32s of scratch.
const xkBlockFloats = xkBlock / 4

// matMulQ8K is MatMulQ8 for k-quant weights (q8_k activations). For T ≥ kgemmFrom it
// runs the k-quant GEMM of package qgemm (kgemm with AVX-VNNI, else
// kgemmMadd; useVNNI and useMadd choose, as for q8_0 and q4_0). Otherwise each token's
// activations are prepared once per call (prepQ8K) in scratch, then mvQ4_K, mvQ5_K or
// mvQ6_K take the rows one at a time — for T > 1, qChunk rows with every token before the
// next rows, so the rows stay in cache. The results are the reference's bit for bit,
// whatever the row range.
func (k Kernels) matMulQ8K(dst []float32, ld int, xq []byte, T int, w *kernels.Mat, bias []float32, r0, r1 int, scratch kernels.Scratch) {
	if T >= kgemmFrom && useVNNI {
		kgemm.MatMulQ8K(dst, ld, xq, T, w, bias, r0, r1, scratch)
		return
	}
	if T >= kgemmFrom && useMadd {
		kgemmMadd.MatMulQ8K(dst, ld, xq, T, w, bias, r0, r1, scratch)
		return
	}
	if r0 >= r1 || T <= 0 {
		return
	}
	n := w.Cols
	rb := dtype.RowBytes(w.DType, n)
	xb := dtype.RowBytes(dtype.Q8_K, n)
	if n <= 0 || n%dtype.QKBlock != 0 || r0 < 0 || r1 > w.Rows || len(w.Data) < w.Rows*rb || ld < r1 ||
		len(xq) < T*xb || len(dst) < (T-1)*ld+r1 || (bias != nil && len(bias) < r1) {
		panic(fmt.Sprintf("avx2: MatMulQ8 %v rows [%d,%d) of %d×%d, T=%d, ld=%d: len(w)=%d len(xq)=%d len(dst)=%d len(bias)=%d",
			w.DType, r0, r1, w.Rows, n, T, ld, len(w.Data), len(xq), len(dst), len(bias)))
	}
	nb := n / dtype.QKBlock
	xs := scratchFor("MatMulQ8", scratch, T*nb*xkBlockFloats)
	xp := unsafe.Slice((*byte)(unsafe.Pointer(&xs[0])), T*nb*xkBlock)
	for t := 0; t < T; t++ {
		prepQ8K(&xp[t*nb*xkBlock], &xq[t*xb], nb)
	}
	if T == 1 {
		kRows(w.DType, dst[r0:], xp, w.Data[r0*rb:], rb, nb, r1-r0)
	} else {
		for a := r0; a < r1; a += qChunk {
			b := min(a+qChunk, r1)
			for t := 0; t < T; t++ {
				kRows(w.DType, dst[t*ld+a:], xp[t*nb*xkBlock:], w.Data[a*rb:], rb, nb, b-a)
			}
		}
	}
	if bias != nil {
		for t := 0; t < T; t++ {
			d := dst[t*ld+r0 : t*ld+r1]
			for i, b := range bias[r0:r1] {
				d[i] += b
			}
		}
	}
}

// QuantizeQ8K implements kernels.Q8Kernels: quantQ8K's super-blocks, byte for byte the
// reference's, with the reference itself for the ones quantQ8K leaves (a non-finite
// element, all zeros, or a max so small that −127/max overflows).
func (Kernels) QuantizeQ8K(x []float32, dst []byte) {
	kernels.QuantizeQ8KWith("avx2", x, dst, quantQ8K)
}

// kRows computes dst[r] for r < rows of the k-quant rows at w (ldw bytes apart, nb
// super-blocks each) times the prepared activations xp.
func kRows(dt dtype.DType, dst []float32, xp, w []byte, ldw, nb, rows int) {
	switch dt {
	case dtype.Q4_K:
		mvQ4_K(&dst[0], &xp[0], &w[0], ldw, nb, rows)
	case dtype.Q5_K:
		mvQ5_K(&dst[0], &xp[0], &w[0], ldw, nb, rows)
	default:
		mvQ6_K(&dst[0], &xp[0], &w[0], ldw, nb, rows)
	}
}
