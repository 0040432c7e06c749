package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/gguf"
	"github.com/lmrun/lmrun/internal/fixtures"
	"github.com/lmrun/lmrun/model"
)

// Bounds on a command given absurd input: generous for a busy machine, tiny next to what
// the absurd numbers ask for. The time is a guard against hangs, not a benchmark.
const (
	absurdMaxAlloc = 200 << 20
	absurdMaxTime  = 5 * time.Second
	// absurdDataLimit is the data-segment limit (KiB) of the subprocess runs: what the
	// process may map, heap included, before an allocation fails and it dies.
	absurdDataLimit = 400 << 10
)

// hfWith writes a model directory holding the fixture's config.json with the given keys
// set (deleted for nil) beside a link to the fixture's weights.
func hfWith(t *testing.T, dir, fixture string, kv ...any) string {
	t.Helper()
	src := fixtures.Path(t, "expected", fixture)
	b, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(cfg, kv[i].(string))
		} else {
			cfg[kv[i].(string)] = kv[i+1]
		}
	}
	out, err := os.MkdirTemp(dir, fixture)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(src, "model.safetensors"), filepath.Join(out, "model.safetensors")); err != nil {
		t.Fatal(err)
	}
	return out
}

// ggufWith rewrites the fixture GGUF file with the package's writer, with the given
// metadata keys set (deleted for nil), and returns the new file's path.
func ggufWith(t *testing.T, dir, fixture string, kv ...any) string {
	t.Helper()
	f, err := gguf.Open(fixtures.Path(t, "expected", fixture))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		set[kv[i].(string)] = kv[i+1]
	}
	var kvs []gguf.KV
	for _, x := range f.KV {
		if v, ok := set[x.Key]; ok {
			delete(set, x.Key)
			if v == nil {
				continue
			}
			x.Value = v
		}
		kvs = append(kvs, x)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if v, ok := set[kv[i].(string)]; ok && v != nil {
			kvs = append(kvs, gguf.KV{Key: kv[i].(string), Value: v})
		}
	}
	var ts []gguf.TensorSource
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		ts = append(ts, gguf.TensorSource{Name: ti.Name, Type: ti.Type, Dims: ti.Dims, Data: func() ([]byte, error) { return f.TensorData(ti) }})
	}
	out, err := os.CreateTemp(dir, "*.gguf")
	if err != nil {
		t.Fatal(err)
	}
	out.Close()
	if err := gguf.WriteFile(out.Name(), kvs, ts, nil); err != nil {
		t.Fatal(err)
	}
	return out.Name()
}

// llama2cWith writes a version 1 llama2.c checkpoint (shared classifier) holding the
// header fields dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size and seq_len,
// of size bytes: a sparse file, its data a hole.
func llama2cWith(t *testing.T, dir string, size int64, fields ...int32) string {
	t.Helper()
	b := make([]byte, 256)
	binary.LittleEndian.PutUint32(b, 0x616b3432)
	binary.LittleEndian.PutUint32(b[4:], 1)
	for i, v := range fields {
		binary.LittleEndian.PutUint32(b[8+4*i:], uint32(v))
	}
	b[36] = 1
	f, err := os.CreateTemp(dir, "*.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// lmcWith writes the synthesized tiny model with the given model metadata keys set
// (deleted for nil).
func lmcWith(t *testing.T, dir string, kv ...any) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "*.lmc")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return tinyModel(t, dir, filepath.Base(f.Name()), func(ck *format.Checkpoint, _ model.Config) {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(ck.Meta, kv[i].(string))
			} else {
				ck.Meta[kv[i].(string)] = kv[i+1]
			}
		}
	})
}

