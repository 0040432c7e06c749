package engine

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// SamplerConfig chooses how the next token is drawn from the logits. The zero value is
// greedy decoding without penalties.
//
// The logits go through llama.cpp's default sampler chain, in its order:
//
//  1. penalties (RepeatPenalty, FrequencyPenalty, PresencePenalty over the last
//     RepeatLastN accepted tokens),
//  2. top-k, 3. top-p, 4. min-p: truncation filters, computed on the penalised logits
//     at temperature 1,
//  5. temperature: the logits of the tokens kept are divided by it,
//  6. a draw from the softmax of what is left.
//
// Temperature comes after the truncation filters, as in llama.cpp: top-p and min-p keep
// the same tokens whatever the temperature, which only reshapes the distribution among
// them. (llama2.c and Hugging Face's generate apply temperature first, so with a
// temperature other than 1 their top-p keeps a different set.) Temperature 0 is greedy:
// the largest penalised logit, which every filter keeps.
type SamplerConfig struct {
	// Temperature divides the logits of the tokens the filters kept; 0 means greedy
	// (argmax of the penalised logits, the lowest id on a tie).
	Temperature float64
	// TopK keeps only the K most likely tokens (0: all; llama.cpp's ≤ 0).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability, within what
	// top-k kept, reaches P (nucleus sampling). 0 and 1 turn it off (in llama.cpp 0
	// keeps the most likely token only).
	TopP float64
	// MinP keeps the tokens whose probability is at least MinP times the most likely
	// token's (0: off).
	MinP float64
	// RepeatPenalty divides the positive logits, and multiplies the negative ones, of
	// the tokens among the last RepeatLastN (the CTRL penalty with llama.cpp's fix for
	// negative logits). 0 and 1 turn it off; above 1 discourages repetition.
	RepeatPenalty float64
	// FrequencyPenalty is subtracted from the logit of a token once for each time it
	// occurs among the last RepeatLastN (OpenAI's frequency penalty; 0: off).
	FrequencyPenalty float64
	// PresencePenalty is subtracted from the logit of every token that occurs among the
	// last RepeatLastN (OpenAI's presence penalty; 0: off).
	PresencePenalty float64
	// RepeatLastN is the number of most recent tokens the penalties look at, as
	// llama.cpp's --repeat-last-n: 0 turns the penalties off, -1 means every token
	// accepted since the last Reset (the whole context). It must be set for a penalty
	// to apply; llama.cpp's default is DefaultRepeatLastN.
	RepeatLastN int
	// Seed makes a run reproducible: the same seed, model and prompt give the same tokens.
	Seed uint64
}

// DefaultRepeatLastN is llama.cpp's default window of the penalties, in tokens.
const DefaultRepeatLastN = 64

// penalties reports whether any penalty changes the logits.
func (c SamplerConfig) penalties() bool {
	return c.RepeatLastN != 0 && (c.repeatPenalty() != 1 || c.FrequencyPenalty != 0 || c.PresencePenalty != 0)
}

// repeatPenalty returns the repetition penalty, 1 for the zero value.
func (c SamplerConfig) repeatPenalty() float64 {
	if c.RepeatPenalty == 0 {
		return 1
	}
	return c.RepeatPenalty
}

// Validate checks the configuration's ranges.
func (c SamplerConfig) Validate() error {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case !(c.Temperature >= 0) || !finite(c.Temperature):
		return fmt.Errorf("temperature %g: want ≥ 0", c.Temperature)
	case c.TopK < 0:
		return fmt.Errorf("top-k %d: want ≥ 0", c.TopK)
	case !(c.TopP >= 0 && c.TopP <= 1):
		return fmt.Errorf("top-p %g: want 0..1", c.TopP)
	case !(c.MinP >= 0 && c.MinP <= 1):
		return fmt.Errorf("min-p %g: want 0..1", c.MinP)
	case !(c.RepeatPenalty >= 0) || !finite(c.RepeatPenalty):
		return fmt.Errorf("repeat penalty %g: want > 0 (0 or 1: off)", c.RepeatPenalty)
	case !finite(c.FrequencyPenalty):
		return fmt.Errorf("frequency penalty %g: want a finite number", c.FrequencyPenalty)
	case !finite(c.PresencePenalty):
		return fmt.Errorf("presence penalty %g: want a finite number", c.PresencePenalty)
	case c.RepeatLastN < -1:
		return fmt.Errorf("repeat-last-n %d: want ≥ -1 (-1: the whole context, 0: no penalties)", c.RepeatLastN)
	case c.RepeatLastN == 0 && (c.repeatPenalty() != 1 || c.FrequencyPenalty != 0 || c.PresencePenalty != 0):
		return fmt.Errorf("penalties set but RepeatLastN is 0, so they would look at no token: set it (llama.cpp's default is %d, -1 is the whole context)", DefaultRepeatLastN)
	}
	return nil
}

