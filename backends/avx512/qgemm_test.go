//go:build amd64 && !purego

package avx512

import (
	"math"
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

// TestMatVecQ8 checks the kernels of one to eight tokens (qgemvQ8Z, qgemvQ4Z and their
// x2..x8 forms; T = 9 the GEMM's tiles: 16 streams of rows a gap apart) against the reference, bit for bit, on
// taller matrices than TestMatMulQ8's (gaps up to 62 rows) and row ranges that leave a
// last, overlapping group.
func TestMatVecQ8(t *testing.T) {
	need(t)
	if !cpuid.CPU.Supports(cpuid.AVX512VNNI) {
		t.Skip("CPU lacks AVX512_VNNI")
	}
	r := rand.New(rand.NewPCG(8, 8))
	var ref kernels.Reference
	for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0} {
		for _, nb := range []int{1, 3, 24} {
			n := nb * dtype.QBlock
			for _, rows := range []int{16, 47, 100, 257, 1000} {
				w, err := kernels.NewMat(dt, qgemmtest.Blocks(r, dt, rows*nb, r.IntN(3) == 0, false), rows, n)
				if err != nil {
					t.Fatal(err)
				}
				bias := randSlice(r, rows)
				for T := 1; T <= 9; T++ {
					xq := qgemmtest.Blocks(r, dtype.Q8_0, T*nb, false, true)
					sc := kernels.NewScratch(Kernels{}, T, n)
					ld := rows + 5
					for _, rr := range [][2]int{{0, rows}, {3, rows - 5}, {rows / 2, rows}} {
						if rr[1]-rr[0] < 16 {
							continue
						}
						for _, b := range [][]float32{nil, bias} {
							want, got := make([]float32, T*ld), make([]float32, T*ld)
							for i := range want {
								want[i], got[i] = float32(i), float32(i)
							}
							ref.MatMulQ8(want, ld, xq, T, w, b, rr[0], rr[1], nil)
							Kernels{}.MatMulQ8(got, ld, xq, T, w, b, rr[0], rr[1], sc)
							for i := range want {
								if math.Float32bits(want[i]) != math.Float32bits(got[i]) && (want[i] == want[i] || got[i] == got[i]) {
									t.Fatalf("%v %d×%d T=%d rows [%d,%d) bias=%v: dst[%d] (token %d, row %d) = %v, reference %v",
										dt, rows, n, T, rr[0], rr[1], b != nil, i, i/ld, i%ld, got[i], want[i])
								}
							}
						}
					}
				}
			}
		}
	}
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
