package serve

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// message is one chat message of a request.
type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// request is the body of a completion or chat completion request: the fields both
// share, Prompt for /v1/completions and Messages for /v1/chat/completions.
type request struct {
	Model            string          `json:"model"`
	Prompt           *string         `json:"prompt"`
	Messages         []message       `json:"messages"`
	Stream           bool            `json:"stream"`
	MaxTokens        *int            `json:"max_tokens"`
	Temperature      *float64        `json:"temperature"`
	TopP             *float64        `json:"top_p"`
	TopK             *int            `json:"top_k"`
	MinP             *float64        `json:"min_p"`
	Seed             *uint64         `json:"seed"`
	Stop             json.RawMessage `json:"stop"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	N                *int            `json:"n"`

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

// decodeRequest parses and checks a request body; chat tells which endpoint it is for.
// Its errors are the client's: a malformed body, a field of the wrong type, a value
// out of range.
func decodeRequest(body []byte, chat bool) (*request, error) {
	var r request
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, badParam(te.Field, "%s: want a %s, not a JSON %s", te.Field, te.Type, te.Value)
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

// check validates the fields' values and decodes stop.
func (r *request) check(chat bool) error {
	if chat {
		if len(r.Messages) == 0 {
			return badParam("messages", "messages: want at least one message")
		}
		for i, m := range r.Messages {
			if m.Role == "" {
				return badParam("messages", "messages[%d]: want a role", i)
			}
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
	if r.MaxTokens != nil && *r.MaxTokens < 1 {
		return badParam("max_tokens", "max_tokens %d: want at least 1", *r.MaxTokens)
	}
	if r.TopK != nil && *r.TopK < 0 {
		return badParam("top_k", "top_k %d: want ≥ 0 (0: all tokens)", *r.TopK)
	}
	if r.N != nil && *r.N != 1 {
		return badParam("n", "n %d: only 1 choice is supported", *r.N)
	}
	if len(r.Stop) > 0 && !bytes.Equal(bytes.TrimSpace(r.Stop), []byte("null")) {
		var one string
		if err := json.Unmarshal(r.Stop, &one); err == nil {
			r.stops = []string{one}
		} else if err := json.Unmarshal(r.Stop, &r.stops); err != nil {
			return badParam("stop", "stop: want a string or a list of strings")
		}
		if len(r.stops) > 4 {
			return badParam("stop", "stop: at most 4 strings, not %d", len(r.stops))
		}
		for _, s := range r.stops {
			if s == "" {
				return badParam("stop", "stop: an empty string")
			}
		}
	}
	return nil
}

// requestLogprobs returns whether a request asks for the sampled tokens' log-probabilities
// and how many alternatives per token.
func requestLogprobs(r *request) (bool, int) { return false, 0 }
