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
// bias) so that the float64 reference and the engine can be compared on it.
func randomCheckpoint(t *testing.T, cfg model.Config, seed uint64) string {
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
