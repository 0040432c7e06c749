package engine_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/tokenizer"
)

// tinyWithTokenizer loads the seeded "tiny" model with its byte-level tokenizer
// metadata changed by edit (the weights, hence the logits, stay the same).
func tinyWithTokenizer(t *testing.T, edit func(format.Metadata)) *engine.Model {
	t.Helper()
	ck, err := synth.Build(preset(t, "tiny"), 7)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(ck.Meta)
	}
	return writeAndLoad(t, ck, engine.Options{Threads: 1})
}

// sampled returns opts with a new seeded sampler at temperature 1 (greedy decoding of
// a random model soon repeats one token forever).
func sampled(t *testing.T, opts engine.GenerateOptions) engine.GenerateOptions {
	t.Helper()
	smp, err := engine.NewSampler(engine.SamplerConfig{Temperature: 1, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	opts.Sampler = smp
	return opts
}

// generateIDs runs Generate from a fresh session and returns the emitted ids.
func generateIDs(t *testing.T, m *engine.Model, prompt []int, opts engine.GenerateOptions) []int {
	t.Helper()
	var out []int
	if _, err := m.NewSession(engine.SessionOptions{}).Generate(t.Context(), prompt, opts,
		func(id int) error { out = append(out, id); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

var genPrompt = []int{256, 72, 105} // BOS "Hi"

// wordAfter returns the first id of ref at index ≥ from that is a word piece (≥ 258,
// so that it can serve as a special id of the byte-level tokenizer) and does not occur
// before it, and its index.
func wordAfter(t *testing.T, ref []int, from int) (int, int) {
	t.Helper()
	for i := from; i < len(ref); i++ {
		if ref[i] >= 258 && !slices.Contains(ref[:i], ref[i]) {
			return ref[i], i
		}
	}
	t.Fatalf("no new word piece after index %d in %v", from, ref)
	return 0, 0
}

func TestGenerateStopIDs(t *testing.T) {
	m := tinyWithTokenizer(t, nil)
	ref := generateIDs(t, m, genPrompt, sampled(t, engine.GenerateOptions{MaxTokens: 40, IgnoreEOS: true}))
	if len(ref) != 40 {
		t.Fatalf("%d tokens, want 40", len(ref))
	}
	stop, at := wordAfter(t, ref, 3)
	got := generateIDs(t, m, genPrompt, sampled(t, engine.GenerateOptions{MaxTokens: 40, IgnoreEOS: true, StopIDs: []int{stop}}))
	if !slices.Equal(got, ref[:at]) {
		t.Fatalf("StopIDs %d: got %v, want %v", stop, got, ref[:at])
	}
	// MaxTokens: 0 generates nothing, a negative count runs to the end of the context.
	if got := generateIDs(t, m, genPrompt, engine.GenerateOptions{MaxTokens: 0, IgnoreEOS: true}); len(got) != 0 {
		t.Fatalf("MaxTokens 0: %v", got)
	}
	s := m.NewSession(engine.SessionOptions{Context: 20})
	st, err := s.Generate(t.Context(), genPrompt, engine.GenerateOptions{MaxTokens: -1, IgnoreEOS: true}, func(int) error { return nil })
	// 17 tokens fill the context; an 18th is sampled from the logits after the last.
	if err != nil || st.Generated != 18 || st.PromptTokens != 3 || s.Pos() != 20 {
		t.Fatalf("MaxTokens -1 in a 20-token context: %+v, pos %d, %v", st, s.Pos(), err)
	}
	if _, err := s.Generate(t.Context(), genPrompt, engine.GenerateOptions{StopStrings: []string{"x"}}, func(int) error { return nil }); err == nil {
		t.Fatal("Generate accepted stop strings")
	}
}

// TestGenerateEndIDs: the tokenizer's EOS ends generation unless IgnoreEOS; a llama2.c
// model's BOS does too, through the API as through lmrun run.
func TestGenerateEndIDs(t *testing.T) {
	ref := generateIDs(t, tinyWithTokenizer(t, nil), genPrompt, sampled(t, engine.GenerateOptions{MaxTokens: 40, IgnoreEOS: true}))
	eos, at := wordAfter(t, ref, 2)
	bos, atBOS := wordAfter(t, ref, at+1)

	m := tinyWithTokenizer(t, func(meta format.Metadata) { meta[tokenizer.KeyEOS] = int64(eos) })
	if ids := m.EndIDs(); !slices.Equal(ids, []int{eos}) {
		t.Fatalf("EndIDs %v, want [%d]", ids, eos)
	}
	if got := generateIDs(t, m, genPrompt, sampled(t, engine.GenerateOptions{MaxTokens: 40})); !slices.Equal(got, ref[:at]) {
		t.Fatalf("EOS %d: got %v, want %v", eos, got, ref[:at])
	}
	if got := generateIDs(t, m, genPrompt, sampled(t, engine.GenerateOptions{MaxTokens: 40, IgnoreEOS: true})); !slices.Equal(got, ref) {
		t.Fatalf("IgnoreEOS: got %v, want %v", got, ref)
	}

	// The same weights with a llama2.c tokenizer whose BOS is generated after EOS: EOS
	// stops first; with IgnoreEOS nothing stops; with EOS moved out of the way, BOS stops.
	llama2c := func(eos int) func(format.Metadata) {
		return func(meta format.Metadata) {
			meta[tokenizer.KeyModel] = tokenizer.KindLlama2c
			meta[tokenizer.KeyScores] = make([]float32, len(meta[tokenizer.KeyTokens].([]string)))
			meta[tokenizer.KeyBOS], meta[tokenizer.KeyEOS] = int64(bos), int64(eos)
		}
	}
	m = tinyWithTokenizer(t, llama2c(eos))
	if ids := m.EndIDs(); !slices.Equal(ids, []int{eos, bos}) {
		t.Fatalf("llama2c EndIDs %v, want [%d %d]", ids, eos, bos)
	}
	if got := generateIDs(t, m, genPrompt, sampled(t, engine.GenerateOptions{MaxTokens: 40, IgnoreEOS: true})); !slices.Equal(got, ref) {
		t.Fatalf("llama2c IgnoreEOS: got %v", got)
	}
	m = tinyWithTokenizer(t, llama2c(-1))
	if got := generateIDs(t, m, genPrompt, sampled(t, engine.GenerateOptions{MaxTokens: 40})); !slices.Equal(got, ref[:atBOS]) {
		t.Fatalf("llama2c BOS %d: got %v, want %v", bos, got, ref[:atBOS])
	}
}

// generateText runs GenerateText from a fresh session and returns the emitted chunks.
func generateText(t *testing.T, m *engine.Model, opts engine.GenerateOptions) []string {
	t.Helper()
	var chunks []string
	if _, err := m.NewSession(engine.SessionOptions{}).GenerateText(t.Context(), genPrompt, opts,
		func(s string) error { chunks = append(chunks, s); return nil }); err != nil {
		t.Fatal(err)
	}
	return chunks
}

func TestGenerateTextStopStrings(t *testing.T) {
	m := tinyWithTokenizer(t, nil)
	opts := engine.GenerateOptions{MaxTokens: 40, IgnoreEOS: true}
	text := func(opts engine.GenerateOptions) []string { return generateText(t, m, sampled(t, opts)) }
	ref := text(opts)
	full := strings.Join(ref, "")
	// The text is what a tokenizer.Stream makes of Generate's ids after the prompt's.
	stream := tokenizer.NewStream(m.Tokenizer())
	var want strings.Builder
	for i, id := range append(slices.Clone(genPrompt), generateIDs(t, m, genPrompt, sampled(t, opts))...) {
		piece, err := stream.Add(id)
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(genPrompt) {
			want.WriteString(piece)
		}
	}
	want.WriteString(stream.Flush())
	if full != want.String() {
		t.Fatalf("GenerateText %q, the stream of Generate's ids %q", full, want.String())
	}

	// A stop string spanning two emitted chunks (the end of one word piece, the start
	// of the next): the text before its first occurrence is emitted, nothing of it.
	i := 1
	for ; i < len(ref); i++ {
		if ascii(ref[i-1]) && ascii(ref[i]) && len(ref[i-1]) >= 2 && len(ref[i]) >= 2 {
			break
		}
	}
	if i == len(ref) {
		t.Fatalf("no two consecutive ASCII chunks in %q", ref)
	}
	before := strings.Join(ref[:i], "")
	stop := before[len(before)-2:] + ref[i][:2]
	wantStop := full[:strings.Index(full, stop)]
	if got := strings.Join(text(engine.GenerateOptions{MaxTokens: 40, IgnoreEOS: true, StopStrings: []string{stop}}), ""); got != wantStop {
		t.Fatalf("stop %q: got %q, want %q", stop, got, wantStop)
	}
	// Several stop strings: the first to occur wins.
	stop2 := ref[len(ref)/2]
	want2 := full[:min(strings.Index(full, stop), strings.Index(full, stop2))]
	if got := strings.Join(text(engine.GenerateOptions{MaxTokens: 40, IgnoreEOS: true, StopStrings: []string{stop2, stop}}), ""); got != want2 {
		t.Fatalf("stops %q, %q: got %q, want %q", stop2, stop, got, want2)
	}

	// Stop strings that begin like the text but never complete: every prefix held back
	// is emitted once it is decided (or at the end), and the text is unchanged.
	var never []string
	for _, c := range ref[5:30] {
		never = append(never, c+"\x00")
	}
	chunks := text(engine.GenerateOptions{MaxTokens: 40, IgnoreEOS: true, StopStrings: never})
	if got := strings.Join(chunks, ""); got != full {
		t.Fatalf("undecided prefixes: got %q, want %q", got, full)
	}
	// The chunks of ref[5:30] were held back when they arrived (each begins a stop
	// string), so fewer chunks came out.
	if len(chunks) >= len(ref) {
		t.Fatalf("nothing was held back: %d chunks", len(chunks))
	}
	// The last chunk begins a stop string until generation ends: it comes out in the
	// final flush.
	last := ref[len(ref)-1]
	chunks = text(engine.GenerateOptions{MaxTokens: 40, IgnoreEOS: true, StopStrings: []string{last + "\x00"}})
	if got := strings.Join(chunks, ""); got != full || !strings.HasSuffix(chunks[len(chunks)-1], last) {
		t.Fatalf("held back at the end: %q", chunks)
	}
	if _, err := m.NewSession(engine.SessionOptions{}).GenerateText(t.Context(), genPrompt, engine.GenerateOptions{StopStrings: []string{""}}, func(string) error { return nil }); err == nil {
		t.Fatal("an empty stop string was accepted")
	}
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// TestGenerateCancelPrefill: cancelling during a long prompt stops it within one batch,
// with ctx's error; the batches done stay in the cache.
func TestGenerateCancelPrefill(t *testing.T) {
	cfg := preset(t, "tiny")
	m := synthModel(t, cfg, engine.Options{Threads: 1})
	prompt := randomTokens(200, cfg.VocabSize, 1)
	for _, cancelAt := range []int{0, 32, 40} { // cancelled during the batch at 0, 32, 48
		ctx, cancel := context.WithCancel(t.Context())
		var s *engine.Session
		s = m.NewSession(engine.SessionOptions{Batch: 16, ObserveMatMul: func([]string, []float32, int, int) {
			if s.Pos() >= cancelAt {
				cancel() // the batch under way finishes; no other starts
			}
		}})
		// The cancelled batch is the first to start at or after cancelAt.
		wantPos := (cancelAt+15)/16*16 + 16
		st, err := s.Generate(ctx, prompt, engine.GenerateOptions{MaxTokens: 5}, func(int) error {
			t.Fatal("a token was generated")
			return nil
		})
		cancel()
		if !errors.Is(err, context.Canceled) || s.Pos() != wantPos || st.PromptTokens != wantPos || st.Generated != 0 {
			t.Fatalf("cancel at %d: %v, pos %d, %+v; want context.Canceled at %d", cancelAt, err, s.Pos(), st, wantPos)
		}
	}
	// ForwardContext alone, and a context cancelled before anything.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s := m.NewSession(engine.SessionOptions{Batch: 16})
	if _, err := s.ForwardContext(ctx, prompt); !errors.Is(err, context.Canceled) || s.Pos() != 0 {
		t.Fatalf("cancelled ForwardContext: %v, pos %d", err, s.Pos())
	}
	if _, err := s.ForwardContext(t.Context(), prompt); err != nil || s.Pos() != len(prompt) {
		t.Fatalf("ForwardContext: %v, pos %d", err, s.Pos())
	}
}

// TestGenerateCancelDecode: a cancellation between tokens ends generation with ctx's
// error and what was emitted so far counted.
func TestGenerateCancelDecode(t *testing.T) {
	m := tinyWithTokenizer(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	n := 0
	st, err := m.NewSession(engine.SessionOptions{}).Generate(ctx, genPrompt, engine.GenerateOptions{MaxTokens: -1, IgnoreEOS: true},
		func(int) error {
			if n++; n == 5 {
				cancel()
			}
			return nil
		})
	if !errors.Is(err, context.Canceled) || st.Generated != 5 || st.PromptTokens != 3 {
		t.Fatalf("%v, %+v", err, st)
	}
}

func TestGenerateSamplerHistory(t *testing.T) {
	// The penalties see the prompt: a huge presence penalty forbids every prompt token,
	// so greedy decoding never repeats one of them, nor a token it generated.
	m := tinyWithTokenizer(t, nil)
	smp, err := engine.NewSampler(engine.SamplerConfig{PresencePenalty: 1e6, RepeatLastN: -1})
	if err != nil {
		t.Fatal(err)
	}
	got := generateIDs(t, m, genPrompt, engine.GenerateOptions{MaxTokens: 30, IgnoreEOS: true, Sampler: smp})
	seen := slices.Clone(genPrompt)
	for _, id := range got {
		if slices.Contains(seen, id) {
			t.Fatalf("token %d repeated despite the presence penalty: %v", id, got)
		}
		seen = append(seen, id)
	}
}

func TestStats(t *testing.T) {
	st := engine.Stats{PromptTokens: 10, Generated: 3, PromptDuration: 2e9, GenDuration: 5e8}
	if st.PromptTokensPerSecond() != 5 || st.GenTokensPerSecond() != 6 || (engine.Stats{}).GenTokensPerSecond() != 0 {
		t.Fatalf("%v %v", st.PromptTokensPerSecond(), st.GenTokensPerSecond())
	}
}
