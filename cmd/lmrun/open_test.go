package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/internal/fixtures"
)

// directCases are models of every kind the commands open without a conversion step.
var directCases = []struct {
	path []string
	tok  []string // tokenizer to give, if any
}{
	{[]string{"expected", "llama_tiny.gguf"}, nil},
	{[]string{"expected", "llama_tiny_q8_0.gguf"}, nil},
	{[]string{"expected", "gpt2_tiny.gguf"}, nil},
	{[]string{"expected", "llama_tiny_hf"}, nil},
	{[]string{"expected", "gpt2_tiny_hf"}, nil},
	{[]string{"expected", "gpt_neo_tiny_hf"}, nil},
	{[]string{"expected", "opt_tiny_hf"}, nil},
	{[]string{"expected", "opt_postnorm_tiny_hf"}, nil},
	{[]string{"expected", "llama_tiny.bin"}, nil},
	{[]string{"llama2c", "stories260K.bin"}, []string{"llama2c", "tok512.bin"}},
}

// TestRunDirect: run and logits on a GGUF file, a Hugging Face directory or a llama2.c
// checkpoint give what they give on the .lmc convert makes of it: the same greedy ids
// and bit-identical logits.
func TestRunDirect(t *testing.T) {
	const tokens = "5,17,400,3,99,250,7,7,1,300,42,511,0,64,128,256,31,77,150,222,310,411,5,6"
	for _, c := range directCases {
		src := fixtures.Path(t, c.path...)
		name := strings.Join(c.path, "/")
		dir := t.TempDir()
		lmc := filepath.Join(dir, "m.lmc")
		var tokArgs []string
		if c.tok != nil {
			tokArgs = []string{"--tokenizer", fixtures.Path(t, c.tok...)}
		}
		mustRun(t, append([]string{"convert", src, "-o", lmc}, tokArgs...)...)
		for _, q8 := range []bool{false, true} {
			gen := []string{"run", "--tokens", "1,5,17", "-n", "12", "--temp", "0", "--ids", "--ignore-eos"}
			logits := []string{"logits", "--tokens", tokens}
			if q8 {
				gen = append(gen, "--f32-activations")
				logits = append(logits, "--f32-activations")
			}
			want := mustRun(t, append(gen, "-m", lmc)...)
			got := mustRun(t, append(append(gen, "-m", src), tokArgs...)...)
			if got != want || len(strings.Fields(got)) != 12 {
				t.Errorf("%s: greedy ids %q, from the .lmc %q", name, got, want)
			}
			wantNPY, gotNPY := filepath.Join(dir, "want.npy"), filepath.Join(dir, "got.npy")
			mustRun(t, append(logits, "-m", lmc, "-o", wantNPY)...)
			mustRun(t, append(append(logits, "-m", src, "-o", gotNPY), tokArgs...)...)
			a, errA := os.ReadFile(wantNPY)
			b, errB := os.ReadFile(gotNPY)
			if errA != nil || errB != nil || !bytes.Equal(a, b) {
				t.Errorf("%s: logits differ from the .lmc's (%v, %v)", name, errA, errB)
			}
		}
	}
}

// TestTextCommandsDirect: text generation, tokenize, detokenize and ppl on a llama2.c
// checkpoint with --tokenizer equal their results on the converted .lmc; info shows a
// GGUF's import as it shows the converted file.
func TestTextCommandsDirect(t *testing.T) {
	bin := fixtures.Path(t, "llama2c", "stories260K.bin")
	tok := fixtures.Path(t, "llama2c", "tok512.bin")
	lmc := stories260K(t)
	text := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(text, []byte("Once upon a time, there was a little girl named Lily. She loved to play."), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"run", "-p", "Once upon a time", "-n", "24", "--temp", "0"},
		{"tokenize", "Once upon a time"},
		{"detokenize", "1", "403", "407", "261", "378"},
		{"ppl", "-f", text, "-c", "16"},
	} {
		want := mustRun(t, append(args, "-m", lmc)...)
		got := mustRun(t, append(args, "-m", bin, "--tokenizer", tok)...)
		if got != want {
			t.Errorf("%s: %q directly, %q from the .lmc", args[0], got, want)
		}
	}
	if _, _, err := lmrun(t, "tokenize", "-m", bin, "hello"); err == nil || !strings.Contains(err.Error(), "--tokenizer") {
		t.Errorf("tokenize with a llama2.c checkpoint and no tokenizer: %v", err)
	}

	gg := fixtures.Path(t, "expected", "gpt2_tiny.gguf")
	ggLMC := filepath.Join(t.TempDir(), "g.lmc")
	mustRun(t, "convert", gg, "-o", ggLMC)
	var direct, converted infoReport
	if err := json.Unmarshal([]byte(mustRun(t, "info", "-m", gg, "--json")), &direct); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(mustRun(t, "info", "-m", ggLMC, "--json")), &converted); err != nil {
		t.Fatal(err)
	}
	if direct.Format != "gguf" || converted.Format != "lmc" {
		t.Errorf("info formats: %q and %q", direct.Format, converted.Format)
	}
	if !reflect.DeepEqual(direct.Tensors, converted.Tensors) || !reflect.DeepEqual(direct.Meta, converted.Meta) || len(direct.Tensors) != 36 {
		t.Errorf("info of the GGUF differs from that of its conversion")
	}
	if out := mustRun(t, "info", "-m", gg); !strings.Contains(out, "(gguf, mapped and used in place)") || !strings.Contains(out, "blk.1.attn_v.bias") {
		t.Errorf("info -m X.gguf:\n%s", out)
	}
	if out := mustRun(t, "info", "-m", bin); !strings.Contains(out, "llama2c, converted in memory") {
		t.Errorf("info -m X.bin:\n%s", out)
	}

	out := mustRun(t, "bench", "model", "-m", gg, "-p", "4", "-n", "4", "--reps", "1", "--limits=false", "--json")
	var res []struct {
		Test string `json:"test"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 2 {
		t.Errorf("bench model on a GGUF: %v\n%s", err, out)
	}
}

// TestOpenErrorsNameTheKind: a model that cannot be run is reported with its path and
// the format its content was taken for.
func TestOpenErrorsNameTheKind(t *testing.T) {
	vocab := fixtures.Path(t, "gguf", "ggml-vocab-llama-spm.gguf")
	for _, cmd := range [][]string{{"run", "--tokens", "1"}, {"logits", "--tokens", "1", "-o", filepath.Join(t.TempDir(), "x.npy")}, {"tokenize", "x"}, {"info"}} {
		_, _, err := lmrun(t, append(cmd, "-m", vocab)...)
		if err == nil || !strings.Contains(err.Error(), vocab+" (GGUF file): ") || !strings.Contains(err.Error(), "no tensors") {
			t.Errorf("%s -m vocabulary-only.gguf: %v", cmd[0], err)
		}
	}
	notModel := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notModel, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := lmrun(t, "run", "-m", notModel, "--tokens", "1"); err == nil || !strings.Contains(err.Error(), "cannot tell the format") {
		t.Errorf("run -m notes.txt: %v", err)
	}
}
