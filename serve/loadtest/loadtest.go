// Package loadtest drives an OpenAI-compatible server with concurrent streaming clients
// and measures it: time to first token, time between streamed tokens, tokens per second
// of each stream and of all of them together. It speaks HTTP only, so it measures any
// server of the API (lmrun serve, llama-server, ...) the same way.
package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options say what Run sends and for how long.
type Options struct {
	// URL is the API's base, as OpenAI clients take it: "http://127.0.0.1:8080/v1".
	// Requests go to URL + "/completions", or "/chat/completions" with Chat.
	URL string
	// Clients is the number of clients, each sending one request at a time (0: 1).
	Clients int
	// Duration bounds the run: no request starts after it; the running ones finish.
	Duration time.Duration
	// MaxRequests bounds the requests of each client (0: no bound but Duration). One of
	// Duration and MaxRequests must be set.
	MaxRequests int
	// MaxTokens is each request's max_tokens (0: 128).
	MaxTokens int
	// Prompts are the prompts sent, in turn: request j of client i sends
	// Prompts[(i+j*Clients) % len(Prompts)]. Nil: distinct built-in prompts (see Prompt).
	Prompts []string
	// Model is each request's "model" ("": the first of GET URL/models, if it answers).
	Model string
	// Chat sends each prompt as the one user message of a chat completion.
	Chat bool
	// APIKey, when set, is sent as "Authorization: Bearer KEY".
	APIKey string
	// Seed is each request's sampling seed; sampling is greedy (temperature 0) anyway.
	Seed uint64
	// HTTPClient sends the requests (nil: a client of its own keeping a connection
	// per client alive).
	HTTPClient *http.Client
}

// Dist summarises a distribution of times, in milliseconds.
type Dist struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

// Report is what a run measured. Token counts are the server's (each response's
// usage.completion_tokens), or the number of streamed chunks of text when it sends none.
type Report struct {
	Clients  int `json:"clients"`
	Requests int `json:"requests"` // finished without error
	Errors   int `json:"errors"`
	// ErrorSamples are the first few errors' messages.
	ErrorSamples []string `json:"error_samples,omitempty"`
	// Seconds is the wall time of the run, from its start to the end of its last request.
	Seconds      float64 `json:"seconds"`
	PromptTokens int     `json:"prompt_tokens"`
	GenTokens    int     `json:"generated_tokens"`
	// GenTokPerSec is the aggregate generation throughput: GenTokens / Seconds.
	GenTokPerSec float64 `json:"generated_tokens_per_second"`
	// StreamTokPerSec is the mean over requests of one stream's generation speed: its
	// tokens after the first over the time from the first to the last (as llama-server's
	// predicted_per_second, which starts counting once the prompt is processed).
	StreamTokPerSec float64 `json:"stream_tokens_per_second"`
	// PromptTokPerSec is the mean over requests of prompt tokens / time to first token
	// (waiting for a slot included); 0 when the server reports no prompt tokens.
	PromptTokPerSec float64 `json:"prompt_tokens_per_second"`
	// TTFT is the time from sending a request to its first piece of text.
	TTFT Dist `json:"time_to_first_token"`
	// Gap is the time between successive pieces of text of a stream.
	Gap Dist `json:"time_between_tokens"`
}

// maxErrorSamples is how many error messages a Report keeps.
const maxErrorSamples = 5

// Prompt returns the built-in prompt n: a short story opening, different for each n, so
// that every request has its own prefill.
func Prompt(n int) string {
	names := []string{"Lily", "Tom", "Mia", "Ben", "Sara", "Max", "Anna", "Leo", "Zoe", "Sam", "Eva", "Jack"}
	things := []string{"a red ball", "a small boat", "a shiny key", "an old map", "a blue kite", "a tiny bird", "a big box"}
	places := []string{"park", "garden", "forest", "beach", "village", "hill"}
	return fmt.Sprintf("Story %d. Once upon a time, %s found %s in the %s and said:",
		n, names[n%len(names)], things[(n/len(names))%len(things)], places[(n/7)%len(places)])
}

// result is what one request measured.
type result struct {
	err           error
	ttft          time.Duration
	gaps          []time.Duration
	promptTokens  int
	tokens        int
	first, last   time.Time // arrival of the first and last piece of text
	start, finish time.Time
}

