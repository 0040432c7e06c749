package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// PerplexityOptions configure Model.Perplexity.
type PerplexityOptions struct {
	// Context is the window length in tokens: each window is evaluated from an empty
	// KV cache. 0 means the model's context length.
	Context int
	// Stride is the distance between the starts of consecutive windows, 1 ≤ Stride ≤
	// Context−1. 0 means Context−1: windows that overlap by one token, the last token
	// of a window being the (unscored) first of the next.
	Stride int
	// Chunk is the number of positions whose logits are computed in one call (0:
	// 128); it bounds the logits buffer to Chunk × vocabulary floats.
	Chunk int
	// Progress, if not nil, is called after each chunk with the number of tokens
	// scored so far and the number that will be.
	Progress func(scored, total int)
}

// PerplexityResult is the outcome of Model.Perplexity.
type PerplexityResult struct {
	// Tokens is the number of tokens scored: every token but the first.
	Tokens int
	// NLL is the sum of their negative log-likelihoods, in nats.
	NLL float64
	// Windows is the number of windows evaluated.
	Windows int
	// Evaluated is the number of tokens run through the model (more than Tokens
	// when windows overlap).
	Evaluated int
	// Duration is the wall time of the evaluation.
	Duration time.Duration
}

// MeanNLL returns the mean negative log-likelihood per scored token, in nats.
func (r PerplexityResult) MeanNLL() float64 { return r.NLL / float64(r.Tokens) }

// Perplexity returns exp(MeanNLL).
func (r PerplexityResult) Perplexity() float64 { return math.Exp(r.MeanNLL()) }

// TokensPerSecond returns the scored tokens per second of wall time.
func (r PerplexityResult) TokensPerSecond() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Tokens) / r.Duration.Seconds()
}

// Perplexity scores every token of ids after the first, exactly once, with the
// model's prediction from the tokens before it in its window, and returns the sum of
// the negative log-likelihoods (log-softmax in float64).
//
// Window k covers ids[k·S : min(k·S+W, len(ids))] for W = opts.Context and
// S = opts.Stride, and is evaluated from an empty KV cache; the last window is the
// first that reaches the end. A window scores its tokens from the one after the
// previous window's end (from its second token for the first window): with the
// default S = W−1 that is every token but its first, which is context only; with a
// smaller S the tokens the previous window already scored are context too, as in
// Hugging Face's "perplexity of fixed-length models" guide. Positions are evaluated
// in batches (Session.ForwardAll), never token by token. ctx is checked before each
// batch: a cancelled evaluation stops within one batch and returns ctx's error.
func (m *Model) Perplexity(ctx context.Context, ids []int, opts PerplexityOptions) (PerplexityResult, error) {
	var res PerplexityResult
	W := opts.Context
	if W == 0 {
		W = m.cfg.ContextLength
	}
	if W < 2 || W > m.cfg.ContextLength {
		return res, fmt.Errorf("perplexity: window of %d tokens: want 2..%d (the model's context length)", W, m.cfg.ContextLength)
	}
	S := opts.Stride
	if S == 0 {
		S = W - 1
	}
	if S < 1 || S > W-1 {
		return res, fmt.Errorf("perplexity: stride %d: want 1..%d (window − 1), or a token would never be scored", S, W-1)
	}
	chunk := opts.Chunk
	if chunk <= 0 {
		chunk = 128
	}
	n := len(ids)
	if n < 2 {
		return res, errors.New("perplexity: need at least 2 tokens (the first is never scored)")
	}
	vocab := m.cfg.VocabSize
	for i, id := range ids {
		if id < 0 || id >= vocab {
			return res, fmt.Errorf("perplexity: token %d (at index %d) is out of range: the vocabulary has %d ids", id, i, vocab)
		}
	}
	t0 := time.Now()
	s := m.NewSession(SessionOptions{Context: W})
	logits := make([]float32, min(chunk, W)*vocab)
	total := n - 1
	next := 1 // the first index not scored yet
	for begin := 0; ; begin += S {
		end := min(begin+W, n)
		s.Reset()
		res.Windows++
		// Positions begin..next-2 are context whose predictions are not needed: one
		// pass without logits. Positions next-1..end-2 predict tokens next..end-1.
		if next-1 > begin {
			if _, err := s.ForwardContext(ctx, ids[begin:next-1]); err != nil {
				return res, fmt.Errorf("perplexity: window at %d: %w", begin, err)
			}
			res.Evaluated += next - 1 - begin
		}
		for p := next - 1; p < end-1; {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			c := min(chunk, end-1-p)
			out, err := s.forwardAll(ctx, ids[p:p+c], logits[:c*vocab])
			if err != nil {
				return res, fmt.Errorf("perplexity: window at %d: %w", begin, err)
			}
			for k := range c {
				res.NLL += nll(out[k*vocab:(k+1)*vocab], ids[p+k+1])
			}
			res.Tokens += c
			res.Evaluated += c
			p += c
			if opts.Progress != nil {
				opts.Progress(res.Tokens, total)
			}
		}
		next = end
		if end == n {
			break
		}
	}
	res.Duration = time.Since(t0)
	return res, nil
}

// nll returns −log softmax(logits)[target], computed in float64.
func nll(logits []float32, target int) float64 {
	mx := math.Inf(-1)
	for _, x := range logits {
		mx = math.Max(mx, float64(x))
	}
	var sum float64
	for _, x := range logits {
		sum += math.Exp(float64(x) - mx)
	}
	return mx + math.Log(sum) - float64(logits[target])
}
