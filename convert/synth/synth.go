// Package synth builds seeded random-weight checkpoints of real model shapes, for demos
// and benchmarks that need no download.
package synth

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/model"
	"github.com/lmrun/lmrun/tokenizer"
)

// Preset is a named model shape.
type Preset struct {
	Name   string
	About  string
	Config model.Config
	// QKVBias gives q, k and v biases (Qwen2); Untied a classifier of its own
	// (output.weight) instead of the token embedding.
	QKVBias, Untied bool
}

// Build returns a checkpoint of the preset's shape (see the function Build).
func (p Preset) Build(seed uint64) (*format.Checkpoint, error) {
	return build(p.Config, seed, p.QKVBias, p.Untied)
}

func llama(dim, layers, heads, kvHeads, ffn, vocab, ctx int) model.Config {
	return model.Config{
		Arch: "llama", VocabSize: vocab, Dim: dim, NLayers: layers, NHeads: heads, NKVHeads: kvHeads,
		HeadDim: dim / heads, FFNDim: ffn, ContextLength: ctx,
		Norm: model.RMSNorm, NormEps: 1e-5, Position: model.RoPE, RopeTheta: 10000, RopeDim: dim / heads,
		Activation: model.SwiGLU, AttnWindows: make([]int, layers),
	}
}

func gpt2(dim, layers, heads, vocab, ctx int) model.Config {
	return model.Config{
		Arch: "gpt2", VocabSize: vocab, Dim: dim, NLayers: layers, NHeads: heads, NKVHeads: heads,
		HeadDim: dim / heads, FFNDim: 4 * dim, ContextLength: ctx,
		Norm: model.LayerNorm, NormEps: 1e-5, Position: model.Learned,
		Activation: model.GELUTanh, AttnWindows: make([]int, layers),
	}
}

// Presets lists the shapes synth can build.
var presets = []Preset{
	{Name: "tiny", About: "Llama-style, dim 64, 2 layers, 4 heads (2 KV), vocab 512", Config: llama(64, 2, 4, 2, 172, 512, 256)},
	{Name: "tiny-gpt2", About: "GPT-2-style, dim 64, 2 layers, 4 heads, vocab 512", Config: gpt2(64, 2, 4, 512, 256)},
	{Name: "stories15m", About: "llama2.c stories15M shape: dim 288, 6 layers, 6 heads, vocab 32000", Config: llama(288, 6, 6, 6, 768, 32000, 256)},
	{Name: "stories42m", About: "llama2.c stories42M shape: dim 512, 8 layers, 8 heads, vocab 32000", Config: llama(512, 8, 8, 8, 1376, 32000, 1024)},
	{Name: "stories110m", About: "llama2.c stories110M shape: dim 768, 12 layers, 12 heads, vocab 32000", Config: llama(768, 12, 12, 12, 2048, 32000, 1024)},
	{Name: "gpt2-124m", About: "GPT-2 small shape: dim 768, 12 layers, 12 heads, vocab 50257, context 1024", Config: gpt2(768, 12, 12, 50257, 1024)},
	{Name: "gpt-neo-125m", About: "GPT-Neo 125M shape: GPT-2 small with alternating global/local (window 256) layers, context 2048", Config: gptNeo()},
	{Name: "opt-125m", About: "OPT-125m shape: pre-norm, ReLU, positions at offset 2, context 2048", Config: opt(768, 12, 12, 768, true)},
	{Name: "opt-350m", About: "OPT-350m shape: post-norm, dim 1024, 24 layers, 512-wide projected embeddings", Config: opt(1024, 24, 16, 512, false)},
	{Name: "llama3.2-1b", About: "Llama-3.2-1B shape: dim 2048, 16 layers, 32 heads (8 KV), vocab 128256, tied, rope 500000 with llama3 scaling ×32",
		Config: llama3(2048, 16, 32, 8, 8192, 128256)},
	{Name: "qwen2.5-0.5b", About: "Qwen2.5-0.5B shape: dim 896, 24 layers, 14 heads (2 KV), vocab 151936, tied, q/k/v biases, rope 1e6 (neox)",
		Config: qwen2(896, 24, 14, 2, 4864, 151936, 32768), QKVBias: true},
	{Name: "smollm2-135m", About: "SmolLM2-135M shape: dim 576, 30 layers, 9 heads (3 KV), vocab 49152, tied, rope 100000",
		Config: smolLM2(576, 30, 9, 3, 1536)},
	{Name: "smollm2-360m", About: "SmolLM2-360M shape: dim 960, 32 layers, 15 heads (5 KV), vocab 49152, tied, rope 100000",
		Config: smolLM2(960, 32, 15, 5, 2560)},
	{Name: "phi3-mini", About: "Phi-3-mini-4k shape: dim 3072, 32 layers, 32 heads, vocab 32064, untied, window 2047, rope 10000 (neox)",
		Config: phi3Mini(), Untied: true},
}

