package engine

import (
	"math"
	"slices"
	"testing"
)

func mustSampler(t testing.TB, cfg SamplerConfig) *Sampler {
	t.Helper()
	s, err := NewSampler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGreedy(t *testing.T) {
	s := mustSampler(t, SamplerConfig{})
	if got := s.Sample([]float32{1, 3, 3, -2}); got != 1 {
		t.Fatalf("argmax with a tie: %d, want the lowest id 1", got)
	}
	if got := mustSampler(t, SamplerConfig{Temperature: 1, TopK: 1}).Sample([]float32{0, 5, 2}); got != 1 {
		t.Fatalf("top-k 1 is greedy: %d", got)
	}
}

// logProbs returns logits whose softmax at temperature 1 is probs.
func logProbs(probs []float64) []float32 {
	l := make([]float32, len(probs))
	for i, p := range probs {
		l[i] = float32(math.Log(p))
	}
	return l
}

// normalized returns w scaled to sum to 1.
func normalized(w ...float64) []float64 {
	var z float64
	for _, x := range w {
		z += x
	}
	out := make([]float64, len(w))
	for i, x := range w {
		out[i] = x / z
	}
	return out
}

// TestSamplerChain checks the exact distribution left by each filter, and by filters
// combined in llama.cpp's order, on six tokens whose probabilities at temperature 1 are
// 0.4, 0.25, 0.15, 0.1, 0.06, 0.04.
func TestSamplerChain(t *testing.T) {
	logits := logProbs([]float64{0.4, 0.25, 0.15, 0.1, 0.06, 0.04})
	sqrt := math.Sqrt
	for _, c := range []struct {
		name  string
		cfg   SamplerConfig
		ids   []int     // the tokens kept, in ascending order
		probs []float64 // their probabilities in the draw
	}{
		{"plain", SamplerConfig{Temperature: 1}, []int{0, 1, 2, 3, 4, 5}, []float64{0.4, 0.25, 0.15, 0.1, 0.06, 0.04}},
		{"top-k 3", SamplerConfig{Temperature: 1, TopK: 3}, []int{0, 1, 2}, []float64{0.5, 0.3125, 0.1875}},
		// 0.4 + 0.25 = 0.65 ≥ 0.6.
		{"top-p 0.6", SamplerConfig{Temperature: 1, TopP: 0.6}, []int{0, 1}, normalized(0.4, 0.25)},
		// 0.4 + 0.25 < 0.7 ≤ 0.4 + 0.25 + 0.15.
		{"top-p 0.7", SamplerConfig{Temperature: 1, TopP: 0.7}, []int{0, 1, 2}, normalized(0.4, 0.25, 0.15)},
		// Top-p after top-k: within the top 3 the probabilities are 0.5, 0.3125, 0.1875,
		// and 0.5 + 0.3125 reaches 0.7.
		{"top-k 3, top-p 0.7", SamplerConfig{Temperature: 1, TopK: 3, TopP: 0.7}, []int{0, 1}, normalized(0.4, 0.25)},
		// p ≥ 0.3 · 0.4 = 0.12.
		{"min-p 0.3", SamplerConfig{Temperature: 1, MinP: 0.3}, []int{0, 1, 2}, normalized(0.4, 0.25, 0.15)},
		// p ≥ 0.5 · 0.4 = 0.2.
		{"min-p 0.5", SamplerConfig{Temperature: 1, MinP: 0.5}, []int{0, 1}, normalized(0.4, 0.25)},
		{"min-p 1", SamplerConfig{Temperature: 1, MinP: 1}, []int{0}, []float64{1}},
		// top-p 0.7 keeps 3, min-p 0.5 keeps 2: the smaller prefix wins, in either order.
		{"top-p 0.7, min-p 0.5", SamplerConfig{Temperature: 1, TopP: 0.7, MinP: 0.5}, []int{0, 1}, normalized(0.4, 0.25)},
		{"top-k 2, min-p 0.3", SamplerConfig{Temperature: 1, TopK: 2, MinP: 0.3}, []int{0, 1}, normalized(0.4, 0.25)},
		// Temperature T: p_i ∝ p_i^(1/T).
		{"temperature 2", SamplerConfig{Temperature: 2}, []int{0, 1, 2, 3, 4, 5}, normalized(sqrt(0.4), sqrt(0.25), sqrt(0.15), sqrt(0.1), sqrt(0.06), sqrt(0.04))},
		{"temperature 0.5", SamplerConfig{Temperature: 0.5}, []int{0, 1, 2, 3, 4, 5}, normalized(0.16, 0.0625, 0.0225, 0.01, 0.0036, 0.0016)},
		// Temperature comes after the truncation filters (llama.cpp). Applied first, T=2
		// would give 0.277, 0.219, 0.170, ... and top-p 0.6 would keep three tokens;
		// min-p 0.3 would keep id 3 as well ((0.1/0.4)^½ = 0.5 ≥ 0.3).
		{"top-p 0.6, temperature 2", SamplerConfig{Temperature: 2, TopP: 0.6}, []int{0, 1}, normalized(sqrt(0.4), sqrt(0.25))},
		{"min-p 0.3, temperature 2", SamplerConfig{Temperature: 2, MinP: 0.3}, []int{0, 1, 2}, normalized(sqrt(0.4), sqrt(0.25), sqrt(0.15))},
		{"all", SamplerConfig{Temperature: 0.5, TopK: 4, TopP: 0.95, MinP: 0.2}, []int{0, 1, 2, 3}, normalized(0.16, 0.0625, 0.0225, 0.01)},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := mustSampler(t, c.cfg)
			cands, total := s.filter(s.penalized(logits))
			got := map[int]float64{}
			var ids []int
			for _, x := range cands {
				got[int(x.id)] = x.p / total
				ids = append(ids, int(x.id))
			}
			slices.Sort(ids)
			if !slices.Equal(ids, c.ids) {
				t.Fatalf("kept %v, want %v", ids, c.ids)
			}
			for i, id := range c.ids {
				if math.Abs(got[id]-c.probs[i]) > 1e-6 {
					t.Errorf("p(%d) = %.7f, want %.7f", id, got[id], c.probs[i])
				}
			}
		})
	}
}

