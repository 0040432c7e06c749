package hf

import (
	"fmt"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/model"
)

// family is one Llama-like model_type: RMSNorm, RoPE and a SwiGLU feed-forward, with
// what its config may ask for and how its checkpoints lay out the weights.
type family struct {
	name  string
	archs []string
	// style is the RoPE layout the checkpoint is stored in: Interleaved permutes the q
	// and k rows from Hugging Face's rotate-half order to adjacent pairs, as llama.cpp's
	// GGUF llama files have them; NeoX keeps them, as GGUF qwen2 and phi3 files do.
	style model.RopeStyle
	// qkvBias: q_proj, k_proj and v_proj always have biases, o_proj none (Qwen2).
	qkvBias bool
	// attentionBias: the config's attention_bias adds biases to q, k, v and o, and
	// mlp_bias (refused) to the MLP (Llama).
	attentionBias bool
	// fused: one qkv_proj (rows q, k, v) and one gate_up_proj (rows gate, up) (Phi-3).
	fused bool
	// partialRotary: partial_rotary_factor rotates the leading part of each head (Phi-3);
	// the other families' modeling code rotates whole heads and refuses it here.
	partialRotary bool
	// windows returns the per-layer attention windows the config asks for.
	windows func(c *config, layers int) ([]int, error)
	// Defaults of transformers' config class.
	defaultCtx int
	defaultEps float64
}

var (
	familyLlama = family{name: "llama", archs: []string{"LlamaForCausalLM", "LlamaModel"}, style: model.Interleaved,
		attentionBias: true, windows: noWindows, defaultCtx: 2048, defaultEps: 1e-6}
	familyMistral = family{name: "mistral", archs: []string{"MistralForCausalLM", "MistralModel"}, style: model.Interleaved,
		windows: mistralWindows, defaultCtx: 4096 * 32, defaultEps: 1e-6}
	familyQwen2 = family{name: "qwen2", archs: []string{"Qwen2ForCausalLM", "Qwen2Model"}, style: model.NeoX,
		qkvBias: true, windows: qwen2Windows, defaultCtx: 32768, defaultEps: 1e-6}
	familyPhi3 = family{name: "phi3", archs: []string{"Phi3ForCausalLM", "Phi3Model"}, style: model.NeoX,
		fused: true, partialRotary: true, windows: phi3Windows, defaultCtx: 4096, defaultEps: 1e-5}
)

func importLlama(c *config, st *safetensors.File) (*format.Checkpoint, error) {
	return importFamily(c, st, familyLlama)
}

func importMistral(c *config, st *safetensors.File) (*format.Checkpoint, error) {
	return importFamily(c, st, familyMistral)
}

func importQwen2(c *config, st *safetensors.File) (*format.Checkpoint, error) {
	return importFamily(c, st, familyQwen2)
}

func importPhi3(c *config, st *safetensors.File) (*format.Checkpoint, error) {
	return importFamily(c, st, familyPhi3)
}

// noWindows: the model attends densely in every layer (Llama has no sliding window).
func noWindows(*config, int) ([]int, error) { return nil, nil }

// everyLayer returns sliding_window for every layer: def when the key is absent, none
// when it is null.
func everyLayer(c *config, layers, def int) ([]int, error) {
	if c.null("sliding_window") {
		return nil, nil
	}
	w, err := c.int("sliding_window", def)
	if err != nil || w == 0 {
		return nil, err
	}
	if w < 0 {
		return nil, c.errorf("sliding_window = %d, want > 0", w)
	}
	ws := make([]int, layers)
	for i := range ws {
		ws[i] = w
	}
	return ws, nil
}

// mistralWindows: sliding_window (transformers' default 4096; null: none) in every layer,
// or in the layers layer_types marks sliding_attention.
func mistralWindows(c *config, layers int) ([]int, error) {
	ws, err := everyLayer(c, layers, 4096)
	if err != nil || ws == nil {
		return ws, err
	}
	return layerTypes(c, ws)
}

