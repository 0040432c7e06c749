// Package model is the description of a decoder-only transformer: one typed Config with
// its metadata keys, one parser, one validator and one set of defaults. Importers build
// a Config, the checkpoint writer stores its Metadata, the engine and the exporters read
// it back with Parse. It imports nothing from the project.
package model

import (
	"fmt"
	"math"
)

// Metadata keys of the model description (format/SPEC.md, "Model metadata").
const (
	KeyArch           = "general.architecture"
	KeyVocabSize      = "lm.vocab_size"
	KeyDim            = "lm.dim"
	KeyNLayers        = "lm.n_layers"
	KeyNHeads         = "lm.n_heads"
	KeyNKVHeads       = "lm.n_kv_heads"
	KeyHeadDim        = "lm.head_dim"
	KeyFFNDim         = "lm.ffn_dim"
	KeyContextLength  = "lm.context_length"
	KeyNorm           = "lm.norm"
	KeyNormEps        = "lm.norm_eps"
	KeyNormPosition   = "lm.norm_position"
	KeyPosition       = "lm.position"
	KeyPositionOffset = "lm.position_offset"
	KeyRopeTheta      = "lm.rope_theta"
	KeyRopeDim        = "lm.rope_dim"
	KeyActivation     = "lm.activation"
	KeyAttnWindows    = "lm.attn_windows"
	KeyAttnScale      = "lm.attn_scale"
	KeyFinalNorm      = "lm.final_norm"
	KeyEmbeddingDim   = "lm.embedding_dim"

	KeyRopeStyle       = "lm.rope_style"
	KeyRopeFreqFactors = "lm.rope_freq_factors"
	KeyRopeLongFactors = "lm.rope_long_factors"
	KeyRopeOrigContext = "lm.rope_original_context"
	KeyRopeAttnFactor  = "lm.rope_attn_factor"
)

// Defaults of the fields whose zero value stands for something else.
const (
	DefaultNormEps   = 1e-5
	DefaultRopeTheta = 10000
)

// Values is typed read access to checkpoint metadata; format.Metadata implements it.
// Each getter reports ok false for a missing key and an error for a value of another
// type.
type Values interface {
	Int(key string) (v int, ok bool, err error)
	Float(key string) (v float64, ok bool, err error)
	String(key string) (v string, ok bool, err error)
	Bool(key string) (v bool, ok bool, err error)
	Ints(key string) (v []int64, ok bool, err error)
	Floats(key string) (v []float32, ok bool, err error)
}

// NormKind selects the normalisation layer.
type NormKind string

// Activation selects the feed-forward block's non-linearity.
type Activation string

// PositionKind selects how positions enter the model.
type PositionKind string

// RopeStyle selects which two dimensions of a head RoPE rotates together.
type RopeStyle string

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

	// Interleaved rotates adjacent pairs (2i, 2i+1): Meta's layout, llama2.c's and GGUF
	// llama's.
	Interleaved RopeStyle = "interleaved"
	// NeoX rotates dimension i with i + rope_dim/2 (GPT-NeoX's "rotate half"): Hugging
	// Face's layout, GGUF qwen2's and phi3's.
	NeoX RopeStyle = "neox"
)

// Config describes a decoder-only transformer. GPT-2, Llama and their relatives are
// settings of these fields, not separate code paths.
//
// Every field's zero value means its default (SetDefaults, and SPEC.md's table of
// metadata keys): a Config built in code and one parsed from metadata that lacks the
// key mean the same model.
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
	NormEps  float64
	PostNorm bool // norm after each residual add (original Transformer) instead of before

	Position       PositionKind
	PositionOffset int     // row of the position table used for position 0
	RopeTheta      float64 // RoPE base
	RopeDim        int     // leading dims of each head that RoPE rotates
	RopeStyle      RopeStyle

	// RopeFreqFactors, when not nil, holds one divisor per rotated pair: pair i turns by
	// p·theta^(−2i/rope_dim) / RopeFreqFactors[i] at position p (Llama 3's and linear
	// rope_scaling, LongRoPE's short factors; GGUF's rope_freqs).
	RopeFreqFactors []float32
	// RopeLongFactors, when not nil, replace RopeFreqFactors in a session whose context
	// exceeds RopeOrigContext (LongRoPE's long factors, chosen as llama.cpp does).
	RopeLongFactors []float32
	RopeOrigContext int
	// RopeAttnFactor multiplies every RoPE cosine and sine, so q·k scales by its square
	// (LongRoPE's attention factor); 0 means 1.
	RopeAttnFactor float64

	Activation  Activation
	AttnWindows []int   // per layer: 0 dense causal, w > 0 local (query i sees keys i-w+1..i)
	AttnScale   float32 // multiplier of q·k; 1/√HeadDim by default
	NoFinalNorm bool    // skip output_norm before the classifier (OPT-350m)

	// EmbedDim is the width of the token embeddings and of the classifier's input; when
	// it differs from Dim, proj_in maps embeddings up to Dim and proj_out maps the final
	// hidden state back (OPT-350m's word_embed_proj_dim). 0 means Dim.
	EmbedDim int
}

