package serve

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// apiErrorOf checks that b is OpenAI's error JSON: {"error": {"message", "type",
// "param", "code"}} with a message, a type and a code, and returns it.
func apiErrorOf(t *testing.T, name string, b []byte) *apiError {
	t.Helper()
	var e struct {
		Error *apiError `json:"error"`
	}
	var keys map[string]map[string]json.RawMessage
	if err := json.Unmarshal(b, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" || e.Error.Code == nil {
		t.Fatalf("%s: body %.300s is not an error (%v)", name, b, err)
	}
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := keys["error"][k]; !ok {
			t.Fatalf("%s: error %s has no %q", name, b, k)
		}
	}
	return e.Error
}

// hostileCase is a request expected to be refused.
type hostileCase struct {
	name     string
	chat     bool
	body     string
	status   int
	param    string // "" for none expected
	contains string
}

// runHostile sends each case and checks the status, the error JSON and that the answer
// comes quickly.
func runHostile(t *testing.T, ts *httptest.Server, cases []hostileCase) {
	t.Helper()
	for _, tc := range cases {
		path := "/v1/completions"
		if tc.chat {
			path = "/v1/chat/completions"
		}
		start := time.Now()
		resp, b := post(t, ts.URL+path, tc.body)
		took := time.Since(start)
		e := apiErrorOf(t, tc.name, b)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d: %.300s", tc.name, resp.StatusCode, tc.status, b)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: content type %q", tc.name, ct)
		}
		if p := e.Param; tc.param != "" && (p == nil || *p != tc.param) {
			t.Errorf("%s: param %v, want %q (%s)", tc.name, p, tc.param, e.Message)
		} else if tc.param == "" && p != nil {
			t.Errorf("%s: param %q, want none (%s)", tc.name, *p, e.Message)
		}
		if !strings.Contains(e.Message, tc.contains) {
			t.Errorf("%s: message %q, want it to contain %q", tc.name, e.Message, tc.contains)
		}
		if took > 5*time.Second {
			t.Errorf("%s: answered in %v", tc.name, took)
		}
	}
}

