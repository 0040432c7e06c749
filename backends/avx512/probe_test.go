//go:build amd64 && !purego

package avx512

import (
	"testing"
	"time"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends/avx2"
)

// TestInt8Probe checks the op count of the int8 probe, with AVX512_VNNI where the CPU
// has it and avx2's otherwise, and that its rate is what the loop does: as many
// VPDPBUSD as the FMA probe has FMAs, each 4 times the work of an FMA's lane (2 times
// for avx2's VPMADDUBSW step), so between half and 8 times its flops.
func TestInt8Probe(t *testing.T) {
	need(t)
	k := Kernels{}
	paths := map[string]bool{"avx2": false}
	if cpuid.CPU.Supports(cpuid.AVX512VNNI) {
		paths["avx512-vnni"] = true
	}
	for name, vnni := range paths {
		t.Run(name, func(t *testing.T) {
			defer func(v bool) { useVNNI = v }(useVNNI)
			useVNNI = vnni
			per := int64(16 * 16 * 4 * 2)
			if !vnni {
				per = avx2.Kernels{}.Int8Probe(1)
			}
			for _, iters := range []int{-1, 0} {
				if n := k.Int8Probe(iters); n != 0 {
					t.Errorf("Int8Probe(%d) = %d, want 0", iters, n)
				}
			}
			for _, iters := range []int{1, 3, 1000} {
				if n, want := k.Int8Probe(iters), int64(iters)*per; n != want {
					t.Errorf("Int8Probe(%d) = %d ops, want %d", iters, n, want)
				}
			}
			iters := 1 << 20
			if testing.Short() {
				iters = 1 << 17
			}
			var flops, ops float64
			for r := 0; r < 5; r++ {
				t0 := time.Now()
				n := k.FMAProbe(iters)
				flops = max(flops, float64(n)/time.Since(t0).Seconds())
				t0 = time.Now()
				n = k.Int8Probe(iters)
				ops = max(ops, float64(n)/time.Since(t0).Seconds())
			}
			// Without VNNI the int8 loop is avx2's, 8 lanes against the FMA probe's 16.
			lo, hi := 0.5, 8.0
			if !vnni {
				lo, hi = 0.25, 4
			}
			t.Logf("FMA %.1f GFLOP/s, int8 %.1f GOP/s (%.2f×)", flops/1e9, ops/1e9, ops/flops)
			if !(ops > lo*flops && ops < hi*flops) {
				t.Errorf("int8 probe %.3g ops/s against the FMA probe's %.3g flops/s: not the loop it claims", ops, flops)
			}
		})
	}
}
