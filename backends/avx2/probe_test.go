//go:build amd64 && !purego

package avx2

import (
	"testing"
	"time"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/kernels"
)

// probeRates returns the best rates, in operations per second, of an FMA probe and an
// int8 probe timed in turn (so that load on a shared machine hits both alike).
func probeRates(t *testing.T, fma kernels.PeakProber, i8 kernels.Int8Prober) (flops, ops float64) {
	t.Helper()
	iters := 1 << 20
	if testing.Short() {
		iters = 1 << 17
	}
	for r := 0; r < 5; r++ {
		t0 := time.Now()
		n := fma.FMAProbe(iters)
		flops = max(flops, float64(n)/time.Since(t0).Seconds())
		t0 = time.Now()
		n = i8.Int8Probe(iters)
		ops = max(ops, float64(n)/time.Since(t0).Seconds())
	}
	return flops, ops
}

// TestInt8Probe checks the op count of both int8 probes (AVX-VNNI where the CPU has
// it, VPMADDUBSW always) and that their rate is what the loops do: the same number of
// instructions as the FMA probe, each 4 times its lanes' work with VPDPBUSD (2 times
// with the VPMADDUBSW step), so between half and 8 times its flops on any x86 core.
func TestInt8Probe(t *testing.T) {
	needAVX2(t)
	k := Kernels{}
	paths := map[string]bool{"vpmaddubsw": false}
	if cpuid.CPU.Supports(cpuid.AVXVNNI) {
		paths["avx-vnni"] = true
	}
	for name, vnni := range paths {
		t.Run(name, func(t *testing.T) {
			defer func(v bool) { useVNNI = v }(useVNNI)
			useVNNI = vnni
			for _, iters := range []int{-1, 0} {
				if n := k.Int8Probe(iters); n != 0 {
					t.Errorf("Int8Probe(%d) = %d, want 0", iters, n)
				}
			}
			for _, iters := range []int{1, 3, 1000} {
				if n, want := k.Int8Probe(iters), int64(iters)*12*8*4*2; n != want {
					t.Errorf("Int8Probe(%d) = %d ops, want %d", iters, n, want)
				}
			}
			flops, ops := probeRates(t, k, k)
			t.Logf("FMA %.1f GFLOP/s, int8 %.1f GOP/s (%.2f×)", flops/1e9, ops/1e9, ops/flops)
			if !(ops > 0.5*flops && ops < 8*flops) {
				t.Errorf("int8 probe %.3g ops/s against the FMA probe's %.3g flops/s: not the loop it claims", ops, flops)
			}
		})
	}
}
