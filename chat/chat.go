// Package chat renders a conversation with a model's chat template, as Hugging Face
// transformers' apply_chat_template does: the template is Jinja, run with trim_blocks
// and lstrip_blocks, the loopcontrols extension, the raise_exception and strftime_now
// globals, a tojson filter that writes what Python's json.dumps writes, and the
// variables messages, tools, documents, add_generation_prompt and the special tokens.
//
// A render fails where Python's jinja2 raises (jinja2's immutable sandbox and default
// Undefined: iterating None, str + list, arithmetic on an undefined value, list.append).
//
// A conversation keeps its JSON as read, key order included, because templates print
// parts of it (tool schemas through tojson) and must print them as Python would.
package chat

import (
	"fmt"
	"time"

	"github.com/lmrun/lmrun/internal/jinja"
)

// Template is a parsed chat template. It is safe for concurrent use.
type Template struct {
	t *jinja.Template
}

// Parse compiles a chat template's source, used exactly as stored.
func Parse(source string) (*Template, error) {
	t, err := jinja.Compile(source)
	if err != nil {
		return nil, fmt.Errorf("chat template: %w", err)
	}
	// transformers renders in jinja2's ImmutableSandboxedEnvironment: a template
	// that appends to a list or updates a dict fails there, and must fail here.
	return &Template{t: t.Immutable()}, nil
}

// Options are the variables a render passes besides the conversation.
type Options struct {
	// AddGenerationPrompt asks the template to end with the opening of an assistant turn.
	AddGenerationPrompt bool
	// BOS and EOS are the tokenizer's bos_token and eos_token strings ("" when it has none).
	BOS, EOS string
	// Now is the time strftime_now formats (the zero time is the Unix epoch).
	Now time.Time
}

// Render renders the conversation with the template.
func (t *Template) Render(c *Conversation, o Options) (string, error) {
	now := o.Now
	if now.IsZero() {
		now = time.Unix(0, 0)
	}
	tools := jinja.None()
	if c.tools != nil {
		tools = *c.tools
	}
	data := map[string]jinja.Value{
		"messages":              c.messagesValue(),
		"tools":                 tools,
		"documents":             jinja.None(),
		"add_generation_prompt": jinja.NewBool(o.AddGenerationPrompt),
		"bos_token":             jinja.NewString(o.BOS),
		"eos_token":             jinja.NewString(o.EOS),
		"strftime_now":          strftimeNow(now.UTC()),
		"raise_exception":       jinja.NewCallable("raise_exception", raiseException),
	}
	s, err := t.t.RenderValues(data)
	if err != nil {
		return "", fmt.Errorf("chat template: %w", err)
	}
	return s, nil
}

// raiseException is the template's raise_exception(message): the render fails with
// the template's message.
func raiseException(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	msg := "raise_exception called"
	if len(args) > 0 && args[0].IsString() {
		msg = args[0].AsString()
	}
	return jinja.Undefined(), templateError(msg)
}

// templateError is an error a template raised on purpose.
type templateError string

func (e templateError) Error() string { return string(e) }