// Run sends requests from o.Clients clients, each one after the other, until o.Duration
// has passed or each client sent o.MaxRequests, and reports what it measured. A request
// is an error when the server answers other than 200, the stream is malformed, carries
// an error or ends without [DONE]. Run returns an error only for bad options or when ctx
// ends first (with what was measured until then).
func Run(ctx context.Context, o Options) (Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return Report{}, err
	}
	hc := o.HTTPClient
	if hc == nil {
		tr := &http.Transport{MaxIdleConnsPerHost: o.Clients, DisableCompression: true}
		defer tr.CloseIdleConnections()
		hc = &http.Client{Transport: tr}
	}
	if o.Model == "" {
		o.Model = firstModel(ctx, hc, o)
	}
	start := time.Now()
	var deadline time.Time
	if o.Duration > 0 {
		deadline = start.Add(o.Duration)
	}
	results := make([][]result, o.Clients)
	var wg sync.WaitGroup
	for i := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; o.MaxRequests == 0 || j < o.MaxRequests; j++ {
				if ctx.Err() != nil || (!deadline.IsZero() && !time.Now().Before(deadline)) {
					return
				}
				r := send(ctx, hc, o, o.Prompts[(i+j*o.Clients)%len(o.Prompts)])
				if ctx.Err() != nil {
					return // cut short: neither a result nor an error of the server
				}
				results[i] = append(results[i], r)
				if r.err != nil {
					// Do not spin on a server that refuses at once.
					select {
					case <-ctx.Done():
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		}()
	}
	wg.Wait()
	var all []result
	for _, rs := range results {
		all = append(all, rs...)
	}
	rep := summarize(all, start, o.Clients)
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("loadtest: run cut short: %w", err)
	}
	return rep, nil
}

// withDefaults checks o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if o.URL == "" {
		return o, errors.New("loadtest: no URL")
	}
	if o.Clients < 0 || o.MaxRequests < 0 || o.MaxTokens < 0 || o.Duration < 0 {
		return o, fmt.Errorf("loadtest: clients %d, max requests %d, max tokens %d, duration %v: want ≥ 0",
			o.Clients, o.MaxRequests, o.MaxTokens, o.Duration)
	}
	if o.Duration == 0 && o.MaxRequests == 0 {
		return o, errors.New("loadtest: unbounded run: set a duration or a maximum of requests")
	}
	if o.Clients == 0 {
		o.Clients = 1
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = 128
	}
	if len(o.Prompts) == 0 {
		n := o.Clients * 16
		o.Prompts = make([]string, n)
		for i := range o.Prompts {
			o.Prompts[i] = Prompt(i)
		}
	}
	o.URL = strings.TrimSuffix(o.URL, "/")
	return o, nil
}

// body returns the JSON body of a streaming request of prompt.
func (o Options) body(prompt string) ([]byte, error) {
	req := map[string]any{
		"model": o.Model, "stream": true, "max_tokens": o.MaxTokens, "temperature": 0, "seed": o.Seed,
		// Every request generates max_tokens (llama-server's and vLLM's extension).
		"ignore_eos":     true,
		"stream_options": map[string]any{"include_usage": true},
	}
	if o.Chat {
		req["messages"] = []map[string]string{{"role": "user", "content": prompt}}
	} else {
		req["prompt"] = prompt
	}
	return json.Marshal(req)
}

// firstModel returns the id of the first model GET URL/models lists, or "" when it
// lists none or does not answer (servers of one model, as lmrun's, take any name).
func firstModel(ctx context.Context, hc *http.Client, o Options) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL+"/models", nil)
	if err != nil {
		return ""
	}
	if o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.APIKey)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list) != nil || len(list.Data) == 0 {
		return ""
	}
	return list.Data[0].ID
}

// endpoint returns the URL requests go to.
func (o Options) endpoint() string {
	if o.Chat {
		return o.URL + "/chat/completions"
	}
	return o.URL + "/completions"
}

// send sends one streaming request and measures its response.
func send(ctx context.Context, hc *http.Client, o Options, prompt string) result {
	return sendNotify(ctx, hc, o, prompt, nil)
}

