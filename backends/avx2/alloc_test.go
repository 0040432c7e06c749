//go:build amd64 && !purego

package avx2

import (
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/kernels"
)

// TestQuantizedMatVecAllocatesNothing: a decode step's products on q8_0, q4_0 (with q8_0
// or f32 activations), f16 and bf16 weights allocate nothing (the engine promises an
// allocation-free decode step).
func TestQuantizedMatVecAllocatesNothing(t *testing.T) {
	if !cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3, cpuid.F16C) {
		t.Skip("CPU lacks AVX2/FMA3/F16C")
	}
	const rows, cols = 37, 288
	x := make([]float32, cols)
	for i := range x {
		x[i] = float32(i%13) - 6
	}
	xq := make([]byte, kernels.RowBytes(format.Q8_0, cols))
	kernels.QuantizeQ8(x, xq)
	dst := make([]float32, rows)
	sc := kernels.NewScratch(Kernels{}, 1, cols)
	for _, dt := range []format.DType{format.Q8_0, format.Q4_0, format.F16, format.BF16} {
		v := make([]float32, rows*cols)
		for i := range v {
			v[i] = float32(i%7) - 3
		}
		data, err := kernels.Quantize(dt, v, cols)
		if err != nil {
			t.Fatal(err)
		}
		w, err := kernels.NewMat(dt, data, rows, cols)
		if err != nil {
			t.Fatal(err)
		}
		var k Kernels
		n := testing.AllocsPerRun(20, func() {
			if dt == format.Q8_0 || dt == format.Q4_0 {
				k.MatMulQ8(dst, rows, xq, 1, w, nil, 3, rows, sc)
			} else {
				k.MatMul(dst, rows, x, 1, w, nil, 3, rows, sc)
			}
		})
		if n != 0 {
			t.Errorf("%v: %v allocations per product", dt, n)
		}
		if dt == format.Q8_0 || dt == format.Q4_0 { // and with exact f32 activations
			if n := testing.AllocsPerRun(20, func() { k.MatMul(dst, rows, x, 1, w, nil, 3, rows, sc) }); n != 0 {
				t.Errorf("%v with f32 activations: %v allocations per product", dt, n)
			}
		}
	}
}
