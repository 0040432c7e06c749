package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// SamplerConfig chooses how the next token is drawn from the logits.
type SamplerConfig struct {
	// Temperature divides the logits; 0 means greedy (argmax, lowest id on a tie).
	Temperature float64
	// TopK keeps only the K most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability reaches P
	// (nucleus sampling; 0 or ≥ 1: all).
	TopP float64
	// Seed makes a run reproducible: the same seed, model and prompt give the same tokens.
	Seed uint64
}

// Validate checks the configuration's ranges.
func (c SamplerConfig) Validate() error {
	switch {
	case !(c.Temperature >= 0) || math.IsInf(c.Temperature, 0):
		return fmt.Errorf("temperature %g: want ≥ 0", c.Temperature)
	case c.TopK < 0:
		return fmt.Errorf("top-k %d: want ≥ 0", c.TopK)
	case !(c.TopP >= 0) || c.TopP > 1:
		return fmt.Errorf("top-p %g: want 0..1", c.TopP)
	}
	return nil
}

// Sampler draws token ids from logits. It owns its random state and scratch space; use
// one per Session.
type Sampler struct {
	cfg   SamplerConfig
	rng   *rand.Rand
	probs []float64
	idx   []int
}

// NewSampler returns a sampler for cfg (see Validate for the accepted ranges).
func NewSampler(cfg SamplerConfig) *Sampler {
	return &Sampler{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
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

// Sample returns the next token id. logits is not modified.
func (s *Sampler) Sample(logits []float32) int {
	if s.cfg.Temperature == 0 || s.cfg.TopK == 1 {
		return Argmax(logits)
	}
	n := len(logits)
	if cap(s.probs) < n {
		s.probs = make([]float64, n)
		s.idx = make([]int, n)
	}
	p, idx := s.probs[:n], s.idx[:n]
	// Softmax at temperature T in float64.
	maxv := math.Inf(-1)
	for _, x := range logits {
		maxv = math.Max(maxv, float64(x))
	}
	var sum float64
	for i, x := range logits {
		p[i] = math.Exp((float64(x) - maxv) / s.cfg.Temperature)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
		idx[i] = i
	}
	k := n
	if s.cfg.TopK > 0 && s.cfg.TopK < n {
		k = s.cfg.TopK
	}
	truncate := k < n || (s.cfg.TopP > 0 && s.cfg.TopP < 1)
	if !truncate {
		return s.draw(p, idx, 1)
	}
	// Sort ids by probability, descending; ties by id, so the order is deterministic.
	sort.Slice(idx, func(a, b int) bool {
		pa, pb := p[idx[a]], p[idx[b]]
		if pa != pb {
			return pa > pb
		}
		return idx[a] < idx[b]
	})
	idx = idx[:k]
	var mass float64
	for i, id := range idx {
		mass += p[id]
		if s.cfg.TopP > 0 && s.cfg.TopP < 1 && mass >= s.cfg.TopP {
			idx = idx[:i+1]
			break
		}
	}
	var kept float64
	for _, id := range idx {
		kept += p[id]
	}
	return s.draw(p, idx, kept)
}

// draw picks among ids in proportion to p, whose sum over ids is total.
func (s *Sampler) draw(p []float64, ids []int, total float64) int {
	r := s.rng.Float64() * total
	var acc float64
	for _, id := range ids {
		acc += p[id]
		if r < acc {
			return id
		}
	}
	return ids[len(ids)-1] // rounding: r landed past the last partial sum
}