// sendNotify is send that calls first, if not nil, when the first piece of text arrives.
func sendNotify(ctx context.Context, hc *http.Client, o Options, prompt string, first func()) result {
	r := result{start: time.Now()}
	fail := func(err error) result {
		r.err = err
		r.finish = time.Now()
		return r
	}
	b, err := o.body(prompt)
	if err != nil {
		return fail(fmt.Errorf("encoding the request: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.endpoint(), bytes.NewReader(b))
	if err != nil {
		return fail(fmt.Errorf("building the request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if o.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.APIKey)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fail(fmt.Errorf("sending the request: %w", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fail(fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(msg))))
	}
	now := time.Now
	if first != nil {
		now = func() time.Time {
			if first != nil {
				first()
				first = nil
			}
			return time.Now()
		}
	}
	st, err := ReadStream(resp.Body, now)
	r.finish = time.Now()
	if err != nil {
		return fail(err)
	}
	if len(st.Times) == 0 {
		return fail(errors.New("the stream carried no text"))
	}
	r.first, r.last = st.Times[0], st.Times[len(st.Times)-1]
	r.ttft = r.first.Sub(r.start)
	for i := 1; i < len(st.Times); i++ {
		r.gaps = append(r.gaps, st.Times[i].Sub(st.Times[i-1]))
	}
	r.tokens, r.promptTokens = st.CompletionTokens, st.PromptTokens
	if !st.HasUsage {
		r.tokens = len(st.Times)
	}
	return r
}

// Stream is what ReadStream read from a completion stream.
type Stream struct {
	// Text is the streamed text, and Times the arrival of each non-empty piece of it.
	Text  string
	Times []time.Time
	// HasUsage tells whether a chunk carried usage, with these counts.
	HasUsage         bool
	PromptTokens     int
	CompletionTokens int
	// FinishReason is the last one a chunk gave.
	FinishReason string
}

// chunk is the part of a streamed completion or chat completion chunk ReadStream reads.
type chunk struct {
	Choices []struct {
		Text  *string `json:"text"`
		Delta *struct {
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// ReadStream reads a completion stream of Server-Sent Events until "data: [DONE]",
// noting with now when each piece of text arrives. Fields other than data and comment
// lines are skipped; the lines of an event's data are joined with newlines. It fails on
// an event that is not a completion chunk, an event carrying an error, and a stream that
// ends without [DONE].
func ReadStream(r io.Reader, now func() time.Time) (Stream, error) {
	var st Stream
	var text strings.Builder
	lr := newLineReader(r)
	var data []string
	events := 0
	for {
		line, err := lr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return st, fmt.Errorf("the stream ended without [DONE] after %d events", events)
			}
			return st, fmt.Errorf("reading the stream: %w", err)
		}
		if line != "" {
			if strings.HasPrefix(line, ":") {
				continue // a comment
			}
			field, value, _ := strings.Cut(line, ":")
			if field == "data" {
				data = append(data, strings.TrimPrefix(value, " "))
			}
			continue
		}
		if data == nil {
			continue // an event without data is dispatched as nothing
		}
		payload := strings.Join(data, "\n")
		data = nil
		events++
		if payload == "[DONE]" {
			st.Text = text.String()
			return st, nil
		}
		var c chunk
		if err := json.Unmarshal([]byte(payload), &c); err != nil {
			return st, fmt.Errorf("event %d is not JSON: %w", events, err)
		}
		if len(c.Error) > 0 && !bytes.Equal(c.Error, []byte("null")) {
			return st, fmt.Errorf("event %d carries an error: %s", events, c.Error)
		}
		if c.Choices == nil && c.Usage == nil {
			return st, fmt.Errorf("event %d has neither choices nor usage: %.100s", events, payload)
		}
		if c.Usage != nil {
			st.HasUsage = true
			st.PromptTokens, st.CompletionTokens = c.Usage.PromptTokens, c.Usage.CompletionTokens
		}
		piece := ""
		for _, ch := range c.Choices {
			if ch.Text != nil {
				piece += *ch.Text
			}
			if ch.Delta != nil && ch.Delta.Content != nil {
				piece += *ch.Delta.Content
			}
			if ch.FinishReason != nil {
				st.FinishReason = *ch.FinishReason
			}
		}
		if piece != "" {
			text.WriteString(piece)
			st.Times = append(st.Times, now())
		}
	}
}

// lineReader splits a stream into lines ended by "\n", "\r\n" or "\r", as Server-Sent
// Events allow, however long they are.
type lineReader struct {
	r      io.Reader
	buf    []byte
	start  int
	end    int
	eof    bool
	lastCR bool // the previous line ended with "\r": a "\n" right after it ends nothing
}

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: r, buf: make([]byte, 4096)} }

// next returns the next line without its end, or io.EOF (a last line without an end
// is dropped, as the event it belongs to is never dispatched).
func (l *lineReader) next() (string, error) {
	for {
		if l.lastCR && l.start < l.end {
			if l.buf[l.start] == '\n' {
				l.start++
			}
			l.lastCR = false
		}
		if i := bytes.IndexAny(l.buf[l.start:l.end], "\r\n"); i >= 0 {
			line := string(l.buf[l.start : l.start+i])
			l.lastCR = l.buf[l.start+i] == '\r'
			l.start += i + 1
			return line, nil
		}
		if l.eof {
			return "", io.EOF
		}
		if l.start > 0 {
			l.end = copy(l.buf, l.buf[l.start:l.end])
			l.start = 0
		}
		if l.end == len(l.buf) {
			l.buf = append(l.buf, make([]byte, len(l.buf))...)
		}
		n, err := l.r.Read(l.buf[l.end:])
		l.end += n
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return "", err
			}
			l.eof = true
		}
	}
}

// summarize reports the results of a run that started at start.
func summarize(rs []result, start time.Time, clients int) Report {
	rep := Report{Clients: clients}
	var ttfts, gaps []time.Duration
	var streamRates, promptRates []float64
	end := start
	for _, r := range rs {
		if r.finish.After(end) {
			end = r.finish
		}
		if r.err != nil {
			rep.Errors++
			if len(rep.ErrorSamples) < maxErrorSamples {
				rep.ErrorSamples = append(rep.ErrorSamples, r.err.Error())
			}
			continue
		}
		rep.Requests++
		rep.GenTokens += r.tokens
		rep.PromptTokens += r.promptTokens
		ttfts = append(ttfts, r.ttft)
		gaps = append(gaps, r.gaps...)
		if d := r.last.Sub(r.first).Seconds(); r.tokens > 1 && d > 0 {
			streamRates = append(streamRates, float64(r.tokens-1)/d)
		}
		if s := r.ttft.Seconds(); r.promptTokens > 0 && s > 0 {
			promptRates = append(promptRates, float64(r.promptTokens)/s)
		}
	}
	rep.Seconds = end.Sub(start).Seconds()
	if rep.Seconds > 0 {
		rep.GenTokPerSec = float64(rep.GenTokens) / rep.Seconds
	}
	rep.StreamTokPerSec = mean(streamRates)
	rep.PromptTokPerSec = mean(promptRates)
	rep.TTFT = Summarize(ttfts)
	rep.Gap = Summarize(gaps)
	return rep
}

func mean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// Summarize returns the distribution of ds: its mean, nearest-rank percentiles and
// maximum, in milliseconds (zero for no values).
func Summarize(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	ms := make([]float64, len(ds))
	for i, d := range ds {
		ms[i] = float64(d) / float64(time.Millisecond)
	}
	sort.Float64s(ms)
	return Dist{N: len(ms), Mean: mean(ms), P50: Percentile(ms, 50), P90: Percentile(ms, 90),
		P99: Percentile(ms, 99), Max: ms[len(ms)-1]}
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of sorted values by the
// nearest-rank method: the smallest value at least p% of the values are at or below.
// It returns 0 for no values.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted)) / 100)) // p·n first: exact for whole p
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// CheckSlots tells whether the server still serves n requests at once, as one with n
// free slots (sessions) does after a load: it sends n streaming requests of
// o.MaxTokens tokens together and requires every one to stream its first piece of text
// before any of them ends; then it closes them all. A slot leaked by an earlier request
// shows as a request that waits for another to end. o.MaxTokens should make a request
// last much longer than it takes to start n of them (the server's context is a fine
// bound). o's Clients, Duration and MaxRequests are ignored; the check must end within
// timeout.
func CheckSlots(ctx context.Context, o Options, n int, timeout time.Duration) error {
	if n < 1 {
		return fmt.Errorf("loadtest: checking %d slots: want at least 1", n)
	}
	o.Clients, o.MaxRequests, o.Duration = n, 1, 0
	o, err := o.withDefaults()
	if err != nil {
		return err
	}
	hc := o.HTTPClient
	if hc == nil {
		tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
		defer tr.CloseIdleConnections()
		hc = &http.Client{Transport: tr}
	}
	if o.Model == "" {
		o.Model = firstModel(ctx, hc, o)
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	started := make(chan struct{}, n)
	ended := make(chan result, n)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before wg.Wait: the requests still running are closed
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := sendNotify(tctx, hc, o, o.Prompts[i%len(o.Prompts)], func() { started <- struct{}{} })
			ended <- r
		}()
	}
	for waiting := n; waiting > 0; {
		select {
		case <-started:
			waiting--
		case r := <-ended:
			if tctx.Err() != nil {
				break // reported below
			}
			for drained := false; !drained; { // r's start was signalled before its end
				select {
				case <-started:
					waiting--
				default:
					drained = true
				}
			}
			if waiting == 0 && r.err == nil {
				return nil
			}
			if r.err != nil {
				return fmt.Errorf("loadtest: one of %d requests at once: %w", n, r.err)
			}
			return fmt.Errorf("loadtest: of %d requests at once, one ended (%d tokens) before %d had started: fewer than %d slots are free",
				n, r.tokens, waiting, n)
		case <-tctx.Done():
		}
		if err := tctx.Err(); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("loadtest: checking slots: %w", ctx.Err())
			}
			return fmt.Errorf("loadtest: %d of %d requests at once had not started after %v", waiting, n, timeout)
		}
	}
	return nil
}
