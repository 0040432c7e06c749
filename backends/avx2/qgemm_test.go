//go:build amd64 && !purego

package avx2

import (
	"math/rand/v2"
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends/internal/qgemm/qgemmtest"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
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

// TestMatMulQ8GemmAllocatesNothing: the GEMM keeps everything in the scratch.
func TestMatMulQ8GemmAllocatesNothing(t *testing.T) {
	needAVX2(t)
	r := rand.New(rand.NewPCG(5, 5))
	const rows, cols, T = 37, 256, 13
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		data, _ := dtype.Quantize(dt, randSlice(r, rows*cols), cols)
		w, _ := kernels.NewMat(dt, data, rows, cols)
		xb := dtype.RowBytes(dtype.Q8_0, cols)
		xq := make([]byte, T*xb)
		for i := 0; i < T; i++ {
			kernels.QuantizeQ8(randSlice(r, cols), xq[i*xb:(i+1)*xb])
		}
		dst, bias := make([]float32, T*rows), randSlice(r, rows)
		sc := kernels.NewScratch(Kernels{}, T, cols)
		if n := testing.AllocsPerRun(10, func() { Kernels{}.MatMulQ8(dst, rows, xq, T, w, bias, 3, rows, sc) }); n != 0 {
			t.Errorf("%v: MatMulQ8 allocates %v times per call", dt, n)
		}
		if (Kernels{}).Repack(w) != (dt == dtype.Q8_0) || !gemm.Pack(w) {
			t.Fatalf("%v: not repacked", dt)
		}
		for _, T := range []int{1, T} {
			if n := testing.AllocsPerRun(10, func() { Kernels{}.MatMulQ8(dst, rows, xq, T, w, bias, 3, rows, sc) }); n != 0 {
				t.Errorf("%v repacked, T=%d: MatMulQ8 allocates %v times per call", dt, T, n)
			}
		}
	}
}
