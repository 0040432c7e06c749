package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/npy"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// TestConvertGGUFLogits converts the f32 GGUF fixtures and checks the model's logits
// against the independent reference.
func TestConvertGGUFLogits(t *testing.T) {
	toks, err := os.ReadFile(fixtures.Path(t, "expected", "tiny_tokens.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"llama_tiny", "gpt2_tiny"} {
		dir := t.TempDir()
		model := filepath.Join(dir, name+".lmc")
		mustRun(t, "convert", fixtures.Path(t, "expected", name+".gguf"), "-o", model)
		out := filepath.Join(dir, "l.npy")
		mustRun(t, "logits", "-m", model, "--tokens", strings.TrimSpace(string(toks)), "-o", out)
		_, got, err := npy.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		_, want, err := npy.ReadFile(fixtures.Path(t, "expected", name+"_logits.npy"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d logits, want %d", name, len(got), len(want))
		}
		var maxAbs, maxDiff float32
		for i := range want {
			maxAbs = max(maxAbs, abs(want[i]))
			maxDiff = max(maxDiff, abs(want[i]-got[i]))
		}
		if maxDiff > 2e-5*maxAbs {
			t.Errorf("%s: logits differ by %g (max %g)", name, maxDiff, maxAbs)
		}
	}
}

// TestConvertDTypeAndGGUF runs the conversions between formats and dtypes: a quantized
// lmc, its GGUF export, and the GGUF imported back, which must hold the same tensors.
func TestConvertDTypeAndGGUF(t *testing.T) {
	dir := t.TempDir()
	q8 := filepath.Join(dir, "q8.lmc")
	_, stderr, err := lmrun(t, "convert", fixtures.Path(t, "llama2c", "stories260K.bin"), "--tokenizer",
		fixtures.Path(t, "llama2c", "tok512.bin"), "--dtype", "q8_0", "-o", q8)
	if err != nil {
		t.Fatal(err)
	}
	// ffn_down's rows of 172 are not whole blocks: f16.
	if !strings.Contains(stderr, "q8_0") || !strings.Contains(stderr, "5 f16") {
		t.Errorf("summary: %q", stderr)
	}
	info := mustRun(t, "info", "-m", q8)
	if !strings.Contains(info, "q8_0") {
		t.Errorf("info does not show q8_0:\n%s", info)
	}
	gg := filepath.Join(dir, "m.gguf")
	mustRun(t, "convert", q8, "--to", "gguf", "-o", gg)
	back := filepath.Join(dir, "back.lmc")
	mustRun(t, "convert", gg, "-o", back)
	a, err := format.Open(q8)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := format.Open(back)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors, then %d", len(a.Tensors), len(b.Tensors))
	}
	for _, ta := range a.Tensors {
		tb := b.Tensor(ta.Name)
		if tb == nil || tb.DType != ta.DType || !bytes.Equal(ta.Data, tb.Data) {
			t.Errorf("%s changed through GGUF", ta.Name)
		}
	}
	if toks, _, _ := b.Meta.Strings("tokenizer.ggml.tokens"); len(toks) != 512 {
		t.Errorf("%d GGUF tokens", len(toks))
	}
	// Re-encoding an lmc file, and GGUF straight from another format.
	f16 := filepath.Join(dir, "f16.lmc")
	mustRun(t, "convert", q8, "--dtype", "f16", "-o", f16)
	mustRun(t, "convert", fixtures.Path(t, "expected", "gpt2_tiny_hf"), "--dtype", "q4_0", "--to", "gguf", "-o", filepath.Join(dir, "g.gguf"))

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"convert", q8, "-o", filepath.Join(dir, "x.lmc")}, "already an lmrun checkpoint"},
		{[]string{"convert", q8, "--dtype", "q5_1", "-o", filepath.Join(dir, "x.lmc")}, "unknown dtype"},
		{[]string{"convert", q8, "--to", "onnx", "-o", filepath.Join(dir, "x.lmc")}, "--to"},
		{[]string{"convert", fixtures.Path(t, "gguf", "ggml-vocab-llama-spm.gguf"), "-o", filepath.Join(dir, "x.lmc")}, "no tensors"},
	} {
		if _, _, err := lmrun(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("lmrun %v: %v, want %q", c.args, err, c.want)
		}
	}
}

