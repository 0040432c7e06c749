package engine

import (
	"math"
	"testing"
)

func TestGreedy(t *testing.T) {
	s := NewSampler(SamplerConfig{})
	if got := s.Sample([]float32{1, 3, 3, -2}); got != 1 {
		t.Fatalf("argmax with a tie: %d, want the lowest id 1", got)
	}
	if got := NewSampler(SamplerConfig{Temperature: 1, TopK: 1}).Sample([]float32{0, 5, 2}); got != 1 {
		t.Fatalf("top-k 1 is greedy: %d", got)
	}
}

// frequencies draws n samples and returns how often each id came up.
func frequencies(cfg SamplerConfig, logits []float32, n int) []float64 {
	s := NewSampler(cfg)
	f := make([]float64, len(logits))
	for i := 0; i < n; i++ {
		f[s.Sample(logits)]++
	}
	for i := range f {
		f[i] /= float64(n)
	}
	return f
}

func TestSamplingDistributions(t *testing.T) {
	// probabilities at temperature 1: softmax of logs = the numbers themselves.
	probs := []float64{0.4, 0.25, 0.15, 0.1, 0.06, 0.04}
	logits := make([]float32, len(probs))
	for i, p := range probs {
		logits[i] = float32(math.Log(p))
	}
	const n = 200000
	check := func(name string, got, want []float64) {
		t.Helper()
		for i := range want {
			// 5 standard deviations of a binomial frequency.
			tol := 5*math.Sqrt(want[i]*(1-want[i])/n) + 1e-9
			if math.Abs(got[i]-want[i]) > tol {
				t.Fatalf("%s: id %d drawn with frequency %.4f, want %.4f\n got %v\nwant %v", name, i, got[i], want[i], got, want)
			}
		}
	}
	check("plain", frequencies(SamplerConfig{Temperature: 1, Seed: 1}, logits, n), probs)

	// top-k 3 renormalises the three best.
	k3 := []float64{0.4 / 0.8, 0.25 / 0.8, 0.15 / 0.8, 0, 0, 0}
	check("top-k", frequencies(SamplerConfig{Temperature: 1, TopK: 3, Seed: 2}, logits, n), k3)

	// top-p 0.6: 0.4 + 0.25 reaches it, so the nucleus is {0, 1}.
	p6 := []float64{0.4 / 0.65, 0.25 / 0.65, 0, 0, 0, 0}
	check("top-p", frequencies(SamplerConfig{Temperature: 1, TopP: 0.6, Seed: 3}, logits, n), p6)
	check("top-k+top-p", frequencies(SamplerConfig{Temperature: 1, TopK: 4, TopP: 0.6, Seed: 4}, logits, n), p6)

	// temperature 2 flattens: p_i ∝ p_i^(1/2).
	var z float64
	t2 := make([]float64, len(probs))
	for i, p := range probs {
		t2[i] = math.Sqrt(p)
		z += t2[i]
	}
	for i := range t2 {
		t2[i] /= z
	}
	check("temperature", frequencies(SamplerConfig{Temperature: 2, Seed: 5}, logits, n), t2)
}

func TestSamplerSeed(t *testing.T) {
	logits := make([]float32, 1000)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)))
	}
	draw := func(seed uint64) []int {
		s := NewSampler(SamplerConfig{Temperature: 0.8, TopK: 40, TopP: 0.9, Seed: seed})
		out := make([]int, 50)
		for i := range out {
			out[i] = s.Sample(logits)
		}
		return out
	}
	a, b, c := draw(1), draw(1), draw(2)
	same := func(x, y []int) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) || same(a, c) {
		t.Fatal("the same seed must repeat the draws and another seed must not")
	}
}

func TestSamplerEdgeCases(t *testing.T) {
	// Tiny top-p over a tiny vocabulary: the cut-off filter keeps nothing; still valid.
	if got := NewSampler(SamplerConfig{Temperature: 1, TopP: 0.1, Seed: 1}).Sample([]float32{0, 0}); got != 0 && got != 1 {
		t.Fatal(got)
	}
	if got := NewSampler(SamplerConfig{Temperature: 1, TopP: 0.5}).Sample([]float32{3}); got != 0 {
		t.Fatal(got)
	}
	for _, bad := range []SamplerConfig{{Temperature: -1}, {TopK: -2}, {TopP: 1.5}, {Temperature: math.NaN()}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func BenchmarkSampleTopK(b *testing.B) {
	logits := make([]float32, 32000)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i) * 0.37))
	}
	s := NewSampler(SamplerConfig{Temperature: 0.8, TopK: 40, TopP: 0.95, Seed: 1})
	for i := 0; i < b.N; i++ {
		s.Sample(logits)
	}
}
