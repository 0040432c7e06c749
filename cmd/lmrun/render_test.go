package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/internal/fixtures"
)

// TestRenderCorpus renders the chat corpus through the command: the same bytes as
// Python's jinja2 for a render, a failure where Python raises.
func TestRenderCorpus(t *testing.T) {
	dir := fixtures.Path(t, "chat")
	var cases []struct {
		Template            string  `json:"template"`
		Conversation        string  `json:"conversation"`
		AddGenerationPrompt bool    `json:"add_generation_prompt"`
		Output              *string `json:"output"`
		Error               *string `json:"error"`
	}
	var special map[string]map[string]string
	for name, v := range map[string]any{"expected.json": &cases, "special_tokens.json": &special} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1768435200")
	for _, c := range cases {
		// A sample: every template on one conversation, and one template on every
		// conversation (chat's TestCorpus covers every case).
		if c.Conversation != "b_user_only.json" && c.Template != "google-gemma-2-2b-it.jinja" {
			continue
		}
		args := []string{"render", "--chat-template", filepath.Join(dir, "templates", c.Template),
			"--messages", filepath.Join(dir, "conversations", c.Conversation),
			"--bos-token", special[c.Template]["bos_token"], "--eos-token", special[c.Template]["eos_token"]}
		if c.AddGenerationPrompt {
			args = append(args, "--add-generation-prompt")
		}
		out, _, err := lmrun(t, args...)
		switch {
		case c.Error != nil && (err == nil || out != ""):
			t.Errorf("%s %s: out %q, err %v; want an error (%s)", c.Template, c.Conversation, out, err, *c.Error)
		case c.Output != nil && (err != nil || out != *c.Output):
			t.Errorf("%s %s %v: %q, %v\nwant %q", c.Template, c.Conversation, c.AddGenerationPrompt, out, err, *c.Output)
		}
	}
}

func TestRenderModelTemplate(t *testing.T) {
	dir := t.TempDir()
	src := fixtures.Path(t, "hf", "fake_gpt2")
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "tokenizer_config.json" {
			var cfg map[string]any
			if err := json.Unmarshal(b, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg["chat_template"] = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"
			if b, err = json.Marshal(cfg); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conv := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(conv, []byte(`{"messages": [{"role": "user", "content": "Hi\n"}]}`), 0o644)
	if got := mustRun(t, "render", "-m", dir, "--messages", conv, "--add-generation-prompt"); got != "<|endoftext|>[user] Hi\n<|endoftext|>[assistant]" {
		t.Errorf("render -m = %q", got)
	}
	// The template survives conversion: lmc, then GGUF (tokenizer.chat_template).
	lmc, gguf := filepath.Join(t.TempDir(), "m.lmc"), filepath.Join(t.TempDir(), "m.gguf")
	mustRun(t, "convert", dir, "-o", lmc)
	mustRun(t, "convert", lmc, "-o", gguf, "--to", "gguf")
	for _, m := range []string{lmc, gguf} {
		if got := mustRun(t, "render", "-m", m, "--messages", conv); got != "<|endoftext|>[user] Hi\n<|endoftext|>" {
			t.Errorf("render -m %s = %q", filepath.Base(m), got)
		}
	}
	if got := mustRun(t, "render", "-m", dir, "--messages", conv, "--bos-token", "<s>", "--eos-token", ""); got != "<s>[user] Hi\n" {
		t.Errorf("render -m --bos-token = %q", got)
	}
	if got := mustRun(t, "render", "-m", dir, "--chat-template", "chatml", "--messages", conv); got != "<|im_start|>user\nHi\n<|im_end|>\n" {
		t.Errorf("render --chat-template chatml = %q", got)
	}
	_, _, err = lmrun(t, "render", "-m", fixtures.Path(t, "hf", "fake_gpt2"), "--messages", conv)
	if err == nil || !strings.Contains(err.Error(), "no chat template") {
		t.Errorf("model without a template: %v", err)
	}
	for _, args := range [][]string{
		{"render", "--messages", conv},
		{"render", "--chat-template", "nosuch", "--messages", conv},
		{"render", "--chat-template", "chatml", "--messages", filepath.Join(dir, "missing.json")},
		{"render", "--chat-template", "chatml", "--messages", filepath.Join(dir, "config.json")},
	} {
		if out, _, err := lmrun(t, args...); err == nil || out != "" {
			t.Errorf("lmrun %v: %q, %v; want an error", args, out, err)
		}
	}
}

// TestRenderTemplateError runs the real main: a raise_exception in the template exits
// with status 1 and the template's message, and prints nothing on stdout.
func TestRenderTemplateError(t *testing.T) {
	dir := fixtures.Path(t, "chat")
	cmd := exec.Command(os.Args[0], "render", "--chat-template", filepath.Join(dir, "templates", "google-gemma-2-2b-it.jinja"),
		"--messages", filepath.Join(dir, "conversations", "a_system_multiturn.json"))
	cmd.Env = append(os.Environ(), "LMRUN_TEST_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v", err)
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "System role not supported") {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}