// llama3 is a Llama 3.2 shape: theta 500000 with Llama 3's scaling (factor 32, low 1,
// high 4, original context 8192), context 131072, eps 1e-5.
func llama3(dim, layers, heads, kvHeads, ffn, vocab int) model.Config {
	c := llama(dim, layers, heads, kvHeads, ffn, vocab, 131072)
	c.RopeTheta = 500000
	c.RopeFreqFactors = model.Llama3RopeFactors(c.RopeDim, c.RopeTheta, 32, 1, 4, 8192)
	return c
}

// qwen2 is a Qwen2.5 shape: rotate-half RoPE with base 1e6, eps 1e-6.
func qwen2(dim, layers, heads, kvHeads, ffn, vocab, ctx int) model.Config {
	c := llama(dim, layers, heads, kvHeads, ffn, vocab, ctx)
	c.Arch, c.RopeStyle, c.RopeTheta, c.NormEps = "qwen2", model.NeoX, 1e6, 1e-6
	return c
}

// smolLM2 is a SmolLM2 shape: Llama with base 100000, vocabulary 49152, context 8192.
func smolLM2(dim, layers, heads, kvHeads, ffn int) model.Config {
	c := llama(dim, layers, heads, kvHeads, ffn, 49152, 8192)
	c.RopeTheta = 100000
	return c
}

// phi3Mini is Phi-3-mini-4k-instruct: rotate-half RoPE, a 2047-position window on every
// layer (its sliding_window), context 4096.
func phi3Mini() model.Config {
	c := llama(3072, 32, 32, 32, 8192, 32064, 4096)
	c.Arch, c.RopeStyle = "phi3", model.NeoX
	for i := range c.AttnWindows {
		c.AttnWindows[i] = 2047
	}
	return c
}

// gptNeo is GPT-Neo 125M: GPT-3's alternation of dense and banded attention layers,
// without the 1/√d score scale.
func gptNeo() model.Config {
	c := gpt2(768, 12, 12, 50257, 2048)
	c.Arch, c.AttnScale = "gpt_neo", 1
	for i := range c.AttnWindows {
		if i%2 == 1 {
			c.AttnWindows[i] = 256
		}
	}
	return c
}

// opt is an OPT shape: ReLU FFN, positions read at offset 2, and for the post-norm
// variant no final norm and embeddings of width embDim projected to dim.
func opt(dim, layers, heads, embDim int, preNorm bool) model.Config {
	c := gpt2(dim, layers, heads, 50272, 2048)
	c.Arch, c.Activation, c.PositionOffset = "opt", model.ReLU, 2
	c.PostNorm, c.NoFinalNorm = !preNorm, !preNorm
	if embDim != dim {
		c.EmbedDim = embDim
	}
	return c
}

// Presets returns the available presets.
func Presets() []Preset { return append([]Preset(nil), presets...) }

