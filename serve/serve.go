// Package serve is an OpenAI-compatible HTTP server of one model: /v1/chat/completions
// (messages rendered with the model's chat template), /v1/completions (a raw prompt),
// both streamed as Server-Sent Events or not, /v1/models and /health.
//
// Each request takes one of Options.Parallel sessions (its own KV cache; the weights are
// shared) or waits for one in a bounded queue; a full queue answers 429. Sequences are
// not batched together yet.
package serve

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	// Context is each session's context length (0: the model's).
	Context int
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

// Server answers the OpenAI API with one model. It is an http.Handler.
type Server struct {
	m        *engine.Model
	o        Options
	sessions chan *engine.Session
	waiting  chan struct{} // a token for each request allowed to wait

	stopIDs []int    // end-of-turn tokens of the chat template
	stops   []string // end-of-turn strings of the template not in the vocabulary

	mu  sync.Mutex
	seq uint64 // the last id number given
}

// New returns a server of m. The model must carry a tokenizer.
func New(m *engine.Model, o Options) (*Server, error) {
	if m.Tokenizer() == nil {
		return nil, errors.New("serve: the model carries no tokenizer")
	}
	if o.Parallel == 0 {
		o.Parallel = 1
	}
	if o.Parallel < 0 || o.Queue < 0 || o.Context < 0 || o.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("serve: parallel %d, queue %d, context %d, body limit %d: want ≥ 0", o.Parallel, o.Queue, o.Context, o.MaxBodyBytes)
	}
	if limit := m.Config().ContextLength; o.Context > limit {
		return nil, fmt.Errorf("serve: context %d: the model's is %d", o.Context, limit)
	}
	if o.Queue == 0 {
		o.Queue = 4 * o.Parallel
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
	s := &Server{m: m, o: o, sessions: make(chan *engine.Session, o.Parallel), waiting: make(chan struct{}, o.Queue)}
	for range o.Parallel {
		s.sessions <- m.NewSession(engine.SessionOptions{Context: o.Context})
	}
	if o.Template != nil {
		var err error
		if s.stopIDs, s.stops, err = chat.Ends(o.Template, o.Render, o.Specials); err != nil {
			return nil, fmt.Errorf("serve: %w", err)
		}
	}
	return s, nil
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	if path == "/health" {
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "method %s not allowed: use GET", r.Method)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	route := map[string]string{"/v1/models": http.MethodGet, "/v1/completions": http.MethodPost, "/v1/chat/completions": http.MethodPost}
	method, ok := route[path]
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
	switch path {
	case "/v1/models":
		writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []any{
			map[string]any{"id": s.o.Name, "object": "model", "created": s.o.Now().Unix(), "owned_by": "lmrun"},
		}})
	case "/v1/completions":
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

// acquire takes a free session, waiting in the queue for one. It returns nil when the
// queue is full (full true) or ctx is done.
func (s *Server) acquire(ctx context.Context) (sess *engine.Session, full bool) {
	select {
	case sess := <-s.sessions:
		return sess, false
	default:
	}
	select {
	case s.waiting <- struct{}{}:
	default:
		return nil, true
	}
	defer func() { <-s.waiting }()
	select {
	case sess := <-s.sessions:
		return sess, false
	case <-ctx.Done():
		return nil, false
	}
}

