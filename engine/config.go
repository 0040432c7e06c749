// Package engine runs decoder-only transformer language models stored as lmrun
// checkpoints. A Model holds the immutable weights and is safe to share between
// goroutines; a Session owns one conversation's KV cache and position.
//
//	m, err := engine.Load("model.lmc", engine.Options{})
//	s := m.NewSession(engine.SessionOptions{})
//	logits, err := s.Forward(ids)        // prefill, batched
//	smp, err := engine.NewSampler(engine.SamplerConfig{Temperature: 0.8, Seed: 1})
//	next := smp.Sample(logits)
//	logits, err = s.Forward([]int{next}) // decode one token
package engine

import (
	"fmt"
	"math"

	"github.com/lmrun/lmrun/format"
)

// NormKind selects the normalisation layer.
type NormKind string

// Activation selects the feed-forward block's non-linearity.
type Activation string

// PositionKind selects how positions enter the model.
type PositionKind string

// Architecture vocabulary, as stored in checkpoint metadata (format/SPEC.md).
const (
	RMSNorm   NormKind = "rmsnorm"
	LayerNorm NormKind = "layernorm"

	GELUTanh Activation = "gelu_tanh"
	GELU     Activation = "gelu"
	ReLU     Activation = "relu"
	SwiGLU   Activation = "swiglu"

	Learned PositionKind = "learned"
	RoPE    PositionKind = "rope"
)

// Config describes a decoder-only transformer. GPT-2, Llama and their relatives are
// settings of these fields, not separate code paths.
type Config struct {
	Arch          string // family, informational ("llama", "gpt2")
	VocabSize     int
	Dim           int
	NLayers       int
	NHeads        int
	NKVHeads      int // < NHeads: grouped-query attention
	HeadDim       int
	FFNDim        int
	ContextLength int

	Norm     NormKind
	NormEps  float32
	PostNorm bool // norm after each residual add (original Transformer) instead of before

	Position       PositionKind
	PositionOffset int     // row of the position table used for position 0
	RopeTheta      float64 // RoPE base
	RopeDim        int     // leading dims of each head that RoPE rotates

	Activation  Activation
	AttnWindows []int   // per layer: 0 dense causal, w > 0 local (query i sees keys i-w+1..i)
	AttnScale   float32 // multiplier of q·k; 1/√HeadDim by default
	FinalNorm   bool    // apply output_norm before the classifier

	// EmbedDim is the width of the token embeddings and of the classifier's input; when
	// it differs from Dim, proj_in maps embeddings up to Dim and proj_out maps the final
	// hidden state back (OPT-350m's word_embed_proj_dim). 0 means Dim.
	EmbedDim int
}

// EmbeddingDim returns the width of the token embeddings (EmbedDim, or Dim).
func (c *Config) EmbeddingDim() int {
	if c.EmbedDim > 0 {
		return c.EmbedDim
	}
	return c.Dim
}

// Projected reports whether the model maps embeddings through proj_in and proj_out.
func (c *Config) Projected() bool { return c.EmbeddingDim() != c.Dim }

// KVDim returns the width of one position's keys (or values) in one layer.
func (c *Config) KVDim() int { return c.NKVHeads * c.HeadDim }

// QDim returns the width of the concatenated query heads.
func (c *Config) QDim() int { return c.NHeads * c.HeadDim }

// Limits that keep a hostile checkpoint from asking for absurd buffers.
const (
	maxDim     = 1 << 16
	maxLayers  = 1 << 10
	maxVocab   = 1 << 22
	maxContext = 1 << 21
)

