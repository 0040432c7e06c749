package tokfile

import "testing"

// TestHFChatTemplate checks that tokenizer_config.json's chat_template, a string or the
// "default" of a list of named templates, is kept as tokenizer.chat_template.
func TestHFChatTemplate(t *testing.T) {
	for _, c := range []struct{ config, want string }{
		{`{"chat_template": "{{ messages }}"}`, "{{ messages }}"},
		{`{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}`, "D"},
		{`{"chat_template": null}`, ""},
		{`{}`, ""},
	} {
		cfg, err := ParseHFConfig([]byte(c.config), nil)
		if err != nil {
			t.Fatalf("%s: %v", c.config, err)
		}
		if cfg.ChatTemplate != c.want {
			t.Errorf("%s: ChatTemplate %q, want %q", c.config, cfg.ChatTemplate, c.want)
		}
		md, err := ParseHFTokenizer([]byte(`{"model": {"type": "WordLevel", "vocab": {"<unk>": 0, "a": 1}, "unk_token": "<unk>"}, "pre_tokenizer": {"type": "WhitespaceSplit"}}`), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := md["tokenizer.chat_template"].(string); got != c.want {
			t.Errorf("%s: tokenizer.chat_template %q, want %q", c.config, got, c.want)
		}
	}
	if _, err := ParseHFConfig([]byte(`{"chat_template": 3}`), nil); err == nil {
		t.Error("chat_template 3: no error")
	}
}
