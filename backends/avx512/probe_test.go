//go:build amd64 && !purego

package avx512

import (
	"testing"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/backends/avx2"
)

// TestInt8Probe checks the op count of the int8 probe, with AVX512_VNNI where the CPU
// has it and avx2's otherwise. Its rate against the FMA probe's is a timing, reported
// by BenchmarkPeak, not checked here.
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
		})
	}
}
