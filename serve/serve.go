// Package serve is an OpenAI-compatible HTTP server of one model: /v1/chat/completions
// (messages rendered with the model's chat template), /v1/completions (a raw prompt),
// both streamed as Server-Sent Events or not, /v1/models, /health and /metrics.
//
// Up to Options.Parallel sequences run at once, continuously batched: every decode step
// runs the next token of each of them as one forward pass (engine.Batch), a newcomer's
// prompt joins in chunks between steps, and a request that finds every slot busy waits
// in a bounded queue. A new prompt that begins with the tokens an idle slot's cache
// holds reuses them (the prompt cache).
package serve

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lmrun/lmrun/chat"
	"github.com/lmrun/lmrun/engine"
)

// Options configure a Server.
type Options struct {
	// Name is the model's id in responses and /v1/models.
	Name string
	// Template renders chat messages; nil makes /v1/chat/completions answer 400.
	Template *chat.Template
	// Render are the options Template renders with (BOS, EOS, Now); the server sets
	// AddGenerationPrompt.
	Render chat.Options
	// Specials are the model's special tokens, which rendered messages are encoded with
	// (see chat.Specials); nil: none.
	Specials []chat.Special
	// Parallel is the number of sessions, so of requests generating at once (0: 1).
	Parallel int
	// Queue is the number of requests that may wait for a session (0: 4 × Parallel);
	// more are answered 429.
	Queue int
	// Context is each sequence's context length (0: the model's).
	Context int
	// HalfKV stores every sequence's KV cache as IEEE binary16 (half the memory and half
	// the bytes attention reads per token; llama-server's default cache type).
	HalfKV bool
	// Chunk is the most prompt tokens a step feeds (0: 32); beside sequences that are
	// generating it feeds no more than there are of them (at least Chunk/2), so a
	// newcomer's prefill delays the others' next tokens by about one decode step.
	Chunk int
	// APIKey, when set, is required as "Authorization: Bearer KEY".
	APIKey string
	// MaxBodyBytes limits a request body (0: 1 MiB); larger ones are answered 413.
	MaxBodyBytes int64
	// RequestTimeout limits the time of one completion request, from its arrival to
	// the last byte of its response (0: no limit). A request waiting for a session,
	// processing its prompt or generating at the deadline stops there: one whose
	// response has not begun is answered 504, a stream already begun ends with an error
	// event (see completeWithin).
	RequestTimeout time.Duration
	// Now returns the time of "created" fields (nil: time.Now).
	Now func() time.Time
}

// Server answers the OpenAI API with one model. It is an http.Handler; Close stops it.
type Server struct {
	m     *engine.Model
	o     Options
	sched *scheduler
	met   *metrics
	slots chan struct{} // a token for each request running or waiting (Parallel + Queue)

	stopIDs []int    // end-of-turn tokens of the chat template
	stops   []string // end-of-turn strings of the template not in the vocabulary

	mu       sync.Mutex
	seq      uint64 // the last id number given
	draining bool
}

// errShutdown ends the sequences still running when the server closes.
var errShutdown = errors.New("the server is shutting down")

