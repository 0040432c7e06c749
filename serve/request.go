package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of a request, beyond which it is answered 400. They bound the work a request
// can ask for before any of it is done; the body limit (Options.MaxBodyBytes) bounds
// the rest.
const (
	// maxMessages is the number of messages a chat request may hold. OpenAI documents
	// none; each message renders as at least a few tokens, so more than this do not fit
	// a context of any model served here, and a cap answers a flood of tiny messages
	// before the template renders them one by one.
	maxMessages = 4096
	// maxStops is the number of stop strings. OpenAI takes up to 4; clients written for
	// local servers (llama-server has no cap) send a template's several end-of-turn
	// markers along with their own, so more are accepted, but still few: each generated
	// piece of text is searched for every stop string.
	maxStops = 16
	// maxStopBytes is the length of one stop string, in bytes: text held back while it
	// might begin a stop string is at most this long.
	maxStopBytes = 256
	// maxTopLogprobs is the most alternatives per token a chat request may ask for
	// (top_logprobs), as OpenAI; maxCompletionLogprobs is the same for the legacy
	// completions API (logprobs N).
	maxTopLogprobs        = 20
	maxCompletionLogprobs = 5
)

// message is one chat message of a request. Content is always text: a request's list
// of text parts is joined into it (see UnmarshalJSON).
type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// Name is the optional name of the message's author; it is accepted and not
	// given to the template.
	Name string `json:"name,omitempty"`
}

// UnmarshalJSON decodes a message as OpenAI sends it: content a string, a list of
// parts of which only text parts are supported (their texts are concatenated), or null
// (or absent) for an assistant message, which may carry tool calls instead. Its errors
// are *paramError, named after the message's field at fault.
func (m *message) UnmarshalJSON(b []byte) error {
	var raw struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
		Name    string          `json:"name"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return typeError(err, "a message")
	}
	*m = message{Role: raw.Role, Name: raw.Name}
	content := bytes.TrimSpace(raw.Content)
	switch {
	case len(content) == 0 || bytes.Equal(content, []byte("null")):
		if raw.Role != "assistant" {
			return badParam("content", "content: missing or null, which only an assistant message may be")
		}
	case content[0] == '"':
		if err := json.Unmarshal(content, &m.Content); err != nil {
			return fmt.Errorf("content: %w", err)
		}
	case content[0] == '[':
		var parts []struct {
			Type string  `json:"type"`
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(content, &parts); err != nil {
			return badParam("content", `content: want a string or a list of parts {"type": "text", "text": "..."}`)
		}
		var text strings.Builder
		for i, p := range parts {
			switch {
			case p.Type == "":
				return badParam("content", "content[%d]: want a part type", i)
			case p.Type != "text":
				return badParam("content", "content[%d]: part type %q is unsupported: this server takes text parts only", i, p.Type)
			case p.Text == nil:
				return badParam("content", "content[%d]: a text part without text", i)
			}
			text.WriteString(*p.Text)
		}
		m.Content = text.String()
	default:
		return badParam("content", "content: want a string, a list of parts or null")
	}
	return nil
}

// streamOptions are the options of a streamed response.
type streamOptions struct {
	// IncludeUsage asks for a last chunk carrying the usage of the whole request.
	IncludeUsage bool `json:"include_usage"`
}

// request is the body of a completion or chat completion request: the fields both
// share, Prompt for /v1/completions and Messages for /v1/chat/completions. Fields not
// listed (user, tools, response_format...) are ignored; a listed field of the wrong
// type is an error.
type request struct {
	Model         string            `json:"model"`
	Prompt        *string           `json:"prompt"`
	Messages      []message         `json:"-"`        // decoded from RawMessages by check
	RawMessages   []json.RawMessage `json:"messages"` // as sent, so that errors can name the message at fault
	Stream        bool              `json:"stream"`
	StreamOptions *streamOptions    `json:"stream_options"`
	// MaxTokens is the most tokens to generate, nil: until the context is full.
	// check sets it from max_completion_tokens, chat's newer name, if it is nil.
	MaxTokens           *int     `json:"max_tokens"`
	MaxCompletionTokens *int     `json:"max_completion_tokens"`
	Temperature         *float64 `json:"temperature"`
	TopP                *float64 `json:"top_p"`
	TopK                *int     `json:"top_k"`
	MinP                *float64 `json:"min_p"`
	// Seed is the sampler's seed, nil: one from the clock. check sets it from RawSeed,
	// which may also be -1 for a random seed, as llama-server's clients send.
	Seed             *uint64         `json:"-"`
	RawSeed          json.RawMessage `json:"seed"`
	Stop             json.RawMessage `json:"stop"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	N                *int            `json:"n"`
	// IgnoreEOS generates past the model's end-of-sequence and the chat template's
	// end-of-turn tokens (stop strings still stop): an extension, as llama-server and vLLM
	// take it, for benchmarks that want a fixed length.
	IgnoreEOS bool `json:"ignore_eos"`
	// RawLogprobs is logprobs as sent: a boolean for a chat, the number of
	// alternatives (0 to 5) for a completion. check decodes it into Logprobs and
	// TopLogprobs.
	RawLogprobs json.RawMessage `json:"logprobs"`
	// RawTopLogprobs is chat's top_logprobs as sent (0 to 20, with logprobs true);
	// /v1/completions ignores it.
	RawTopLogprobs *int `json:"top_logprobs"`

	// Logprobs tells whether to return the log probability of each generated token,
	// and TopLogprobs how many of the most likely tokens at each position to return
	// with theirs (0 to 20), on either endpoint.
	Logprobs    bool `json:"-"`
	TopLogprobs int  `json:"-"`

	stops []string // Stop decoded
}

