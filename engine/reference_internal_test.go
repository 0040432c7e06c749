package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/model"
)

// randomCheckpoint writes a model of cfg with random weights (including every optional
// bias of a LayerNorm model) so that the float64 reference and the engine can be
// compared on it. An even seed gives an untied classifier.
func randomCheckpoint(t *testing.T, cfg model.Config, seed uint64) string {
	t.Helper()
	return randomCheckpointWith(t, cfg, seed, false)
}

// randomCheckpointWith is randomCheckpoint that also gives an RMSNorm model biases on
// q, k and v (Qwen2) when qkvBias is set.
func randomCheckpointWith(t *testing.T, cfg model.Config, seed uint64, qkvBias bool) string {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 2))
	var ts []format.Source
	add := func(name string, scale, offset float64, shape ...int) {
		v := make([]float32, dtype.NumElements(shape))
		for i := range v {
			v[i] = float32(offset + scale*r.NormFloat64())
		}
		ts = append(ts, format.Float32s(name, shape, v))
	}
	d, q, kv, ff, ed := cfg.Dim, cfg.QDim(), cfg.KVDim(), cfg.FFNDim, cfg.EmbeddingDim()
	add("token_embd.weight", 1, 0, cfg.VocabSize, ed)
	if cfg.Projected() {
		add("proj_in.weight", 0.3, 0, d, ed)
		add("proj_out.weight", 0.3, 0, ed, d)
	}
	if cfg.Position == model.Learned {
		add("position_embd.weight", 0.5, 0, cfg.ContextLength+cfg.PositionOffset, d)
	}
	ln := cfg.Norm == model.LayerNorm
	for l := 0; l < cfg.NLayers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		add(p+"attn_norm.weight", 0.2, 1, d)
		add(p+"attn_q.weight", 0.3, 0, q, d)
		add(p+"attn_k.weight", 0.3, 0, kv, d)
		add(p+"attn_v.weight", 0.3, 0, kv, d)
		add(p+"attn_output.weight", 0.2, 0, d, q)
		add(p+"ffn_norm.weight", 0.2, 1, d)
		add(p+"ffn_up.weight", 0.2, 0, ff, d)
		add(p+"ffn_down.weight", 0.1, 0, d, ff)
		if cfg.Activation == model.SwiGLU {
			add(p+"ffn_gate.weight", 0.2, 0, ff, d)
		}
		if qkvBias && !ln {
			add(p+"attn_q.bias", 0.3, 0, q)
			add(p+"attn_k.bias", 0.3, 0, kv)
			add(p+"attn_v.bias", 0.3, 0, kv)
		}
		if ln {
			for _, b := range [][2]any{{"attn_norm.bias", d}, {"attn_q.bias", q}, {"attn_k.bias", kv}, {"attn_v.bias", kv},
				{"attn_output.bias", d}, {"ffn_norm.bias", d}, {"ffn_up.bias", ff}, {"ffn_down.bias", d}} {
				add(p+b[0].(string), 0.1, 0, b[1].(int))
			}
		}
	}
	if !cfg.NoFinalNorm {
		add("output_norm.weight", 0.2, 1, d)
		if ln {
			add("output_norm.bias", 0.1, 0, d)
		}
	}
	if seed%2 == 0 {
		add("output.weight", 0.5, 0, cfg.VocabSize, ed)
	}
	path := filepath.Join(t.TempDir(), "r.lmc")
	if err := format.WriteFile(path, cfg.Metadata(), ts, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAgainstFloat64Reference runs architectures the fixtures do not cover — GQA, odd
// sizes, post-norm, banded windows, other activations, partial RoPE, untied classifier —
// against the independent float64 implementation.
func TestAgainstFloat64Reference(t *testing.T) {
	base := model.Config{VocabSize: 97, Dim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, HeadDim: 6, FFNDim: 40,
		ContextLength: 32, Norm: model.RMSNorm, NormEps: 1e-5, Position: model.RoPE, RopeTheta: 10000, RopeDim: 6,
		Activation: model.SwiGLU, AttnWindows: []int{0, 0}}
	gpt := base
	gpt.Norm, gpt.Position, gpt.Activation, gpt.NKVHeads = model.LayerNorm, model.Learned, model.GELUTanh, 4
	cases := map[string]func(c *model.Config){
		"llama-gqa":         func(c *model.Config) {},
		"llama-mqa":         func(c *model.Config) { c.NKVHeads = 1 },
		"llama-partialrope": func(c *model.Config) { c.RopeDim = 4; c.RopeTheta = 500 },
		"llama-window":      func(c *model.Config) { c.AttnWindows = []int{0, 3} },
		"gpt2":              func(c *model.Config) { *c = gpt },
		"gpt2-postnorm":     func(c *model.Config) { *c = gpt; c.PostNorm = true; c.NoFinalNorm = true },
		"gpt2-relu-offset":  func(c *model.Config) { *c = gpt; c.Activation = model.ReLU; c.PositionOffset = 2 },
		"gpt2-erf-window": func(c *model.Config) {
			*c = gpt
			c.Activation = model.GELU
			c.AttnWindows = []int{2, 5}
			c.AttnScale = 1
		},
		"headdim-not-dim": func(c *model.Config) { c.HeadDim = 10; c.RopeDim = 10 },
		"neo-alternating": func(c *model.Config) {
			*c = gpt
			c.NLayers, c.AttnWindows, c.AttnScale = 4, []int{0, 3, 0, 5}, 1
		},
		"opt-350m-like": func(c *model.Config) {
			*c = gpt
			c.PostNorm, c.NoFinalNorm, c.Activation, c.PositionOffset, c.EmbedDim = true, true, model.ReLU, 2, 10
		},
		"opt-125m-like": func(c *model.Config) { *c = gpt; c.Activation, c.PositionOffset, c.EmbedDim = model.ReLU, 2, 16 },
	}
	seed := uint64(0)
	for name, mod := range cases {
		seed++
		t.Run(name, func(t *testing.T) {
			cfg := base
			cfg.AttnWindows = append([]int(nil), base.AttnWindows...)
			mod(&cfg)
			if cfg.AttnScale == 0 {
				cfg.AttnScale = float32(1 / math.Sqrt(float64(cfg.HeadDim)))
			}
			path := randomCheckpoint(t, cfg, seed)
			m, err := Load(path, Options{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			checkAgainstRef64(t, m, 20, rand.New(rand.NewPCG(seed, 9)), 7)
		})
	}
}

// llama3Factors returns the per-pair divisors of transformers' llama3 rope_scaling for
// rope_dim d and base theta, written out from its definition: pairs whose wavelength is
// shorter than orig/high keep their frequency, longer than orig/low are divided by
// factor, and those between interpolate smoothly.
func llama3Factors(d int, theta, factor, low, high float64, orig int) []float32 {
	f := make([]float32, d/2)
	for i := range f {
		inv := 1 / math.Pow(theta, float64(2*i)/float64(d))
		wavelen := 2 * math.Pi / inv
		switch {
		case wavelen < float64(orig)/high:
			f[i] = 1
		case wavelen > float64(orig)/low:
			f[i] = float32(factor)
		default:
			smooth := (float64(orig)/wavelen - low) / (high - low)
			f[i] = float32(1 / ((1-smooth)/factor + smooth))
		}
	}
	return f
}

// TestArchitecturesAgainstFloat64Reference runs the features of Llama 3, Qwen2, Mistral
// and Phi-3 — per-pair RoPE frequency factors, the rotate-half pairing (partial too),
// q/k/v biases alone, sliding windows on some layers, LongRoPE's short and long factors
// with its attention factor, GQA ratios up to 7 — against the float64 implementation.
func TestArchitecturesAgainstFloat64Reference(t *testing.T) {
	base := model.Config{VocabSize: 101, Dim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, HeadDim: 8, FFNDim: 40,
		ContextLength: 48, Norm: model.RMSNorm, NormEps: 1e-6, Position: model.RoPE, RopeTheta: 10000, RopeDim: 8,
		Activation: model.SwiGLU, AttnWindows: []int{0, 0}}
	long := []float32{1, 2.5, 7, 40}
	short := []float32{1, 1.1, 1.3, 1.9}
	cases := []struct {
		name    string
		mod     func(c *model.Config)
		qkvBias bool
		ctx     int // session context (0: the model's)
	}{
		{"llama3-scaling", func(c *model.Config) {
			c.RopeTheta = 500000
			c.RopeFreqFactors = llama3Factors(8, 500000, 32, 1, 4, 16)
		}, false, 0},
		{"linear-scaling", func(c *model.Config) { c.RopeFreqFactors = []float32{4, 4, 4, 4} }, false, 0},
		{"neox", func(c *model.Config) { c.RopeStyle = model.NeoX }, false, 0},
		{"neox-partial", func(c *model.Config) { c.RopeStyle, c.RopeDim = model.NeoX, 4 }, false, 0},
		{"qwen2", func(c *model.Config) { c.RopeStyle, c.RopeTheta, c.NKVHeads = model.NeoX, 1e6, 1 }, true, 0},
		{"qwen2-upper-window", func(c *model.Config) {
			c.RopeStyle, c.NLayers, c.AttnWindows = model.NeoX, 3, []int{0, 5, 5}
		}, true, 0},
		{"mistral-window", func(c *model.Config) { c.HeadDim, c.RopeDim, c.AttnWindows = 10, 10, []int{6, 6} }, false, 0},
		{"phi3", func(c *model.Config) { c.RopeStyle, c.NKVHeads, c.AttnWindows = model.NeoX, 4, []int{7, 7} }, false, 0},
		{"phi3-longrope-long", func(c *model.Config) {
			c.RopeStyle, c.RopeFreqFactors, c.RopeLongFactors, c.RopeOrigContext, c.RopeAttnFactor = model.NeoX, short, long, 16, 1.19
		}, false, 0},
		{"phi3-longrope-short", func(c *model.Config) {
			c.RopeStyle, c.RopeFreqFactors, c.RopeLongFactors, c.RopeOrigContext, c.RopeAttnFactor = model.NeoX, short, long, 24, 1.19
		}, false, 24},
		{"gqa-7", func(c *model.Config) { c.NHeads, c.NKVHeads, c.HeadDim, c.RopeDim = 7, 1, 6, 6 }, true, 0},
	}
	for i, tc := range cases {
		seed := uint64(100 + i)
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.AttnWindows = append([]int(nil), base.AttnWindows...)
			tc.mod(&cfg)
			if err := cfg.Resolve(); err != nil {
				t.Fatal(err)
			}
			cfg.AttnScale = float32(1 / math.Sqrt(float64(cfg.HeadDim)))
			path := randomCheckpointWith(t, cfg, seed, tc.qkvBias)
			m, err := Load(path, Options{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			r := rand.New(rand.NewPCG(seed, 9))
			ids := make([]int, 24)
			for i := range ids {
				ids[i] = r.IntN(cfg.VocabSize)
			}
			s := m.NewSession(SessionOptions{Batch: 5, Context: tc.ctx})
			got, err := s.ForwardAll(ids, nil)
			if err != nil {
				t.Fatal(err)
			}
			compareRef64(t, got, ref64(t, m.File(), m.cfg, ids, s.Context()), cfg.VocabSize)
		})
	}
}

// TestLongSequencesAgainstFloat64Reference: past a sliding window and across the KV
// cache's growth (kvInitial positions), decoding token by token gives the logits of a
// batched pass, and both those of the float64 reference — for the rotate-half pairing
// with q/k/v biases and LongRoPE factors (Phi-3/Qwen2-like) and for interleaved pairs
// with Llama 3 factors and a window on every layer (Mistral-like).
func TestLongSequencesAgainstFloat64Reference(t *testing.T) {
	base := model.Config{VocabSize: 67, Dim: 16, NLayers: 2, NHeads: 4, NKVHeads: 2, HeadDim: 4, FFNDim: 24,
		ContextLength: kvInitial + 80, Norm: model.RMSNorm, NormEps: 1e-6, Position: model.RoPE, RopeTheta: 10000,
		RopeDim: 4, Activation: model.SwiGLU}
	cases := []struct {
		name    string
		mod     func(c *model.Config)
		qkvBias bool
	}{
		{"neox-longrope-upper-window", func(c *model.Config) {
			c.RopeStyle, c.AttnWindows = model.NeoX, []int{0, 37}
			c.RopeFreqFactors, c.RopeLongFactors, c.RopeOrigContext, c.RopeAttnFactor = []float32{1, 1.2}, []float32{1, 9}, 64, 1.1
		}, true},
		{"interleaved-llama3-window", func(c *model.Config) {
			c.AttnWindows = []int{45, 45}
			c.RopeTheta, c.RopeFreqFactors = 500000, llama3Factors(4, 500000, 8, 1, 4, 32)
		}, false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.mod(&cfg)
			if err := cfg.Resolve(); err != nil {
				t.Fatal(err)
			}
			m, err := Load(randomCheckpointWith(t, cfg, uint64(200+i), tc.qkvBias), Options{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			v := cfg.VocabSize
			r := rand.New(rand.NewPCG(uint64(i), 5))
			ids := make([]int, kvInitial+60)
			for j := range ids {
				ids[j] = r.IntN(v)
			}
			s := m.NewSession(SessionOptions{Batch: 48})
			all, err := s.ForwardAll(ids, nil)
			if err != nil {
				t.Fatal(err)
			}
			compareRef64(t, all, ref64(t, m.File(), m.cfg, ids, s.Context()), v)
			d := m.NewSession(SessionOptions{})
			if _, err := d.Forward(ids[:50]); err != nil { // a prefill longer than the windows
				t.Fatal(err)
			}
			for j := 50; j < len(ids); j++ {
				logits, err := d.Forward(ids[j : j+1])
				if err != nil {
					t.Fatal(err)
				}
				var diff, mx float64
				for k, w := range all[j*v : (j+1)*v] {
					diff = math.Max(diff, math.Abs(float64(logits[k]-w)))
					mx = math.Max(mx, math.Abs(float64(w)))
				}
				if diff > 1e-5*mx {
					t.Fatalf("position %d: decode differs from the batched pass by %.3g of max|logit|", j, diff/mx)
				}
			}
		})
	}
}