// New returns a server of m. The model must carry a tokenizer.
func New(m *engine.Model, o Options) (*Server, error) {
	if m.Tokenizer() == nil {
		return nil, errors.New("serve: the model carries no tokenizer")
	}
	if o.Parallel == 0 {
		o.Parallel = 1
	}
	if o.Parallel < 0 || o.Queue < 0 || o.Context < 0 || o.MaxBodyBytes < 0 || o.Chunk < 0 {
		return nil, fmt.Errorf("serve: parallel %d, queue %d, context %d, body limit %d, chunk %d: want ≥ 0",
			o.Parallel, o.Queue, o.Context, o.MaxBodyBytes, o.Chunk)
	}
	if o.Parallel > 1024 || o.Queue > 1<<20 || o.Chunk > 4096 {
		return nil, fmt.Errorf("serve: parallel %d, queue %d, chunk %d: at most 1024, %d and 4096", o.Parallel, o.Queue, o.Chunk, 1<<20)
	}
	if limit := m.Config().ContextLength; o.Context > limit {
		return nil, fmt.Errorf("serve: context %d: the model's is %d", o.Context, limit)
	}
	if o.Queue == 0 {
		o.Queue = 4 * o.Parallel
	}
	if o.Chunk == 0 {
		o.Chunk = 32
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Name == "" {
		o.Name = "model"
	}
	o.Render.AddGenerationPrompt = true
	s := &Server{m: m, o: o, met: newMetrics(), slots: make(chan struct{}, o.Parallel+o.Queue)}
	if o.Template != nil {
		var err error
		if s.stopIDs, s.stops, err = chat.Ends(o.Template, o.Render, o.Specials); err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
	}
	sc, err := newScheduler(m, o.Parallel, o.Chunk, o.Context, o.HalfKV, s.met)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	s.sched = sc
	return s, nil
}

// Drain makes the server refuse new completions (503) and report itself unready on
// /health, while the requests it has accepted go on: call it before shutting the HTTP
// server down.
func (s *Server) Drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Close stops the scheduler: sequences still running end with an error. The server
// answers nothing after it.
func (s *Server) Close() {
	s.Drain()
	s.sched.close()
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	route := map[string]string{"/v1/models": http.MethodGet, "/v1/completions": http.MethodPost,
		"/v1/chat/completions": http.MethodPost, "/health": http.MethodGet, "/metrics": http.MethodGet}
	method, ok := route[path]
	endpoint := path
	id, isModel := strings.CutPrefix(path, "/v1/models/")
	if isModel {
		method, ok, endpoint = http.MethodGet, true, "/v1/models/{model}"
	}
	if !ok {
		endpoint = "other"
	}
	// The body's limit is set on the connection's own writer, which can tell net/http to
	// close the connection at the limit instead of reading on (a wrapper cannot).
	r.Body = http.MaxBytesReader(rw, r.Body, s.o.MaxBodyBytes)
	w := &statusWriter{ResponseWriter: rw}
	defer func() { s.met.requests.WithLabelValues(endpoint, strconv.Itoa(w.status())).Inc() }()
	switch {
	case path == "/health" && r.Method == http.MethodGet:
		if s.isDraining() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "shutting down"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	case path == "/metrics" && r.Method == http.MethodGet:
		s.met.handler().ServeHTTP(w, r)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "invalid_request_error", "", "unknown route %s %s", r.Method, r.URL.Path)
		return
	}
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, "invalid_request_error", "", "missing or wrong API key: send Authorization: Bearer KEY")
		return
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "method %s not allowed: use %s", r.Method, method)
		return
	}
	model := map[string]any{"id": s.o.Name, "object": "model", "created": s.o.Now().Unix(), "owned_by": "lmrun"}
	switch {
	case isModel && id == s.o.Name:
		writeJSON(w, http.StatusOK, model)
	case isModel:
		writeError(w, http.StatusNotFound, "invalid_request_error", "model", "the model %q does not exist: this server has %q", id, s.o.Name)
	case path == "/v1/models":
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{model}})
	case path == "/v1/completions":
		s.completeWithin(w, r, false) // completeWithin: the request's deadline (deadline.go)
	default:
		s.completeWithin(w, r, true)
	}
}

// authorized reports whether r carries the API key, if one is set.
func (s *Server) authorized(r *http.Request) bool {
	if s.o.APIKey == "" {
		return true
	}
	got := []byte(r.Header.Get("Authorization"))
	want := []byte("Bearer " + s.o.APIKey)
	return subtle.ConstantTimeCompare(got, want) == 1
}

// nextID returns a new response id.
func (s *Server) nextID(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	return fmt.Sprintf("%s-%d-%d", prefix, s.o.Now().UnixNano(), s.seq)
}

