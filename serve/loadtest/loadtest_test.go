package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// clock returns a now that advances by step at each call, from t0.
func clock(t0 time.Time, step time.Duration) func() time.Time {
	n := 0
	return func() time.Time {
		n++
		return t0.Add(time.Duration(n) * step)
	}
}

func TestReadStreamCompletion(t *testing.T) {
	// As lmrun serve and llama-server stream a text completion, with a comment line,
	// CRLF line ends and a data field split over two lines.
	src := ": keep-alive\r\n\r\n" +
		`data: {"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"Once","finish_reason":null}]}` + "\n\n" +
		`data: {"id":"cmpl-1","choices":[{"index":0,"text":" upon","finish_reason":null}]}` + "\r\n\r\n" +
		"event: message\ndata: {\"id\":\"cmpl-1\",\"choices\":[{\"index\":0,\n" +
		"data: \"text\":\" a\",\"finish_reason\":null}]}\n\n" +
		`data: {"id":"cmpl-1","choices":[{"index":0,"text":"","finish_reason":null}]}` + "\n\n" +
		`data: {"id":"cmpl-1","choices":[{"index":0,"text":"","finish_reason":"length"}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}` + "\n\n" +
		"data: [DONE]\n\n"
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st, err := ReadStream(strings.NewReader(src), clock(t0, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if st.Text != "Once upon a" || st.FinishReason != "length" || !st.HasUsage || st.PromptTokens != 7 || st.CompletionTokens != 3 {
		t.Fatalf("read %+v", st)
	}
	want := []time.Time{t0.Add(10 * time.Millisecond), t0.Add(20 * time.Millisecond), t0.Add(30 * time.Millisecond)}
	if fmt.Sprint(st.Times) != fmt.Sprint(want) {
		t.Fatalf("times %v, want %v (one per non-empty piece)", st.Times, want)
	}
}

func TestReadStreamChat(t *testing.T) {
	src := `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{"content":" there"},"finish_reason":null}]}` + "\n\n" +
		`data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n" +
		`data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2}}` + "\n\n" +
		"data: [DONE]\n\n"
	st, err := ReadStream(strings.NewReader(src), clock(time.Unix(0, 0), time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if st.Text != "Hi there" || len(st.Times) != 2 || st.FinishReason != "stop" || st.CompletionTokens != 2 || st.PromptTokens != 12 {
		t.Fatalf("read %+v", st)
	}
}

func TestReadStreamErrors(t *testing.T) {
	for name, src := range map[string]string{
		"no [DONE]":       `data: {"choices":[{"text":"a"}]}` + "\n\n",
		"cut mid-event":   `data: {"choices":[{"text":"a"}]}` + "\n\ndata: [DONE]",
		"not JSON":        "data: {\"choices\n\ndata: [DONE]\n\n",
		"an error event":  `data: {"error":{"message":"generating: boom","type":"server_error"}}` + "\n\ndata: [DONE]\n\n",
		"not a chunk":     `data: {"hello":1}` + "\n\ndata: [DONE]\n\n",
		"an empty stream": "",
	} {
		if _, err := ReadStream(strings.NewReader(src), time.Now); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestReadStreamLongLine reads a line longer than the reader's buffer, delivered a few
// bytes at a time.
func TestReadStreamLongLine(t *testing.T) {
	long := strings.Repeat("é", 5000)
	src := `data: {"choices":[{"text":"` + long + `"}]}` + "\r\n\r\ndata: [DONE]\r\n\r\n"
	st, err := ReadStream(&trickle{s: src, n: 7}, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if st.Text != long {
		t.Fatalf("read %d bytes of text, want %d", len(st.Text), len(long))
	}
}

// trickle reads n bytes of s at a time.
type trickle struct {
	s string
	n int
}

func (r *trickle) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.s)
	r.s = r.s[k:]
	return k, nil
}

func TestPercentile(t *testing.T) {
	v := []float64{15, 20, 35, 40, 50} // the textbook nearest-rank example
	for _, c := range []struct{ p, want float64 }{{5, 15}, {30, 20}, {40, 20}, {50, 35}, {99, 50}, {100, 50}} {
		if got := Percentile(v, c.p); got != c.want {
			t.Errorf("p%g = %g, want %g", c.p, got, c.want)
		}
	}
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	if got := Percentile(hundred, 99); got != 99 {
		t.Errorf("p99 of 1..100 = %g, want 99", got)
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %g", got)
	}
	d := Summarize([]time.Duration{40 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond})
	if d != (Dist{N: 4, Mean: 25, P50: 20, P90: 40, P99: 40, Max: 40}) {
		t.Errorf("summary %+v", d)
	}
}

// fake is an OpenAI-style completion server with slots sessions that streams tokens
// tokens, one each gap. leak makes it keep the slot of its first request.
type fake struct {
	slots  chan struct{}
	tokens int
	gap    time.Duration
	leak   bool
	served atomic.Int64
	bodies chan map[string]any
}

func newFake(slots, tokens int, gap time.Duration) *fake {
	f := &fake{slots: make(chan struct{}, slots), tokens: tokens, gap: gap, bodies: make(chan map[string]any, 1000)}
	for range slots {
		f.slots <- struct{}{}
	}
	return f
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v1/models" {
		fmt.Fprint(w, `{"object":"list","data":[{"id":"fake-1","object":"model"}]}`)
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.URL.Path != "/v1/completions" || body["stream"] != true || body["prompt"] == nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	select {
	case f.bodies <- body:
	default:
	}
	<-f.slots
	if n := f.served.Add(1); !(f.leak && n == 1) {
		defer func() { f.slots <- struct{}{} }()
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	for i := range f.tokens {
		time.Sleep(f.gap)
		fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"text\":\"t%d\",\"finish_reason\":null}]}\n\n", i)
		fl.Flush()
	}
	fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":%d}}\n\n", f.tokens)
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func TestRunFakeServer(t *testing.T) {
	f := newFake(4, 5, 2*time.Millisecond)
	srv := httptest.NewServer(f)
	defer srv.Close()
	rep, err := Run(context.Background(), Options{URL: srv.URL + "/v1/", Clients: 4, MaxRequests: 3, Duration: time.Minute, MaxTokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 12 || rep.Errors != 0 || rep.GenTokens != 60 || rep.PromptTokens != 108 {
		t.Fatalf("report %+v", rep)
	}
	if rep.Gap.N != 12*4 || rep.TTFT.N != 12 || rep.Gap.P50 < 1.5 || rep.TTFT.P50 < 1.5 {
		t.Fatalf("gaps %+v, ttft %+v: want 48 gaps and 12 first tokens of ≥ 2 ms", rep.Gap, rep.TTFT)
	}
	// 4 tokens after the first, ≥ 2 ms apart: at most 500 tokens/s per stream.
	if rep.StreamTokPerSec <= 0 || rep.StreamTokPerSec > 500 || rep.GenTokPerSec <= rep.StreamTokPerSec {
		t.Fatalf("per stream %.1f tokens/s, aggregate %.1f", rep.StreamTokPerSec, rep.GenTokPerSec)
	}
	prompts := map[string]bool{}
	for range 12 {
		b := <-f.bodies
		if b["max_tokens"] != 5.0 || b["temperature"] != 0.0 || b["model"] != "fake-1" {
			t.Fatalf("body %v", b)
		}
		prompts[b["prompt"].(string)] = true
	}
	if len(prompts) != 12 {
		t.Fatalf("%d distinct prompts of 12 requests", len(prompts))
	}
}

func TestCheckSlots(t *testing.T) {
	// Requests long enough for all 4 to start; CheckSlots closes them once they have.
	srv := httptest.NewServer(newFake(4, 100, 2*time.Millisecond))
	defer srv.Close()
	if err := CheckSlots(context.Background(), Options{URL: srv.URL + "/v1", MaxTokens: 100}, 4, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// One request that ends at once still counts as started.
	short := httptest.NewServer(newFake(1, 1, 0))
	defer short.Close()
	for range 20 {
		if err := CheckSlots(context.Background(), Options{URL: short.URL + "/v1", MaxTokens: 1}, 1, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := CheckSlots(context.Background(), Options{URL: short.URL + "/v1"}, 0, time.Second); err == nil {
		t.Fatal("0 slots accepted")
	}
}

func TestRunCountsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "chat") {
			http.Error(w, `{"error":{"message":"busy"}}`, http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, "data: {\"choices\":[{\"text\":\"a\"}]}\n\n") // no [DONE]
	}))
	defer srv.Close()
	for _, chat := range []bool{false, true} {
		rep, err := Run(context.Background(), Options{URL: srv.URL, Clients: 2, MaxRequests: 2, Chat: chat})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Errors != 4 || rep.Requests != 0 || len(rep.ErrorSamples) != 4 {
			t.Fatalf("chat %v: report %+v", chat, rep)
		}
		if want := map[bool]string{false: "[DONE]", true: "status 429"}[chat]; !strings.Contains(rep.ErrorSamples[0], want) {
			t.Fatalf("chat %v: error %q does not say %q", chat, rep.ErrorSamples[0], want)
		}
	}
}

func TestCheckSlotsFindsALeak(t *testing.T) {
	f := newFake(3, 10, 2*time.Millisecond)
	f.leak = true
	srv := httptest.NewServer(f)
	defer srv.Close()
	o := Options{URL: srv.URL + "/v1", MaxTokens: 10}
	if _, err := Run(context.Background(), Options{URL: o.URL, MaxRequests: 1}); err != nil {
		t.Fatal(err)
	}
	err := CheckSlots(context.Background(), o, 3, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "fewer than 3 slots are free") {
		t.Fatalf("a leaked slot went unseen: %v", err)
	}
}

func TestRunOptions(t *testing.T) {
	for _, o := range []Options{{}, {URL: "http://x"}, {URL: "http://x", Clients: -1, MaxRequests: 1}} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Options{URL: "http://127.0.0.1:1", MaxRequests: 1}); err == nil {
		t.Error("a cancelled run reported no error")
	}
}
