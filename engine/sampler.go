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
//
// The order of the filters is the usual one (Hugging Face, llama.cpp): temperature, then
// top-k, then top-p over the probabilities renormalised within the top k.
func (s *Sampler) Sample(logits []float32) int {
	n := len(logits)
	if s.cfg.Temperature == 0 || s.cfg.TopK == 1 || n == 1 {
		return Argmax(logits)
	}
	if cap(s.probs) < n {
		s.probs = make([]float64, n)
		s.idx = make([]int, n)
	}
	p, idx := s.probs[:n], s.idx[:n]
	// Candidates: the top k by logit (a bounded heap, not a sort of the vocabulary), or all.
	if k := s.cfg.TopK; k > 0 && k < n {
		idx = topK(logits, idx, k)
	} else {
		for i := range idx {
			idx[i] = i
		}
	}
	// Softmax at temperature T over the candidates, in float64.
	maxv := math.Inf(-1)
	for _, id := range idx {
		maxv = math.Max(maxv, float64(logits[id]))
	}
	var sum float64
	for _, id := range idx {
		p[id] = math.Exp((float64(logits[id]) - maxv) / s.cfg.Temperature)
		sum += p[id]
	}
	for _, id := range idx {
		p[id] /= sum
	}
	topP := s.cfg.TopP
	if !(topP > 0 && topP < 1) {
		return s.draw(p, idx, 1)
	}
	// Nucleus: sort the candidates by probability, descending (ties: lower id). Only
	// candidates above (1-p)/(m-1) can be in the nucleus (the rest together hold less
	// than 1-p), so a large candidate set is filtered before sorting, as llama2.c does.
	if m := len(idx); m > 64 {
		cut := (1 - topP) / float64(m-1)
		kept := 0
		for _, id := range idx {
			if p[id] >= cut {
				idx[kept] = id
				kept++
			}
		}
		if kept > 0 { // a tiny p over a tiny set can filter out everything
			idx = idx[:kept]
		}
	}
	sort.Slice(idx, func(a, b int) bool {
		pa, pb := p[idx[a]], p[idx[b]]
		if pa != pb {
			return pa > pb
		}
		return idx[a] < idx[b]
	})
	var mass float64
	for i, id := range idx {
		mass += p[id]
		if mass >= topP {
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