// complete answers a completion (chat false) or chat completion request.
func (s *Server) complete(w http.ResponseWriter, r *http.Request, isChat bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.o.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", "", "the body exceeds %d bytes", tooBig.Limit)
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", "reading the body: %v", err)
		return
	}
	req, err := decodeRequest(body, isChat)
	if err != nil {
		param := ""
		var pe *paramError
		if errors.As(err, &pe) {
			param = pe.param
		}
		writeError(w, http.StatusBadRequest, "invalid_request_error", param, "%v", err)
		return
	}
	if isChat && s.o.Template == nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "messages", "the model has no chat template: start the server with one, or use /v1/completions")
		return
	}
	promptParam := map[bool]string{true: "messages", false: "prompt"}[isChat]
	prompt, stopIDs, stops, err := s.prompt(req, isChat)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", promptParam, "%v", err)
		return
	}
	if len(prompt) == 0 {
		writeError(w, http.StatusBadRequest, "invalid_request_error", promptParam, "the prompt has no tokens")
		return
	}
	if n := s.sched.contextLength(); len(prompt) >= n {
		writeError(w, http.StatusBadRequest, "invalid_request_error", promptParam,
			"the prompt has %d tokens, the context holds %d (and one more is needed to generate)", len(prompt), n)
		return
	}
	smp, err := engine.NewSampler(samplerConfig(req, s.o.Now))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", "%v", err)
		return
	}
	dec, err := s.m.NewTextDecoder(prompt, stops)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "stop", "%v", err)
		return
	}
	if s.isDraining() {
		writeError(w, http.StatusServiceUnavailable, "server_error", "", "the server is shutting down")
		return
	}
	select {
	case s.slots <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "rate_limit_error", "", "all %d sequences are busy and %d requests wait: retry later", s.o.Parallel, s.o.Queue)
		return
	}
	maxTokens := -1
	if req.MaxTokens != nil {
		maxTokens = *req.MaxTokens
	}
	ends := append(s.m.EndIDs(), stopIDs...)
	if req.IgnoreEOS {
		ends = nil
	}
	j := &job{ctx: r.Context(), prompt: prompt, sampler: smp, stopIDs: ends, dec: dec,
		maxTokens: maxTokens, logprobs: req.Logprobs, top: req.TopLogprobs}
	g := generation{s: s, w: w, req: req, chat: isChat, id: s.nextID(map[bool]string{true: "chatcmpl", false: "cmpl"}[isChat]),
		created: s.o.Now().Unix(), prev: prompt[len(prompt)-1]}
	s.sched.submit(j)
	end := g.run(j)
	<-s.slots
	if end.err != nil && !g.started && r.Context().Err() == nil {
		status := http.StatusInternalServerError
		if errors.Is(end.err, errShutdown) {
			status = http.StatusServiceUnavailable
		}
		writeError(w, status, "server_error", "", "generating: %v", end.err)
	}
}

// samplerConfig returns the sampler of a request: OpenAI's defaults (temperature 1,
// no truncation) for what it does not set, a seed from the clock unless given.
func samplerConfig(req *request, now func() time.Time) engine.SamplerConfig {
	c := engine.SamplerConfig{Temperature: 1}
	if req.Temperature != nil {
		c.Temperature = *req.Temperature
	}
	if req.TopP != nil {
		c.TopP = *req.TopP
	}
	if req.TopK != nil {
		c.TopK = *req.TopK
	}
	if req.MinP != nil {
		c.MinP = *req.MinP
	}
	if req.PresencePenalty != nil {
		c.PresencePenalty = *req.PresencePenalty
	}
	if req.FrequencyPenalty != nil {
		c.FrequencyPenalty = *req.FrequencyPenalty
	}
	if c.PresencePenalty != 0 || c.FrequencyPenalty != 0 {
		c.RepeatLastN = -1 // OpenAI's penalties count the whole text so far
	}
	if req.Seed != nil {
		c.Seed = *req.Seed
	} else {
		c.Seed = uint64(now().UnixNano())
	}
	return c
}

// prompt returns the token ids of a request's prompt and what ends its generation: the
// template's end-of-turn tokens and strings for a chat, and the request's stop strings.
func (s *Server) prompt(req *request, isChat bool) (ids, stopIDs []int, stops []string, err error) {
	stops = append([]string(nil), req.stops...)
	if !isChat {
		ids, err = s.m.Tokenizer().Encode(*req.Prompt, true, false)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("encoding the prompt: %w", err)
		}
		return ids, nil, stops, nil
	}
	conv := &chat.Conversation{}
	for _, m := range req.Messages {
		conv.Append(m.Role, m.Content)
	}
	text, err := s.o.Template.Render(conv, s.o.Render)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("rendering the messages with the chat template: %w", err)
	}
	for _, e := range s.stops {
		if !contains(stops, e) {
			stops = append(stops, e)
		}
	}
	return s.encode(text), s.stopIDs, stops, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// generation writes the response of one request.
type generation struct {
	s       *Server
	w       http.ResponseWriter
	req     *request
	chat    bool
	id      string
	created int64
	started bool // the response's header was written
	failed  bool // writing to the client failed: the rest is not written
	prev    int  // the token before the next one, for its bytes in logprobs
}