// TestHostileRequests sends malformed, oversized and out-of-range requests: each is
// answered 400 (413 for the body limit) with OpenAI's error JSON naming the field.
func TestHostileRequests(t *testing.T) {
	_, ts := newServer(t, Options{Context: 32, MaxBodyBytes: 8 << 20})
	chat := func(extra string) string {
		return `{"messages": [{"role": "user", "content": "hi"}]` + extra + `}`
	}
	stops := func(n, size int) string {
		list := make([]string, n)
		for i := range list {
			list[i] = fmt.Sprintf("%0*d", size, i)
		}
		b, _ := json.Marshal(list)
		return string(b)
	}
	var tiny strings.Builder
	tiny.WriteString(`{"messages": [`)
	for i := range 100_000 {
		if i > 0 {
			tiny.WriteByte(',')
		}
		tiny.WriteString(`{"role":"user","content":""}`)
	}
	tiny.WriteString(`]}`)
	long := strings.Repeat("many words ", 40)
	runHostile(t, ts, []hostileCase{
		{"truncated", false, `{"prompt": "x", "max_tokens": 3`, 400, "", "JSON"},
		{"truncated string", true, `{"messages": [{"role": "user", "content": "hi`, 400, "", "JSON"},
		{"empty body", false, ``, 400, "", "JSON"},
		{"two values", false, `{"prompt": "x"} {"prompt": "y"}`, 400, "", "more than one"},
		{"a list", false, `[{"prompt": "x"}]`, 400, "", "want an object"},
		{"a string", true, `"hi"`, 400, "", "want an object"},
		{"deep nesting", false, strings.Repeat("[", 100_000), 400, "", "JSON"},
		{"deep nesting in a field", false, `{"prompt": "x", "stop": ` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`, 400, "", ""},
		{"deep nesting in an unknown field", true, `{"messages": [{"role": "user", "content": "hi"}], "tools": ` + strings.Repeat(`{"a":`, 50_000) + `1` + strings.Repeat("}", 50_000) + `}`, 400, "", "depth"},
		{"invalid UTF-8 in prompt", false, "{\"prompt\": \"caf\xe9\"}", 400, "", "UTF-8"},
		{"invalid UTF-8 in content", true, "{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}", 400, "", "byte 43"},
		{"invalid UTF-8 in stop", false, "{\"prompt\": \"x\", \"stop\": [\"\xc3\"]}", 400, "", "UTF-8"},
		{"max_tokens 0", false, `{"prompt": "x", "max_tokens": 0}`, 400, "max_tokens", "at least 1"},
		{"max_tokens negative", true, chat(`, "max_tokens": -5`), 400, "max_tokens", "-5"},
		{"max_tokens beyond int64", false, `{"prompt": "x", "max_tokens": 1e30}`, 400, "max_tokens", "integer"},
		{"max_tokens fraction", false, `{"prompt": "x", "max_tokens": 1.5}`, 400, "max_tokens", "integer"},
		{"max_completion_tokens 0", true, chat(`, "max_completion_tokens": 0`), 400, "max_completion_tokens", "at least 1"},
		{"max_completion_tokens unlike max_tokens", true, chat(`, "max_completion_tokens": 5, "max_tokens": 6`), 400, "max_completion_tokens", "both"},
		{"seed -2", false, `{"prompt": "x", "seed": -2}`, 400, "seed", "-1 for a random seed"},
		{"n 2", false, `{"prompt": "x", "n": 2}`, 400, "n", "only 1"},
		{"n 0", true, chat(`, "n": 0`), 400, "n", ""},
		{"1000 stop strings", false, `{"prompt": "x", "stop": ` + stops(1000, 3) + `}`, 400, "stop", "1000 strings, at most 16"},
		{"17 stop strings", true, chat(`, "stop": ` + stops(17, 2)), 400, "stop", "at most 16"},
		{"long stop string", false, `{"prompt": "x", "stop": ` + stops(1, 257) + `}`, 400, "stop", "257 bytes"},
		{"long single stop string", false, `{"prompt": "x", "stop": "` + strings.Repeat("s", 1000) + `"}`, 400, "stop", "1000 bytes"},
		{"empty stop string", false, `{"prompt": "x", "stop": ["a", ""]}`, 400, "stop", "stop[1]"},
		{"stop of numbers", false, `{"prompt": "x", "stop": [1, 2]}`, 400, "stop", ""},
		{"chat logprobs a number", true, chat(`, "logprobs": 3`), 400, "logprobs", "true or false"},
		{"completion logprobs a boolean", false, `{"prompt": "x", "logprobs": true}`, 400, "logprobs", "0 to 5"},
		{"completion logprobs 6", false, `{"prompt": "x", "logprobs": 6}`, 400, "logprobs", "0 to 5"},
		{"top_logprobs 21", true, chat(`, "logprobs": true, "top_logprobs": 21`), 400, "top_logprobs", "0 to 20"},
		{"top_logprobs without logprobs", true, chat(`, "top_logprobs": 3`), 400, "top_logprobs", "logprobs"},
		{"image part", true, `{"messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]}]}`, 400, "messages", `messages[0].content[1]: part type "image_url" is unsupported`},
		{"part without type", true, `{"messages": [{"role": "user", "content": [{"text": "hi"}]}]}`, 400, "messages", "type"},
		{"text part without text", true, `{"messages": [{"role": "user", "content": [{"type": "text"}]}]}`, 400, "messages", "without text"},
		{"parts of strings", true, `{"messages": [{"role": "user", "content": ["hi"]}]}`, 400, "messages", "list of parts"},
		{"null user content", true, `{"messages": [{"role": "user", "content": null}]}`, 400, "messages", "messages[0].content"},
		{"no content", true, `{"messages": [{"role": "system", "content": "be brief"}, {"role": "user"}]}`, 400, "messages", "messages[1].content"},
		{"content a number", true, `{"messages": [{"role": "user", "content": 5}]}`, 400, "messages", "content"},
		{"role a number", true, `{"messages": [{"role": 5, "content": "hi"}]}`, 400, "messages", "messages[0].role: want a string"},
		{"name a number", true, `{"messages": [{"role": "user", "name": 5, "content": "hi"}]}`, 400, "messages", "messages[0].name: want a string"},
		{"part a string", true, `{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}`, 400, "messages", "list of parts"},
		{"no role", true, `{"messages": [{"content": "hi"}]}`, 400, "messages", "messages[0]: want a role"},
		{"message a string", true, `{"messages": ["hi"]}`, 400, "messages", "messages[0]"},
		{"no messages", true, `{"messages": []}`, 400, "messages", ""},
		{"100k messages", true, tiny.String(), 400, "messages", "100000 messages, at most 4096"},
		{"prompt beyond the context", false, `{"prompt": "` + long + `"}`, 400, "prompt", "the context holds 32"},
		{"a 1 MiB word", false, `{"prompt": "` + strings.Repeat("x", 1<<20) + `"}`, 400, "prompt", "the context holds 32"},
		{"1 MiB of words", true, `{"messages": [{"role": "user", "content": "` + strings.Repeat("many words ", 100_000) + `"}]}`, 400, "messages", "the context holds 32"},
		{"messages beyond the context", true, `{"messages": [{"role": "user", "content": [{"type": "text", "text": "` + long + `"}]}]}`, 400, "messages", "the context holds 32"},
		{"body limit", false, `{"prompt": "` + strings.Repeat("x", 9<<20) + `"}`, 413, "", "exceeds"},
	})
}

// TestWrongTypes sends a value of the wrong type for every field a request knows: each
// is answered 400 naming the field.
func TestWrongTypes(t *testing.T) {
	_, ts := newServer(t, Options{})
	wrong := map[string][]string{
		"model":                        {`5`, `{}`},
		"prompt":                       {`5`, `true`},
		"messages":                     {`"hi"`, `{}`},
		"stream":                       {`"yes"`, `1`},
		"stream_options":               {`true`, `[]`},
		"stream_options.include_usage": {`"yes"`},
		"max_tokens":                   {`"5"`, `[5]`},
		"max_completion_tokens":        {`"5"`, `2.5`},
		"temperature":                  {`"hot"`, `[]`},
		"top_p":                        {`"1"`},
		"top_k":                        {`0.5`, `"4"`},
		"min_p":                        {`{}`},
		"seed":                         {`-2`, `"7"`, `1.5`, `1e3`, `18446744073709551616`},
		"stop":                         {`5`, `{"a": 1}`, `true`},
		"presence_penalty":             {`"0"`},
		"frequency_penalty":            {`false`},
		"n":                            {`"1"`, `1.5`},
		"logprobs":                     {`"yes"`, `{}`},
		"top_logprobs":                 {`"2"`, `true`},
		"ignore_eos":                   {`1`, `"true"`},
	}
	// Every field of request decoded from JSON is listed.
	rt := reflect.TypeFor[request]()
	for i := range rt.NumField() {
		tag := strings.Split(rt.Field(i).Tag.Get("json"), ",")[0]
		if tag != "" && tag != "-" && len(wrong[tag]) == 0 {
			t.Errorf("request field %s (%q) has no wrong-type case", rt.Field(i).Name, tag)
		}
	}
	var cases []hostileCase
	for field, values := range wrong {
		for _, chat := range []bool{false, true} {
			for _, v := range values {
				body := map[string]json.RawMessage{"prompt": json.RawMessage(`"x"`), "messages": json.RawMessage(`[{"role": "user", "content": "hi"}]`)}
				if f, sub, ok := strings.Cut(field, "."); ok {
					body[f] = json.RawMessage(`{"` + sub + `": ` + v + `}`)
				} else {
					body[field] = json.RawMessage(v)
				}
				if field == "prompt" && chat || field == "messages" && !chat {
					continue // the other endpoint's field: ignored
				}
				b, _ := json.Marshal(body)
				cases = append(cases, hostileCase{fmt.Sprintf("%s %s (chat %v)", field, v, chat), chat, string(b), 400, field, ""})
			}
		}
	}
	runHostile(t, ts, cases)
}

// TestAcceptedShapes checks what OpenAI clients send that must be accepted: content as
// a list of text parts, null assistant content, names, unknown fields, logprobs, a huge
// max_tokens.
func TestAcceptedShapes(t *testing.T) {
	_, ts := newServer(t, Options{Context: 256})
	plain := ask(t, ts, true, map[string]any{"messages": []any{map[string]any{"role": "user", "content": "Hello there"}},
		"max_tokens": 6, "temperature": 0})
	for _, body := range []map[string]any{
		{"messages": []any{map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "text", "text": "Hello"}, map[string]any{"type": "text", "text": " there"}}}}},
		{"messages": []any{map[string]any{"role": "user", "name": "ann", "content": "Hello there"}},
			"user": "u-1", "stream_options": map[string]any{"include_usage": true}, "response_format": map[string]any{"type": "text"},
			"tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "f"}}}, "parallel_tool_calls": false,
			"logprobs": true, "top_logprobs": 5, "max_completion_tokens": 6, "metadata": nil},
	} {
		if _, ok := body["max_completion_tokens"]; !ok {
			body["max_tokens"] = 6
		}
		body["temperature"] = 0
		got := ask(t, ts, true, body)
		got.usage.PromptTokensDetails = nil // the prompt cache's share of the same prompt
		if got.text != plain.text || got.usage != plain.usage {
			t.Errorf("%v: %q %+v, want %q %+v as with a plain string", body, got.text, got.usage, plain.text, plain.usage)
		}
	}
	// An assistant message may have null content (it carried tool calls).
	ask(t, ts, true, map[string]any{"messages": []any{map[string]any{"role": "user", "content": "Hi"},
		map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{}}, map[string]any{"role": "user", "content": "Hi"}}, "max_tokens": 2})
	ask(t, ts, false, map[string]any{"prompt": "Hi", "logprobs": 3, "max_tokens": 2, "echo": false, "best_of": 1, "suffix": nil})
	ask(t, ts, false, map[string]any{"prompt": "Hi", "logprobs": nil, "top_logprobs": 3, "max_tokens": 2})
	// A huge max_tokens ends at the full context.
	for _, stream := range []bool{false, true} {
		for _, field := range []string{"max_tokens", "max_completion_tokens"} {
			got := ask(t, ts, false, map[string]any{"prompt": "Once upon a time", field: int64(1) << 62, "stream": stream,
				"temperature": 1.5, "seed": 3})
			if got.usage.TotalTokens > 257 || got.finish == "length" && got.usage.TotalTokens < 256 {
				t.Errorf("%s 2^62 stream %v: %+v, finish %s: want the context, 256 (and the last token, not fed back)", field, stream, got.usage, got.finish)
			}
		}
	}
}

