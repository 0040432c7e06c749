package engine

import (
	"context"
	"fmt"
)

// GenerateOptions control Generate.
type GenerateOptions struct {
	// MaxTokens is the number of tokens to generate at most (≤ 0: until the context is full).
	MaxTokens int
	// Stop lists ids that end generation (they are not emitted). Nil: the tokenizer's EOS.
	Stop []int
	// Sampler draws each token; nil means greedy. Generate gives it every prompt token
	// and every generated token (Sampler.Accept), for its penalties.
	Sampler *Sampler
}

// Stats reports what a Generate call did.
type Stats struct {
	PromptTokens, Generated int
	// Phase durations in seconds.
	PromptSeconds, GenSeconds float64
}

// Generate feeds prompt to the session, then samples up to MaxTokens tokens, calling emit
// with each as soon as it is chosen. It stops early at a stop id, when emit returns an
// error, when ctx is done, or when the context is full (then without error: the caller
// asked for more than fits, and what was generated is valid).
func (s *Session) Generate(ctx context.Context, prompt []int, opts GenerateOptions, emit func(id int) error) (Stats, error) {
	st := Stats{PromptTokens: len(prompt)}
	smp := opts.Sampler
	if smp == nil {
		smp = greedy()
	}
	stop := opts.Stop
	if stop == nil && s.m.Tokenizer != nil && s.m.Tokenizer.EOS() >= 0 {
		stop = []int{s.m.Tokenizer.EOS()}
	}
	if len(prompt) == 0 {
		return st, fmt.Errorf("empty prompt: give at least one token (BOS)")
	}
	if s.pos+len(prompt) > s.ctx {
		return st, fmt.Errorf("%w: the prompt has %d tokens, the context holds %d", ErrContextFull, s.pos+len(prompt), s.ctx)
	}
	t0 := now()
	logits, err := s.Forward(prompt)
	if err != nil {
		return st, err
	}
	st.PromptSeconds = since(t0)
	for _, id := range prompt {
		smp.Accept(id)
	}
	t1 := now()
	for opts.MaxTokens <= 0 || st.Generated < opts.MaxTokens {
		if err := ctx.Err(); err != nil {
			st.GenSeconds = since(t1)
			return st, err
		}
		id := smp.Sample(logits)
		for _, x := range stop {
			if id == x {
				st.GenSeconds = since(t1)
				return st, nil
			}
		}
		smp.Accept(id)
		st.Generated++
		if err := emit(id); err != nil {
			st.GenSeconds = since(t1)
			return st, err
		}
		if s.pos >= s.ctx {
			break
		}
		if logits, err = s.Forward([]int{id}); err != nil {
			st.GenSeconds = since(t1)
			return st, err
		}
	}
	st.GenSeconds = since(t1)
	return st, nil
}
