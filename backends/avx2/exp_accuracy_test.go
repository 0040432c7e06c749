//go:build amd64 && !purego

package avx2

import (
	"math"
	"testing"

	"github.com/klauspost/cpuid/v2"
)

// ulps returns |got - want| in units of the last place of want (float32).
func ulps(got float32, want float64) float64 {
	w := float32(want)
	ulp := math.Nextafter32(float32(math.Abs(float64(w))), float32(math.Inf(1))) - float32(math.Abs(float64(w)))
	return math.Abs(float64(got)-want) / float64(ulp)
}

// TestExpAccuracy measures the vector exp (through expSub with m = 0) against math.Exp
// over its whole normal range, every 2^-10, and checks its edges.
func TestExpAccuracy(t *testing.T) {
	if !cpuid.CPU.Supports(cpuid.AVX2, cpuid.FMA3) {
		t.Skip("CPU lacks AVX2/FMA3")
	}
	var x []float32
	for v := -86.64; v <= 88.72; v += 1.0 / 1024 {
		x = append(x, float32(v))
	}
	got := append([]float32(nil), x...)
	expSub(&got[0], len(got), 0)
	var worst float64
	var at float32
	for i, v := range x {
		if u := ulps(got[i], math.Exp(float64(v))); u > worst {
			worst, at = u, v
		}
	}
	t.Logf("exp: max error %.2f ulp at x=%v over [-86.64, 88.72]", worst, at)
	if worst > 2 {
		t.Errorf("exp: %.2f ulp at x=%v", worst, at)
	}

	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, c := range []struct{ x, want float32 }{
		{nan, nan}, {inf, inf}, {-inf, 0}, {89, inf}, {88.73, inf}, {1000, inf}, {-86.65, 0}, {-1000, 0},
		{0, 1}, {float32(math.Copysign(0, -1)), 1},
	} {
		v := []float32{c.x}
		expSub(&v[0], 1, 0)
		if v[0] != c.want && !(c.want != c.want && v[0] != v[0]) {
			t.Errorf("exp(%v) = %v, want %v", c.x, v[0], c.want)
		}
	}
	v := []float32{88.72}
	expSub(&v[0], 1, 0)
	if math.IsInf(float64(v[0]), 0) || ulps(v[0], math.Exp(float64(float32(88.72)))) > 2 {
		t.Errorf("exp(88.72) = %v, want %v", v[0], math.Exp(88.72))
	}
}