// TestDecodeNewFields checks what decodeRequest makes of the fields the generation reads.
func TestDecodeNewFields(t *testing.T) {
	for _, tc := range []struct {
		body      string
		chat      bool
		logprobs  bool
		top       int
		maxTokens int
		usage     bool
		content   string
		stops     []string
	}{
		{`{"prompt": "x", "logprobs": 3, "top_logprobs": 9}`, false, true, 3, 0, false, "", nil},
		{`{"prompt": "x", "logprobs": 0}`, false, true, 0, 0, false, "", nil},
		{`{"prompt": "x", "logprobs": null, "stop": "\n"}`, false, false, 0, 0, false, "", []string{"\n"}},
		{`{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}], "logprobs": true, "top_logprobs": 20}`, true, true, 20, 0, false, "ab", nil},
		{`{"messages": [{"role": "user", "content": "c"}], "logprobs": false, "top_logprobs": 0, "max_completion_tokens": 7, "stream": true, "stream_options": {"include_usage": true}}`, true, false, 0, 7, true, "c", nil},
		{`{"messages": [{"role": "user", "content": "c"}], "logprobs": true, "max_tokens": 9, "max_completion_tokens": 9, "stop": ["a", "b"]}`, true, true, 0, 9, false, "c", []string{"a", "b"}},
	} {
		r, err := decodeRequest([]byte(tc.body), tc.chat)
		if err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		maxTokens := 0
		if r.MaxTokens != nil {
			maxTokens = *r.MaxTokens
		}
		content := ""
		if tc.chat {
			content = r.Messages[0].Content
		}
		usage := r.StreamOptions != nil && r.StreamOptions.IncludeUsage
		if r.Logprobs != tc.logprobs || r.TopLogprobs != tc.top || maxTokens != tc.maxTokens || usage != tc.usage ||
			content != tc.content || !reflect.DeepEqual(r.stops, tc.stops) {
			t.Errorf("%s: logprobs %v top %d max_tokens %d usage %v content %q stops %q", tc.body, r.Logprobs, r.TopLogprobs, maxTokens, usage, content, r.stops)
		}
	}
}