func (s *Server) release(sess *engine.Session) { s.sessions <- sess }

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
	smp, err := engine.NewSampler(samplerConfig(req, s.o.Now))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", "%v", err)
		return
	}
	ctx := r.Context()
	sess, full := s.acquire(ctx)
	if full {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "rate_limit_error", "", "all %d sessions are busy and %d requests wait: retry later", s.o.Parallel, s.o.Queue)
		return
	}
	if sess == nil {
		return // the client left while waiting
	}
	defer s.release(sess)
	sess.Reset()
	if n := sess.Context(); len(prompt) >= n {
		writeError(w, http.StatusBadRequest, "invalid_request_error", promptParam,
			"the prompt has %d tokens, the context holds %d (and one more is needed to generate)", len(prompt), n)
		return
	}
	maxTokens := -1
	if req.MaxTokens != nil {
		maxTokens = *req.MaxTokens
	}
	opts := engine.GenerateOptions{MaxTokens: maxTokens, StopIDs: stopIDs, StopStrings: stops, Sampler: smp}
	g := generation{s: s, w: w, req: req, chat: isChat, id: s.nextID(map[bool]string{true: "chatcmpl", false: "cmpl"}[isChat]),
		created: s.o.Now().Unix()}
	var st engine.Stats
	if req.Stream {
		st, err = g.stream(ctx, sess, prompt, opts)
	} else {
		var text strings.Builder
		st, err = sess.GenerateText(ctx, prompt, opts, func(t string) error { text.WriteString(t); return nil })
		if err == nil {
			g.whole(text.String(), g.finish(sess, st, maxTokens), st)
		}
	}
	if err != nil && ctx.Err() == nil && !g.started {
		writeError(w, http.StatusInternalServerError, "server_error", "", "generating: %v", err)
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
}

// finish returns the finish reason of a generation that ended without error: "length"
// when it stopped at max_tokens or a full context, else "stop".
func (g *generation) finish(sess *engine.Session, st engine.Stats, maxTokens int) string {
	if (maxTokens > 0 && st.Generated >= maxTokens) || sess.Pos() >= sess.Context()-1 {
		return "length"
	}
	return "stop"
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
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func usageOf(st engine.Stats) usage {
	return usage{st.PromptTokens, st.Generated, st.PromptTokens + st.Generated}
}

// choice is one choice of a response or chunk.
type choice struct {
	Index        int      `json:"index"`
	Message      *message `json:"message,omitempty"`
	Delta        *delta   `json:"delta,omitempty"`
	Text         *string  `json:"text,omitempty"`
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

// whole writes a response that is not streamed.
func (g *generation) whole(text, finish string, st engine.Stats) {
	c := choice{FinishReason: &finish}
	if g.chat {
		c.Message = &message{Role: "assistant", Content: text}
	} else {
		c.Text = &text
	}
	u := usageOf(st)
	g.started = true
	writeJSON(g.w, http.StatusOK, response{ID: g.id, Object: g.object(false), Created: g.created, Model: g.s.o.Name,
		Choices: []choice{c}, Usage: &u})
}

// stream generates, writing each piece of text as a Server-Sent Event.
func (g *generation) stream(ctx context.Context, sess *engine.Session, prompt []int, opts engine.GenerateOptions) (engine.Stats, error) {
	flusher, _ := g.w.(http.Flusher)
	h := g.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	send := func(v any) error {
		if !g.started {
			g.w.WriteHeader(http.StatusOK)
			g.started = true
		}
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(g.w, "data: %s\n\n", b); err != nil {
			return fmt.Errorf("writing an event: %w", err)
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	chunk := func(text string, finish *string) response {
		c := choice{FinishReason: finish}
		if g.chat {
			c.Delta = &delta{Content: text}
		} else {
			c.Text = &text
		}
		return response{ID: g.id, Object: g.object(true), Created: g.created, Model: g.s.o.Name, Choices: []choice{c}}
	}
	if g.chat {
		first := chunk("", nil)
		first.Choices[0].Delta.Role = "assistant"
		if err := send(first); err != nil {
			return engine.Stats{}, err
		}
	}
	st, err := sess.GenerateText(ctx, prompt, opts, func(text string) error { return send(chunk(text, nil)) })
	if err != nil {
		if ctx.Err() == nil && g.started {
			_ = send(map[string]any{"error": apiError{Message: fmt.Sprintf("generating: %v", err), Type: "server_error"}})
		}
		return st, err
	}
	finish := g.finish(sess, st, opts.MaxTokens)
	last := chunk("", &finish)
	u := usageOf(st)
	last.Usage = &u
	if err := send(last); err != nil {
		return st, err
	}
	if _, err := io.WriteString(g.w, "data: [DONE]\n\n"); err != nil {
		return st, fmt.Errorf("writing the end of the stream: %w", err)
	}
	if flusher != nil {
		flusher.Flush()
	}
	return st, nil
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
