//go:build amd64 && !purego

package avx2

import (
	"math"
	"testing"

	"github.com/klauspost/cpuid/v2"
	"github.com/lmrun/lmrun/dtype"
)

// TestQuantQ8Stops: quantQ8 quantizes finite blocks itself and stops exactly before a
// block the reference must do (a NaN or an infinity, or an amax whose 1/d overflows) —
// so that the fast path really is the one taken (the conformance suite checks bytes).
func TestQuantQ8Stops(t *testing.T) {
	if !cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3, cpuid.F16C) {
		t.Skip("CPU lacks AVX2/FMA3/F16C")
	}
	const nb = 5
	x := make([]float32, nb*32)
	for i := range x {
		x[i] = float32(i%23) - 11.25
	}
	dst := make([]byte, nb*dtype.BlockQ8_0)
	if got := quantQ8(&dst[0], &x[0], nb); got != nb {
		t.Fatalf("finite blocks: %d of %d done", got, nb)
	}
	for _, c := range []struct {
		v     float32
		block int
	}{{float32(math.NaN()), 2}, {float32(math.Inf(-1)), 3}, {1e-40, 1}} {
		y := append([]float32(nil), x...)
		if c.v == 1e-40 { // the whole block tiny: d = amax/127 is subnormal, 1/d is +Inf
			for i := range 32 {
				y[c.block*32+i] = c.v
			}
		} else {
			y[c.block*32+17] = c.v
		}
		if got := quantQ8(&dst[0], &y[0], nb); got != c.block {
			t.Errorf("%v in block %d: stopped after %d blocks", c.v, c.block, got)
		}
	}
}
