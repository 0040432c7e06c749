package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/npy"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/internal/fixtures"
	"github.com/lmrun/lmrun/model"
)

// TestMain lets a test run this binary's main() in a subprocess (exit status, stderr).
func TestMain(m *testing.M) {
	if os.Getenv("LMRUN_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// lmrun runs the CLI in-process and returns stdout, stderr and the error.
func lmrun(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	app := newApp(&out, &errb)
	err := app.Run(flagsFirst(app, append([]string{"lmrun"}, args...)))
	return out.String(), errb.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, err := lmrun(t, args...)
	if err != nil {
		t.Fatalf("lmrun %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

func stories260K(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.lmc")
	mustRun(t, "convert", fixtures.Path(t, "llama2c", "stories260K.bin"), "-o", path,
		"--tokenizer", fixtures.Path(t, "llama2c", "tok512.bin"))
	return path
}

func TestRunGreedyIDs(t *testing.T) {
	model := stories260K(t)
	want, err := os.ReadFile(fixtures.Path(t, "expected", "stories260K_greedy_ids.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids := strings.Fields(string(want))
	out := mustRun(t, "run", "-m", model, "--tokens", "1", "-n", "50", "--temp", "0", "--ids", "--ignore-eos", "-t", "1")
	if got := strings.Fields(out); strings.Join(got, " ") != strings.Join(ids[1:51], " ") {
		t.Fatalf("greedy ids:\n got %v\nwant %v", got, ids[1:51])
	}
	// Text mode: the prompt is echoed and the story follows.
	text := mustRun(t, "run", "-m", model, "-p", "Once upon a time", "-n", "20", "--temp", "0")
	if !strings.HasPrefix(text, "Once upon a time, there was a little girl named Lily.") {
		t.Fatalf("greedy text: %q", text)
	}
	// A half-size KV cache runs and reports its memory.
	if _, stderr, err := lmrun(t, "run", "-m", model, "--tokens", "1", "-n", "5", "--kv", "f16"); err != nil || !strings.Contains(stderr, "KV cache") {
		t.Fatalf("--kv f16: %v %s", err, stderr)
	}
	// A seed makes sampling reproducible; another seed changes it.
	a := mustRun(t, "run", "-m", model, "-n", "30", "--seed", "5", "--temp", "1", "--ids")
	b := mustRun(t, "run", "-m", model, "-n", "30", "--seed", "5", "--temp", "1", "--ids")
	c := mustRun(t, "run", "-m", model, "-n", "30", "--seed", "6", "--temp", "1", "--ids")
	if a != b || a == c {
		t.Fatalf("seeded runs: %q, %q, %q", a, b, c)
	}
}

func TestLogitsNpy(t *testing.T) {
	model := stories260K(t)
	out := filepath.Join(t.TempDir(), "l.npy")
	toks, err := os.ReadFile(fixtures.Path(t, "expected", "stories260K_logits_tokens.txt"))
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, "logits", "-m", model, "--tokens", strings.TrimSpace(string(toks)), "-o", out)
	shape, got, err := npy.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	_, want, err := npy.ReadFile(fixtures.Path(t, "expected", "stories260K_logits.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if len(shape) != 2 || shape[1] != 512 || len(got) != len(want) {
		t.Fatalf("shape %v", shape)
	}
	var maxAbs, maxDiff float32
	for i := range want {
		maxAbs = max(maxAbs, abs(want[i]))
		maxDiff = max(maxDiff, abs(want[i]-got[i]))
	}
	if maxDiff > 2e-5*maxAbs {
		t.Fatalf("logits differ by %g (max %g)", maxDiff, maxAbs)
	}
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

func TestSynthInfoVerify(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "t.lmc")
	mustRun(t, "synth", "--preset", "tiny-gpt2", "-o", model)
	if out := mustRun(t, "verify", model); !strings.Contains(out, "OK") {
		t.Fatalf("verify: %q", out)
	}
	info := mustRun(t, "info", "-m", model)
	for _, want := range []string{"generic", "available: yes", "blk.1.ffn_down.weight", `"layernorm"`, "*"} {
		if !strings.Contains(info, want) {
			t.Errorf("info lacks %q", want)
		}
	}
	if js := mustRun(t, "info", "--json"); !strings.Contains(js, `"backends"`) {
		t.Errorf("info --json: %s", js)
	}
	// -p works on synthesized models (byte-level tokenizer).
	if out := mustRun(t, "run", "-m", model, "-p", "héllo", "-n", "5", "--seed", "1"); !strings.HasPrefix(out, "héllo") {
		t.Errorf("run on synth: %q", out)
	}
	if out := mustRun(t, "run", "-m", model, "-p", "x", "-n", "3", "--backend", "generic", "-t", "1"); out == "" {
		t.Error("no output with --backend generic")
	}
}

// TestBadInput: every kind of bad input gets an error (a non-zero exit, see
// TestExitStatus), never a panic. It needs no real model: the models are the synthesized
// tiny preset (vocabulary 512, byte-level tokenizer, context 256), and the broken
// llama2.c and safetensors inputs are written here.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	tinyPath := tinyModel(t, dir, "tiny.lmc", nil)
	raw, err := os.ReadFile(tinyPath)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	truncated := write("trunc.lmc", raw[:len(raw)-100])
	badMagic := write("magic.lmc", append([]byte("XXXX"), raw[4:]...))
	corrupt := append([]byte(nil), raw...)
	corrupt[len(corrupt)-10] ^= 0xff
	corruptData := write("corrupt.lmc", corrupt)
	// A llama2.c version 1 header ("ak42", version 1, dim 8, hidden 16, 1 layer, 2 heads,
	// 2 KV heads, vocab 32, seq_len 8, shared classifier; 256 bytes) followed by less data
	// than it implies.
	bin := make([]byte, 256, 256+3000)
	for i, v := range []uint32{0x616b3432, 1, 8, 16, 1, 2, 2, 32, 8} {
		binary.LittleEndian.PutUint32(bin[4*i:], v)
	}
	bin[36] = 1
	truncBin := write("trunc.bin", append(bin, make([]byte, 3000)...))
	// A Hugging Face GPT-2 directory whose model.safetensors lost its second half.
	var st bytes.Buffer
	wte := safetensors.TensorData{Name: "wte.weight", DType: safetensors.F32, Shape: []int{32, 8}, Data: make([]byte, 4*32*8)}
	if err := safetensors.Write(&st, []safetensors.TensorData{wte}, nil); err != nil {
		t.Fatal(err)
	}
	hfDir := filepath.Join(dir, "hf")
	os.Mkdir(hfDir, 0o755)
	os.WriteFile(filepath.Join(hfDir, "config.json"), []byte(`{"model_type": "gpt2", "n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 8, "vocab_size": 32}`), 0o644)
	os.WriteFile(filepath.Join(hfDir, "model.safetensors"), st.Bytes()[:st.Len()/2], 0o644)
	noTok := tinyModel(t, dir, "notok.lmc", func(ck *format.Checkpoint, _ model.Config) {
		for k := range ck.Meta {
			if strings.HasPrefix(k, "tokenizer.") {
				delete(ck.Meta, k)
			}
		}
	})
	wrongShape := wrongShapeModel(t, dir)

	long := strings.Repeat("Once upon a time ", 200)
	cases := []struct {
		name string
		args []string
		want string // part of the error
	}{
		{"truncated lmc", []string{"run", "-m", truncated, "--tokens", "1"}, "truncated"},
		{"bad magic", []string{"run", "-m", badMagic, "--tokens", "1"}, "magic"},
		{"missing file", []string{"info", "-m", filepath.Join(dir, "nope.lmc")}, "no such file"},
		{"verify corrupt", []string{"verify", corruptData}, "checksum"},
		{"truncated bin", []string{"convert", truncBin, "-o", filepath.Join(dir, "x.lmc")}, "truncated"},
		{"truncated safetensors", []string{"convert", hfDir, "-o", filepath.Join(dir, "y.lmc")}, "truncated"},
		{"garbage input", []string{"convert", write("garbage", []byte("hello world, not a model")), "-o", filepath.Join(dir, "z.lmc")}, ""},
		{"token out of range", []string{"run", "-m", tinyPath, "--tokens", "1,512"}, "out of range"},
		{"negative token", []string{"logits", "-m", tinyPath, "--tokens", "1,-3", "-o", filepath.Join(dir, "l.npy")}, "out of range"},
		{"bad token list", []string{"run", "-m", tinyPath, "--tokens", "1,x"}, "not a token id"},
		{"prompt too long", []string{"run", "-m", tinyPath, "-p", long}, "context"},
		{"prompt longer than --ctx", []string{"run", "-m", tinyPath, "-p", "Once upon a time", "--ctx", "3"}, "context"},
		{"no tokenizer", []string{"run", "-m", noTok, "-p", "hi"}, "no tokenizer"},
		{"invalid utf-8", []string{"run", "-m", tinyPath, "-p", "a\xffb"}, "UTF-8"},
		{"shape disagrees with config", []string{"run", "-m", wrongShape, "--tokens", "1"}, "shape"},
		{"unknown backend", []string{"run", "-m", tinyPath, "--tokens", "1", "--backend", "tpu"}, "unknown backend"},
		{"bad temperature", []string{"run", "-m", tinyPath, "--tokens", "1", "--temp", "-1"}, "temperature"},
		{"bad top-p", []string{"run", "-m", tinyPath, "--tokens", "1", "--top-p", "2"}, "top-p"},
		{"unknown preset", []string{"synth", "--preset", "gpt5", "-o", filepath.Join(dir, "s.lmc")}, "unknown preset"},
		{"bad kv type", []string{"run", "-m", tinyPath, "--tokens", "1", "--kv", "q8"}, "--kv"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := lmrun(t, c.args...)
			if err == nil {
				t.Fatalf("lmrun %v succeeded", c.args)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// tinyModel writes the synthesized tiny preset to dir/name, first changed by edit if
// edit is not nil, and returns its path.
func tinyModel(t *testing.T, dir, name string, edit func(*format.Checkpoint, model.Config)) string {
	t.Helper()
	p, err := synth.Lookup("tiny")
	if err != nil {
		t.Fatal(err)
	}
	ck, err := synth.Build(p.Config, 1)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(ck, p.Config)
	}
	path := filepath.Join(dir, name)
	if err := format.WriteFile(path, ck.Meta, ck.Tensors, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// wrongShapeModel writes a checkpoint whose blk.0.attn_q.weight disagrees with lm.dim.
func wrongShapeModel(t *testing.T, dir string) string {
	t.Helper()
	return tinyModel(t, dir, "wrongshape.lmc", func(ck *format.Checkpoint, cfg model.Config) {
		s := ck.Source("blk.0.attn_q.weight")
		s.Shape = []int{cfg.Dim, cfg.Dim - 1}
		s.Data = func() ([]byte, error) { return make([]byte, 4*cfg.Dim*(cfg.Dim-1)), nil }
	})
}

// TestExitStatus runs the real main: an error is one line on stderr and exit status 1.
func TestExitStatus(t *testing.T) {
	cmd := exec.Command(os.Args[0], "run", "-m", filepath.Join(t.TempDir(), "missing.lmc"), "--tokens", "1")
	cmd.Env = append(os.Environ(), "LMRUN_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "lmrun: ") {
		t.Fatalf("stderr is not one error line: %q", stderr.String())
	}
}

func TestFlagsFirst(t *testing.T) {
	app := newApp(nil, nil)
	got := flagsFirst(app, strings.Fields("lmrun convert in.bin -o out.lmc --tokenizer t.bin"))
	want := "lmrun convert -o out.lmc --tokenizer t.bin in.bin"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %q", strings.Join(got, " "))
	}
	got = flagsFirst(app, strings.Fields("lmrun run -m x --ids --temp 0 --ignore-eos"))
	if strings.Join(got, " ") != "lmrun run -m x --ids --temp 0 --ignore-eos" {
		t.Fatalf("got %q", got)
	}
}

func TestDemo(t *testing.T) {
	out, stderr, err := lmrun(t, "demo", "--preset", "tiny", "-n", "5", "-p", "abc")
	if err != nil || !strings.HasPrefix(out, "abc") || !strings.Contains(stderr, "generation: 5 tokens") {
		t.Fatalf("demo: %v\n%s\n%s", err, out, stderr)
	}
}

func TestBenchModelCommand(t *testing.T) {
	model := filepath.Join(t.TempDir(), "t.lmc")
	mustRun(t, "synth", "--preset", "tiny", "-o", model)
	out := mustRun(t, "bench", "model", "-m", model, "-p", "8", "-n", "4", "-t", "1,2", "--reps", "1")
	for _, want := range []string{"| pp8 |", "| tg4 |", "| 2 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench model output lacks %q:\n%s", want, out)
		}
	}
	if js := mustRun(t, "bench", "model", "-m", model, "-p", "0", "-n", "2", "--json", "--reps", "1"); !strings.Contains(js, `"tokens_per_second"`) {
		t.Errorf("--json: %s", js)
	}
	if _, _, err := lmrun(t, "bench", "model", "-m", model, "-t", "x"); err == nil {
		t.Error("bad --threads accepted")
	}
}

func TestBenchKernelsCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the machine (256 MB buffer)")
	}
	svg := filepath.Join(t.TempDir(), "k.svg")
	out := mustRun(t, "bench", "kernels", "--quick", "--time", "1ms", "--backend", "generic", "--svg", svg)
	for _, want := range []string{"read bandwidth", "| matvec | 768x768 | generic |", "| gemm |"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench kernels output lacks %q:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(svg); err != nil || !strings.HasPrefix(string(b), "<svg") {
		t.Fatalf("svg: %v", err)
	}
}

// TestCPUProfile: --cpuprofile writes a pprof profile (gzip-compressed protocol buffers)
// of the command, and a file it cannot create is an error before the command runs.
func TestCPUProfile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cpu.prof")
	mustRun(t, "--cpuprofile", path, "info")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("profile of %d bytes starts % x, want gzip", len(b), b[:min(len(b), 2)])
	}
	_, _, err = lmrun(t, "--cpuprofile", filepath.Join(t.TempDir(), "no", "such", "dir", "p"), "info")
	if err == nil || !strings.Contains(err.Error(), "--cpuprofile") {
		t.Fatalf("uncreatable profile: err = %v", err)
	}
}

// TestCPUDisable runs the real main with the best backend's first required CPU feature
// in $LMRUN_CPU_DISABLE: lmrun info shows that backend unavailable for want of it, and
// an unknown feature name is an error when a model is opened.
func TestCPUDisable(t *testing.T) {
	best := backends.Best()
	if len(best.Requires) == 0 {
		t.Skipf("the best backend here, %s, needs no CPU feature to disable", best.Name)
	}
	f := best.Requires[0].String()
	cmd := exec.Command(os.Args[0], "info")
	cmd.Env = append(os.Environ(), "LMRUN_TEST_MAIN=1", backends.DisableEnvVar+"="+f)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("info with %s disabled: %v\n%s", f, err, out)
	}
	want := regexp.MustCompile(`(?m)^\s+` + best.Name + `\s+available: no \(needs [^)]*\b` + f + `\b`)
	if !want.Match(out) {
		t.Fatalf("info with %s disabled does not show %s unavailable:\n%s", f, best.Name, out)
	}

	cmd = exec.Command(os.Args[0], "run", "-m", stories260K(t), "-n", "1")
	cmd.Env = append(os.Environ(), "LMRUN_TEST_MAIN=1", backends.DisableEnvVar+"=NOSUCHFEATURE")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "NOSUCHFEATURE") {
		t.Fatalf("unknown feature: err %v, output:\n%s", err, out)
	}
}
