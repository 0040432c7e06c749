package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lmrun/lmrun/chat"
	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/engine"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const chatML = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// tinyModel opens the synthetic tiny model, written to a temporary directory.
func tinyModel(t testing.TB) *engine.Model { return tinyModelCtx(t, 0) }

// tinyModelCtx is tinyModel with a context of ctx positions (0: the preset's 256).
func tinyModelCtx(t testing.TB, ctx int) *engine.Model {
	t.Helper()
	p, err := synth.Lookup("tiny")
	if err != nil {
		t.Fatal(err)
	}
	if ctx > 0 {
		p.Config.ContextLength = ctx
	}
	ck, err := p.Build(1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tiny.lmc")
	if err := ck.WriteFile(path, nil); err != nil {
		t.Fatal(err)
	}
	f, err := convert.Open(path, convert.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := engine.FromFile(f, engine.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// newServer returns a server of the tiny model with a ChatML template.
func newServer(t testing.TB, o Options) (*Server, *httptest.Server) {
	t.Helper()
	return newServerOf(t, tinyModel(t), o)
}

// newServerOf returns a server of m with a ChatML template.
func newServerOf(t testing.TB, m *engine.Model, o Options) (*Server, *httptest.Server) {
	t.Helper()
	tmpl, err := chat.Parse(chatML)
	if err != nil {
		t.Fatal(err)
	}
	o.Template, o.Name = tmpl, "tiny"
	s, err := New(m, o)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts
}

func post(t *testing.T, url, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// result is what a test reads from a response, streamed or not.
type result struct {
	text, finish string
	usage        usage
	logprobs     string // the choice's logprobs as JSON, when asked for
}

func decodeWhole(t *testing.T, b []byte, isChat bool) result {
	t.Helper()
	var r struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message      *message `json:"message"`
			Text         *string  `json:"text"`
			FinishReason string   `json:"finish_reason"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if len(r.Choices) != 1 || r.Model != "tiny" {
		t.Fatalf("response %s", b)
	}
	c := r.Choices[0]
	res := result{finish: c.FinishReason, usage: r.Usage}
	if isChat {
		if r.Object != "chat.completion" || c.Message == nil || c.Message.Role != "assistant" {
			t.Fatalf("chat response %s", b)
		}
		res.text = c.Message.Content
	} else {
		if r.Object != "text_completion" || c.Text == nil {
			t.Fatalf("completion response %s", b)
		}
		res.text = *c.Text
	}
	return res
}

// decodeStream parses Server-Sent Events: the chunks' text, the last finish reason and
// usage; it fails unless the stream ends with [DONE].
func decodeStream(t *testing.T, b []byte, isChat bool) result {
	t.Helper()
	var res result
	done := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || done {
			t.Fatalf("line %q in stream %s", line, b)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Delta        *delta  `json:"delta"`
				Text         *string `json:"text"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *usage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil || len(c.Choices) != 1 {
			t.Fatalf("chunk %q: %v", data, err)
		}
		ch := c.Choices[0]
		if isChat {
			if c.Object != "chat.completion.chunk" || ch.Delta == nil {
				t.Fatalf("chat chunk %q", data)
			}
			res.text += ch.Delta.Content
		} else {
			if c.Object != "text_completion" || ch.Text == nil {
				t.Fatalf("completion chunk %q", data)
			}
			res.text += *ch.Text
		}
		if ch.FinishReason != nil {
			res.finish = *ch.FinishReason
		}
		if c.Usage != nil {
			res.usage = *c.Usage
		}
	}
	if !done {
		t.Fatalf("no [DONE] in stream %s", b)
	}
	return res
}

// ask sends a request and decodes its answer, streamed or not.
func ask(t *testing.T, ts *httptest.Server, isChat bool, body map[string]any) result {
	t.Helper()
	path := "/v1/completions"
	if isChat {
		path = "/v1/chat/completions"
	}
	b, _ := json.Marshal(body)
	resp, out := post(t, ts.URL+path, string(b))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, out)
	}
	if body["stream"] == true {
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("content type %q", ct)
		}
		return decodeStream(t, out, isChat)
	}
	return decodeWhole(t, out, isChat)
}

// TestCompletionsMatchEngine checks both endpoints, streamed and not, against the
// engine run directly: the same text greedily, usage equal to the tokens processed and
// generated, the same answer twice at temperature 0.
func TestCompletionsMatchEngine(t *testing.T) {
	s, ts := newServer(t, Options{})
	messages := []map[string]string{{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}}
	for _, isChat := range []bool{false, true} {
		var prompt []int
		var stopIDs []int
		var stops []string
		if isChat {
			text, err := s.o.Template.Render(func() *chat.Conversation {
				c := &chat.Conversation{}
				for _, m := range messages {
					c.Append(m["role"], m["content"])
				}
				return c
			}(), s.o.Render)
			if err != nil {
				t.Fatal(err)
			}
			prompt, stopIDs, stops = s.encode(text), s.stopIDs, s.stops
		} else {
			var err error
			if prompt, err = s.m.Tokenizer().Encode("Once upon a time", true, false); err != nil {
				t.Fatal(err)
			}
		}
		sess := s.m.NewSession(engine.SessionOptions{})
		var want strings.Builder
		st, err := sess.GenerateText(context.Background(), prompt, engine.GenerateOptions{MaxTokens: 12, StopIDs: stopIDs, StopStrings: stops},
			func(t string) error { want.WriteString(t); return nil })
		if err != nil {
			t.Fatal(err)
		}
		for _, stream := range []bool{false, true, false} {
			body := map[string]any{"max_tokens": 12, "temperature": 0, "stream": stream}
			if isChat {
				body["messages"] = messages
			} else {
				body["prompt"] = "Once upon a time"
			}
			got := ask(t, ts, isChat, body)
			if got.text != want.String() {
				t.Errorf("chat %v stream %v: text %q, want %q", isChat, stream, got.text, want.String())
			}
			u := usage{PromptTokens: st.PromptTokens, CompletionTokens: st.Generated, TotalTokens: st.PromptTokens + st.Generated}
			gu := got.usage
			gu.PromptTokensDetails = nil // the prompt cache's share: TestPromptCache
			if gu != u || u.PromptTokens != len(prompt) {
				t.Errorf("chat %v stream %v: usage %+v, want %+v (prompt %d tokens)", isChat, stream, got.usage, u, len(prompt))
			}
			wantFinish := "stop"
			if st.Generated == 12 {
				wantFinish = "length"
			}
			if got.finish != wantFinish {
				t.Errorf("chat %v stream %v: finish %q, want %q", isChat, stream, got.finish, wantFinish)
			}
		}
	}
}

// TestStopStrings checks that a stop string ends the text, is not emitted, and that the
// finish reason is "stop", streamed or not, given as a string or a list.
func TestStopStrings(t *testing.T) {
	_, ts := newServer(t, Options{})
	full := ask(t, ts, false, map[string]any{"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0})
	r := []rune(full.text)
	if len(r) < 6 {
		t.Skipf("the model ends too early: %q", full.text)
	}
	stop := string(r[3:5])
	want := full.text[:strings.Index(full.text, stop)]
	for _, stream := range []bool{false, true} {
		for _, st := range []any{stop, []string{"\x00never", stop}} {
			got := ask(t, ts, false, map[string]any{"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "stop": st, "stream": stream})
			if got.text != want || got.finish != "stop" {
				t.Errorf("stop %q stream %v: %q (%s), want %q (stop)", st, stream, got.text, got.finish, want)
			}
		}
	}
}

// TestSampling checks that the sampling fields are accepted and that a seed makes a
// sampled answer reproducible.
func TestSampling(t *testing.T) {
	_, ts := newServer(t, Options{})
	body := map[string]any{"prompt": "Hi", "max_tokens": 10, "temperature": 0.9, "top_p": 0.9, "top_k": 20, "min_p": 0.01,
		"seed": 7, "presence_penalty": 0.5, "frequency_penalty": 0.5}
	a, b := ask(t, ts, false, body), ask(t, ts, false, body)
	if a.text != b.text {
		t.Errorf("seed 7 twice: %q and %q", a.text, b.text)
	}
}

// TestErrors checks each error status and that the body is OpenAI's error JSON.
func TestErrors(t *testing.T) {
	_, ts := newServer(t, Options{Context: 32, MaxBodyBytes: 4096})
	_, keyed := newServer(t, Options{APIKey: "sesame"})
	long := strings.Repeat("many words ", 20)
	for _, tc := range []struct {
		name, url, method, body string
		header                  []string
		status                  int
		param, contains         string
	}{
		{"malformed", ts.URL + "/v1/completions", "POST", `{"prompt": "x"`, nil, 400, "", "JSON"},
		{"not an object", ts.URL + "/v1/completions", "POST", `[1]`, nil, 400, "", ""},
		{"wrong type", ts.URL + "/v1/completions", "POST", `{"prompt": "x", "temperature": "hot"}`, nil, 400, "temperature", "temperature"},
		{"prompt type", ts.URL + "/v1/completions", "POST", `{"prompt": 3}`, nil, 400, "prompt", ""},
		{"no prompt", ts.URL + "/v1/completions", "POST", `{}`, nil, 400, "prompt", ""},
		{"temperature range", ts.URL + "/v1/completions", "POST", `{"prompt": "x", "temperature": 3}`, nil, 400, "temperature", "3"},
		{"top_p range", ts.URL + "/v1/completions", "POST", `{"prompt": "x", "top_p": -0.5}`, nil, 400, "top_p", ""},
		{"max_tokens range", ts.URL + "/v1/completions", "POST", `{"prompt": "x", "max_tokens": 0}`, nil, 400, "max_tokens", ""},
		{"stop type", ts.URL + "/v1/completions", "POST", `{"prompt": "x", "stop": 5}`, nil, 400, "stop", ""},
		{"no messages", ts.URL + "/v1/chat/completions", "POST", `{"messages": []}`, nil, 400, "messages", ""},
		{"too long", ts.URL + "/v1/completions", "POST", `{"prompt": "` + long + `"}`, nil, 400, "prompt", "the context holds 32"},
		{"chat too long", ts.URL + "/v1/chat/completions", "POST", `{"messages": [{"role": "user", "content": "` + long + `"}]}`, nil, 400, "messages", "the context holds 32"},
		{"body limit", ts.URL + "/v1/completions", "POST", `{"prompt": "` + strings.Repeat("x", 5000) + `"}`, nil, 413, "", "4096"},
		{"unknown route", ts.URL + "/v2/nothing", "POST", `{}`, nil, 404, "", ""},
		{"wrong method", ts.URL + "/v1/completions", "GET", ``, nil, 405, "", ""},
		{"no key", keyed.URL + "/v1/completions", "POST", `{"prompt": "x"}`, nil, 401, "", ""},
		{"wrong key", keyed.URL + "/v1/models", "GET", ``, []string{"Authorization", "Bearer open"}, 401, "", ""},
	} {
		req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader(tc.body))
		for i := 0; i+1 < len(tc.header); i += 2 {
			req.Header.Set(tc.header[i], tc.header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error *apiError `json:"error"`
		}
		if err := json.Unmarshal(b, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Errorf("%s: body %s is not an error (%v)", tc.name, b, err)
			continue
		}
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, resp.StatusCode, tc.status, b)
		}
		if tc.param != "" && (e.Error.Param == nil || *e.Error.Param != tc.param) {
			t.Errorf("%s: param %v, want %s", tc.name, e.Error.Param, tc.param)
		}
		if !strings.Contains(e.Error.Message, tc.contains) {
			t.Errorf("%s: message %q, want it to contain %q", tc.name, e.Error.Message, tc.contains)
		}
	}
	// The right key is let in; /health needs none.
	resp, b := post(t, keyed.URL+"/v1/completions", `{"prompt": "x", "max_tokens": 2}`, "Authorization", "Bearer sesame")
	if resp.StatusCode != 200 {
		t.Errorf("right key: status %d: %s", resp.StatusCode, b)
	}
	hr, err := http.Get(keyed.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != 200 {
		t.Errorf("/health: status %d", hr.StatusCode)
	}
}

// TestModels checks /v1/models.
func TestModels(t *testing.T) {
	_, ts := newServer(t, Options{})
	resp, err := http.Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l struct {
		Object string `json:"object"`
		Data   []struct {
			ID     string `json:"id"`
			Object string `json:"object"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil || l.Object != "list" || len(l.Data) != 1 || l.Data[0].ID != "tiny" {
		t.Errorf("models: %+v %v", l, err)
	}
	for path, want := range map[string]int{"/v1/models/tiny": 200, "/v1/models/other": 404} {
		r, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var m struct{ ID, Object string }
		json.NewDecoder(r.Body).Decode(&m)
		r.Body.Close()
		if r.StatusCode != want || want == 200 && (m.ID != "tiny" || m.Object != "model") {
			t.Errorf("GET %s: %d %+v, want %d", path, r.StatusCode, m, want)
		}
	}
}

// TestQueueFull checks that a request finding every slot busy and the queue full is
// answered 429 with Retry-After, and that one that may wait is served.
func TestQueueFull(t *testing.T) {
	s, ts := newServer(t, Options{Parallel: 1, Queue: 1})
	s.slots <- struct{}{} // a request runs
	s.slots <- struct{}{} // a request waits
	resp, b := post(t, ts.URL+"/v1/completions", `{"prompt": "x", "max_tokens": 2}`)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("status %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	<-s.slots
	if resp, b := post(t, ts.URL+"/v1/completions", `{"prompt": "x", "max_tokens": 2}`); resp.StatusCode != 200 {
		t.Errorf("after one left: status %d: %s", resp.StatusCode, b)
	}
	if n := testutil.ToFloat64(s.met.requests.WithLabelValues("/v1/completions", "429")); n != 1 {
		t.Errorf("lmrun_requests_total{code=429} = %v, want 1", n)
	}
}

// TestCancelFreesSession checks that a client that leaves in the middle of a stream
// stops its generation and frees its slot, as /metrics shows.
func TestCancelFreesSession(t *testing.T) {
	s, ts := newServer(t, Options{Parallel: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+"/v1/completions",
		strings.NewReader(`{"prompt": "Once", "stream": true, "temperature": 0.8, "seed": 1}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	active := func() string {
		r, err := http.Get(ts.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "lmrun_active_sequences ") {
				return strings.TrimPrefix(l, "lmrun_active_sequences ")
			}
		}
		t.Fatalf("no lmrun_active_sequences in /metrics:\n%s", b)
		return ""
	}
	if a := active(); a != "1" {
		t.Fatalf("lmrun_active_sequences %s while generating, want 1", a)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for active() != "0" || len(s.slots) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slot was not freed after the client left")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// FuzzDecodeRequest checks that the request decoder never panics and that what it
// accepts is in range.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"prompt": "x", "max_tokens": 3, "stop": ["a", "b"], "temperature": 0.5}`), false)
	f.Add([]byte(`{"messages": [{"role": "user", "content": "hi"}], "stream": true, "stop": "x"}`), true)
	f.Add([]byte(`{"prompt": 1}`), false)
	f.Add([]byte(`nul`), true)
	f.Add([]byte(`{"messages": [{"role": "user", "name": "a", "content": [{"type": "text", "text": "hi"}]}, {"role": "assistant", "content": null}], "logprobs": true, "top_logprobs": 3}`), true)
	f.Add([]byte(`{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}`), true)
	f.Add([]byte(`{"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 5, "stream": true, "stream_options": {"include_usage": true}, "user": "u", "tools": []}`), true)
	f.Add([]byte(`{"prompt": "x", "logprobs": 5, "max_tokens": 4611686018427387904, "stop": ["a", "b", "c", "d", "e", "f"]}`), false)
	f.Add([]byte("{\"prompt\": \"\xff\", \"n\": 1}"), false)
	f.Add([]byte(`{"prompt": "x", "stop": [[[[[]]]]], "top_logprobs": 2}`), false)
	f.Fuzz(func(t *testing.T, body []byte, isChat bool) {
		r, err := decodeRequest(body, isChat)
		if err != nil {
			return
		}
		if isChat && len(r.Messages) == 0 || !isChat && r.Prompt == nil {
			t.Fatalf("accepted without a prompt: %s", body)
		}
		if r.MaxTokens != nil && *r.MaxTokens < 1 || len(r.stops) > maxStops || len(r.Messages) > maxMessages ||
			r.TopLogprobs < 0 || r.TopLogprobs > maxTopLogprobs || r.TopLogprobs > 0 && !r.Logprobs {
			t.Fatalf("accepted out of range: %s", body)
		}
		for _, s := range r.stops {
			if s == "" || len(s) > maxStopBytes || !utf8.ValidString(s) {
				t.Fatalf("accepted stop %q: %s", s, body)
			}
		}
		for _, m := range r.Messages {
			if m.Role == "" || !utf8.ValidString(m.Content) {
				t.Fatalf("accepted message %+v: %s", m, body)
			}
		}
		if err := samplerConfig(r, time.Now).Validate(); err != nil {
			t.Fatalf("accepted %s, but the sampler rejects it: %v", body, err)
		}
	})
}
