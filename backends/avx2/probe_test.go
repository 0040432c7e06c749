//go:build amd64 && !purego

package avx2

import (
	"testing"

	"github.com/klauspost/cpuid/v2"
)

// TestInt8Probe checks the op count of both int8 probes (AVX-VNNI where the CPU has
// it, VPMADDUBSW always). Their rates against the FMA probe's are timings, so they are
// reported by the benchmarks (BenchmarkPeak in backends/avx512), not checked here.
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
		})
	}
}
