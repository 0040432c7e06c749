package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/internal/fixtures"
)

func TestTokenizeDetokenize(t *testing.T) {
	model := stories260K(t)
	if got := mustRun(t, "tokenize", "-m", model, "Once upon a time"); got != "1 403 407 261 378\n" {
		t.Errorf("tokenize = %q", got)
	}
	if got := mustRun(t, "tokenize", "-m", model, "--bos=false", "Once", "upon"); got != "403 407\n" {
		t.Errorf("tokenize --bos=false = %q", got)
	}
	if got := mustRun(t, "tokenize", "-m", model, "--eos", "Once"); got != "1 403 2\n" {
		t.Errorf("tokenize --eos = %q", got)
	}
	if got := mustRun(t, "tokenize", "-m", model, "--pieces", "Once 中"); got != "1\t\"\\n<s>\\n\"\n403\t\" Once\"\n410\t\" \"\n231\t\"<0xE4>\"\n187\t\"<0xB8>\"\n176\t\"<0xAD>\"\n" {
		t.Errorf("tokenize --pieces = %q", got)
	}
	var js struct {
		IDs    []int    `json:"ids"`
		Pieces []string `json:"pieces"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "tokenize", "-m", model, "--json", "a <s>")), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.IDs) != len(js.Pieces) || js.IDs[0] != 1 || js.Pieces[0] != "\n<s>\n" || strings.Join(js.Pieces[1:], "") != " a <s>" {
		t.Errorf("tokenize --json = %+v", js)
	}
	file := filepath.Join(t.TempDir(), "in.txt")
	os.WriteFile(file, []byte("Once upon a time\n"), 0o644)
	ids := mustRun(t, "tokenize", "-m", model, "-f", file)
	text := mustRun(t, "detokenize", "-m", model, "--raw", strings.ReplaceAll(strings.TrimSpace(ids), " ", ","))
	if text != "Once upon a time\n" {
		t.Errorf("detokenize(tokenize(file)) = %q (ids %q)", text, ids)
	}
	if got := mustRun(t, "detokenize", "-m", model, "1", "403,407"); got != "Once upon\n" {
		t.Errorf("detokenize = %q", got)
	}
	for _, args := range [][]string{
		{"tokenize", "-m", model},
		{"tokenize", "-m", model, "-f", file, "extra"},
		{"tokenize", "-m", model, "-f", filepath.Join(t.TempDir(), "missing")},
		{"detokenize", "-m", model},
		{"detokenize", "-m", model, "1", "x"},
		{"detokenize", "-m", model, "512"},
	} {
		if _, _, err := lmrun(t, args...); err == nil {
			t.Errorf("lmrun %v: no error", args)
		}
	}
}

// TestTokenizeGPT2 converts the Hugging Face GPT-2 directory, whose tokenizer.json
// travels into the checkpoint, and tokenizes with it.
func TestTokenizeGPT2(t *testing.T) {
	model := filepath.Join(t.TempDir(), "g.lmc")
	mustRun(t, "convert", fixtures.Path(t, "hf", "fake_gpt2"), "-o", model)
	if got := mustRun(t, "tokenize", "-m", model, "Hello world"); got != "15496 995\n" {
		t.Errorf("tokenize = %q", got)
	}
	if got := mustRun(t, "tokenize", "-m", model, "--pieces", " Hello"); got != "18435\t\"ĠHello\"\n" {
		t.Errorf("tokenize --pieces = %q", got)
	}
	if got := mustRun(t, "detokenize", "-m", model, "15496", "995", "50256"); got != "Hello world\n" {
		t.Errorf("detokenize = %q", got)
	}
}

// TestPPL checks lmrun ppl against the reference perplexity of stories260K.
func TestPPL(t *testing.T) {
	if testing.Short() {
		t.Skip("scores 105k tokens")
	}
	model := stories260K(t)
	want, err := os.ReadFile(fixtures.Path(t, "expected", "stories260K_ppl_tinystories_valid_a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	text := fixtures.Path(t, "text", "tinystories_valid_a.txt")
	out, stderr, err := lmrun(t, "ppl", "-m", model, "-f", text, "--ctx", "512")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	// The output has the reference file's format; compare each value to 4 decimals.
	got, exp := parseKV(t, out), parseKV(t, string(want))
	for _, k := range []string{"tokens_scored", "mean_nll", "ppl"} {
		if math.Round(got[k]*1e4) != math.Round(exp[k]*1e4) {
			t.Errorf("%s = %v, want %v", k, got[k], exp[k])
		}
	}
	if !strings.Contains(stderr, "tokens/s") {
		t.Errorf("no speed on stderr: %q", stderr)
	}
}

func parseKV(t *testing.T, s string) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		m[k] = x
	}
	return m
}

// TestPPLOptions checks ppl's options and their errors; any model does, so it is the
// synthesized tiny preset (byte-level tokenizer, context 256).
func TestPPLOptions(t *testing.T) {
	model := tinyModel(t, t.TempDir(), "tiny.lmc", nil)
	text := filepath.Join(t.TempDir(), "t.txt")
	os.WriteFile(text, []byte("Once upon a time, there was a little girl named Lily. She loved to play outside in the park."), 0o644)
	var res struct {
		Tokens  int     `json:"tokens_scored"`
		Mean    float64 `json:"mean_nll"`
		PPL     float64 `json:"ppl"`
		Windows int     `json:"windows"`
		Stride  int     `json:"stride"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "ppl", "-m", model, "-f", text, "--ctx", "8", "--stride", "3", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	ids := strings.Fields(mustRun(t, "tokenize", "-m", model, "-f", text))
	if res.Tokens != len(ids)-1 || res.Stride != 3 || res.Windows < (len(ids)-8)/3+1 || math.Abs(res.PPL-math.Exp(res.Mean)) > 1e-9*res.PPL {
		t.Errorf("ppl --json = %+v for %d tokens", res, len(ids))
	}
	for _, args := range [][]string{
		{"ppl", "-m", model},
		{"ppl", "-m", model, "-f", text, "--stride", "8", "--ctx", "8"},
		{"ppl", "-m", model, "-f", text, "--ctx", "100000"},
		{"ppl", "-m", model, "-f", filepath.Join(t.TempDir(), "missing")},
	} {
		if _, _, err := lmrun(t, args...); err == nil {
			t.Errorf("lmrun %v: no error", args)
		}
	}
	_, stderr, _ := lmrun(t, "ppl", "--help")
	out, _, _ := lmrun(t, "ppl", "--help")
	if help := out + stderr; !strings.Contains(help, "every token after the") || !strings.Contains(help, "k·S") {
		t.Errorf("ppl --help does not say which tokens are scored:\n%s", help)
	}
}

// TestTokenizeWithoutModel tokenizes with a tokenizer file alone: tokenizer.json
// (plain and gzipped), a vocabulary-only GGUF, a llama2.c tokenizer.bin, with and
// without --special.
func TestTokenizeWithoutModel(t *testing.T) {
	llama3 := fixtures.Path(t, "tokenizers", "llama3", "tokenizer.json")
	gz := filepath.Join(t.TempDir(), "tokenizer.json.gz")
	raw, err := os.ReadFile(llama3)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(raw)
	zw.Close()
	if err := os.WriteFile(gz, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tokenizer", llama3, "Hello world"}, "9906 1917\n"},
		{[]string{"--tokenizer", gz, "Hello world"}, "9906 1917\n"},
		{[]string{"--tokenizer", llama3, "--special", "<|begin_of_text|>Hello world"}, "128000 9906 1917\n"},
		{[]string{"--tokenizer", fixtures.Path(t, "tokenizers", "phi3", "ggml-vocab-phi-3.gguf"), "--bos=false", "--special", "<|user|>Hi"}, "32010 6324\n"},
		{[]string{"--tokenizer", fixtures.Path(t, "llama2c", "tok512.bin"), "--bos=false", "Once upon a time"}, "403 407 261 378\n"},
	} {
		if got := mustRun(t, append([]string{"tokenize"}, c.args...)...); got != c.want {
			t.Errorf("tokenize %v = %q, want %q", c.args, got, c.want)
		}
	}
	if got := mustRun(t, "tokenize", "--tokenizer", llama3, "<|begin_of_text|>"); strings.HasPrefix(got, "128000") {
		t.Errorf("tokenize without --special parsed the special token: %q", got)
	}
	if got := mustRun(t, "detokenize", "--tokenizer", llama3, "9906", "1917"); got != "Hello world\n" {
		t.Errorf("detokenize = %q", got)
	}
	if _, _, err := lmrun(t, "tokenize", "Hello"); err == nil {
		t.Error("tokenize without model or tokenizer: no error")
	}
}
