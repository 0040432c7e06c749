package chat

import "testing"

func TestBuiltin(t *testing.T) {
	c, err := DecodeConversation([]byte(`{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": " Hi "}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"chatml": "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n Hi <|im_end|>\n<|im_start|>assistant\n",
		"llama3": "<B><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
	} {
		src, ok := Builtin(name)
		if !ok {
			t.Fatalf("no builtin %s", name)
		}
		tmpl, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tmpl.Render(c, Options{AddGenerationPrompt: true, BOS: "<B>"})
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	if _, ok := Builtin("nope"); ok || len(BuiltinNames()) != 2 {
		t.Error("Builtin(nope) or BuiltinNames wrong")
	}
}

func TestConversationAppend(t *testing.T) {
	c := &Conversation{}
	c.Append("user", "a")
	c.Append("assistant", "b")
	tmpl, _ := Parse("{% for m in messages %}{{ m.role }}={{ m.content }};{% endfor %}{{ tools is none }}")
	got, err := tmpl.Render(c, Options{})
	if err != nil || got != "user=a;assistant=b;True" {
		t.Errorf("%q, %v", got, err)
	}
	c.Truncate(1)
	if c.Len() != 1 {
		t.Errorf("Len %d after Truncate(1)", c.Len())
	}
	for _, bad := range []string{`[]`, `{"messages": 3}`, `{"messages": [3]}`, `{"messages": []} x`, `{`} {
		if _, err := DecodeConversation([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestRaiseAndStrftime(t *testing.T) {
	tmpl, _ := Parse(`{{ strftime_now("%d %b %Y %H:%M %A %%") }}{% if add_generation_prompt %}{{ raise_exception("no " + "way") }}{% endif %}`)
	c := &Conversation{}
	got, err := tmpl.Render(c, Options{Now: corpusDate})
	if err != nil || got != "15 Jan 2026 00:00 Thursday %" {
		t.Errorf("%q, %v", got, err)
	}
	if _, err := tmpl.Render(c, Options{AddGenerationPrompt: true}); err == nil || err.Error() != "chat template: no way" {
		t.Errorf("raise_exception: %v", err)
	}
}

// TestImmutable checks that a template cannot modify a list, as under transformers'
// ImmutableSandboxedEnvironment.
func TestImmutable(t *testing.T) {
	tmpl, err := Parse(`{% set l = [] %}{% set _ = l.append(1) %}{{ l }}`)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := tmpl.Render(&Conversation{}, Options{}); err == nil {
		t.Errorf("list.append rendered %q", got)
	}
}
