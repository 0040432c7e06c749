//go:build amd64 && !purego

package avx512

import (
	"math/rand/v2"
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends/internal/qgemm/qgemmtest"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// TestMatMulQ8 checks MatMulQ8 on q8_0 and q4_0 weights against the reference, bit for
// bit, with the AVX-512 VNNI GEMM and without it (avx2's kernels, as on CPUs without
// AVX512_VNNI).
func TestMatMulQ8(t *testing.T) {
	need(t)
	t.Run("vnni", func(t *testing.T) {
		if !cpuid.CPU.Supports(cpuid.AVX512VNNI) {
			t.Skip("CPU lacks AVX512_VNNI")
		}
		qgemmtest.Check(t, Kernels{}, 1)
	})
	t.Run("no-vnni", func(t *testing.T) {
		defer func(v bool) { useVNNI = v }(useVNNI)
		useVNNI = false
		qgemmtest.Check(t, Kernels{}, 2)
	})
	t.Run("vnni-repacked", func(t *testing.T) {
		if !cpuid.CPU.Supports(cpuid.AVX512VNNI) {
			t.Skip("CPU lacks AVX512_VNNI")
		}
		qgemmtest.CheckRepacked(t, Kernels{}, gemm.Pack, 4)
	})
	t.Run("no-vnni-repacked", func(t *testing.T) {
		defer func(v bool) { useVNNI = v }(useVNNI)
		useVNNI = false
		qgemmtest.CheckRepacked(t, Kernels{}, Kernels{}.Repack, 5)
	})
}

// TestMatMulQ8AllocatesNothing: the GEMM keeps everything in the scratch.
func TestMatMulQ8AllocatesNothing(t *testing.T) {
	need(t)
	qgemmtest.CheckAllocs(t, Kernels{}, gemm.Pack)
}

// TestMatMulQ8K checks MatMulQ8 on q4_k, q5_k and q6_k weights against the reference, bit for
// bit, with the k-quant GEMM and without it (avx2's kernels).
func TestMatMulQ8K(t *testing.T) {
	need(t)
	t.Run("kgemm", func(t *testing.T) {
		if !cpuid.CPU.Supports(cpuid.AVX512VNNI) {
			t.Skip("CPU lacks AVX512_VNNI")
		}
		qgemmtest.CheckK(t, Kernels{}, 1)
	})
	t.Run("avx2", func(t *testing.T) {
		defer func(v bool) { useKGemm = v }(useKGemm)
		useKGemm = false
		qgemmtest.CheckK(t, Kernels{}, 2)
	})
}

// TestMatMulQ8KAllocatesNothing: the k-quant GEMM keeps everything in the scratch.
func TestMatMulQ8KAllocatesNothing(t *testing.T) {
	need(t)
	r := rand.New(rand.NewPCG(6, 6))
	const rows, cols, T = 37, 512, 13
	for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
		w, _ := kernels.NewMat(dt, qgemmtest.KBlocks(r, dt, rows*cols/dtype.QKBlock, false), rows, cols)
		xb := dtype.RowBytes(dtype.Q8_K, cols)
		xq := make([]byte, T*xb)
		for i := 0; i < T; i++ {
			kernels.QuantizeQ8K(randSlice(r, cols), xq[i*xb:(i+1)*xb])
		}
		dst, bias := make([]float32, T*rows), randSlice(r, rows)
		sc := kernels.NewScratch(Kernels{}, T, cols)
		if n := testing.AllocsPerRun(10, func() { Kernels{}.MatMulQ8(dst, rows, xq, T, w, bias, 3, rows, sc) }); n != 0 {
			t.Errorf("%v: MatMulQ8 allocates %v times per call", dt, n)
		}
	}
}
