package engine

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format/gguf"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/internal/archtest"
	"github.com/lmrun/lmrun/model"
)

// familyModels are random models of the families people run, at odd shapes: head_dim ≠
// dim/heads where the family allows it, GQA ratios 1, 2, 4 and 7, tied and untied
// classifiers, Llama 3's scaling with factor 32, LongRoPE with a long context, windows
// shorter than the sequence. Their context exceeds kvInitial so that a session's cache
// grows under the tests.
func familyModels(t *testing.T) []*archtest.Model {
	t.Helper()
	const ctx = kvInitial + 64
	base := model.Config{VocabSize: 97, Dim: 64, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 96, ContextLength: ctx,
		NormEps: 1e-5, RopeTheta: 10000}
	type spec struct {
		family        string
		qkvBias, tied bool
		hf            map[string]any
		mod           func(c *model.Config)
	}
	specs := []spec{
		{"llama", false, true, map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 32.0,
			"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}},
			func(c *model.Config) { // Llama 3.2: GQA 4, theta 500000, factor 32; head_dim ≠ dim/heads
				c.NHeads, c.NKVHeads, c.HeadDim, c.RopeTheta = 8, 2, 10, 500000
				c.RopeFreqFactors = llama3Factors(10, 500000, 32, 1, 4, 64)
			}},
		{"llama", false, true, nil, func(c *model.Config) { // SmolLM2: tied, GQA 1, theta 100000
			c.NHeads, c.NKVHeads, c.RopeTheta = 4, 4, 100000
		}},
		{"mistral", false, false, nil, func(c *model.Config) { // GQA 7, a window on every layer
			c.Dim, c.NHeads, c.NKVHeads, c.HeadDim, c.AttnWindows = 56, 7, 1, 12, []int{40, 40}
		}},
		{"qwen2", true, true, nil, func(c *model.Config) { // Qwen2.5: q/k/v biases, theta 1e6, tied
			c.RopeStyle, c.RopeTheta, c.NormEps = model.NeoX, 1e6, 1e-6
		}},
		{"qwen2", true, false, nil, func(c *model.Config) { // use_sliding_window from layer 1 on
			c.RopeStyle, c.AttnWindows = model.NeoX, []int{0, 33}
		}},
		{"phi3", false, false, nil, func(c *model.Config) { // Phi-3 mini: fused, window like its 2047
			c.RopeStyle, c.NKVHeads, c.AttnWindows = model.NeoX, 4, []int{47, 47}
		}},
		{"phi3", false, false, nil, func(c *model.Config) { // Phi-3 128k: LongRoPE beyond 64 positions
			c.RopeStyle, c.NKVHeads = model.NeoX, 4
			c.RopeFreqFactors, c.RopeLongFactors = make([]float32, 8), make([]float32, 8)
			for i := range c.RopeFreqFactors {
				c.RopeFreqFactors[i], c.RopeLongFactors[i] = 1+0.05*float32(i), 1+float32(i*i)
			}
			c.RopeOrigContext = 64
			c.RopeAttnFactor = math.Sqrt(1 + math.Log(float64(ctx)/64)/math.Log(64))
		}},
	}
	var ms []*archtest.Model
	for i, s := range specs {
		c := base
		c.Arch = s.family
		if s.family == "mistral" {
			c.Arch = "llama" // what the GGUF side calls it
		}
		s.mod(&c)
		m, err := archtest.Random(s.family, c, uint64(300+i), s.qkvBias, s.tied)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range s.hf {
			m.HF[k] = v
		}
		ms = append(ms, m)
	}
	return ms
}

