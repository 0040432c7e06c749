package serve

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

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
			Text         string `json:"text"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	if err := json.Unmarshal(out, &r); err != nil || len(r.Choices) != 1 {
		return result{}, fmt.Errorf("response %s: %v", out, err)
	}
	return result{text: r.Choices[0].Text, finish: r.Choices[0].FinishReason, usage: r.Usage}, nil
}

// TestBatchedMatchesAlone: eight requests at temperature 0, decoded together in batched
// steps (their prompts prefilled in chunks beside the others' decoding), each get the
// text and usage they get alone.
func TestBatchedMatchesAlone(t *testing.T) {
	prompts := []string{"Once upon a time", "The cat", "In a land far away, there lived a", "Hi",
		"One day, Lily went to the park with her mom and", "Tom", "A big red ball", "The sun was shining and the birds"}
	body := func(p string) map[string]any { return map[string]any{"prompt": p, "max_tokens": 24, "temperature": 0} }
	_, alone := newServer(t, Options{Parallel: 1, Chunk: 4})
	want := make([]result, len(prompts))
	for i, p := range prompts {
		r, err := complete(alone, body(p))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = r
	}
	s, ts := newServer(t, Options{Parallel: len(prompts), Chunk: 4})
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
