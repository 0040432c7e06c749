package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lmrun/lmrun/tokenizer"
)

// GenerateOptions control Generate and GenerateText. The zero value generates nothing
// (MaxTokens 0); set MaxTokens.
type GenerateOptions struct {
	// MaxTokens is the number of tokens to generate at most: a negative number means
	// until the context is full, 0 none (the prompt is only processed), as llama.cpp's
	// -n.
	MaxTokens int
	// StopIDs end generation when one is sampled (it is not emitted), in addition to the
	// model's end ids (Model.EndIDs).
	StopIDs []int
	// IgnoreEOS makes the model's end ids ordinary tokens: they are emitted and
	// generation goes on. StopIDs still stop it.
	IgnoreEOS bool
	// StopStrings end GenerateText when the generated text contains one: the text
	// before it is emitted, the stop string and whatever follows it are not. Generate,
	// which emits ids, rejects them.
	StopStrings []string
	// Sampler draws each token; nil means greedy. Generate gives it every prompt token
	// and every generated token (Sampler.Accept), for its penalties.
	Sampler *Sampler
}

// Stats reports what a Generate call did.
type Stats struct {
	// PromptTokens is the number of prompt tokens processed (fewer than the prompt's
	// when ctx was cancelled during the prefill); Generated the number of tokens sampled
	// and accepted, stop ids excluded.
	PromptTokens, Generated int
	// PromptDuration is the time the prompt took, GenDuration the time of generation.
	PromptDuration, GenDuration time.Duration
}

// PromptTokensPerSecond returns the prompt processing speed (0 when nothing was timed).
func (s Stats) PromptTokensPerSecond() float64 { return perSecond(s.PromptTokens, s.PromptDuration) }