// TestPenalties checks penalised logits computed by hand with llama.cpp's rule: for a
// token seen c > 0 times in the window, logit ≤ 0 → logit·r, logit > 0 → logit/r, then
// − (c·freq + presence).
func TestPenalties(t *testing.T) {
	logits := []float32{2, -1, 0.5, 0, 3, -2}
	history := []int{4, 1, 4, 2, 4, 5, 3}
	cfg := SamplerConfig{RepeatPenalty: 2, FrequencyPenalty: 0.5, PresencePenalty: 0.25}
	for _, c := range []struct {
		lastN int
		want  []float32
	}{
		// The last 4: 2, 4, 5, 3 (id 4 once, id 1 has left the window).
		// id 2: 0.5/2 − 0.75; id 3: 0·2 − 0.75; id 4: 3/2 − 0.75; id 5: −2·2 − 0.75.
		{4, []float32{2, -1, -0.5, -0.75, 0.75, -4.75}},
		// The last 5: 4, 2, 4, 5, 3 (id 4 twice): id 4: 3/2 − (2·0.5 + 0.25).
		{5, []float32{2, -1, -0.5, -0.75, 0.25, -4.75}},
		// Everything (-1): id 4 three times: 1.5 − 1.75; id 1: −1·2 − 0.75.
		{-1, []float32{2, -2.75, -0.5, -0.75, -0.25, -4.75}},
	} {
		cfg.RepeatLastN = c.lastN
		s := mustSampler(t, cfg)
		for _, id := range history {
			s.Accept(id)
		}
		if got := s.penalized(logits); !slices.Equal(got, c.want) {
			t.Errorf("last %d: penalised logits %v, want %v", c.lastN, got, c.want)
		}
		if logits[4] != 3 {
			t.Fatal("Sample's input was modified")
		}
		// Greedy decoding takes the argmax of the penalised logits: id 0, not id 4.
		if got := s.Sample(logits); got != 0 {
			t.Errorf("last %d: greedy picked %d, want 0", c.lastN, got)
		}
		s.Reset()
		if got := s.penalized(logits); !slices.Equal(got, logits) {
			t.Errorf("after Reset: %v", got)
		}
	}
	// Nothing is penalised without a penalty, whatever the window.
	s := mustSampler(t, SamplerConfig{RepeatLastN: 64, RepeatPenalty: 1})
	s.Accept(4)
	if got := s.Sample(logits); got != 4 {
		t.Errorf("no penalty: %d", got)
	}
}

// TestPenaltiesBeforeTopK: a penalty can push a token out of the top k (penalties come
// first in the chain).
func TestPenaltiesBeforeTopK(t *testing.T) {
	s := mustSampler(t, SamplerConfig{Temperature: 1, TopK: 2, RepeatPenalty: 2, RepeatLastN: 8})
	s.Accept(0)
	cands, total := s.filter(s.penalized([]float32{3, 2, 1.8, 0})) // id 0 becomes 1.5
	got := map[int]float64{}
	for _, x := range cands {
		got[int(x.id)] = x.p / total
	}
	want := normalized(math.Exp(2), math.Exp(1.8))
	if len(got) != 2 || math.Abs(got[1]-want[0]) > 1e-6 || math.Abs(got[2]-want[1]) > 1e-6 {
		t.Fatalf("kept %v, want ids 1, 2 with %v", got, want)
	}
}

// frequencies draws n samples and returns how often each id came up.
func frequencies(t *testing.T, cfg SamplerConfig, logits []float32, n int) []float64 {
	s := mustSampler(t, cfg)
	f := make([]float64, len(logits))
	for i := 0; i < n; i++ {
		f[s.Sample(logits)]++
	}
	for i := range f {
		f[i] /= float64(n)
	}
	return f
}