// EmbeddingDim returns the width of the token embeddings (EmbedDim, or Dim).
func (c Config) EmbeddingDim() int {
	if c.EmbedDim > 0 {
		return c.EmbedDim
	}
	return c.Dim
}

// Projected reports whether the model maps embeddings through proj_in and proj_out.
func (c Config) Projected() bool { return c.EmbeddingDim() != c.Dim }

// KVDim returns the width of one position's keys (or values) in one layer.
func (c Config) KVDim() int { return c.NKVHeads * c.HeadDim }

// QDim returns the width of the concatenated query heads.
func (c Config) QDim() int { return c.NHeads * c.HeadDim }

// Limits that keep a hostile checkpoint from asking for absurd buffers.
const (
	maxDim     = 1 << 16
	maxLayers  = 1 << 10
	maxVocab   = 1 << 22
	maxContext = 1 << 21
)

// Parse reads a Config from checkpoint metadata, fills in the defaults and validates it.
// The required keys are vocab_size, dim, n_layers, n_heads, ffn_dim and context_length.
func Parse(m Values) (Config, error) {
	var c Config
	var errs []error
	geti := func(key string, dst *int, required bool) {
		v, ok, err := m.Int(key)
		switch {
		case err != nil:
			errs = append(errs, err)
		case !ok && required:
			errs = append(errs, fmt.Errorf("metadata %s is missing", key))
		case ok:
			*dst = v
		}
	}
	gets := func(key string) string {
		v, _, err := m.String(key)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	getf := func(key string) float64 {
		v, _, err := m.Float(key)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	c.Arch = gets(KeyArch)
	geti(KeyVocabSize, &c.VocabSize, true)
	geti(KeyDim, &c.Dim, true)
	geti(KeyNLayers, &c.NLayers, true)
	geti(KeyNHeads, &c.NHeads, true)
	geti(KeyNKVHeads, &c.NKVHeads, false)
	geti(KeyHeadDim, &c.HeadDim, false)
	geti(KeyFFNDim, &c.FFNDim, true)
	geti(KeyContextLength, &c.ContextLength, true)
	geti(KeyPositionOffset, &c.PositionOffset, false)
	geti(KeyRopeDim, &c.RopeDim, false)
	geti(KeyEmbeddingDim, &c.EmbedDim, false)
	c.Norm = NormKind(gets(KeyNorm))
	c.NormEps = getf(KeyNormEps)
	switch p := gets(KeyNormPosition); p {
	case "", "pre":
	case "post":
		c.PostNorm = true
	default:
		errs = append(errs, fmt.Errorf("metadata %s %q: want pre or post", KeyNormPosition, p))
	}
	c.Position = PositionKind(gets(KeyPosition))
	c.RopeTheta = getf(KeyRopeTheta)
	c.RopeStyle = RopeStyle(gets(KeyRopeStyle))
	geti(KeyRopeOrigContext, &c.RopeOrigContext, false)
	c.RopeAttnFactor = getf(KeyRopeAttnFactor)
	for _, f := range []struct {
		key string
		dst *[]float32
	}{{KeyRopeFreqFactors, &c.RopeFreqFactors}, {KeyRopeLongFactors, &c.RopeLongFactors}} {
		if v, ok, err := m.Floats(f.key); err != nil {
			errs = append(errs, err)
		} else if ok {
			*f.dst = append([]float32(nil), v...)
		}
	}
	c.Activation = Activation(gets(KeyActivation))
	c.AttnScale = float32(getf(KeyAttnScale))
	if v, ok, err := m.Bool(KeyFinalNorm); err != nil {
		errs = append(errs, err)
	} else if ok {
		c.NoFinalNorm = !v
	}
	if w, ok, err := m.Ints(KeyAttnWindows); err != nil {
		errs = append(errs, err)
	} else if ok {
		if len(w) > maxLayers {
			errs = append(errs, fmt.Errorf("metadata %s has %d entries (at most %d layers)", KeyAttnWindows, len(w), maxLayers))
		} else {
			c.AttnWindows = make([]int, len(w))
			for i, x := range w {
				if x < 0 || x > maxContext {
					errs = append(errs, fmt.Errorf("metadata %s[%d] = %d", KeyAttnWindows, i, x))
				}
				c.AttnWindows[i] = int(x)
			}
		}
	}
	if len(errs) > 0 {
		return c, errs[0]
	}
	return c, c.Resolve()
}

// SetDefaults replaces the zero value of every field that has a default: n_kv_heads =
// n_heads, head_dim = dim/n_heads, rope_dim = head_dim, rmsnorm with eps 1e-5, RoPE with
// base 10000 on interleaved pairs and an attention factor of 1, SwiGLU, dense attention
// in every layer, q·k scaled by 1/√head_dim.
func (c *Config) SetDefaults() {
	if c.NKVHeads == 0 {
		c.NKVHeads = c.NHeads
	}
	if c.HeadDim == 0 && c.NHeads > 0 {
		c.HeadDim = c.Dim / c.NHeads
	}
	if c.Norm == "" {
		c.Norm = RMSNorm
	}
	if c.NormEps == 0 {
		c.NormEps = DefaultNormEps
	}
	if c.Position == "" {
		c.Position = RoPE
	}
	if c.Position == RoPE {
		if c.RopeDim == 0 {
			c.RopeDim = c.HeadDim
		}
		if c.RopeTheta == 0 {
			c.RopeTheta = DefaultRopeTheta
		}
		if c.RopeStyle == "" {
			c.RopeStyle = Interleaved
		}
		if c.RopeAttnFactor == 0 {
			c.RopeAttnFactor = 1
		}
	}
	if c.Activation == "" {
		c.Activation = SwiGLU
	}
	if c.AttnWindows == nil && c.NLayers > 0 && c.NLayers <= maxLayers {
		c.AttnWindows = make([]int, c.NLayers)
	}
	if c.AttnScale == 0 && c.HeadDim > 0 {
		c.AttnScale = float32(1 / math.Sqrt(float64(c.HeadDim)))
	}
}

// ConfigError is the error Validate and Resolve return: the field the engine cannot run,
// by its metadata key, and its value. An importer can translate Key into the name the
// value had in its own file.
type ConfigError struct {
	Key   string // metadata key of the rejected field, e.g. KeyNLayers
	Value any    // the rejected value
	Msg   string // what is wrong, naming the field and its value
}

// Error returns "invalid model config: " and the message.
func (e *ConfigError) Error() string { return "invalid model config: " + e.Msg }

// Validate checks that the configuration is one the engine can run. Its errors are
// *ConfigError.
func (c Config) Validate() error {
	bad := func(key string, value any, format string, args ...any) error {
		return &ConfigError{Key: key, Value: value, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case c.VocabSize <= 0 || c.VocabSize > maxVocab:
		return bad(KeyVocabSize, c.VocabSize, "vocab_size %d", c.VocabSize)
	case c.Dim <= 0 || c.Dim > maxDim:
		return bad(KeyDim, c.Dim, "dim %d", c.Dim)
	case c.NLayers <= 0 || c.NLayers > maxLayers:
		return bad(KeyNLayers, c.NLayers, "n_layers %d", c.NLayers)
	case c.NHeads <= 0 || c.NHeads > c.Dim*4:
		return bad(KeyNHeads, c.NHeads, "n_heads %d", c.NHeads)
	case c.NKVHeads <= 0 || c.NHeads%c.NKVHeads != 0:
		return bad(KeyNKVHeads, c.NKVHeads, "n_kv_heads %d must divide n_heads %d", c.NKVHeads, c.NHeads)
	case c.HeadDim <= 0 || c.HeadDim > maxDim || c.NHeads*c.HeadDim > 4*maxDim:
		return bad(KeyHeadDim, c.HeadDim, "head_dim %d", c.HeadDim)
	case c.FFNDim <= 0 || c.FFNDim > 8*maxDim:
		return bad(KeyFFNDim, c.FFNDim, "ffn_dim %d", c.FFNDim)
	case c.ContextLength <= 0 || c.ContextLength > maxContext:
		return bad(KeyContextLength, c.ContextLength, "context_length %d", c.ContextLength)
	case c.EmbedDim < 0 || c.EmbedDim > maxDim:
		return bad(KeyEmbeddingDim, c.EmbedDim, "embedding_dim %d", c.EmbedDim)
	case c.PositionOffset < 0 || c.PositionOffset > maxContext:
		return bad(KeyPositionOffset, c.PositionOffset, "position_offset %d", c.PositionOffset)
	case !(c.NormEps >= 0) || c.NormEps > 1:
		return bad(KeyNormEps, c.NormEps, "norm_eps %g", c.NormEps)
	case len(c.AttnWindows) != c.NLayers:
		return bad(KeyAttnWindows, len(c.AttnWindows), "%d attention windows for %d layers", len(c.AttnWindows), c.NLayers)
	case math.IsNaN(float64(c.AttnScale)) || math.IsInf(float64(c.AttnScale), 0):
		return bad(KeyAttnScale, c.AttnScale, "attn_scale %g", c.AttnScale)
	}
	switch c.Norm {
	case RMSNorm, LayerNorm:
	default:
		return bad(KeyNorm, c.Norm, "norm %q (want rmsnorm or layernorm)", c.Norm)
	}
	switch c.Activation {
	case GELUTanh, GELU, ReLU, SwiGLU:
	default:
		return bad(KeyActivation, c.Activation, "activation %q (want gelu_tanh, gelu, relu or swiglu)", c.Activation)
	}
	switch c.Position {
	case Learned:
	case RoPE:
		if c.RopeDim <= 0 || c.RopeDim > c.HeadDim || c.RopeDim%2 != 0 {
			return bad(KeyRopeDim, c.RopeDim, "rope_dim %d for head_dim %d", c.RopeDim, c.HeadDim)
		}
		if !(c.RopeTheta > 1) || math.IsInf(c.RopeTheta, 0) {
			return bad(KeyRopeTheta, c.RopeTheta, "rope_theta %g", c.RopeTheta)
		}
		if err := c.validateRope(); err != nil {
			return err
		}
	default:
		return bad(KeyPosition, c.Position, "position %q (want learned or rope)", c.Position)
	}
	for i, w := range c.AttnWindows {
		if w < 0 || w > maxContext {
			return bad(KeyAttnWindows, w, "attention window %d of layer %d", w, i)
		}
	}
	return nil
}

// validateRope checks the RoPE style and frequency scaling of a RoPE model.
func (c Config) validateRope() error {
	bad := func(key string, value any, format string, args ...any) error {
		return &ConfigError{Key: key, Value: value, Msg: fmt.Sprintf(format, args...)}
	}
	switch c.RopeStyle {
	case "", Interleaved, NeoX:
	default:
		return bad(KeyRopeStyle, c.RopeStyle, "rope_style %q (want interleaved or neox)", c.RopeStyle)
	}
	for _, f := range []struct {
		key string
		v   []float32
	}{{KeyRopeFreqFactors, c.RopeFreqFactors}, {KeyRopeLongFactors, c.RopeLongFactors}} {
		if f.v == nil {
			continue
		}
		name := f.key[len("lm."):]
		if len(f.v) != c.RopeDim/2 {
			return bad(f.key, len(f.v), "%s has %d factors, rope_dim %d needs %d", name, len(f.v), c.RopeDim, c.RopeDim/2)
		}
		for i, x := range f.v {
			if !(x > 0) || math.IsInf(float64(x), 0) {
				return bad(f.key, x, "%s[%d] = %g (want a positive finite divisor)", name, i, x)
			}
		}
	}
	switch {
	case c.RopeOrigContext < 0 || c.RopeOrigContext > maxContext:
		return bad(KeyRopeOrigContext, c.RopeOrigContext, "rope_original_context %d", c.RopeOrigContext)
	case c.RopeLongFactors != nil && c.RopeOrigContext == 0:
		return bad(KeyRopeOrigContext, c.RopeOrigContext, "rope_long_factors without rope_original_context (the context beyond which they apply)")
	case c.RopeLongFactors == nil && c.RopeOrigContext != 0:
		return bad(KeyRopeOrigContext, c.RopeOrigContext, "rope_original_context %d without rope_long_factors", c.RopeOrigContext)
	case c.RopeAttnFactor != 0 && (!(c.RopeAttnFactor > 0) || c.RopeAttnFactor > 1e3):
		return bad(KeyRopeAttnFactor, c.RopeAttnFactor, "rope_attn_factor %g", c.RopeAttnFactor)
	}
	return nil
}

// RopeFactors returns the per-pair frequency divisors a session of ctx positions uses:
// RopeLongFactors when the model has them and ctx exceeds RopeOrigContext (llama.cpp's
// choice for LongRoPE), else RopeFreqFactors; nil means no scaling.
func (c Config) RopeFactors(ctx int) []float32 {
	if c.RopeLongFactors != nil && ctx > c.RopeOrigContext {
		return c.RopeLongFactors
	}
	return c.RopeFreqFactors
}

// Llama3RopeFactors returns the RopeFreqFactors of Llama 3's rope_scaling (transformers'
// rope type llama3) for rope dimension d and base theta: pair i, of inverse frequency
// theta^(−2i/d) and wavelength λ = 2π·theta^(2i/d), keeps its frequency when
// λ < orig/high, is divided by factor when λ > orig/low, and in between by
// 1/((1−s)/factor + s) with s = (orig/λ − low)/(high − low).
func Llama3RopeFactors(d int, theta, factor, low, high, orig float64) []float32 {
	f := make([]float32, d/2)
	for i := range f {
		invFreq := 1 / math.Pow(theta, float64(2*i)/float64(d))
		wavelen := 2 * math.Pi / invFreq
		x := 1.0
		switch {
		case wavelen < orig/high:
		case wavelen > orig/low:
			x = factor
		default:
			s := (orig/wavelen - low) / (high - low)
			x = 1 / ((1-s)/factor + s)
		}
		f[i] = float32(x)
	}
	return f
}

// Metadata returns the checkpoint metadata that describes c (the inverse of Parse), with
// the defaults written out (RoPE's scaling keys only when they scale: a model without
// them has the metadata it had before they existed). Values have the types format.Metadata stores.
func (c Config) Metadata() map[string]any {
	c.SetDefaults()
	w := make([]int64, len(c.AttnWindows))
	for i, x := range c.AttnWindows {
		w[i] = int64(x)
	}
	pos := "pre"
	if c.PostNorm {
		pos = "post"
	}
	m := map[string]any{
		KeyVocabSize:     int64(c.VocabSize),
		KeyDim:           int64(c.Dim),
		KeyNLayers:       int64(c.NLayers),
		KeyNHeads:        int64(c.NHeads),
		KeyNKVHeads:      int64(c.NKVHeads),
		KeyHeadDim:       int64(c.HeadDim),
		KeyFFNDim:        int64(c.FFNDim),
		KeyContextLength: int64(c.ContextLength),
		KeyNorm:          string(c.Norm),
		KeyNormEps:       c.NormEps,
		KeyNormPosition:  pos,
		KeyPosition:      string(c.Position),
		KeyActivation:    string(c.Activation),
		KeyAttnWindows:   w,
		KeyFinalNorm:     !c.NoFinalNorm,
	}
	if c.Arch != "" {
		m[KeyArch] = c.Arch
	}
	if c.Projected() {
		m[KeyEmbeddingDim] = int64(c.EmbedDim)
	}
	if c.Position == RoPE {
		m[KeyRopeTheta] = c.RopeTheta
		m[KeyRopeDim] = int64(c.RopeDim)
		if c.RopeStyle == NeoX {
			m[KeyRopeStyle] = string(c.RopeStyle)
		}
		if c.RopeFreqFactors != nil {
			m[KeyRopeFreqFactors] = append([]float32(nil), c.RopeFreqFactors...)
		}
		if c.RopeLongFactors != nil {
			m[KeyRopeLongFactors] = append([]float32(nil), c.RopeLongFactors...)
			m[KeyRopeOrigContext] = int64(c.RopeOrigContext)
		}
		if c.RopeAttnFactor != 1 {
			m[KeyRopeAttnFactor] = c.RopeAttnFactor
		}
	} else {
		m[KeyPositionOffset] = int64(c.PositionOffset)
	}
	if c.HeadDim > 0 && float64(c.AttnScale) != float64(float32(1/math.Sqrt(float64(c.HeadDim)))) {
		m[KeyAttnScale] = float64(c.AttnScale)
	}
	return m
}

// Resolve fills in the defaults and validates c: what an importer does with the Config it
// built, before it reads any tensor, so that no loop or allocation is driven by a number
// the engine would refuse.
func (c *Config) Resolve() error {
	if c.HeadDim == 0 && c.NHeads > 0 && c.Dim%c.NHeads != 0 {
		return &ConfigError{Key: KeyNHeads, Value: c.NHeads,
			Msg: fmt.Sprintf("dim %d is not a multiple of n_heads %d (and head_dim is not given)", c.Dim, c.NHeads)}
	}
	c.SetDefaults()
	return c.Validate()
}