// GenTokensPerSecond returns the generation speed (0 when nothing was timed).
func (s Stats) GenTokensPerSecond() float64 { return perSecond(s.Generated, s.GenDuration) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// EndIDs returns the ids whose generation ends a text: the tokenizer's EOS and, for a
// llama2.c model, BOS too (its training stories are delimited by BOS, and llama2.c's
// run.c stops there). It is empty when the model carries no tokenizer.
func (m *Model) EndIDs() []int {
	tok := m.tok
	if tok == nil {
		return nil
	}
	var ids []int
	if tok.EOS() >= 0 {
		ids = append(ids, tok.EOS())
	}
	if tok.Kind() == tokenizer.KindLlama2c && tok.BOS() >= 0 && tok.BOS() != tok.EOS() {
		ids = append(ids, tok.BOS())
	}
	return ids
}

// Generate feeds prompt to the session, then samples up to MaxTokens tokens, calling emit
// with each as soon as it is chosen. It stops at a stop id (see GenerateOptions), when
// emit returns an error, when ctx is done, or when the context is full (then without
// error: the caller asked for more than fits, and what was generated is valid). ctx is
// checked between the prompt's batches and before each token, so a cancellation stops
// a long prompt within one batch; the error is then ctx's.
//
// The session then holds the prompt and every emitted token (but the last one when the
// context is full), so a next call continues the sequence.
func (s *Session) Generate(ctx context.Context, prompt []int, opts GenerateOptions, emit func(id int) error) (Stats, error) {
	if len(opts.StopStrings) > 0 {
		return Stats{}, errors.New("generate: stop strings need text: use GenerateText")
	}
	return s.generate(ctx, prompt, opts, func(id int) (bool, error) { return false, emit(id) })
}

// GenerateText is Generate that emits text, decoded with the model's tokenizer as it is
// generated: whole UTF-8 characters only (tokenizer.Stream), and never any of a stop
// string. Text that could be the start of a stop string is held back until the next
// tokens decide: it is emitted once it turns out not to be one, or when generation
// ends. The prompt is not emitted, but it is decoded first so that the first piece
// follows it as it should (a tokenizer's leading-space rules).
func (s *Session) GenerateText(ctx context.Context, prompt []int, opts GenerateOptions, emit func(text string) error) (Stats, error) {
	tok := s.m.tok
	if tok == nil {
		return Stats{}, errors.New("generate: the model carries no tokenizer to decode text with")
	}
	for _, stop := range opts.StopStrings {
		if stop == "" {
			return Stats{}, errors.New("generate: an empty stop string")
		}
	}
	d, err := s.m.NewTextDecoder(prompt, opts.StopStrings)
	if err != nil {
		return Stats{}, fmt.Errorf("generate: %w", err)
	}
	emitFailed := false
	out := func(text string) error {
		if text == "" {
			return nil
		}
		if err := emit(text); err != nil {
			emitFailed = true
			return err
		}
		return nil
	}
	st, err := s.generate(ctx, prompt, opts, func(id int) (bool, error) {
		text, stop, err := d.Add(id)
		if err != nil {
			return false, err
		}
		return stop, out(text)
	})
	if !emitFailed {
		if ferr := out(d.Flush()); err == nil {
			err = ferr
		}
	}
	return st, err
}

// TextDecoder turns generated tokens into the text to show, as GenerateText does: whole
// UTF-8 characters only, and never any of a stop string — text that could begin one is
// held back until the next tokens decide. It is what a caller driving the forward passes
// itself (a Batch) decodes with.
type TextDecoder struct {
	stream *tokenizer.Stream
	m      stopMatcher
}

// NewTextDecoder returns a decoder of the tokens that follow prompt (decoded first, so
// that the first piece follows it as it should: a tokenizer's leading-space rules),
// stopping at the first of stops.
func (m *Model) NewTextDecoder(prompt []int, stops []string) (*TextDecoder, error) {
	if m.tok == nil {
		return nil, errors.New("the model carries no tokenizer to decode text with")
	}
	for _, stop := range stops {
		if stop == "" {
			return nil, errors.New("an empty stop string")
		}
	}
	d := &TextDecoder{stream: tokenizer.NewStream(m.tok), m: stopMatcher{stops: stops}}
	for _, id := range prompt {
		if _, err := d.stream.Add(id); err != nil {
			return nil, fmt.Errorf("decoding the prompt: %w", err)
		}
	}
	return d, nil
}

// Add decodes one more token and returns the text that can be shown now, and whether a
// stop string was found (then text is what precedes it, and generation should end).
func (d *TextDecoder) Add(id int) (text string, stop bool, err error) {
	piece, err := d.stream.Add(id)
	if err != nil {
		return "", false, err
	}
	text, stop = d.m.add(piece)
	return text, stop, nil
}

// Stopped reports whether a stop string was found.
func (d *TextDecoder) Stopped() bool { return d.m.stopped }

// Flush returns the text held back once generation is over (without a stop string:
// what was held did not turn out to be one), and "" after a stop.
func (d *TextDecoder) Flush() string {
	if d.m.stopped {
		return ""
	}
	text, _ := d.m.add(d.stream.Flush())
	if !d.m.stopped {
		text += d.m.held
		d.m.held = ""
	}
	return text
}

// stopMatcher finds stop strings in streamed text and holds back what could be the
// beginning of one.
type stopMatcher struct {
	stops   []string
	held    string // text not emitted yet: a proper prefix of some stop string
	stopped bool
}

// add appends text and returns what can be emitted now, and whether a stop string was
// found (then what precedes it is returned and the rest dropped).
func (m *stopMatcher) add(text string) (string, bool) {
	if len(m.stops) == 0 || m.stopped {
		return text, m.stopped
	}
	buf := m.held + text
	cut := -1
	for _, stop := range m.stops {
		if i := strings.Index(buf, stop); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		m.held, m.stopped = "", true
		return buf[:cut], true
	}
	hold := 0 // the longest suffix of buf that begins a stop string
	for _, stop := range m.stops {
		for k := min(len(stop)-1, len(buf)); k > hold; k-- {
			if strings.HasSuffix(buf, stop[:k]) {
				hold = k
				break
			}
		}
	}
	m.held = buf[len(buf)-hold:]
	return buf[:len(buf)-hold], false
}

// generate is Generate with an emit that can end generation (stop true).
func (s *Session) generate(ctx context.Context, prompt []int, opts GenerateOptions, emit func(id int) (stop bool, err error)) (Stats, error) {
	var st Stats
	smp := opts.Sampler
	if smp == nil {
		smp = greedy()
	}
	stops := opts.StopIDs
	if !opts.IgnoreEOS {
		stops = append(s.m.EndIDs(), stops...)
	}
	if len(prompt) == 0 {
		return st, errors.New("generate: empty prompt: give at least one token (BOS)")
	}
	if s.pos+len(prompt) > s.ctx {
		return st, fmt.Errorf("%w: the prompt has %d tokens, the context holds %d", ErrContextFull, s.pos+len(prompt), s.ctx)
	}
	t0, pos0 := time.Now(), s.pos
	logits, err := s.ForwardContext(ctx, prompt)
	st.PromptTokens, st.PromptDuration = s.pos-pos0, time.Since(t0)
	if err != nil {
		return st, err
	}
	for _, id := range prompt {
		smp.Accept(id)
	}
	t1 := time.Now()
	done := func(err error) (Stats, error) {
		st.GenDuration = time.Since(t1)
		return st, err
	}
	for opts.MaxTokens < 0 || st.Generated < opts.MaxTokens {
		if err := ctx.Err(); err != nil {
			return done(err)
		}
		id := smp.Sample(logits)
		for _, x := range stops {
			if id == x {
				return done(nil)
			}
		}
		smp.Accept(id)
		st.Generated++
		stop, err := emit(id)
		if err != nil {
			return done(err)
		}
		if s.pos >= s.ctx {
			break
		}
		if logits, err = s.Forward([]int{id}); err != nil {
			return done(err)
		}
		if stop {
			break
		}
	}
	return done(nil)
}
