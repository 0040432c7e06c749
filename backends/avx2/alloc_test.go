//go:build amd64 && !purego

package avx2

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
)

// TestMatMulAllocatesNothing: the products on q8_0, q4_0 (with q8_0 or f32 activations),
// the k-quants (with q8_k or f32 activations), f16 and bf16 weights allocate nothing — decode steps (T = 1) and prefill batches (T =
// 37, 64) alike, on short rows and on rows whose working memory outgrows any sensible
// stack array (1056 and 4128 columns) — given a scratch of ScratchSize floats.
func TestMatMulAllocatesNothing(t *testing.T) {
	if !cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3, cpuid.F16C) {
		t.Skip("CPU lacks AVX2/FMA3/F16C")
	}
	const rows = 37
	var k Kernels
	for _, cols := range []int{288, 1056, 4128} {
		for _, T := range []int{1, 37, 64} {
			x := make([]float32, T*cols)
			for i := range x {
				x[i] = float32(i%13) - 6
			}
			xq := make([]byte, T*dtype.RowBytes(dtype.Q8_0, cols))
			kernels.QuantizeQ8(x, xq)
			dst := make([]float32, T*rows)
			sc := kernels.NewScratch(k, T, cols)
			for _, dt := range []dtype.DType{dtype.Q8_0, dtype.Q4_0, dtype.F16, dtype.BF16} {
				v := make([]float32, rows*cols)
				for i := range v {
					v[i] = float32(i%7) - 3
				}
				data, err := dtype.Quantize(dt, v, cols)
				if err != nil {
					t.Fatal(err)
				}
				w, err := kernels.NewMat(dt, data, rows, cols)
				if err != nil {
					t.Fatal(err)
				}
				name := fmt.Sprintf("%v, T=%d, %d columns", dt, T, cols)
				products := map[string]func(){"": func() { k.MatMul(dst, rows, x, T, w, nil, 3, rows, sc) }}
				if dt == dtype.Q8_0 || dt == dtype.Q4_0 {
					products[" (f32 activations)"] = products[""]
					products[""] = func() { k.MatMulQ8(dst, rows, xq, T, w, nil, 3, rows, sc) }
				}
				for what, f := range products {
					if n := testing.AllocsPerRun(5, f); n != 0 {
						t.Errorf("%s%s: %v allocations per product", name, what, n)
					}
				}
			}
		}
	}
	// The k-quants, on rows of whole super-blocks, with q8_k (the k-quant GEMM's forms from
	// T = 2) or f32 activations.
	r := rand.New(rand.NewPCG(3, 3))
	for _, cols := range []int{256, 1280, 4096} {
		for _, T := range []int{1, 37, 64} {
			x := randSlice(r, T*cols)
			xq := make([]byte, T*dtype.RowBytes(dtype.Q8_K, cols))
			kernels.QuantizeQ8K(x, xq)
			dst := make([]float32, T*rows)
			sc := kernels.NewScratch(k, T, cols)
			for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
				w, err := kernels.NewMat(dt, randKQuant(r, dt, rows*cols), rows, cols)
				if err != nil {
					t.Fatal(err)
				}
				for what, f := range map[string]func(){
					"q8_k activations": func() { k.MatMulQ8(dst, rows, xq, T, w, nil, 3, rows, sc) },
					"q8_k activations, the k-quant GEMM's VPMADDWD form": func() {
						defer func(v bool) { useVNNI = v }(useVNNI)
						useVNNI = false
						k.MatMulQ8(dst, rows, xq, T, w, nil, 3, rows, sc)
					},
					"f32 activations": func() { k.MatMul(dst, rows, x, T, w, nil, 3, rows, sc) },
				} {
					if n := testing.AllocsPerRun(5, f); n != 0 {
						t.Errorf("%v, T=%d, %d columns, %s: %v allocations per product", dt, T, cols, what, n)
					}
				}
			}
		}
	}
}

// TestElementwiseAllocatesNothing: ReLU and RoPENeoX allocate nothing, and ReLU gives
// the reference's bits, -0 and NaN included (the conformance suite checks RoPENeoX's
// tolerance).
func TestElementwiseAllocatesNothing(t *testing.T) {
	if !cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3, cpuid.F16C) {
		t.Skip("CPU lacks AVX2/FMA3/F16C")
	}
	var k Kernels
	r := rand.New(rand.NewPCG(4, 4))
	x := randSlice(r, 12*64)
	cos, sin := randSlice(r, 32), randSlice(r, 32)
	for name, f := range map[string]func(){
		"ReLU":     func() { k.ReLU(x) },
		"RoPENeoX": func() { k.RoPENeoX(x, 12, 64, cos, sin) },
	} {
		if n := testing.AllocsPerRun(5, f); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
	got, want := randSlice(r, 1001), make([]float32, 1001)
	got[3], got[4] = float32(math.Copysign(0, -1)), float32(math.NaN())
	copy(want, got)
	k.ReLU(got)
	kernels.Reference{}.ReLU(want)
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("ReLU: [%d] = %v, reference %v", i, got[i], want[i])
		}
	}
}