// Sampler draws token ids from logits. It owns its random state, the history of tokens
// the penalties look at, and its scratch space, so Sample allocates nothing once warm;
// use one per Session (or per sequence).
type Sampler struct {
	cfg SamplerConfig
	rng *rand.Rand
	pcg *rand.PCG

	work  []float32   // the penalised logits
	cands []candidate // the tokens still in the running, and then their weights
	heap  []int       // top-k scratch

	// The penalties' window: ring holds the last RepeatLastN ids (oldest at head once
	// full; unused for -1), counts the occurrences of each id in the window.
	ring   []int32
	head   int
	counts []int32
}

// candidate is a token still in the running: its id, penalised logit and, in turn, its
// probability or its weight for the draw.
type candidate struct {
	id    int32
	logit float32
	p     float64
}

// NewSampler returns a sampler for cfg, or an error when cfg is out of range (see
// Validate).
func NewSampler(cfg SamplerConfig) (*Sampler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sampler: %w", err)
	}
	s := &Sampler{cfg: cfg}
	s.pcg = rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)
	s.rng = rand.New(s.pcg)
	return s, nil
}

// greedy returns the sampler of a zero SamplerConfig.
func greedy() *Sampler {
	s, err := NewSampler(SamplerConfig{})
	if err != nil {
		panic(err) // the zero configuration is valid
	}
	return s
}

// Config returns the sampler's configuration.
func (s *Sampler) Config() SamplerConfig { return s.cfg }

// Accept records id as the next token of the sequence, for the penalties: Generate calls
// it for every prompt token and every generated token. It does nothing when no penalty
// is set. id must be ≥ 0.
func (s *Sampler) Accept(id int) {
	if !s.cfg.penalties() {
		return
	}
	if id < 0 {
		panic(fmt.Sprintf("engine: Sampler.Accept(%d): negative token id", id))
	}
	if id >= len(s.counts) {
		s.counts = append(s.counts, make([]int32, max(id+1, 2*len(s.counts))-len(s.counts))...)
	}
	if n := s.cfg.RepeatLastN; n > 0 {
		if len(s.ring) < n {
			s.ring = append(s.ring, int32(id))
		} else {
			s.counts[s.ring[s.head]]--
			s.ring[s.head] = int32(id)
			s.head = (s.head + 1) % n
		}
	}
	s.counts[id]++
}

// Reset forgets the accepted tokens and restarts the random sequence from the seed: the
// sampler draws as a new one would.
func (s *Sampler) Reset() {
	clear(s.counts)
	s.ring, s.head = s.ring[:0], 0
	s.pcg.Seed(s.cfg.Seed, s.cfg.Seed^0x9e3779b97f4a7c15)
}

// Argmax returns the index of the largest value, the lowest index on a tie.
func Argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// Sample returns the next token id, drawn through the chain SamplerConfig describes.
// logits is not modified. Sample does not record the token: call Accept with the id
// that is actually used (Generate does).
func (s *Sampler) Sample(logits []float32) int {
	if len(logits) == 0 {
		panic("engine: Sampler.Sample: no logits")
	}
	l := s.penalized(logits)
	if s.cfg.Temperature == 0 || s.cfg.TopK == 1 || len(l) == 1 {
		return Argmax(l)
	}
	c, total := s.filter(l)
	r := s.rng.Float64() * total
	var acc float64
	for _, x := range c {
		acc += x.p
		if r < acc {
			return int(x.id)
		}
	}
	return int(c[len(c)-1].id) // rounding: r landed past the last partial sum
}

// penalized returns logits with the penalties applied: a copy in the sampler's scratch
// space, or logits itself when no penalty is set.
func (s *Sampler) penalized(logits []float32) []float32 {
	if !s.cfg.penalties() {
		return logits
	}
	s.work = grow(s.work, len(logits))
	l := s.work[:len(logits)]
	copy(l, logits)
	s.penalize(l)
	return l
}