// Lookup returns the named preset.
func Lookup(name string) (Preset, error) {
	var names []string
	for _, p := range presets {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return Preset{}, fmt.Errorf("unknown preset %q (have: %s)", name, strings.Join(names, ", "))
}

// Build returns a checkpoint of the config's shape with weights drawn from a seeded
// generator and a byte-level tokenizer: a classifier tied to the token embedding, and
// the biases of LayerNorm models. Tensors are generated when written, one at a time, so
// building a large preset needs little memory.
func Build(cfg model.Config, seed uint64) (*format.Checkpoint, error) {
	return build(cfg, seed, false, false)
}

// build is Build with q/k/v biases (qkvBias) and an output.weight of its own (untied).
func build(cfg model.Config, seed uint64, qkvBias, untied bool) (*format.Checkpoint, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.VocabSize < 258 {
		return nil, fmt.Errorf("synth needs a vocabulary of at least 258 ids for its byte-level tokenizer, have %d", cfg.VocabSize)
	}
	meta := cfg.Metadata()
	for k, v := range tokenizer.BytesMetadata(cfg.VocabSize, seed) {
		meta[k] = v
	}
	meta["general.name"] = "synthetic " + cfg.Arch
	meta["general.source"] = fmt.Sprintf("lmrun synth, seed %d", seed)

	ck := &format.Checkpoint{Meta: meta}
	n := 0
	add := func(name string, shape []int, kind int, scale float64) {
		n++
		s := splitmix(seed ^ uint64(n)*0x9e3779b97f4a7c15)
		ck.Tensors = append(ck.Tensors, format.Source{Name: name, DType: dtype.F32, Shape: shape,
			Data: func() ([]byte, error) { return dtype.F32ToBytes(fill(dtype.NumElements(shape), kind, scale, s)), nil }})
	}
	const (
		weight = iota
		gain
		bias
	)
	dim, q, kv, ff, ed := cfg.Dim, cfg.QDim(), cfg.KVDim(), cfg.FFNDim, cfg.EmbeddingDim()
	std := 0.02
	ln := cfg.Norm == model.LayerNorm
	add("token_embd.weight", []int{cfg.VocabSize, ed}, weight, std)
	if cfg.Projected() {
		add("proj_in.weight", []int{dim, ed}, weight, std)
		add("proj_out.weight", []int{ed, dim}, weight, std)
	}
	if cfg.Position == model.Learned {
		add("position_embd.weight", []int{cfg.ContextLength + cfg.PositionOffset, dim}, weight, std)
	}
	resid := std / math.Sqrt(2*float64(cfg.NLayers))
	for l := 0; l < cfg.NLayers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		add(p+"attn_norm.weight", []int{dim}, gain, 0.1)
		if ln {
			add(p+"attn_norm.bias", []int{dim}, bias, 0.02)
		}
		add(p+"attn_q.weight", []int{q, dim}, weight, std)
		add(p+"attn_k.weight", []int{kv, dim}, weight, std)
		add(p+"attn_v.weight", []int{kv, dim}, weight, std)
		add(p+"attn_output.weight", []int{dim, q}, weight, resid)
		if qkvBias && !ln {
			add(p+"attn_q.bias", []int{q}, bias, 0.02)
			add(p+"attn_k.bias", []int{kv}, bias, 0.02)
			add(p+"attn_v.bias", []int{kv}, bias, 0.02)
		}
		if ln {
			add(p+"attn_q.bias", []int{q}, bias, 0.02)
			add(p+"attn_k.bias", []int{kv}, bias, 0.02)
			add(p+"attn_v.bias", []int{kv}, bias, 0.02)
			add(p+"attn_output.bias", []int{dim}, bias, 0.02)
		}
		add(p+"ffn_norm.weight", []int{dim}, gain, 0.1)
		if ln {
			add(p+"ffn_norm.bias", []int{dim}, bias, 0.02)
		}
		if cfg.Activation == model.SwiGLU {
			add(p+"ffn_gate.weight", []int{ff, dim}, weight, std)
		}
		add(p+"ffn_up.weight", []int{ff, dim}, weight, std)
		add(p+"ffn_down.weight", []int{dim, ff}, weight, resid)
		if ln {
			add(p+"ffn_up.bias", []int{ff}, bias, 0.02)
			add(p+"ffn_down.bias", []int{dim}, bias, 0.02)
		}
	}
	if !cfg.NoFinalNorm {
		add("output_norm.weight", []int{dim}, gain, 0.1)
		if ln {
			add("output_norm.bias", []int{dim}, bias, 0.02)
		}
	}
	if untied {
		add("output.weight", []int{cfg.VocabSize, ed}, weight, std)
	}
	return ck, nil
}

// fill returns n values: weights uniform with the given standard deviation, gains
// 1 ± scale, biases uniform ± scale.
func fill(n, kind int, scale float64, state uint64) []float32 {
	v := make([]float32, n)
	a := scale * math.Sqrt(3) // uniform on [-a, a] has standard deviation scale
	if kind != 0 {
		a = scale
	}
	for i := range v {
		state = splitmix(state)
		u := float64(state>>11)/(1<<53)*2 - 1
		x := a * u
		if kind == 1 {
			x += 1
		}
		v[i] = float32(x)
	}
	return v
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
