package engine_test

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/format/npy"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// convertAndLoad imports a foreign checkpoint, writes it as .lmc and loads it.
func convertAndLoad(t *testing.T, src, tokenizer string, opts engine.Options) *engine.Model {
	t.Helper()
	ck, err := convert.Import(src, convert.Options{TokenizerPath: tokenizer})
	if err != nil {
		t.Fatal(err)
	}
	return writeAndLoad(t, ck, opts)
}

func readIDs(t *testing.T, path string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, f := range strings.FieldsFunc(string(b), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		id, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// checkLogits compares against an expected .npy with the fixtures' tolerance,
// max|Δ| ≤ 2e-5 · max|logit| (see testdata/expected/README.md).
func checkLogits(t *testing.T, m *engine.Model, tokens []int, npyPath string) []float32 {
	t.Helper()
	shape, want, err := npy.ReadFile(npyPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(shape) != 2 || shape[0] != len(tokens) || shape[1] != m.Config().VocabSize {
		t.Fatalf("%s has shape %v, want [%d %d]", npyPath, shape, len(tokens), m.Config().VocabSize)
	}
	got, err := m.NewSession(engine.SessionOptions{}).ForwardAll(tokens, nil)
	if err != nil {
		t.Fatal(err)
	}
	var maxAbs, maxDiff float64
	for i := range want {
		maxAbs = math.Max(maxAbs, math.Abs(float64(want[i])))
		maxDiff = math.Max(maxDiff, math.Abs(float64(want[i])-float64(got[i])))
	}
	if maxDiff > 2e-5*maxAbs {
		t.Fatalf("%s [%s]: max|Δ| = %.3g = %.3g·max|logit| (tolerance 2e-5)", filepath.Base(npyPath), m.Backend(), maxDiff, maxDiff/maxAbs)
	}
	t.Logf("%s [%s]: max|Δ|/max|logit| = %.2g", filepath.Base(npyPath), m.Backend(), maxDiff/maxAbs)
	return got
}

// eachBackend runs f with every backend this machine has.
func eachBackend(t *testing.T, f func(t *testing.T, opts engine.Options)) {
	for _, b := range backends.List() {
		if !b.Available() {
			continue
		}
		t.Run(b.Name, func(t *testing.T) { f(t, engine.Options{Backend: b.Name, Threads: 2}) })
	}
}

func TestStories260K(t *testing.T) {
	bin := fixtures.Path(t, "llama2c", "stories260K.bin")
	tok := fixtures.Path(t, "llama2c", "tok512.bin")
	exp := fixtures.Path(t, "expected")
	eachBackend(t, func(t *testing.T, opts engine.Options) {
		m := convertAndLoad(t, bin, tok, opts)
		checkLogits(t, m, readIDs(t, filepath.Join(exp, "stories260K_logits_tokens.txt")), filepath.Join(exp, "stories260K_logits.npy"))

		// Greedy generation from BOS reproduces the reference ids exactly.
		want := readIDs(t, filepath.Join(exp, "stories260K_greedy_ids.txt"))
		s := m.NewSession(engine.SessionOptions{})
		got := []int{want[0]}
		_, err := s.Generate(t.Context(), got, engine.GenerateOptions{MaxTokens: len(want) - 1, IgnoreEOS: true},
			func(id int) error { got = append(got, id); return nil })
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if i >= len(got) || got[i] != want[i] {
				t.Fatalf("greedy ids differ at %d: got %v..., want %v...", i, got[:min(i+1, len(got))], want[:i+1])
			}
		}
	})
}

func TestLlamaTinyBothSources(t *testing.T) {
	exp := fixtures.Dir(t)
	tokens := readIDs(t, fixtures.Path(t, "expected", "tiny_tokens.txt"))
	npyPath := fixtures.Path(t, "expected", "llama_tiny_logits.npy")
	eachBackend(t, func(t *testing.T, opts engine.Options) {
		fromBin := checkLogits(t, convertAndLoad(t, filepath.Join(exp, "expected", "llama_tiny.bin"), "", opts), tokens, npyPath)
		fromHF := checkLogits(t, convertAndLoad(t, filepath.Join(exp, "expected", "llama_tiny_hf"), "", opts), tokens, npyPath)
		for i := range fromBin {
			if math.Float32bits(fromBin[i]) != math.Float32bits(fromHF[i]) {
				t.Fatalf("llama2.c and safetensors conversions differ at logit %d: %v vs %v", i, fromBin[i], fromHF[i])
			}
		}
	})
}

func TestGPT2Tiny(t *testing.T) {
	tokens := readIDs(t, fixtures.Path(t, "expected", "tiny_tokens.txt"))
	npyPath := fixtures.Path(t, "expected", "gpt2_tiny_logits.npy")
	dir := fixtures.Path(t, "expected", "gpt2_tiny_hf")
	eachBackend(t, func(t *testing.T, opts engine.Options) {
		checkLogits(t, convertAndLoad(t, dir, "", opts), tokens, npyPath)
	})
}

// TestNeoAndOPT: GPT-Neo (alternating global/local attention, no score scaling) and OPT
// (pre-norm, and post-norm with projected embeddings) against their expected logits on
// 24 tokens (longer than GPT-Neo's window of 8), on every backend; then KV-cached decoding
// well past the window gives the same logits as the batched pass.
func TestNeoAndOPT(t *testing.T) {
	tokens := readIDs(t, fixtures.Path(t, "expected", "neo_opt_tokens.txt"))
	for _, name := range []string{"gpt_neo_tiny", "opt_tiny", "opt_postnorm_tiny"} {
		t.Run(name, func(t *testing.T) {
			dir := fixtures.Path(t, "expected", name+"_hf")
			npyPath := fixtures.Path(t, "expected", name+"_logits.npy")
			eachBackend(t, func(t *testing.T, opts engine.Options) {
				m := convertAndLoad(t, dir, "", opts)
				all := checkLogits(t, m, tokens, npyPath)
				v := m.Config().VocabSize
				s := m.NewSession(engine.SessionOptions{Batch: 5})
				for i, id := range tokens {
					logits, err := s.Forward([]int{id})
					if err != nil {
						t.Fatal(err)
					}
					if d := maxRelDiff(logits, all[i*v:(i+1)*v]); d > 1e-5 {
						t.Fatalf("decode position %d differs from the batched pass by %.3g", i, d)
					}
				}
			})
		})
	}
}