// filter runs the penalised logits l through top-k, top-p, min-p and temperature and
// returns the tokens left, each with its weight in p (the draw's probabilities are
// p/total). The slice is the sampler's scratch space.
func (s *Sampler) filter(l []float32) (c []candidate, total float64) {
	n := len(l)
	s.cands = grow(s.cands, n)

	// Top-k: the k largest logits (a bounded heap, not a sort of the vocabulary), or all.
	c = s.cands[:0]
	if k := s.cfg.TopK; k > 0 && k < n {
		s.heap = grow(s.heap, k)
		for _, id := range topK(l, s.heap[:k], k) {
			c = append(c, candidate{id: int32(id), logit: l[id]})
		}
	} else {
		for id, x := range l {
			c = append(c, candidate{id: int32(id), logit: x})
		}
	}
	maxLogit := c[0].logit
	for _, x := range c {
		maxLogit = max(maxLogit, x.logit)
	}

	// Top-p's probabilities are the softmax at temperature 1 over the top-k set.
	topP, m := s.cfg.TopP, len(c)
	var z float64
	if topP > 0 && topP < 1 {
		for _, x := range c {
			z += math.Exp(float64(x.logit - maxLogit))
		}
	}
	// Top-p and min-p each keep a prefix of the candidates in descending order that
	// contains the most likely token, so applying min-p first (no sort needed) keeps
	// the same set. Min-p, as llama.cpp: logit ≥ max + log(p), i.e. p_i ≥ min_p · p_max.
	if p := s.cfg.MinP; p > 0 {
		th := maxLogit + float32(math.Log(p))
		kept := c[:0]
		for _, x := range c {
			if x.logit >= th {
				kept = append(kept, x)
			}
		}
		c = kept
	}
	if z > 0 && len(c) > 1 {
		c = nucleus(c, maxLogit, z, m, topP)
	}

	// Temperature, over what is left.
	for i := range c {
		c[i].p = math.Exp(float64(c[i].logit-maxLogit) / s.cfg.Temperature)
		total += c[i].p
	}
	return c, total
}

// nucleus returns the shortest run of c in descending order whose probabilities reach
// p, the probability of a candidate being exp(logit - maxLogit) / z over a top-k set of
// m candidates (of which c may be a subset).
func nucleus(c []candidate, maxLogit float32, z float64, m int, p float64) []candidate {
	for i := range c {
		c[i].p = math.Exp(float64(c[i].logit-maxLogit)) / z
	}
	// Only candidates with a probability of at least (1-p)/(m-1) can be in the nucleus
	// (the others together hold less than 1-p), so a large set is filtered before
	// sorting, as llama2.c does.
	if len(c) > 64 {
		cut := (1 - p) / float64(m-1)
		k := 0
		for _, x := range c {
			if x.p >= cut {
				c[k] = x
				k++
			}
		}
		// Nothing passes only when even the most likely token is below the cut (a tiny
		// p over a near-uniform set); c is then untouched and is sorted whole.
		if k > 0 {
			c = c[:k]
		}
	}
	slices.SortFunc(c, byLogit)
	var mass float64
	for i, x := range c {
		mass += x.p
		if mass >= p {
			return c[:i+1]
		}
	}
	return c
}

// byLogit orders candidates by descending logit, the lower id first on a tie.
func byLogit(a, b candidate) int {
	if a.logit != b.logit {
		return cmp.Compare(b.logit, a.logit)
	}
	return cmp.Compare(a.id, b.id)
}

// penalize applies the penalties to l in place, as llama.cpp's penalties sampler does
// (in float32): for each token with count c > 0 in the window, a logit ≤ 0 is multiplied
// by the repetition penalty and a positive one divided by it, then c·frequency +
// presence is subtracted.
func (s *Sampler) penalize(l []float32) {
	rp := float32(s.cfg.repeatPenalty())
	freq, pres := float32(s.cfg.FrequencyPenalty), float32(s.cfg.PresencePenalty)
	for id, c := range s.counts[:min(len(s.counts), len(l))] {
		if c == 0 {
			continue
		}
		x := l[id]
		if x <= 0 {
			x *= rp
		} else {
			x /= rp
		}
		l[id] = x - (float32(c)*freq + pres)
	}
}

// grow returns b with a length of at least n, reallocated only when it is too short.
func grow[T any](b []T, n int) []T {
	if len(b) < n {
		return make([]T, n)
	}
	return b
}

// topK returns the ids of the k largest logits (ties: lower id), unordered, in idx[:k],
// keeping idx[:k] as a min-heap with the worst candidate at the root.
func topK(logits []float32, idx []int, k int) []int {
	h := idx[:k]
	for i := range h {
		h[i] = i
	}
	better := func(a, b int) bool {
		if logits[a] != logits[b] {
			return logits[a] > logits[b]
		}
		return a < b
	}
	down := func(i int) {
		for {
			l := 2*i + 1
			if l >= k {
				return
			}
			w := l
			if r := l + 1; r < k && better(h[l], h[r]) {
				w = r
			}
			if !better(h[i], h[w]) {
				return
			}
			h[i], h[w] = h[w], h[i]
			i = w
		}
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(i)
	}
	for id := k; id < len(logits); id++ {
		if better(id, h[0]) {
			h[0] = id
			down(0)
		}
	}
	return h
}