// TestAbsurdInput: model files whose numbers are absurd — a config.json claiming a
// billion layers beside a 2-layer checkpoint, GGUF metadata, llama2.c headers and lmc
// metadata in the billions, negative or of the wrong type — and an absurd --ctx make
// the command fail with one error line and exit status 1, at once, without allocating
// anything sized by the numbers. Each case runs in-process (allocation measured) and as
// a subprocess under a data-segment limit, where an unbounded allocation kills it.
func TestAbsurdInput(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.lmc")
	convert := func(in string) []string { return []string{"convert", in, "-o", out} }
	tiny := lmcWith(t, dir)
	const billion = 1 << 30
	cases := []struct {
		name string
		args []string
		want string // part of the error
	}{
		{"hf n_layer 2^30", convert(hfWith(t, dir, "gpt2_tiny_hf", "n_layer", billion)), "n_layer = 1073741824, but model.safetensors holds tensors for at most 2 layers"},
		{"hf n_layer 1024", convert(hfWith(t, dir, "gpt2_tiny_hf", "n_layer", 1024)), "n_layer = 1024, but model.safetensors holds tensors for at most 2 layers"},
		{"hf n_layer negative", convert(hfWith(t, dir, "gpt2_tiny_hf", "n_layer", -2)), "n_layer = -2, want > 0"},
		{"hf n_layer string", convert(hfWith(t, dir, "gpt2_tiny_hf", "n_layer", "2")), "n_layer is 2, want an integer"},
		{"hf n_layer float", convert(hfWith(t, dir, "gpt2_tiny_hf", "n_layer", 2.5)), "n_layer is 2.5, want an integer"},
		{"hf vocab_size 2e9", convert(hfWith(t, dir, "gpt2_tiny_hf", "vocab_size", 2000000000)), "vocab_size = 2000000000 and n_embd = 64 imply wte.weight"},
		{"hf n_positions 2e9", convert(hfWith(t, dir, "gpt2_tiny_hf", "n_positions", 2000000000)), "n_positions = 2000000000 and n_embd = 64 imply wpe.weight"},
		{"hf n_inner 2e9", convert(hfWith(t, dir, "gpt2_tiny_hf", "n_inner", 2000000000)), "n_inner = 2000000000"},
		{"hf n_head 2^30", convert(hfWith(t, dir, "gpt2_tiny_hf", "n_head", billion)), "not a multiple of n_head 1073741824"},
		{"llama context 2e9", convert(hfWith(t, dir, "llama_tiny_hf", "max_position_embeddings", 2000000000)), "max_position_embeddings = 2000000000"},
		{"llama head_dim 2^30", convert(hfWith(t, dir, "llama_tiny_hf", "head_dim", billion)), "head_dim = 1073741824"},
		{"llama hidden_size 2^30", convert(hfWith(t, dir, "llama_tiny_hf", "hidden_size", billion)), "hidden_size = 1073741824 imply model.embed_tokens.weight"},
		{"llama kv heads not dividing", convert(hfWith(t, dir, "llama_tiny_hf", "num_key_value_heads", 3)), "num_key_value_heads 3"},
		{"llama intermediate_size 2e9", convert(hfWith(t, dir, "llama_tiny_hf", "intermediate_size", 2000000000)), "intermediate_size = 2000000000"},
		{"neo attention_types 2^30 repeats", convert(hfWith(t, dir, "gpt_neo_tiny_hf", "attention_types", []any{[]any{[]string{"global"}, billion}})), "attention_types name more than the 4 layers"},
		{"neo window_size 2^30", convert(hfWith(t, dir, "gpt_neo_tiny_hf", "window_size", billion)), "window_size = 1073741824"},
		{"opt layers 2^30", convert(hfWith(t, dir, "opt_tiny_hf", "num_hidden_layers", billion)), "num_hidden_layers = 1073741824"},
		{"opt ffn_dim zero", convert(hfWith(t, dir, "opt_tiny_hf", "ffn_dim", 0)), "ffn_dim = 0, want > 0"},
		{"gguf block_count 2^30", convert(ggufWith(t, dir, "llama_tiny.gguf", "llama.block_count", uint32(billion))), "llama.block_count = 1073741824, but the file holds tensors for at most 2 blocks"},
		{"gguf head_count 2^30", convert(ggufWith(t, dir, "llama_tiny.gguf", "llama.attention.head_count", uint32(billion))), "head_count 1073741824"},
		{"gguf context_length 2^30", convert(ggufWith(t, dir, "llama_tiny.gguf", "llama.context_length", uint32(billion))), "llama.context_length = 1073741824"},
		{"gguf embedding_length 2^30", convert(ggufWith(t, dir, "llama_tiny.gguf", "llama.embedding_length", uint32(billion))), "llama.embedding_length = 1073741824, but token_embd.weight"},
		{"gguf feed_forward_length 2^30", convert(ggufWith(t, dir, "llama_tiny.gguf", "llama.feed_forward_length", uint32(billion))), "llama.feed_forward_length = 1073741824"},
		{"gguf block_count string", convert(ggufWith(t, dir, "llama_tiny.gguf", "llama.block_count", "2")), "llama.block_count is a string"},
		{"gguf gpt2 context_length 2^30", convert(ggufWith(t, dir, "gpt2_tiny.gguf", "gpt2.context_length", uint32(billion))), "gpt2.context_length = 1073741824, but position_embd.weight"},
		{"llama2c layers 2^30", convert(llama2cWith(t, dir, 4096, 8, 16, billion, 2, 2, 32, 8)), "implies"},
		{"llama2c seq_len max", convert(llama2cWith(t, dir, 256+2*4*8+4*8+4*32*8+4*(8*8*4+3*16*8), 8, 16, 1, 2, 2, 32, math.MaxInt32)), "header seq_len = 2147483647"},
		{"llama2c dim negative", convert(llama2cWith(t, dir, 4096, -8, 16, 1, 2, 2, 32, 8)), "dim = -8, want > 0"},
		{"llama2c all huge", convert(llama2cWith(t, dir, 4096, billion, math.MaxInt32, math.MaxInt32, 1, 1, math.MaxInt32, math.MaxInt32)), "impossible size"},
		{"lmc n_layers 2^30", []string{"run", "-m", lmcWith(t, dir, model.KeyNLayers, int64(billion)), "--tokens", "1"}, "n_layers 1073741824"},
		{"lmc n_layers 1024", []string{"run", "-m", lmcWith(t, dir, model.KeyNLayers, int64(1024), model.KeyAttnWindows, nil), "--tokens", "1"}, "lm.n_layers = 1024, but the file holds tensors for at most 2 layers"},
		{"lmc vocab 2^22", []string{"run", "-m", lmcWith(t, dir, model.KeyVocabSize, int64(1<<22)), "--tokens", "1"}, "token_embd.weight has shape [512 64], the config needs [4194304 64]"},
		{"lmc context 2^30", []string{"run", "-m", lmcWith(t, dir, model.KeyContextLength, int64(billion)), "--tokens", "1"}, "context_length 1073741824"},
		{"lmc ffn string", []string{"run", "-m", lmcWith(t, dir, model.KeyFFNDim, "172"), "--tokens", "1"}, "lm.ffn_dim"},
		{"lmc learned positions 2^21", []string{"run", "-m", lmcWith(t, dir, model.KeyPosition, "learned", model.KeyContextLength, int64(1<<21)), "--tokens", "1"}, "position_embd.weight is missing"},
		{"run --ctx 2e9", []string{"run", "-m", tiny, "--ctx", "2000000000", "--tokens", "1"}, "--ctx 2000000000: want 0 (the model's context length) to 256"},
		{"run --ctx negative", []string{"run", "-m", tiny, "--ctx", "-1", "--tokens", "1"}, "--ctx -1"},
		{"bench wrapping counts", []string{"bench", "model", "-m", tiny, "-p", "9223372036854775807", "--depth", "1", "-n", "1", "--reps", "1"}, "exceed the context length"},
	}
	// The memory-limited subprocess needs Linux and sh; the race runtime reserves more
	// address space than the limit allows, so under -race only the in-process check runs.
	sub := runtime.GOOS == "linux" && !raceEnabled
	if _, err := exec.LookPath("sh"); err != nil {
		sub = false
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, _, err := lmrun(t, c.args...)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatalf("lmrun %v succeeded", c.args)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			if alloc > absurdMaxAlloc || elapsed > absurdMaxTime {
				t.Errorf("in-process: %d MB allocated in %v", alloc>>20, elapsed)
			}
			t.Logf("in-process: %.1f MB allocated in %v", float64(alloc)/(1<<20), elapsed.Round(time.Millisecond))
			if !sub {
				return
			}
			// stderr may say what the command is doing (convert names the format it
			// detected) before the one error line, which ends it.
			stderr, code, elapsed := runLimited(t, c.args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			last := lines[len(lines)-1]
			errLines := 0
			for _, l := range lines {
				if strings.HasPrefix(l, "lmrun: ") || strings.Contains(l, "panic") || strings.Contains(l, "goroutine ") {
					errLines++
				}
			}
			if code != 1 || errLines != 1 || !strings.HasPrefix(last, "lmrun: ") || !strings.Contains(last, c.want) {
				t.Errorf("subprocess: exit status %d, stderr %q", code, stderr)
			}
			if elapsed > absurdMaxTime {
				t.Errorf("subprocess: %v", elapsed)
			}
		})
	}
}

// runLimited runs the command in a subprocess (this test binary's main) whose data
// segment is limited to absurdDataLimit KiB, killed after 10 s, and returns its stderr,
// exit status and run time.
func runLimited(t *testing.T, args ...string) (string, int, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	script := "ulimit -d " + strconv.Itoa(absurdDataLimit) + ` && exec "$0" "$@"`
	cmd := exec.CommandContext(ctx, "sh", append([]string{"-c", script, os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), "LMRUN_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("subprocess still running after 10 s: %s", stderr.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stderr.String(), code, elapsed
}
