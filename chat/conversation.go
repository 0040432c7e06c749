package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/lmrun/lmrun/internal/jinja"
)

// Conversation is a list of messages and, optionally, the tools the model may call,
// kept as read from JSON (objects keep their key order).
type Conversation struct {
	messages []jinja.Value
	tools    *jinja.Value
}

// DecodeConversation reads {"messages": [...], "tools": [...]} ("tools" optional), the
// format `lmrun render --messages` reads. Each message is an object; its content may be
// a string or a list of parts, and any other keys (tool_calls, ...) are kept.
func DecodeConversation(data []byte) (*Conversation, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, fmt.Errorf("conversation: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("conversation: data after the JSON object")
	}
	if !v.IsDict() {
		return nil, fmt.Errorf("conversation: want a JSON object with \"messages\", got %s", kindName(v))
	}
	d := v.AsDict()
	msgs, ok := d.Get("messages")
	if !ok || !msgs.IsList() {
		return nil, fmt.Errorf("conversation: want a \"messages\" list")
	}
	c := &Conversation{}
	for i, m := range msgs.AsList().Items {
		if !m.IsDict() {
			return nil, fmt.Errorf("conversation: message %d is %s, not an object", i, kindName(m))
		}
		c.messages = append(c.messages, m)
	}
	if t, ok := d.Get("tools"); ok && !t.IsNone() {
		c.tools = &t
	}
	return c, nil
}

// Append adds a message with a role and a string content.
func (c *Conversation) Append(role, content string) {
	m := jinja.NewDict()
	m.AsDict().Set("role", jinja.NewString(role))
	m.AsDict().Set("content", jinja.NewString(content))
	c.messages = append(c.messages, m)
}

// Len returns the number of messages.
func (c *Conversation) Len() int { return len(c.messages) }

// Truncate keeps the first n messages.
func (c *Conversation) Truncate(n int) { c.messages = c.messages[:min(n, len(c.messages))] }

func (c *Conversation) messagesValue() jinja.Value {
	items := make([]jinja.Value, len(c.messages))
	copy(items, c.messages)
	return jinja.NewList(items)
}

// decodeValue reads one JSON value, keeping the key order of objects and the
// distinction between integers and floats.
func decodeValue(dec *json.Decoder) (jinja.Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return jinja.Undefined(), err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '[':
			var items []jinja.Value
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return jinja.Undefined(), err
				}
				items = append(items, v)
			}
			if _, err := dec.Token(); err != nil {
				return jinja.Undefined(), err
			}
			return jinja.NewList(items), nil
		case '{':
			d := jinja.NewDict()
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return jinja.Undefined(), err
				}
				v, err := decodeValue(dec)
				if err != nil {
					return jinja.Undefined(), err
				}
				d.AsDict().Set(k.(string), v)
			}
			if _, err := dec.Token(); err != nil {
				return jinja.Undefined(), err
			}
			return d, nil
		}
		return jinja.Undefined(), fmt.Errorf("unexpected %v", t)
	default:
		return jinja.FromGoValue(tok), nil
	}
}

func kindName(v jinja.Value) string {
	switch {
	case v.IsList():
		return "a list"
	case v.IsDict():
		return "an object"
	case v.IsString():
		return "a string"
	case v.IsNone():
		return "null"
	}
	return "a scalar"
}
