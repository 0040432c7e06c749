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
	{"tiny", "Llama-style, dim 64, 2 layers, 4 heads (2 KV), vocab 512", llama(64, 2, 4, 2, 172, 512, 256)},
	{"tiny-gpt2", "GPT-2-style, dim 64, 2 layers, 4 heads, vocab 512", gpt2(64, 2, 4, 512, 256)},
	{"stories15m", "llama2.c stories15M shape: dim 288, 6 layers, 6 heads, vocab 32000", llama(288, 6, 6, 6, 768, 32000, 256)},
	{"stories42m", "llama2.c stories42M shape: dim 512, 8 layers, 8 heads, vocab 32000", llama(512, 8, 8, 8, 1376, 32000, 1024)},
	{"stories110m", "llama2.c stories110M shape: dim 768, 12 layers, 12 heads, vocab 32000", llama(768, 12, 12, 12, 2048, 32000, 1024)},
	{"gpt2-124m", "GPT-2 small shape: dim 768, 12 layers, 12 heads, vocab 50257, context 1024", gpt2(768, 12, 12, 50257, 1024)},
	{"gpt-neo-125m", "GPT-Neo 125M shape: GPT-2 small with alternating global/local (window 256) layers, context 2048", gptNeo()},
	{"opt-125m", "OPT-125m shape: pre-norm, ReLU, positions at offset 2, context 2048", opt(768, 12, 12, 768, true)},
	{"opt-350m", "OPT-350m shape: post-norm, dim 1024, 24 layers, 512-wide projected embeddings", opt(1024, 24, 16, 512, false)},
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
// generator and a byte-level tokenizer. Tensors are generated when written, one at a
// time, so building a large preset needs little memory.
func Build(cfg model.Config, seed uint64) (*format.Checkpoint, error) {
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