// paramError is a request error that names the field at fault.
type paramError struct {
	param, msg string
}

func (e *paramError) Error() string { return e.msg }

func badParam(param, format string, args ...any) error {
	return &paramError{param: param, msg: fmt.Sprintf(format, args...)}
}

// typeError turns a JSON type error into a *paramError naming the field; what names
// the value decoded, for a value of the wrong type as a whole (a list for an object).
// Other errors are returned as they are.
func typeError(err error, what string) error {
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err
	}
	if te.Field == "" {
		return badParam("", "%s: want %s, not a JSON %s", what, jsonKind(te.Type), te.Value)
	}
	return badParam(te.Field, "%s: want %s, not a JSON %s", te.Field, jsonKind(te.Type), te.Value)
}

// jsonKind names the JSON value a Go type is decoded from, for errors.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another value"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer ≥ 0"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another value"
}

// decodeRequest parses and checks a request body; chat tells which endpoint it is for.
// Its errors are the client's: a body that is not UTF-8 or not one JSON object, a field
// of the wrong type, a value out of range.
func decodeRequest(body []byte, chat bool) (*request, error) {
	// The JSON decoder would turn invalid UTF-8 into U+FFFD silently: the model would
	// see text the client did not send.
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("the body is not valid UTF-8 (at byte %d): encode the JSON text in UTF-8", invalidUTF8At(body))
	}
	var r request
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "" {
				return nil, fmt.Errorf("the body is a JSON %s: want an object", te.Value)
			}
			return nil, typeError(err, "")
		}
		return nil, fmt.Errorf("the body is not a JSON object: %w", err)
	}
	if dec.More() {
		return nil, errors.New("the body holds more than one JSON value")
	}
	if err := r.check(chat); err != nil {
		return nil, err
	}
	return &r, nil
}

// invalidUTF8At returns the offset of the first byte of b that is not valid UTF-8.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return len(b)
}

// check validates the fields' values and decodes messages, stop and logprobs.
func (r *request) check(chat bool) error {
	if chat {
		if err := r.decodeMessages(); err != nil {
			return err
		}
	} else if r.Prompt == nil {
		return badParam("prompt", "prompt: want a string")
	}
	inRange := func(p *float64, name string, lo, hi float64) error {
		if p != nil && !(*p >= lo && *p <= hi) {
			return badParam(name, "%s %g: want %g to %g", name, *p, lo, hi)
		}
		return nil
	}
	for _, err := range []error{
		inRange(r.Temperature, "temperature", 0, 2),
		inRange(r.TopP, "top_p", 0, 1),
		inRange(r.MinP, "min_p", 0, 1),
		inRange(r.PresencePenalty, "presence_penalty", -2, 2),
		inRange(r.FrequencyPenalty, "frequency_penalty", -2, 2),
	} {
		if err != nil {
			return err
		}
	}
	// A huge max_tokens is no error: generation ends at a full context, with
	// finish_reason "length", and nothing is allocated by max_tokens.
	if r.MaxTokens != nil && *r.MaxTokens < 1 {
		return badParam("max_tokens", "max_tokens %d: want at least 1", *r.MaxTokens)
	}
	if m := r.MaxCompletionTokens; m != nil {
		if *m < 1 {
			return badParam("max_completion_tokens", "max_completion_tokens %d: want at least 1", *m)
		}
		if r.MaxTokens != nil && *r.MaxTokens != *m {
			return badParam("max_completion_tokens", "max_completion_tokens %d and max_tokens %d: give one, or both equal", *m, *r.MaxTokens)
		}
		r.MaxTokens = m
	}
	if r.TopK != nil && *r.TopK < 0 {
		return badParam("top_k", "top_k %d: want ≥ 0 (0: all tokens)", *r.TopK)
	}
	if r.N != nil && *r.N != 1 {
		return badParam("n", "n %d: only 1 choice is supported", *r.N)
	}
	if err := r.decodeSeed(); err != nil {
		return err
	}
	if err := r.decodeStop(); err != nil {
		return err
	}
	return r.decodeLogprobs(chat)
}

