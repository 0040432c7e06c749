package convert

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/gguf"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// openCases are models of every kind Open reads, with the tokenizer to store.
var openCases = []struct {
	path []string
	tok  []string
	kind Kind
}{
	{[]string{"expected", "llama_tiny.gguf"}, nil, KindGGUF},
	{[]string{"expected", "llama_tiny_q8_0.gguf"}, nil, KindGGUF},
	{[]string{"expected", "gpt2_tiny.gguf"}, nil, KindGGUF},
	{[]string{"gguf", "llama-2-tiny-random.gguf"}, nil, KindGGUF},
	{[]string{"expected", "llama_tiny.bin"}, nil, KindLlama2C},
	{[]string{"llama2c", "stories260K.bin"}, []string{"llama2c", "tok512.bin"}, KindLlama2C},
	{[]string{"llama2c", "stories260K_q80.bin"}, []string{"llama2c", "tok512.bin"}, KindLlama2C},
	{[]string{"expected", "llama_tiny_hf"}, nil, KindHF},
	{[]string{"expected", "gpt2_tiny_hf"}, nil, KindHF},
	{[]string{"expected", "gpt_neo_tiny_hf"}, nil, KindHF},
	{[]string{"expected", "opt_postnorm_tiny_hf"}, nil, KindHF},
	{[]string{"hf", "fake_gpt2"}, nil, KindHF},
	{[]string{"expected", "llama_tiny_hf", "model.safetensors"}, nil, KindSafetensors},
}

// TestOpenMatchesConvert: a model opened directly is the model convert writes — the
// same metadata and the same tensors, byte for byte — for every kind of input, the
// lmc file itself included.
func TestOpenMatchesConvert(t *testing.T) {
	for _, c := range openCases {
		path := fixtures.Path(t, c.path...)
		name := strings.Join(c.path, "/")
		var opts Options
		if c.tok != nil {
			opts.TokenizerPath = fixtures.Path(t, c.tok...)
		}
		ck, err := Import(path, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		lmc := filepath.Join(t.TempDir(), "m.lmc")
		if err := ck.WriteFile(lmc, nil); err != nil {
			t.Fatal(err)
		}
		want, err := format.Open(lmc)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{path, lmc} {
			got, err := Open(p, opts)
			if err != nil {
				t.Fatalf("%s: Open(%s): %v", name, p, err)
			}
			sameFile(t, name, got, want)
			if err := got.Close(); err != nil {
				t.Fatal(err)
			}
		}
		want.Close()
	}
}

// sameFile checks that two open checkpoints hold the same model.
func sameFile(t *testing.T, name string, got, want *format.File) {
	t.Helper()
	if !reflect.DeepEqual(map[string]any(got.Meta), map[string]any(want.Meta)) {
		t.Errorf("%s: metadata differs:\n got %v\nwant %v", name, got.Meta.Keys(), want.Meta.Keys())
	}
	if len(got.Tensors) != len(want.Tensors) {
		t.Fatalf("%s: %d tensors, want %d", name, len(got.Tensors), len(want.Tensors))
	}
	for i, w := range want.Tensors {
		g := got.Tensors[i]
		if g.Name != w.Name || g.DType != w.DType || !reflect.DeepEqual(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: tensor %d is %s %s %v, want %s %s %v (or its bytes differ)", name, i, g.Name, g.DType, g.Shape, w.Name, w.DType, w.Shape)
		}
	}
}

// TestOpenTokenizer: a tokenizer given to Open replaces the model's, for an lmc file
// too, and one the model cannot hold is refused.
func TestOpenTokenizer(t *testing.T) {
	bin := fixtures.Path(t, "llama2c", "stories260K.bin")
	f, err := Open(bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.Meta["tokenizer.tokens"]; ok {
		t.Error("a llama2.c checkpoint opened without --tokenizer has tokens")
	}
	f.Close()
	tok := fixtures.Path(t, "llama2c", "tok512.bin")
	ck, err := Import(bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lmc := filepath.Join(t.TempDir(), "m.lmc")
	if err := ck.WriteFile(lmc, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{bin, lmc} {
		f, err := Open(p, Options{TokenizerPath: tok})
		if err != nil {
			t.Fatal(err)
		}
		if toks, _, err := f.Meta.Strings("tokenizer.tokens"); err != nil || len(toks) != 512 {
			t.Errorf("%s with tok512.bin: %d tokens (%v)", p, len(toks), err)
		}
		f.Close()
	}
	// The 32000-token tokenizer does not fit stories260K's 512-token vocabulary.
	big := fixtures.Path(t, "llama2c", "tokenizer.bin")
	if _, err := Open(bin, Options{TokenizerPath: big}); err == nil || !strings.Contains(err.Error(), "more tokens than the model") {
		t.Errorf("oversized tokenizer: %v", err)
	}
}

// TestOpenErrors: errors name the file and the format its content was taken for.
func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	vocab := fixtures.Path(t, "gguf", "ggml-vocab-llama-spm.gguf")
	_, err := Open(vocab, Options{})
	var oe *OpenError
	if !errors.As(err, &oe) || oe.Kind != KindGGUF || !errors.Is(err, gguf.ErrNoWeights) {
		t.Fatalf("vocabulary-only GGUF: %v", err)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, vocab+" (GGUF file): ") || strings.Count(msg, vocab) != 1 {
		t.Errorf("error %q: want the path once, then the kind", msg)
	}
	raw, err := os.ReadFile(fixtures.Path(t, "expected", "llama_tiny.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	trunc := filepath.Join(dir, "trunc.gguf")
	if err := os.WriteFile(trunc, raw[:len(raw)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(trunc, Options{}); err == nil || !strings.Contains(err.Error(), "(GGUF file)") {
		t.Errorf("truncated GGUF: %v", err)
	}
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("not a model at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(text, Options{}); err == nil || !strings.Contains(err.Error(), "cannot tell the format") {
		t.Errorf("text file: %v", err)
	}
	hfDir := filepath.Join(dir, "hf")
	if err := os.Mkdir(hfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hfDir, "config.json"), []byte(`{"model_type": "gpt2"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(hfDir, Options{}); err == nil || !strings.Contains(err.Error(), "(Hugging Face model directory)") {
		t.Errorf("HF directory without weights: %v", err)
	}
}
