package hf

import (
	"math"

	"github.com/lmrun/lmrun/model"
)

// rope reads the RoPE base and frequency scaling of a config into cfg, whose RopeDim and
// ContextLength are set: rope_theta and rope_scaling, or transformers v5's
// rope_parameters, which holds both. The scaling types are computed as transformers'
// modeling_rope_utils does:
//
//   - default (or no scaling): inv_freq_i = theta^(−2i/d);
//   - linear: every inv_freq_i divided by factor;
//   - llama3: pairs whose wavelength 2π/inv_freq_i is below
//     original_max_position_embeddings/high_freq_factor keep their frequency, those above
//     original/low_freq_factor are divided by factor, and those between by
//     1/((1−s)/factor + s) with s = (original/wavelength − low)/(high − low);
//   - longrope (or su, its former name; Phi-3): inv_freq_i divided by short_factor[i],
//     or by long_factor[i] once the context exceeds original_max_position_embeddings,
//     and cos and sin multiplied by attention_factor (default √(1 + ln f / ln original)
//     for f = max_position_embeddings / original > 1, else 1).
//
// Any other type is refused, naming it.
func (c *config) rope(cfg *model.Config) error {
	params, err := c.object("rope_parameters")
	if err != nil {
		return err
	}
	scaling := params
	if params == nil {
		if scaling, err = c.object("rope_scaling"); err != nil {
			return err
		}
	}
	theta, err := c.float("rope_theta", 10000)
	if err != nil {
		return err
	}
	if params != nil && params.has("rope_theta") {
		if theta, err = params.float("rope_theta", 0); err != nil {
			return err
		}
	}
	cfg.RopeTheta = theta // validated with the rest of the config
	if scaling == nil {
		return nil
	}
	typ, err := scaling.str("rope_type", "")
	if err != nil {
		return err
	}
	if typ == "" {
		if typ, err = scaling.str("type", "default"); err != nil {
			return err
		}
	}
	half := cfg.RopeDim / 2
	positive := func(key string) (float64, error) {
		if !scaling.has(key) {
			return 0, scaling.errorf("missing %s (rope type %s)", key, typ)
		}
		x, err := scaling.float(key, 0)
		if err == nil && !(x > 0) {
			err = scaling.errorf("%s = %v, want > 0", key, x)
		}
		return x, err
	}
	switch typ {
	case "default":
		return nil
	case "linear":
		factor, err := positive("factor")
		if err != nil {
			return err
		}
		cfg.RopeFreqFactors = make([]float32, half)
		for i := range cfg.RopeFreqFactors {
			cfg.RopeFreqFactors[i] = float32(factor)
		}
		return nil
	case "llama3":
		var vals [4]float64
		for i, k := range []string{"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"} {
			if vals[i], err = positive(k); err != nil {
				return err
			}
		}
		factor, low, high, orig := vals[0], vals[1], vals[2], vals[3]
		if high <= low {
			return scaling.errorf("high_freq_factor %v must exceed low_freq_factor %v", high, low)
		}
		cfg.RopeFreqFactors = model.Llama3RopeFactors(cfg.RopeDim, theta, factor, low, high, orig)
		return nil
	case "longrope", "su":
		return c.longRoPE(cfg, scaling, typ)
	}
	return scaling.errorf("unsupported rope type %q (supported: default, linear, llama3, longrope)", typ)
}

// longRoPE reads LongRoPE's factors (see rope).
func (c *config) longRoPE(cfg *model.Config, scaling *config, typ string) error {
	half := cfg.RopeDim / 2
	factors := func(key string) ([]float32, error) {
		v, err := scaling.floats(key)
		if err != nil {
			return nil, err
		}
		if len(v) != half {
			return nil, scaling.errorf("%s has %d entries, the rotated dimensions (%d) need %d (rope type %s)", key, len(v), cfg.RopeDim, half, typ)
		}
		out := make([]float32, half)
		for i, x := range v {
			if !(x > 0) {
				return nil, scaling.errorf("%s[%d] = %v, want > 0", key, i, x)
			}
			out[i] = float32(x)
		}
		return out, nil
	}
	short, err := factors("short_factor")
	if err != nil {
		return err
	}
	long, err := factors("long_factor")
	if err != nil {
		return err
	}
	orig, err := c.int("original_max_position_embeddings", 0)
	if err != nil {
		return err
	}
	if orig == 0 {
		if orig, err = scaling.int("original_max_position_embeddings", 0); err != nil {
			return err
		}
	}
	if orig <= 0 {
		return c.errorf("rope type %s needs original_max_position_embeddings (the context beyond which long_factor applies)", typ)
	}
	// transformers: with original_max_position_embeddings, the factor is the ratio of the
	// contexts; rope_scaling's own factor otherwise.
	factor := float64(cfg.ContextLength) / float64(orig)
	if !c.has("original_max_position_embeddings") && scaling.has("factor") {
		if factor, err = scaling.float("factor", 0); err != nil {
			return err
		}
	}
	attn := 1.0
	if factor > 1 {
		attn = math.Sqrt(1 + math.Log(factor)/math.Log(float64(orig)))
	}
	if scaling.has("attention_factor") {
		if attn, err = scaling.float("attention_factor", 0); err != nil {
			return err
		}
		if !(attn > 0) {
			return scaling.errorf("attention_factor = %v, want > 0", attn)
		}
	}
	cfg.RopeFreqFactors, cfg.RopeLongFactors, cfg.RopeOrigContext, cfg.RopeAttnFactor = short, long, orig, attn
	return nil
}