// ConfigFromMetadata reads a Config from checkpoint metadata and validates it.
func ConfigFromMetadata(m format.Metadata) (Config, error) {
	var c Config
	var errs []error
	geti := func(key string, dst *int, def int, required bool) {
		v, ok, err := m.Int(key)
		switch {
		case err != nil:
			errs = append(errs, err)
		case !ok && required:
			errs = append(errs, fmt.Errorf("metadata %s is missing", key))
		case !ok:
			*dst = def
		default:
			*dst = v
		}
	}
	gets := func(key string, def string) string {
		v, ok, err := m.String(key)
		if err != nil {
			errs = append(errs, err)
		}
		if !ok {
			return def
		}
		return v
	}
	getf := func(key string, def float64) float64 {
		v, ok, err := m.Float(key)
		if err != nil {
			errs = append(errs, err)
		}
		if !ok {
			return def
		}
		return v
	}
	c.Arch = gets("general.architecture", "")
	geti("lm.vocab_size", &c.VocabSize, 0, true)
	geti("lm.dim", &c.Dim, 0, true)
	geti("lm.n_layers", &c.NLayers, 0, true)
	geti("lm.n_heads", &c.NHeads, 0, true)
	geti("lm.n_kv_heads", &c.NKVHeads, 0, false)
	geti("lm.head_dim", &c.HeadDim, 0, false)
	geti("lm.ffn_dim", &c.FFNDim, 0, true)
	geti("lm.context_length", &c.ContextLength, 0, true)
	geti("lm.position_offset", &c.PositionOffset, 0, false)
	geti("lm.rope_dim", &c.RopeDim, 0, false)
	geti("lm.embedding_dim", &c.EmbedDim, 0, false)
	c.Norm = NormKind(gets("lm.norm", string(RMSNorm)))
	c.NormEps = float32(getf("lm.norm_eps", 1e-5))
	switch p := gets("lm.norm_position", "pre"); p {
	case "pre":
	case "post":
		c.PostNorm = true
	default:
		errs = append(errs, fmt.Errorf("metadata lm.norm_position %q: want pre or post", p))
	}
	c.Position = PositionKind(gets("lm.position", string(RoPE)))
	c.RopeTheta = getf("lm.rope_theta", 10000)
	c.Activation = Activation(gets("lm.activation", string(SwiGLU)))
	c.AttnScale = float32(getf("lm.attn_scale", 0))
	c.FinalNorm = true
	if v, ok, err := m.Bool("lm.final_norm"); err != nil {
		errs = append(errs, err)
	} else if ok {
		c.FinalNorm = v
	}
	if w, ok, err := m.Ints("lm.attn_windows"); err != nil {
		errs = append(errs, err)
	} else if ok {
		c.AttnWindows = make([]int, len(w))
		for i, x := range w {
			if x < 0 || x > maxContext {
				errs = append(errs, fmt.Errorf("metadata lm.attn_windows[%d] = %d", i, x))
			}
			c.AttnWindows[i] = int(x)
		}
	}
	if len(errs) > 0 {
		return c, errs[0]
	}
	if c.NKVHeads == 0 {
		c.NKVHeads = c.NHeads
	}
	if c.HeadDim == 0 && c.NHeads > 0 {
		c.HeadDim = c.Dim / c.NHeads
	}
	if c.RopeDim == 0 {
		c.RopeDim = c.HeadDim
	}
	if c.AttnWindows == nil && c.NLayers > 0 && c.NLayers <= maxLayers {
		c.AttnWindows = make([]int, c.NLayers)
	}
	if c.AttnScale == 0 && c.HeadDim > 0 {
		c.AttnScale = float32(1 / math.Sqrt(float64(c.HeadDim)))
	}
	return c, c.Validate()
}