// TestDecodeSeed checks seed: an integer up to 2⁶⁴-1, or -1 (llama-server's random
// seed) or null for a seed from the clock.
func TestDecodeSeed(t *testing.T) {
	for raw, want := range map[string]*uint64{`-1`: nil, `null`: nil, `0`: new(uint64(0)), `18446744073709551615`: new(uint64(1<<64 - 1))} {
		r, err := decodeRequest([]byte(`{"prompt": "x", "seed": `+raw+`}`), false)
		if err != nil {
			t.Errorf("seed %s: %v", raw, err)
			continue
		}
		if (r.Seed == nil) != (want == nil) || want != nil && *r.Seed != *want {
			t.Errorf("seed %s: %v, want %v", raw, r.Seed, want)
		}
	}
}

// countingReader is an endless body of 'x' that counts what was read of it, up to
// limit bytes.
type countingReader struct {
	n, limit int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n >= c.limit {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), c.limit-c.n)]
	for i := range p {
		p[i] = 'x'
	}
	c.n += int64(len(p))
	return len(p), nil
}

// TestBodyLimitReadsLittle sends a 10 MB body: it is answered 413 after reading about
// the limit, not the whole body, and the connection is closed, with a request timeout
// or without.
func TestBodyLimitReadsLittle(t *testing.T) {
	for _, timeout := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprint("timeout ", timeout), func(t *testing.T) { testBodyLimit(t, timeout) })
	}
}