// TestSamplingFrequencies: the draws follow the distribution the chain leaves.
func TestSamplingFrequencies(t *testing.T) {
	logits := logProbs([]float64{0.4, 0.25, 0.15, 0.1, 0.06, 0.04})
	const n = 100000
	for _, cfg := range []SamplerConfig{
		{Temperature: 1, Seed: 1},
		{Temperature: 0.7, TopK: 4, TopP: 0.9, MinP: 0.1, Seed: 2},
		{Temperature: 1.5, TopP: 0.8, Seed: 3},
	} {
		s := mustSampler(t, cfg)
		cands, total := s.filter(logits)
		want := make([]float64, len(logits))
		for _, x := range cands {
			want[x.id] = x.p / total
		}
		got := frequencies(t, cfg, logits, n)
		for i := range want {
			// 5 standard deviations of a binomial frequency.
			tol := 5*math.Sqrt(want[i]*(1-want[i])/n) + 1e-9
			if math.Abs(got[i]-want[i]) > tol {
				t.Fatalf("%+v: id %d drawn with frequency %.4f, want %.4f", cfg, i, got[i], want[i])
			}
		}
	}
}

func TestSamplerSeed(t *testing.T) {
	logits := make([]float32, 1000)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)))
	}
	cfg := SamplerConfig{Temperature: 0.8, TopK: 40, TopP: 0.9, MinP: 0.05, RepeatPenalty: 1.3, RepeatLastN: 16}
	draw := func(s *Sampler) []int {
		out := make([]int, 50)
		for i := range out {
			out[i] = s.Sample(logits)
			s.Accept(out[i])
		}
		return out
	}
	seeded := func(seed uint64) *Sampler {
		c := cfg
		c.Seed = seed
		return mustSampler(t, c)
	}
	s1 := seeded(1)
	a, b, c := draw(s1), draw(seeded(1)), draw(seeded(2))
	if !slices.Equal(a, b) || slices.Equal(a, c) {
		t.Fatal("the same seed must repeat the draws and another seed must not")
	}
	s1.Reset()
	if again := draw(s1); !slices.Equal(a, again) {
		t.Fatal("after Reset the sampler does not draw as a new one")
	}
}

func TestSamplerEdgeCases(t *testing.T) {
	// Tiny top-p over a near-uniform vocabulary: the pre-sort cut keeps nothing; still valid.
	flat := make([]float32, 100)
	if got := mustSampler(t, SamplerConfig{Temperature: 1, TopP: 0.001, Seed: 1}).Sample(flat); got != 0 {
		t.Fatalf("top-p 0.001 over equal logits: %d, want the lowest id 0", got)
	}
	if got := mustSampler(t, SamplerConfig{Temperature: 1, TopP: 0.5}).Sample([]float32{3}); got != 0 {
		t.Fatal(got)
	}
	nan := math.NaN()
	for _, bad := range []SamplerConfig{
		{Temperature: -1}, {Temperature: nan}, {Temperature: math.Inf(1)},
		{TopK: -2}, {TopP: 1.5}, {TopP: -0.1}, {TopP: nan}, {MinP: -0.1}, {MinP: 1.01}, {MinP: nan},
		{RepeatPenalty: -1, RepeatLastN: 64}, {RepeatPenalty: nan, RepeatLastN: 64}, {RepeatPenalty: math.Inf(1), RepeatLastN: 64},
		{FrequencyPenalty: math.Inf(-1), RepeatLastN: 64}, {PresencePenalty: nan, RepeatLastN: 64},
		{RepeatLastN: -2},
		// A penalty that would look at no token is a mistake, not a no-op.
		{RepeatPenalty: 1.1}, {FrequencyPenalty: 0.5}, {PresencePenalty: 0.5},
	} {
		if _, err := NewSampler(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	for _, ok := range []SamplerConfig{
		{}, {Temperature: 0.8, TopP: 1, MinP: 1}, {RepeatPenalty: 1.1, RepeatLastN: -1},
		{RepeatPenalty: 1, RepeatLastN: 0}, {FrequencyPenalty: -0.5, PresencePenalty: 2, RepeatLastN: 64},
	} {
		if _, err := NewSampler(ok); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// TestSampleAllocs: once warm, sampling and accepting allocate nothing, with every
// filter and penalty on, with and without top-k (a sort of the whole vocabulary).
func TestSampleAllocs(t *testing.T) {
	logits := make([]float32, 32000)
	for i := range logits {
		logits[i] = 4 * float32(math.Sin(float64(i)*0.37))
	}
	for _, k := range []int{40, 0} {
		s := mustSampler(t, SamplerConfig{Temperature: 0.8, TopK: k, TopP: 0.95, MinP: 0.01, RepeatPenalty: 1.1,
			FrequencyPenalty: 0.1, PresencePenalty: 0.1, RepeatLastN: 64, Seed: 1})
		step := func() { s.Accept(s.Sample(logits)) }
		for range 200 {
			step()
		}
		if n := testing.AllocsPerRun(100, step); n != 0 {
			t.Errorf("top-k %d: %v allocations per token", k, n)
		}
	}
}

func BenchmarkSampleTopK(b *testing.B) {
	logits := make([]float32, 32000)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i) * 0.37))
	}
	s := mustSampler(b, SamplerConfig{Temperature: 0.8, TopK: 40, TopP: 0.95, MinP: 0.05, Seed: 1})
	for b.Loop() {
		s.Sample(logits)
	}
}