// phi3Windows: sliding_window (absent or null: none) in every layer.
func phi3Windows(c *config, layers int) ([]int, error) {
	ws, err := everyLayer(c, layers, 0)
	if err != nil || ws == nil {
		return ws, err
	}
	return layerTypes(c, ws)
}

// qwen2Windows: without use_sliding_window, none; with it, sliding_window (default 4096)
// in the layers layer_types marks sliding_attention, or else in layers from
// max_window_layers (default 28) on, as transformers' Qwen2Config derives them.
func qwen2Windows(c *config, layers int) ([]int, error) {
	use, err := c.bool("use_sliding_window", false)
	if err != nil || !use {
		return nil, err
	}
	ws, err := everyLayer(c, layers, 4096)
	if err != nil || ws == nil {
		return ws, err
	}
	if c.has("layer_types") {
		return layerTypes(c, ws)
	}
	from, err := c.int("max_window_layers", 28)
	if err != nil {
		return nil, err
	}
	for i := range ws[:min(max(from, 0), layers)] {
		ws[i] = 0
	}
	return ws, nil
}

// layerTypes keeps the window of the layers layer_types (if given) marks
// "sliding_attention" and clears it in those marked "full_attention".
func layerTypes(c *config, ws []int) ([]int, error) {
	types, err := c.strings("layer_types")
	if err != nil || types == nil {
		return ws, err
	}
	if len(types) != len(ws) {
		return nil, c.errorf("layer_types has %d entries for %d layers", len(types), len(ws))
	}
	for i, t := range types {
		switch t {
		case "sliding_attention":
		case "full_attention":
			ws[i] = 0
		default:
			return nil, c.errorf("unsupported layer_types[%d] %q (want full_attention or sliding_attention)", i, t)
		}
	}
	return ws, nil
}