// TestConvertGPTQ: --gptq writes a q4_0 checkpoint (classifier q8_0) that runs, leaves
// no temporary file beside it, and is refused without --dtype q4_0.
func TestConvertGPTQ(t *testing.T) {
	in := stories260K(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "q4.lmc")
	mustRun(t, "convert", in, "--dtype", "q4_0", "--gptq", "--gptq-seqs", "2", "--gptq-len", "64", "-o", out)
	f, err := format.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for name, want := range map[string]dtype.DType{"blk.0.attn_q.weight": dtype.Q4_0, "blk.4.ffn_up.weight": dtype.Q4_0, "token_embd.weight": dtype.Q8_0} {
		if got := f.Tensor(name).DType; got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 {
		t.Errorf("output directory holds %v (%v), want only q4.lmc", entries, err)
	}
	mustRun(t, "run", "-m", out, "--tokens", "1", "-n", "8", "--temp", "0", "--ids")
	for _, args := range [][]string{
		{"--gptq"},
		{"--dtype", "q8_0", "--gptq"},
		{"--dtype", "q4_0", "--gptq-seqs", "4"},
		{"--dtype", "q4_0", "--gptq", "--gptq-len", "1"},
	} {
		if _, _, err := lmrun(t, append([]string{"convert", in, "-o", filepath.Join(dir, "x.lmc")}, args...)...); err == nil {
			t.Errorf("convert %v: no error", args)
		}
	}
}

// TestConvertRunKQuant: a llama.cpp Q4_K_M GGUF converts with its k-quant tensors kept
// (convert's summary and info say so), runs greedily from token ids on the default
// (q8_k-activation) path and with exact activations, exports back to GGUF unchanged,
// and cannot be a --dtype target.
func TestConvertRunKQuant(t *testing.T) {
	dir := t.TempDir()
	src := fixtures.Path(t, "gguf", "kquant", "tiny-Q4_K_M.gguf")
	x := filepath.Join(dir, "x.lmc")
	_, stderr, err := lmrun(t, "convert", src, "-o", x)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "q4_k") || !strings.Contains(stderr, "q6_k") {
		t.Errorf("summary: %q", stderr)
	}
	if info := mustRun(t, "info", "-m", x); !strings.Contains(info, "q4_k") {
		t.Errorf("info does not show q4_k:\n%s", info)
	}
	for _, extra := range [][]string{nil, {"--f32-activations"}} {
		// The file has no tokenizer: run prints the ids.
		args := append([]string{"run", "-m", x, "--tokens", "1,5,9", "-n", "4", "--temp", "0"}, extra...)
		out := mustRun(t, args...)
		if ids := strings.Fields(out); len(ids) != 4 {
			t.Fatalf("lmrun %v: %q, want 4 ids", args, out)
		}
	}
	gg := filepath.Join(dir, "x.gguf")
	mustRun(t, "convert", x, "--to", "gguf", "-o", gg)
	back := filepath.Join(dir, "back.lmc")
	mustRun(t, "convert", gg, "-o", back)
	a, err := format.Open(x)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := format.Open(back)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, ta := range a.Tensors {
		if tb := b.Tensor(ta.Name); tb == nil || tb.DType != ta.DType || !bytes.Equal(ta.Data, tb.Data) {
			t.Errorf("%s changed through GGUF", ta.Name)
		}
	}
	// Another type from k-quants is fine; k-quants as a target are not.
	mustRun(t, "convert", x, "--dtype", "q8_0", "-o", filepath.Join(dir, "q8.lmc"))
	if _, _, err := lmrun(t, "convert", x, "--dtype", "q4_k", "-o", filepath.Join(dir, "k.lmc")); err == nil || !strings.Contains(err.Error(), "cannot quantize") {
		t.Errorf("--dtype q4_k: %v", err)
	}
}
