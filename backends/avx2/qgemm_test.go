//go:build amd64 && !purego

package avx2

import (
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends/internal/qgemm/qgemmtest"
)

// TestMatMulQ8 checks MatMulQ8 on q8_0 and q4_0 weights against the reference, bit for
// bit, with the AVX-VNNI GEMM, the VPMADDUBSW GEMM of CPUs without AVX-VNNI, and the
// matrix–vector kernels per token.
func TestMatMulQ8(t *testing.T) {
	needAVX2(t)
	t.Run("avx-vnni", func(t *testing.T) {
		if !cpuid.CPU.Supports(cpuid.AVXVNNI) {
			t.Skip("CPU lacks AVX-VNNI")
		}
		qgemmtest.Check(t, Kernels{}, 1)
	})
	t.Run("maddubs", func(t *testing.T) {
		defer func(v bool) { useVNNI = v }(useVNNI)
		useVNNI = false
		qgemmtest.Check(t, Kernels{}, 2)
	})
	t.Run("mv", func(t *testing.T) {
		defer func(v, m bool) { useVNNI, useMadd = v, m }(useVNNI, useMadd)
		useVNNI, useMadd = false, false
		qgemmtest.Check(t, Kernels{}, 3)
	})
	t.Run("avx-vnni-repacked", func(t *testing.T) {
		if !cpuid.CPU.Supports(cpuid.AVXVNNI) {
			t.Skip("CPU lacks AVX-VNNI")
		}
		qgemmtest.CheckRepacked(t, Kernels{}, gemm.Pack, 4)
	})
	t.Run("maddubs-repacked", func(t *testing.T) {
		defer func(v bool) { useVNNI = v }(useVNNI)
		useVNNI = false
		qgemmtest.CheckRepacked(t, Kernels{}, gemmMadd.Pack, 5)
	})
}

// TestMatMulQ8GemmAllocatesNothing: the GEMM keeps everything in the scratch, with
// AVX-VNNI (when the CPU has it) and with VPMADDUBSW.
func TestMatMulQ8GemmAllocatesNothing(t *testing.T) {
	needAVX2(t)
	if cpuid.CPU.Supports(cpuid.AVXVNNI) {
		qgemmtest.CheckAllocs(t, Kernels{}, gemm.Pack)
	}
	defer func(v bool) { useVNNI = v }(useVNNI)
	useVNNI = false
	qgemmtest.CheckAllocs(t, Kernels{}, gemmMadd.Pack)
}

// TestMatMulQ8K checks MatMulQ8 on q4_k, q5_k and q6_k weights against the reference,
// bit for bit, with the k-quant GEMM's AVX-VNNI tiles, its VPMADDWD tiles of CPUs
// without AVX-VNNI, and the matrix–vector kernels per token.
func TestMatMulQ8K(t *testing.T) {
	needAVX2(t)
	t.Run("avx-vnni", func(t *testing.T) {
		if !cpuid.CPU.Supports(cpuid.AVXVNNI) {
			t.Skip("CPU lacks AVX-VNNI")
		}
		qgemmtest.CheckK(t, Kernels{}, 1)
	})
	t.Run("madd", func(t *testing.T) {
		defer func(v bool) { useVNNI = v }(useVNNI)
		useVNNI = false
		qgemmtest.CheckK(t, Kernels{}, 2)
	})
	t.Run("mv", func(t *testing.T) {
		defer func(v, m bool) { useVNNI, useMadd = v, m }(useVNNI, useMadd)
		useVNNI, useMadd = false, false
		qgemmtest.CheckK(t, Kernels{}, 3)
	})
}