// Validate checks that the configuration is one the engine can run.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("invalid model config: "+format, args...)
	}
	switch {
	case c.VocabSize <= 0 || c.VocabSize > maxVocab:
		return bad("vocab_size %d", c.VocabSize)
	case c.Dim <= 0 || c.Dim > maxDim:
		return bad("dim %d", c.Dim)
	case c.NLayers <= 0 || c.NLayers > maxLayers:
		return bad("n_layers %d", c.NLayers)
	case c.NHeads <= 0 || c.NHeads > c.Dim*4:
		return bad("n_heads %d", c.NHeads)
	case c.NKVHeads <= 0 || c.NHeads%c.NKVHeads != 0:
		return bad("n_kv_heads %d must divide n_heads %d", c.NKVHeads, c.NHeads)
	case c.HeadDim <= 0 || c.HeadDim > maxDim || c.NHeads*c.HeadDim > 4*maxDim:
		return bad("head_dim %d", c.HeadDim)
	case c.FFNDim <= 0 || c.FFNDim > 8*maxDim:
		return bad("ffn_dim %d", c.FFNDim)
	case c.ContextLength <= 0 || c.ContextLength > maxContext:
		return bad("context_length %d", c.ContextLength)
	case c.EmbedDim < 0 || c.EmbedDim > maxDim:
		return bad("embedding_dim %d", c.EmbedDim)
	case c.PositionOffset < 0 || c.PositionOffset > maxContext:
		return bad("position_offset %d", c.PositionOffset)
	case !(c.NormEps >= 0) || c.NormEps > 1:
		return bad("norm_eps %g", c.NormEps)
	case len(c.AttnWindows) != c.NLayers:
		return bad("%d attention windows for %d layers", len(c.AttnWindows), c.NLayers)
	case math.IsNaN(float64(c.AttnScale)) || math.IsInf(float64(c.AttnScale), 0):
		return bad("attn_scale %g", c.AttnScale)
	}
	switch c.Norm {
	case RMSNorm, LayerNorm:
	default:
		return bad("norm %q (want rmsnorm or layernorm)", c.Norm)
	}
	switch c.Activation {
	case GELUTanh, GELU, ReLU, SwiGLU:
	default:
		return bad("activation %q (want gelu_tanh, gelu, relu or swiglu)", c.Activation)
	}
	switch c.Position {
	case Learned:
	case RoPE:
		if c.RopeDim <= 0 || c.RopeDim > c.HeadDim || c.RopeDim%2 != 0 {
			return bad("rope_dim %d for head_dim %d", c.RopeDim, c.HeadDim)
		}
		if !(c.RopeTheta > 1) || math.IsInf(c.RopeTheta, 0) {
			return bad("rope_theta %g", c.RopeTheta)
		}
	default:
		return bad("position %q (want learned or rope)", c.Position)
	}
	for i, w := range c.AttnWindows {
		if w < 0 {
			return bad("attention window %d of layer %d", w, i)
		}
	}
	return nil
}

// Metadata returns the checkpoint metadata that describes c (the inverse of
// ConfigFromMetadata).
func (c *Config) Metadata() format.Metadata {
	w := make([]int64, len(c.AttnWindows))
	for i, x := range c.AttnWindows {
		w[i] = int64(x)
	}
	pos := "pre"
	if c.PostNorm {
		pos = "post"
	}
	m := format.Metadata{
		"general.architecture": c.Arch,
		"lm.vocab_size":        int64(c.VocabSize),
		"lm.dim":               int64(c.Dim),
		"lm.n_layers":          int64(c.NLayers),
		"lm.n_heads":           int64(c.NHeads),
		"lm.n_kv_heads":        int64(c.NKVHeads),
		"lm.head_dim":          int64(c.HeadDim),
		"lm.ffn_dim":           int64(c.FFNDim),
		"lm.context_length":    int64(c.ContextLength),
		"lm.norm":              string(c.Norm),
		"lm.norm_eps":          float64(c.NormEps),
		"lm.norm_position":     pos,
		"lm.position":          string(c.Position),
		"lm.activation":        string(c.Activation),
		"lm.attn_windows":      w,
		"lm.final_norm":        c.FinalNorm,
	}
	if c.Projected() {
		m["lm.embedding_dim"] = int64(c.EmbedDim)
	}
	if c.Position == RoPE {
		m["lm.rope_theta"] = c.RopeTheta
		m["lm.rope_dim"] = int64(c.RopeDim)
	} else if c.PositionOffset != 0 {
		m["lm.position_offset"] = int64(c.PositionOffset)
	}
	if c.AttnScale != 0 && float64(c.AttnScale) != float64(float32(1/math.Sqrt(float64(c.HeadDim)))) {
		m["lm.attn_scale"] = float64(c.AttnScale)
	}
	return m
}