// loadImport converts path as lmrun convert does, writes the .lmc and loads it.
func loadImport(t *testing.T, path string, opts Options) *Model {
	t.Helper()
	ck, err := convert.Import(path, convert.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "m.lmc")
	if err := ck.WriteFile(out, nil); err != nil {
		t.Fatal(err)
	}
	m, err := Load(out, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// logitsOf runs ids through a new session of m (batches of batch) and returns every
// position's logits.
func logitsOf(t *testing.T, m *Model, ids []int, opts SessionOptions) []float32 {
	t.Helper()
	got, err := m.NewSession(opts).ForwardAll(ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func greedyIDs(t *testing.T, m *Model, prompt []int, n int) []int {
	t.Helper()
	var ids []int
	_, err := m.NewSession(SessionOptions{}).Generate(context.Background(), prompt, GenerateOptions{MaxTokens: n, IgnoreEOS: true},
		func(id int) error { ids = append(ids, id); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestFamiliesThroughImporters: each family's model, written as Hugging Face and
// llama.cpp write it, converted as lmrun convert does, gives the float64 reference's
// logits over a sequence past its windows and its cache's growth (Q8_0 GGUF against the
// reference on the same q8_0 values); Hugging Face F32, BF16 shards and GGUF F32 give
// bit-identical logits and the same 64 greedy tokens, as does the GGUF lmrun exports;
// decoding token by token gives the batched logits.
func TestFamiliesThroughImporters(t *testing.T) {
	for i, am := range familyModels(t) {
		name := am.Family + "-" + string(rune('a'+i))
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			hfF32, hfBF16 := filepath.Join(dir, "hf32"), filepath.Join(dir, "hf16")
			g32, g8, ref := filepath.Join(dir, "m.gguf"), filepath.Join(dir, "m8.gguf"), filepath.Join(dir, "ref.lmc")
			for _, step := range []func() error{
				func() error { return mkdir(hfF32, func() error { return am.WriteHF(hfF32, safetensors.F32, 1) }) },
				func() error { return mkdir(hfBF16, func() error { return am.WriteHF(hfBF16, safetensors.BF16, 3) }) },
				func() error { return am.WriteGGUF(g32, gguf.TypeF32) },
				func() error { return am.WriteGGUF(g8, gguf.TypeQ8_0) },
				func() error { return am.WriteLMC(ref) },
			} {
				if err := step(); err != nil {
					t.Fatal(err)
				}
			}
			opts := Options{Threads: 2}
			mRef, err := Load(ref, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer mRef.Close()
			mHF := loadImport(t, hfF32, opts)
			v := am.Config.VocabSize
			ids := randomIDs(kvInitial+40, v, uint64(i))

			// Against the float64 reference, over the whole sequence.
			want := ref64(t, mRef.File(), mRef.cfg, ids, am.Config.ContextLength)
			hfLogits := logitsOf(t, mHF, ids, SessionOptions{Batch: 37})
			compareRef64(t, hfLogits, want, v)

			// A window from some layer on (Qwen2's use_sliding_window) is what no GGUF key
			// says: that model has only its Hugging Face form, and lmrun refuses to export it.
			hasGGUF := true
			for _, w := range am.Config.AttnWindows {
				hasGGUF = hasGGUF && w == am.Config.AttnWindows[0]
			}
			ckHF, err := convert.Import(hfF32, convert.Options{})
			if err != nil {
				t.Fatal(err)
			}
			exp := filepath.Join(dir, "exported.gguf")
			if err := gguf.ExportFile(ckHF, exp, nil); !hasGGUF {
				if err == nil {
					t.Fatal("a window on some layers only exported to GGUF")
				}
				exp = ""
			} else if err != nil {
				t.Fatal(err)
			}

			// The other paths: the same bits.
			paths := []struct {
				what string
				m    *Model
			}{{"hf bf16 shards", loadImport(t, hfBF16, opts)}, {"canonical lmc", mRef}}
			decode := mHF
			if hasGGUF {
				decode = loadImport(t, g32, opts)
				paths = append(paths, struct {
					what string
					m    *Model
				}{"gguf f32", decode}, struct {
					what string
					m    *Model
				}{"lmrun's gguf export", loadImport(t, exp, opts)})

				// GGUF Q8_0 against the reference on the values its blocks hold.
				q, err := am.Quantized(dtype.Q8_0)
				if err != nil {
					t.Fatal(err)
				}
				qref := filepath.Join(dir, "qref.lmc")
				if err := q.WriteLMC(qref); err != nil {
					t.Fatal(err)
				}
				mQref, err := Load(qref, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer mQref.Close()
				m8 := loadImport(t, g8, Options{Threads: 2, F32Activations: true})
				compareRef64(t, logitsOf(t, m8, ids, SessionOptions{Batch: 64}), ref64(t, mQref.File(), mQref.cfg, ids, am.Config.ContextLength), v)
			}
			for _, p := range paths {
				if got := logitsOf(t, p.m, ids, SessionOptions{Batch: 37}); !sameBits(got, hfLogits) {
					t.Errorf("%s: logits differ from the Hugging Face import's (max rel %.3g)", p.what, maxRel(got, hfLogits))
				}
			}

			// Greedy decoding: the same 64 tokens on every path.
			prompt := ids[:20]
			g := greedyIDs(t, mHF, prompt, 64)
			for _, p := range paths {
				if other := greedyIDs(t, p.m, prompt, 64); !equalInts(other, g) {
					t.Fatalf("%s: greedy ids differ:\n%v\n%v", p.what, g, other)
				}
			}

			// Token by token past the windows and the cache's growth.
			s := decode.NewSession(SessionOptions{})
			for j, id := range ids {
				logits, err := s.Forward([]int{id})
				if err != nil {
					t.Fatal(err)
				}
				if d := maxRel(logits, hfLogits[j*v:(j+1)*v]); d > 1e-5 {
					t.Fatalf("position %d: decode differs from prefill by %.3g of max|logit|", j, d)
				}
			}
		})
	}
}

// TestLongRoPEShortContext: a Phi-3 128k-like model in a session no longer than its
// original context uses the short factors, and matches the reference there.
func TestLongRoPEShortContext(t *testing.T) {
	ms := familyModels(t)
	am := ms[len(ms)-1]
	dir := t.TempDir()
	if err := am.WriteGGUF(filepath.Join(dir, "m.gguf"), gguf.TypeF32); err != nil {
		t.Fatal(err)
	}
	m := loadImport(t, filepath.Join(dir, "m.gguf"), Options{Threads: 2})
	ids := randomIDs(60, am.Config.VocabSize, 1)
	short := logitsOf(t, m, ids, SessionOptions{Context: am.Config.RopeOrigContext})
	compareRef64(t, short, ref64(t, m.File(), m.cfg, ids, am.Config.RopeOrigContext), am.Config.VocabSize)
	if long := logitsOf(t, m, ids, SessionOptions{}); maxRel(long, short) < 1e-3 {
		t.Fatal("the long factors change nothing: the test does not tell them apart")
	}
}

func mkdir(dir string, f func() error) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return f()
}

func randomIDs(n, vocab int, seed uint64) []int {
	r := rand.New(rand.NewPCG(seed, 11))
	ids := make([]int, n)
	for i := range ids {
		ids[i] = r.IntN(vocab)
	}
	return ids
}

// maxRel returns max|a−b| / max|b|.
func maxRel(a, b []float32) float64 {
	var d, m float64
	for i := range b {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		m = math.Max(m, math.Abs(float64(b[i])))
	}
	return d / m
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
