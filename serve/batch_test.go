package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lmrun/lmrun/engine"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// complete posts a completion request and decodes the whole response; safe to call from
// several goroutines.
func complete(ts *httptest.Server, body map[string]any) (result, error) {
	b, _ := json.Marshal(body)
	resp, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(string(b)))
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return result{}, fmt.Errorf("status %d: %s", resp.StatusCode, out)
	}
	var r struct {
		Choices []struct {
			Text         string        `json:"text"`
			FinishReason string        `json:"finish_reason"`
			Logprobs     *textLogprobs `json:"logprobs"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	if err := json.Unmarshal(out, &r); err != nil || len(r.Choices) != 1 {
		return result{}, fmt.Errorf("response %s: %v", out, err)
	}
	res := result{text: r.Choices[0].Text, finish: r.Choices[0].FinishReason, usage: r.Usage}
	if lp := r.Choices[0].Logprobs; lp != nil {
		b, _ := json.Marshal(lp)
		res.logprobs = string(b)
	}
	return res, nil
}

// TestBatchedMatchesAlone: eight requests at temperature 0, decoded together in batched
// steps (their prompts prefilled in chunks beside the others' decoding), each get the
// text and usage they get alone.
func TestBatchedMatchesAlone(t *testing.T) {
	f32 := batchedMatchesAlone(t, false)
	t.Run("f16 KV", func(t *testing.T) {
		// An f16 cache gives other logits (so the option reached the sessions) and
		// still the same ones batched as alone.
		if f16 := batchedMatchesAlone(t, true); slices.Equal(f16, f32) {
			t.Error("the f16 KV cache changed no logprob")
		}
	})
}

// batchedMatchesAlone runs TestBatchedMatchesAlone with a KV cache of f16 (halfKV) or f32
// and returns the results alone.
func batchedMatchesAlone(t *testing.T, halfKV bool) []result {
	prompts := []string{"Once upon a time", "The cat", "In a land far away, there lived a", "Hi",
		"One day, Lily went to the park with her mom and", "Tom", "A big red ball", "The sun was shining and the birds"}
	// The log-probabilities of every token and its five likeliest alternatives, float32
	// values that JSON carries exactly, show the logits are the same bits.
	body := func(p string) map[string]any {
		return map[string]any{"prompt": p, "max_tokens": 24, "temperature": 0, "logprobs": 5}
	}
	_, alone := newServer(t, Options{Parallel: 1, Chunk: 4, HalfKV: halfKV})
	want := make([]result, len(prompts))
	for i, p := range prompts {
		r, err := complete(alone, body(p))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = r
	}
	s, ts := newServer(t, Options{Parallel: len(prompts), Chunk: 4, HalfKV: halfKV})
	got := make([]result, len(prompts))
	errs := make([]error, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Go(func() { got[i], errs[i] = complete(ts, body(p)) })
	}
	wg.Wait()
	for i := range prompts {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		got[i].usage.PromptTokensDetails = nil
		want[i].usage.PromptTokensDetails = nil
		if want[i].logprobs == "" || strings.Count(want[i].logprobs, "text_offset") != 1 {
			t.Fatalf("request %d: logprobs %s", i, want[i].logprobs)
		}
		if got[i] != want[i] {
			t.Errorf("request %d (%q) batched: %+v\nalone: %+v", i, prompts[i], got[i], want[i])
		}
	}
	// The requests did share steps: more rows than steps.
	m := s.met
	steps, rows := histogram(t, m.stepRows)
	if rows <= steps {
		t.Errorf("%v rows in %v steps: the requests were not batched", rows, steps)
	}
	if n := testutil.ToFloat64(m.active); n != 0 {
		t.Errorf("lmrun_active_sequences = %v after every request ended", n)
	}
	return want
}

// histogram returns the count and sum of an unlabelled histogram.
func histogram(t *testing.T, h interface{ Write(*dto.Metric) error }) (count, sum float64) {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return float64(m.GetHistogram().GetSampleCount()), m.GetHistogram().GetSampleSum()
}

// TestPromptCache: a prompt that continues an earlier one (with the text generated for
// it) reuses the tokens the slot's cache holds, says so in usage, and is answered as a
// server without the cache answers it.
func TestPromptCache(t *testing.T) {
	s, ts := newServer(t, Options{Parallel: 2, Chunk: 4})
	first := "Once upon a time"
	r1, err := complete(ts, map[string]any{"prompt": first, "max_tokens": 16, "temperature": 0})
	if err != nil {
		t.Fatal(err)
	}
	if d := r1.usage.PromptTokensDetails; d != nil {
		t.Errorf("first request: cached %d tokens of an empty cache", d.CachedTokens)
	}
	second := first + r1.text + " and then"
	body := map[string]any{"prompt": second, "max_tokens": 16, "temperature": 0}
	r2, err := complete(ts, body)
	if err != nil {
		t.Fatal(err)
	}
	if d := r2.usage.PromptTokensDetails; d == nil || d.CachedTokens < r1.usage.PromptTokens || d.CachedTokens >= r2.usage.PromptTokens {
		t.Errorf("second request: prompt_tokens_details %+v, want between the first prompt's %d tokens and the second's %d",
			d, r1.usage.PromptTokens, r2.usage.PromptTokens)
	}
	if n := testutil.ToFloat64(s.met.cachedTokens); int(n) != r2.usage.PromptTokensDetails.CachedTokens {
		t.Errorf("lmrun_prompt_cached_tokens_total = %v", n)
	}
	_, fresh := newServer(t, Options{Parallel: 1, Chunk: 4})
	want, err := complete(fresh, body)
	if err != nil {
		t.Fatal(err)
	}
	r2.usage.PromptTokensDetails = nil
	if r2 != want {
		t.Errorf("with the prompt cache: %+v\nwithout: %+v", r2, want)
	}
	// The same prompt again reuses all of it but its last token.
	r3, err := complete(ts, body)
	if err != nil {
		t.Fatal(err)
	}
	if d := r3.usage.PromptTokensDetails; d == nil || d.CachedTokens != r3.usage.PromptTokens-1 {
		t.Errorf("the same prompt again: prompt_tokens_details %+v, want %d cached", d, r3.usage.PromptTokens-1)
	}
	r3.usage.PromptTokensDetails = nil
	if r3 != want {
		t.Errorf("the same prompt again: %+v, want %+v", r3, want)
	}
}

// TestDrain: a draining server answers new completions 503 and /health 503.
func TestDrain(t *testing.T) {
	s, ts := newServer(t, Options{})
	s.Drain()
	resp, b := post(t, ts.URL+"/v1/completions", `{"prompt": "x", "max_tokens": 2}`)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "shutting down") {
		t.Errorf("completion while draining: status %d: %s", resp.StatusCode, b)
	}
	h, err := http.Get(ts.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	h.Body.Close()
	if h.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/health while draining: %d", h.StatusCode)
	}
}

// TestLogprobs: the log-probabilities of /v1/completions (legacy columns) and chat
// (per-token entries), streamed or not, are the model's: the first token's equals the
// log-softmax of the engine's logits after the prompt, the greedy token is the likeliest
// of its alternatives, which come in descending order, and the tokens' bytes spell the
// text.
func TestLogprobs(t *testing.T) {
	s, ts := newServer(t, Options{})
	const prompt = "Once upon a time"
	ids, err := s.m.Tokenizer().Encode(prompt, true, false)
	if err != nil {
		t.Fatal(err)
	}
	sess := s.m.NewSession(engine.SessionOptions{})
	logits, err := sess.Forward(ids)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, x := range logits {
		sum += math.Exp(float64(x))
	}
	first := engine.Argmax(logits)
	want0 := float64(logits[first]) - math.Log(sum)

	r, err := complete(ts, map[string]any{"prompt": prompt, "max_tokens": 8, "temperature": 0, "logprobs": 3, "ignore_eos": true})
	if err != nil {
		t.Fatal(err)
	}
	var lp textLogprobs
	if err := json.Unmarshal([]byte(r.logprobs), &lp); err != nil {
		t.Fatal(err)
	}
	n := r.usage.CompletionTokens
	if len(lp.Tokens) != n || len(lp.TokenLogprobs) != n || len(lp.TopLogprobs) != n || len(lp.TextOffset) != n {
		t.Fatalf("logprobs of %d tokens: %s", n, r.logprobs)
	}
	if math.Abs(float64(lp.TokenLogprobs[0])-want0) > 1e-5 {
		t.Errorf("first token's logprob %v, the engine's logits give %v", lp.TokenLogprobs[0], want0)
	}
	for i := range n {
		top := lp.TopLogprobs[i]
		if len(top) > 3 || len(top) == 0 || lp.TokenLogprobs[i] > 0 {
			t.Errorf("token %d: logprob %v, top %v", i, lp.TokenLogprobs[i], top)
		}
		for _, v := range top {
			if v > lp.TokenLogprobs[i] {
				t.Errorf("token %d (%q, %v): an alternative is likelier: %v", i, lp.Tokens[i], lp.TokenLogprobs[i], top)
			}
		}
	}

	// Chat, streamed and not: the same entries.
	var entries [2][]chatTokenLogprob
	for k, stream := range []bool{false, true} {
		body := map[string]any{"messages": []any{map[string]any{"role": "user", "content": "Hi"}}, "max_tokens": 6,
			"temperature": 0, "logprobs": true, "top_logprobs": 4, "stream": stream, "ignore_eos": true}
		b, _ := json.Marshal(body)
		resp, out := post(t, ts.URL+"/v1/chat/completions", string(b))
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, out)
		}
		var text strings.Builder
		chunks := [][]byte{out}
		if stream {
			chunks = nil
			for _, l := range strings.Split(string(out), "\n") {
				if d, ok := strings.CutPrefix(l, "data: "); ok && d != "[DONE]" {
					chunks = append(chunks, []byte(d))
				}
			}
		}
		for _, c := range chunks {
			var r struct {
				Choices []struct {
					Message, Delta *struct{ Content string }
					Logprobs       *chatLogprobs
				}
			}
			if err := json.Unmarshal(c, &r); err != nil {
				t.Fatal(err)
			}
			for _, ch := range r.Choices {
				if ch.Message != nil {
					text.WriteString(ch.Message.Content)
				}
				if ch.Delta != nil {
					text.WriteString(ch.Delta.Content)
				}
				if ch.Logprobs != nil {
					entries[k] = append(entries[k], ch.Logprobs.Content...)
				}
			}
		}
		if len(entries[k]) != 6 {
			t.Fatalf("stream %v: %d logprob entries for 6 tokens", stream, len(entries[k]))
		}
		var spelled []byte
		for i, e := range entries[k] {
			if len(e.TopLogprobs) != 4 || e.TopLogprobs[0].Logprob != e.Logprob || e.TopLogprobs[0].Token != e.Token {
				t.Errorf("stream %v, token %d: %+v: the greedy token is not the first alternative", stream, i, e)
			}
			for j := 1; j < len(e.TopLogprobs); j++ {
				if e.TopLogprobs[j].Logprob > e.TopLogprobs[j-1].Logprob {
					t.Errorf("stream %v, token %d: alternatives out of order: %+v", stream, i, e.TopLogprobs)
				}
			}
			for _, c := range e.Bytes {
				spelled = append(spelled, byte(c))
			}
		}
		if string(spelled) != text.String() {
			t.Errorf("stream %v: the tokens' bytes spell %q, the text is %q", stream, spelled, text.String())
		}
	}
	a, _ := json.Marshal(entries[0])
	b, _ := json.Marshal(entries[1])
	if string(a) != string(b) {
		t.Errorf("streamed logprobs differ:\n%s\n%s", a, b)
	}
}

// TestSubmitAfterClose: a request that reaches the scheduler after it stopped ends at
// once with an error instead of waiting for ever.
func TestSubmitAfterClose(t *testing.T) {
	s, _ := newServer(t, Options{})
	s.sched.close()
	j := &job{ctx: context.Background(), prompt: []int{1}}
	s.sched.submit(j)
	select {
	case <-j.ready:
		if e := j.take(); len(e) != 1 || !e[0].end || !errors.Is(e[0].err, errShutdown) {
			t.Errorf("events %+v, want the end with errShutdown", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a job submitted after close never ended")
	}
}

// TestPromptBudget: a step feeds a whole chunk of prompt when nobody is generating, and
// beside generating sequences no more prompt tokens than there are of them (at least half a
// chunk).
func TestPromptBudget(t *testing.T) {
	for _, c := range []struct{ chunk, gen, want int }{
		{32, 0, 32}, {32, 1, 16}, {32, 7, 16}, {32, 16, 16}, {32, 20, 20}, {32, 40, 32},
		{4, 0, 4}, {4, 3, 3}, {4, 1, 2}, {1, 5, 1}, {5, 1, 3},
	} {
		if got := promptBudget(c.chunk, c.gen); got != c.want {
			t.Errorf("promptBudget(%d, %d) = %d, want %d", c.chunk, c.gen, got, c.want)
		}
	}
}