// importFamily converts a checkpoint of a Llama-like family. Projections are already
// [out, in]; q and k rows are permuted to interleaved pairs for the interleaved families,
// fused projections are split by rows. Everything the config asks for that the engine
// does not do is refused, naming the key.
func importFamily(c *config, st *safetensors.File, fam family) (*format.Checkpoint, error) {
	if err := c.checkArchitectures(fam.archs...); err != nil {
		return nil, err
	}
	var dim, ffn, layers, heads, vocab int
	if err := c.positives([]string{"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"}, &dim, &ffn, &layers, &heads, &vocab); err != nil {
		return nil, err
	}
	kvHeads := heads
	if c.has("num_key_value_heads") {
		n, err := c.positive("num_key_value_heads")
		if err != nil {
			return nil, err
		}
		kvHeads = n
	}
	if kvHeads > heads || heads%kvHeads != 0 {
		return nil, c.errorf("num_attention_heads %d is not a multiple of num_key_value_heads %d", heads, kvHeads)
	}
	headDim := 0
	if c.has("head_dim") {
		n, err := c.positive("head_dim")
		if err != nil {
			return nil, err
		}
		headDim = n
	} else {
		if dim%heads != 0 {
			return nil, c.errorf("hidden_size %d is not a multiple of num_attention_heads %d", dim, heads)
		}
		headDim = dim / heads
	}
	if headDim%2 != 0 {
		return nil, c.errorf("head dimension %d is odd (RoPE rotates pairs)", headDim)
	}
	ropeDim := headDim
	if c.has("partial_rotary_factor") {
		f, err := c.float("partial_rotary_factor", 1)
		if err != nil {
			return nil, err
		}
		if !fam.partialRotary && f != 1 {
			return nil, c.errorf("unsupported: partial_rotary_factor %v (%s rotates whole heads)", f, fam.name)
		}
		ropeDim = int(float64(headDim) * f)
		if !(f > 0 && f <= 1) || ropeDim <= 0 || ropeDim%2 != 0 {
			return nil, c.errorf("partial_rotary_factor %v rotates %d of the head's %d dimensions (want an even number > 0)", f, ropeDim, headDim)
		}
	}
	ctx, err := c.int("max_position_embeddings", fam.defaultCtx)
	if err != nil {
		return nil, err
	}
	if ctx <= 0 {
		return nil, c.errorf("max_position_embeddings = %d, want > 0", ctx)
	}
	eps, err := c.float("rms_norm_eps", fam.defaultEps)
	if err != nil {
		return nil, err
	}
	if act, err := c.str("hidden_act", "silu"); err != nil {
		return nil, err
	} else if act != "silu" {
		return nil, c.errorf("unsupported hidden_act %q (want silu)", act)
	}
	attnBias := fam.qkvBias
	if !fam.attentionBias && !fam.qkvBias {
		if b, err := c.bool("attention_bias", false); err != nil {
			return nil, err
		} else if b {
			return nil, c.errorf("unsupported: attention_bias is true (%s has no attention biases)", fam.name)
		}
	}
	if fam.attentionBias {
		if mlpBias, err := c.bool("mlp_bias", false); err != nil {
			return nil, err
		} else if mlpBias {
			return nil, c.errorf("unsupported: mlp_bias is true")
		}
		if attnBias, err = c.bool("attention_bias", false); err != nil {
			return nil, err
		}
	}

	// Check the numbers that size loops and tensors against what the file holds. RoPE
	// needs no table: max_position_embeddings sizes nothing here.
	prefix := namePrefix(st, "model.")
	if err := c.checkLayers("num_hidden_layers", layers, st, prefix+"layers."); err != nil {
		return nil, err
	}
	if err := c.checkShape(st, prefix+"embed_tokens.weight", keyValues("vocab_size", vocab, "hidden_size", dim), vocab, dim); err != nil {
		return nil, err
	}
	windows, err := fam.windows(c, layers)
	if err != nil {
		return nil, err
	}
	cfg := model.Config{Arch: fam.name, VocabSize: vocab, Dim: dim, NLayers: layers, NHeads: heads, NKVHeads: kvHeads,
		HeadDim: headDim, FFNDim: ffn, ContextLength: ctx, Norm: model.RMSNorm, NormEps: eps,
		Position: model.RoPE, RopeDim: ropeDim, RopeStyle: fam.style, Activation: model.SwiGLU, AttnWindows: windows}
	if err := c.rope(&cfg); err != nil {
		return nil, err
	}
	keys := map[string]string{model.KeyVocabSize: "vocab_size", model.KeyDim: "hidden_size",
		model.KeyNLayers: "num_hidden_layers", model.KeyNHeads: "num_attention_heads",
		model.KeyNKVHeads: "num_key_value_heads", model.KeyFFNDim: "intermediate_size",
		model.KeyContextLength: "max_position_embeddings", model.KeyNormEps: "rms_norm_eps",
		model.KeyRopeTheta: "rope_theta", model.KeyAttnWindows: "sliding_window",
		model.KeyRopeOrigContext: "original_max_position_embeddings", model.KeyRopeFreqFactors: "rope_scaling",
		model.KeyRopeLongFactors: "rope_scaling", model.KeyRopeAttnFactor: "rope_scaling.attention_factor"}
	if c.has("head_dim") {
		keys[model.KeyHeadDim] = "head_dim"
	}
	if err := c.resolve(&cfg, keys); err != nil {
		return nil, err
	}

	qDim, kvDim := heads*headDim, kvHeads*headDim
	b := newBuilder(st)
	// bias adds a q/k/v/o bias the config says the model has.
	bias := func(name string, n int, has bool) *safetensors.Tensor {
		if has {
			return b.tensor(name, n)
		}
		return nil // a bias the model does not have is an unexpected tensor
	}
	// qk permutes q and k rows of an interleaved family (weights: cols = dim; biases: 1).
	qk := func(n, cols int) func([]float32) []float32 {
		if fam.style == model.Interleaved {
			return unrotateHalf(n, headDim, cols)
		}
		return nil
	}
	emb := b.tensor(prefix+"embed_tokens.weight", vocab, dim)
	b.add("token_embd.weight", []int{vocab, dim}, emb, nil)
	for l := 0; l < layers; l++ {
		in := fmt.Sprintf("%slayers.%d.", prefix, l)
		out := fmt.Sprintf("blk.%d.", l)
		b.ignore(in + "self_attn.rotary_emb.inv_freq") // a buffer in older checkpoints

		b.add(out+"attn_norm.weight", []int{dim}, b.tensor(in+"input_layernorm.weight", dim), nil)
		if fam.fused {
			qkv := b.tensor(in+"self_attn.qkv_proj.weight", qDim+2*kvDim, dim)
			b.add(out+"attn_q.weight", []int{qDim, dim}, qkv, rows(0, qDim, dim))
			b.add(out+"attn_k.weight", []int{kvDim, dim}, qkv, rows(qDim, qDim+kvDim, dim))
			b.add(out+"attn_v.weight", []int{kvDim, dim}, qkv, rows(qDim+kvDim, qDim+2*kvDim, dim))
		} else {
			b.add(out+"attn_q.weight", []int{qDim, dim}, b.tensor(in+"self_attn.q_proj.weight", qDim, dim), qk(heads, dim))
			b.add(out+"attn_k.weight", []int{kvDim, dim}, b.tensor(in+"self_attn.k_proj.weight", kvDim, dim), qk(kvHeads, dim))
			b.add(out+"attn_v.weight", []int{kvDim, dim}, b.tensor(in+"self_attn.v_proj.weight", kvDim, dim), nil)
			b.add(out+"attn_q.bias", []int{qDim}, bias(in+"self_attn.q_proj.bias", qDim, attnBias), qk(heads, 1))
			b.add(out+"attn_k.bias", []int{kvDim}, bias(in+"self_attn.k_proj.bias", kvDim, attnBias), qk(kvHeads, 1))
			b.add(out+"attn_v.bias", []int{kvDim}, bias(in+"self_attn.v_proj.bias", kvDim, attnBias), nil)
		}
		b.add(out+"attn_output.weight", []int{dim, qDim}, b.tensor(in+"self_attn.o_proj.weight", dim, qDim), nil)
		b.add(out+"attn_output.bias", []int{dim}, bias(in+"self_attn.o_proj.bias", dim, attnBias && !fam.qkvBias), nil)
		b.add(out+"ffn_norm.weight", []int{dim}, b.tensor(in+"post_attention_layernorm.weight", dim), nil)
		if fam.fused {
			gu := b.tensor(in+"mlp.gate_up_proj.weight", 2*ffn, dim)
			b.add(out+"ffn_gate.weight", []int{ffn, dim}, gu, rows(0, ffn, dim))
			b.add(out+"ffn_up.weight", []int{ffn, dim}, gu, rows(ffn, 2*ffn, dim))
		} else {
			b.add(out+"ffn_gate.weight", []int{ffn, dim}, b.tensor(in+"mlp.gate_proj.weight", ffn, dim), nil)
			b.add(out+"ffn_up.weight", []int{ffn, dim}, b.tensor(in+"mlp.up_proj.weight", ffn, dim), nil)
		}
		b.add(out+"ffn_down.weight", []int{dim, ffn}, b.tensor(in+"mlp.down_proj.weight", dim, ffn), nil)
	}
	b.add("output_norm.weight", []int{dim}, b.tensor(prefix+"norm.weight", dim), nil)
	// tie_word_embeddings defaults to true when there is no lm_head.weight.
	tied, err := c.bool("tie_word_embeddings", st.Tensor("lm_head.weight") == nil)
	if err != nil {
		return nil, err
	}
	if tied {
		// transformers ties lm_head to the embedding: a stored one must be a copy of it.
		if err := b.tiedCopy("lm_head.weight", emb, vocab, dim); err != nil {
			return nil, c.errorf("%v", err)
		}
	} else {
		b.add("output.weight", []int{vocab, dim}, b.tensor("lm_head.weight", vocab, dim), nil)
	}
	tensors, err := b.finish(fam.name)
	if err != nil {
		return nil, err
	}
	return &format.Checkpoint{Meta: format.Metadata(cfg.Metadata()), Tensors: tensors}, nil
}

// rows returns a function taking rows [r0, r1) of a row-major matrix of cols columns.
func rows(r0, r1, cols int) func([]float32) []float32 { return slice(r0*cols, r1*cols) }