func (g *generation) object(chunk bool) string {
	switch {
	case g.chat && chunk:
		return "chat.completion.chunk"
	case g.chat:
		return "chat.completion"
	default:
		return "text_completion"
	}
}

// usage is the token counts of a response.
type usage struct {
	PromptTokens        int            `json:"prompt_tokens"`
	CompletionTokens    int            `json:"completion_tokens"`
	TotalTokens         int            `json:"total_tokens"`
	PromptTokensDetails *promptDetails `json:"prompt_tokens_details,omitempty"`
}

// promptDetails tells how many prompt tokens came from the prompt cache.
type promptDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// choice is one choice of a response or chunk.
type choice struct {
	Index        int      `json:"index"`
	Message      *message `json:"message,omitempty"`
	Delta        *delta   `json:"delta,omitempty"`
	Text         *string  `json:"text,omitempty"`
	Logprobs     any      `json:"logprobs"`
	FinishReason *string  `json:"finish_reason"`
}

// delta is the change a chat chunk brings.
type delta struct {
	Role    string `json:"role,omitempty"`
	Content string `json:"content,omitempty"`
}

// response is a whole response or a chunk of a stream.
type response struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Created int64    `json:"created"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
	Usage   *usage   `json:"usage,omitempty"`
}

// chatLogprobs is a chat choice's logprobs: one entry per token.
type chatLogprobs struct {
	Content []chatTokenLogprob `json:"content"`
}

type chatTokenLogprob struct {
	Token       string             `json:"token"`
	Logprob     float32            `json:"logprob"`
	Bytes       []int              `json:"bytes"`
	TopLogprobs []chatTokenLogprob `json:"top_logprobs,omitempty"`
}

// textLogprobs is a completion choice's logprobs, in the legacy API's columns.
type textLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float32            `json:"token_logprobs"`
	TopLogprobs   []map[string]float32 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// logprobs accumulates the logprobs of a response (or of one chunk).
type logprobs struct {
	chat *chatLogprobs
	text *textLogprobs
	off  int // text offset of the next token (completions)
}

func (g *generation) newLogprobs() *logprobs {
	if g.chat {
		return &logprobs{chat: &chatLogprobs{Content: []chatTokenLogprob{}}}
	}
	return &logprobs{text: &textLogprobs{Tokens: []string{}, TokenLogprobs: []float32{}, TopLogprobs: []map[string]float32{}, TextOffset: []int{}}}
}

func (l *logprobs) value() any {
	if l == nil {
		return nil
	}
	if l.chat != nil {
		return l.chat
	}
	return l.text
}

// add appends the tokens of one event.
func (g *generation) addLogprobs(l *logprobs, toks []tokenLogprob) {
	tok := g.s.m.Tokenizer()
	piece := func(prev, id int) []byte {
		b, err := tok.Piece(prev, id)
		if err != nil {
			return nil
		}
		return b
	}
	for _, t := range toks {
		b := piece(g.prev, t.id)
		if l.chat != nil {
			e := chatTokenLogprob{Token: strings.ToValidUTF8(string(b), "\uFFFD"), Logprob: t.logprob, Bytes: byteInts(b),
				TopLogprobs: []chatTokenLogprob{}}
			for _, a := range t.top {
				ab := piece(g.prev, a.id)
				e.TopLogprobs = append(e.TopLogprobs, chatTokenLogprob{Token: strings.ToValidUTF8(string(ab), "\uFFFD"), Logprob: a.logprob, Bytes: byteInts(ab)})
			}
			l.chat.Content = append(l.chat.Content, e)
		} else {
			l.text.Tokens = append(l.text.Tokens, strings.ToValidUTF8(string(b), "\uFFFD"))
			l.text.TokenLogprobs = append(l.text.TokenLogprobs, t.logprob)
			top := map[string]float32{}
			for _, a := range t.top {
				top[strings.ToValidUTF8(string(piece(g.prev, a.id)), "\uFFFD")] = a.logprob
			}
			l.text.TopLogprobs = append(l.text.TopLogprobs, top)
			l.text.TextOffset = append(l.text.TextOffset, l.off)
			l.off += len(b)
		}
		g.prev = t.id
	}
}

func byteInts(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

// run writes the job's events as they come — streamed, or as one response at the end —
// and returns the last. It returns only once the scheduler has ended the job: a
// client that leaves ends it at the next step.
func (g *generation) run(j *job) event {
	var text strings.Builder
	var lp *logprobs
	if j.logprobs {
		lp = g.newLogprobs()
	}
	off := 0
	if g.req.Stream && g.chat {
		// A chat stream begins with the assistant's role, before the first token.
		first := g.chunk("", nil)
		first.Choices[0].Delta.Role = "assistant"
		g.send(first)
	}
	for {
		<-j.ready
		for _, e := range j.take() {
			if e.end && e.err != nil {
				if g.req.Stream && g.started && !g.failed && j.ctx.Err() == nil {
					g.send(map[string]any{"error": apiError{Message: fmt.Sprintf("generating: %v", e.err), Type: "server_error"}})
				}
				return e
			}
			if !g.req.Stream {
				text.WriteString(e.text)
				if lp != nil {
					g.addLogprobs(lp, e.tokens)
				}
				if e.end {
					g.whole(text.String(), e.finish, e.usage, lp.value())
					return e
				}
				continue
			}
			var clp *logprobs
			if lp != nil && len(e.tokens) > 0 {
				clp = g.newLogprobs()
				clp.off = off
				g.addLogprobs(clp, e.tokens)
				off = clp.off
			}
			if e.text != "" || clp != nil {
				c := g.chunk(e.text, nil)
				c.Choices[0].Logprobs = clp.value()
				g.send(c)
			}
			if e.end {
				finish := e.finish
				last := g.chunk("", &finish)
				u := e.usage
				last.Usage = &u
				g.send(last)
				if o := g.req.StreamOptions; o != nil && o.IncludeUsage {
					// OpenAI's form: a last chunk with no choices and the usage.
					g.send(response{ID: g.id, Object: g.object(true), Created: g.created, Model: g.s.o.Name,
						Choices: []choice{}, Usage: &u})
				}
				g.done()
				return e
			}
		}
	}
}

// whole writes a response that is not streamed.
func (g *generation) whole(text, finish string, u usage, lp any) {
	c := choice{FinishReason: &finish, Logprobs: lp}
	if g.chat {
		c.Message = &message{Role: "assistant", Content: text}
	} else {
		c.Text = &text
	}
	g.started = true
	writeJSON(g.w, http.StatusOK, response{ID: g.id, Object: g.object(false), Created: g.created, Model: g.s.o.Name,
		Choices: []choice{c}, Usage: &u})
}

// chunk returns a streamed chunk carrying text.
func (g *generation) chunk(text string, finish *string) response {
	c := choice{FinishReason: finish}
	if g.chat {
		c.Delta = &delta{Content: text}
	} else {
		c.Text = &text
	}
	return response{ID: g.id, Object: g.object(true), Created: g.created, Model: g.s.o.Name, Choices: []choice{c}}
}

// send writes one Server-Sent Event (the header first, with the stream's first event).
// After a failed write nothing more is written.
func (g *generation) send(v any) {
	if g.failed {
		return
	}
	if !g.started {
		h := g.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("Connection", "keep-alive")
		g.w.WriteHeader(http.StatusOK)
		g.started = true
	}
	b, err := json.Marshal(v)
	if err == nil {
		_, err = fmt.Fprintf(g.w, "data: %s\n\n", b)
	}
	if err != nil {
		g.failed = true
		return
	}
	if f, ok := g.w.(http.Flusher); ok {
		f.Flush()
	}
}

// done ends a stream.
func (g *generation) done() {
	if g.failed {
		return
	}
	if _, err := io.WriteString(g.w, "data: [DONE]\n\n"); err != nil {
		g.failed = true
		return
	}
	if f, ok := g.w.(http.Flusher); ok {
		f.Flush()
	}
}

// statusWriter remembers the status code written, for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes a flush on to the connection.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// apiError is the body of OpenAI's errors, under "error".
type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// writeError writes an error response in OpenAI's form.
func writeError(w http.ResponseWriter, status int, typ, param, format string, args ...any) {
	e := apiError{Message: fmt.Sprintf(format, args...), Type: typ}
	if param != "" {
		e.Param = &param
	}
	code := strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
	e.Code = &code
	writeJSON(w, status, map[string]apiError{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// encode tokenizes rendered text: the special tokens written in it are their ids, the
// text between them is encoded as text (no BOS: the template writes it).
func (s *Server) encode(text string) []int {
	tok := s.m.Tokenizer()
	return chat.Encode(text, s.o.Specials, func(part string) ([]int, error) { return tok.Encode(part, false, false) })
}