func testBodyLimit(t *testing.T, timeout time.Duration) {
	const limit = 64 << 10
	s, ts := newServer(t, Options{MaxBodyBytes: limit, RequestTimeout: timeout})
	body := &countingReader{limit: 10 << 20}
	req := httptest.NewRequest(http.MethodPost, "/v1/completions", io.MultiReader(strings.NewReader(`{"prompt": "`), body))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	apiErrorOf(t, "10 MB", rec.Body.Bytes())
	if body.n > limit+1 {
		t.Errorf("read %d bytes of the body, the limit is %d", body.n, limit)
	}
	// Over HTTP too: the client gets the 413 although the server does not read its
	// body, and the server closes the connection rather than read on to reuse it.
	ts.Close()
	ts = httptest.NewUnstartedServer(s)
	ln := &countingListener{Listener: ts.Listener}
	ts.Listener = ln
	ts.Start()
	defer ts.Close()
	resp, err := http.Post(ts.URL+"/v1/completions", "application/json",
		io.MultiReader(strings.NewReader(`{"prompt": "`), &countingReader{limit: 10 << 20}))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !resp.Close {
		t.Errorf("over HTTP: status %d, connection closed %v: %s", resp.StatusCode, resp.Close, b)
	}
	apiErrorOf(t, "10 MB over HTTP", b)
	// net/http reads up to 256 KiB past the handler, looking for the body's end.
	if n := ln.read.Load(); n > limit+(256+32)<<10 {
		t.Errorf("over HTTP: the server read %d bytes, the limit is %d", n, limit)
	}
}

