//go:build amd64 && !purego

package avx2

import (
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/dtype"
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
	xq := make([]byte, dtype.RowBytes(dtype.Q8_0, cols))
	kernels.QuantizeQ8(x, xq)
	dst := make([]float32, rows)
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
		var k Kernels
		n := testing.AllocsPerRun(20, func() {
			if dt == dtype.Q8_0 || dt == dtype.Q4_0 {
				k.MatMulQ8(dst, rows, xq, 1, w, nil, 3, rows)
			} else {
				k.MatMul(dst, rows, x, 1, w, nil, 3, rows)
			}
		})
		if n != 0 {
			t.Errorf("%v: %v allocations per product", dt, n)
		}
		if dt == dtype.Q8_0 || dt == dtype.Q4_0 { // and with exact f32 activations
			if n := testing.AllocsPerRun(20, func() { k.MatMul(dst, rows, x, 1, w, nil, 3, rows) }); n != 0 {
				t.Errorf("%v with f32 activations: %v allocations per product", dt, n)
			}
		}
	}
}