// decodeMessages decodes RawMessages into Messages, naming the message at fault.
func (r *request) decodeMessages() error {
	if len(r.RawMessages) == 0 {
		return badParam("messages", "messages: want at least one message")
	}
	if len(r.RawMessages) > maxMessages {
		return badParam("messages", "messages: %d messages, at most %d are accepted", len(r.RawMessages), maxMessages)
	}
	r.Messages = make([]message, len(r.RawMessages))
	for i, raw := range r.RawMessages {
		m := &r.Messages[i]
		if err := json.Unmarshal(raw, m); err != nil {
			var pe *paramError
			if errors.As(err, &pe) && pe.param != "" {
				return badParam("messages", "messages[%d].%s", i, pe.msg)
			}
			return badParam("messages", "messages[%d]: %v", i, err)
		}
		if m.Role == "" {
			return badParam("messages", "messages[%d]: want a role", i)
		}
	}
	return nil
}

// decodeSeed decodes RawSeed into Seed: an integer 0 to 2⁶⁴-1, or -1 or null for none.
func (r *request) decodeSeed() error {
	raw := bytes.TrimSpace(r.RawSeed)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) || bytes.Equal(raw, []byte("-1")) {
		return nil
	}
	seed, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil {
		return badParam("seed", "seed %.40s: want an integer 0 to 2^64-1, or -1 for a random seed", raw)
	}
	r.Seed = &seed
	return nil
}

// decodeStop decodes stop, a string or a list of strings, into stops.
func (r *request) decodeStop() error {
	if len(r.Stop) == 0 || bytes.Equal(bytes.TrimSpace(r.Stop), []byte("null")) {
		return nil
	}
	stop := bytes.TrimSpace(r.Stop)
	switch stop[0] {
	case '"':
		var one string
		if err := json.Unmarshal(stop, &one); err != nil {
			return badParam("stop", "stop: %v", err)
		}
		r.stops = []string{one}
	case '[':
		// Count the list before decoding it: a list of thousands is answered at once.
		if n, err := countList(stop); err != nil {
			return badParam("stop", "stop: %v", err)
		} else if n > maxStops {
			return badParam("stop", "stop: %d strings, at most %d are accepted", n, maxStops)
		}
		if err := json.Unmarshal(stop, &r.stops); err != nil {
			return badParam("stop", "stop: want a string or a list of strings")
		}
	default:
		return badParam("stop", "stop: want a string or a list of strings")
	}
	for i, s := range r.stops {
		if s == "" {
			return badParam("stop", "stop[%d]: an empty string", i)
		}
		if len(s) > maxStopBytes {
			return badParam("stop", "stop[%d]: %d bytes, at most %d are accepted", i, len(s), maxStopBytes)
		}
	}
	return nil
}

// countList returns the number of elements of a JSON list.
func countList(list []byte) (int, error) {
	dec := json.NewDecoder(bytes.NewReader(list))
	if _, err := dec.Token(); err != nil { // [
		return 0, fmt.Errorf("reading a list: %w", err)
	}
	n := 0
	for dec.More() {
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return 0, fmt.Errorf("reading a list: %w", err)
		}
		n++
	}
	return n, nil
}

// decodeLogprobs sets Logprobs and TopLogprobs from the endpoint's fields: a chat's
// logprobs (a boolean) and top_logprobs (0 to 20, which needs logprobs true when not
// 0), or a completion's logprobs N (0 to 5), which asks for the chosen token's log
// probability and the N most likely ones.
func (r *request) decodeLogprobs(chat bool) error {
	raw := bytes.TrimSpace(r.RawLogprobs)
	isNull := len(raw) == 0 || bytes.Equal(raw, []byte("null"))
	if !chat {
		if isNull {
			return nil
		}
		var n int
		if err := json.Unmarshal(raw, &n); err != nil || n < 0 || n > maxCompletionLogprobs {
			return badParam("logprobs", "logprobs %s: want an integer 0 to %d, the number of most likely tokens to return at each position", raw, maxCompletionLogprobs)
		}
		r.Logprobs, r.TopLogprobs = true, n
		return nil
	}
	if !isNull {
		if err := json.Unmarshal(raw, &r.Logprobs); err != nil {
			return badParam("logprobs", "logprobs %s: want true or false (top_logprobs sets the number of alternatives)", raw)
		}
	}
	if t := r.RawTopLogprobs; t != nil {
		if *t < 0 || *t > maxTopLogprobs {
			return badParam("top_logprobs", "top_logprobs %d: want 0 to %d", *t, maxTopLogprobs)
		}
		if *t > 0 && !r.Logprobs {
			return badParam("top_logprobs", "top_logprobs %d: set logprobs to true too", *t)
		}
		r.TopLogprobs = *t
	}
	return nil
}