// countingListener counts the bytes read from its connections.
type countingListener struct {
	net.Listener
	read atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, read: &l.read}, nil
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// TestRequestTimeout checks Options.RequestTimeout: a request past its deadline before
// its response began is answered 504 with a "timeout" error; a stream already begun
// ends with an error event and no [DONE]; a request in time is untouched.
func TestRequestTimeout(t *testing.T) {
	s, ts := newServer(t, Options{Parallel: 1, RequestTimeout: time.Nanosecond})
	for _, tc := range []struct {
		path, body string
	}{
		{"/v1/completions", `{"prompt": "Once", "max_tokens": 4}`},
		{"/v1/completions", `{"prompt": "Once", "max_tokens": 4, "stream": true}`}, // nothing streamed before the first token
		{"/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}`},
	} {
		resp, b := post(t, ts.URL+tc.path, tc.body)
		e := apiErrorOf(t, tc.body, b)
		if resp.StatusCode != http.StatusGatewayTimeout || e.Type != "timeout" {
			t.Errorf("%s: status %d, type %s, want 504 timeout: %s", tc.body, resp.StatusCode, e.Type, b)
		}
	}
	// A chat stream begins with the assistant's role before the first token: it ends
	// with an error event.
	resp, b := post(t, ts.URL+"/v1/chat/completions", `{"messages": [{"role": "user", "content": "hi"}], "stream": true}`)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var events []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, data)
		}
	}
	if len(events) != 2 || !strings.Contains(events[0], `"role":"assistant"`) {
		t.Fatalf("events %q: want the role, then an error", events)
	}
	if e := apiErrorOf(t, "stream", []byte(events[1])); e.Type != "timeout" {
		t.Errorf("last event %s: want a timeout error", events[1])
	}
	for deadline := time.Now().Add(5 * time.Second); len(s.slots) != 0 || testutil.ToFloat64(s.met.active) != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests hold a slot, %v sequences active after the timeouts, want 0", len(s.slots), testutil.ToFloat64(s.met.active))
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A request waiting for a session is answered at its deadline.
	// (A context of 64k positions: the first request generates until its deadline.)
	s, ts = newServerOf(t, tinyModelCtx(t, 1<<16), Options{Parallel: 1, RequestTimeout: 200 * time.Millisecond})
	busy := make(chan struct{})
	go func() { // takes the only slot until its own deadline
		defer close(busy)
		http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt": "Once", "stream": true, "ignore_eos": true}`))
	}()
	for testutil.ToFloat64(s.met.active) == 0 {
		time.Sleep(time.Millisecond)
	}
	// The second waits for the slot (the queue shows it), then generates until its own
	// deadline, a little after the first's.
	queued := make(chan bool, 1)
	go func() {
		for range 2000 {
			if testutil.ToFloat64(s.met.queue) == 1 {
				queued <- true
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
		queued <- false
	}()
	start := time.Now()
	resp, b = post(t, ts.URL+"/v1/completions", `{"prompt": "x", "ignore_eos": true}`)
	if took := time.Since(start); resp.StatusCode != http.StatusGatewayTimeout || took < 200*time.Millisecond || took > 5*time.Second {
		t.Errorf("waiting: status %d after %v: %s", resp.StatusCode, took, b)
	}
	apiErrorOf(t, "waiting", b)
	if !<-queued {
		t.Error("the second request never waited in the queue")
	}
	<-busy
	// In time, a response is as without a deadline.
	s, ts = newServer(t, Options{RequestTimeout: time.Minute})
	for _, stream := range []bool{false, true} {
		got := ask(t, ts, true, map[string]any{"messages": []any{map[string]any{"role": "user", "content": "hi"}}, "max_tokens": 3, "stream": stream})
		if got.usage.CompletionTokens == 0 && got.finish != "stop" {
			t.Errorf("stream %v: %+v", stream, got)
		}
	}
}
