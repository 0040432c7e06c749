package hf

import (
	"fmt"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/model"
)

// importLlama converts LlamaForCausalLM checkpoints. Their projections are already
// [out, in]; the rows of q_proj and k_proj are permuted back from Hugging Face's
// rotate-half layout to the interleaved pairs lmrun rotates.
func importLlama(c *config, st *safetensors.File) (*format.Checkpoint, error) {
	if err := c.checkArchitectures("LlamaForCausalLM", "LlamaModel"); err != nil {
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
	ctx, err := c.int("max_position_embeddings", 2048)
	if err != nil {
		return nil, err
	}
	if ctx <= 0 {
		return nil, c.errorf("max_position_embeddings = %d, want > 0", ctx)
	}
	eps, err := c.float("rms_norm_eps", 1e-6)
	if err != nil {
		return nil, err
	}
	theta, err := c.float("rope_theta", 10000)
	if err != nil {
		return nil, err
	}
	if theta <= 0 {
		return nil, c.errorf("rope_theta = %v, want > 0", theta)
	}
	if c.has("rope_scaling") {
		return nil, c.errorf("unsupported: rope_scaling %v (only plain RoPE is implemented)", c.m["rope_scaling"])
	}
	if act, err := c.str("hidden_act", "silu"); err != nil {
		return nil, err
	} else if act != "silu" {
		return nil, c.errorf("unsupported hidden_act %q (want silu)", act)
	}
	if mlpBias, err := c.bool("mlp_bias", false); err != nil {
		return nil, err
	} else if mlpBias {
		return nil, c.errorf("unsupported: mlp_bias is true")
	}
	attnBias, err := c.bool("attention_bias", false)
	if err != nil {
		return nil, err
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
	cfg := model.Config{Arch: "llama", VocabSize: vocab, Dim: dim, NLayers: layers, NHeads: heads, NKVHeads: kvHeads,
		HeadDim: headDim, FFNDim: ffn, ContextLength: ctx, Norm: model.RMSNorm, NormEps: eps,
		Position: model.RoPE, RopeTheta: theta, Activation: model.SwiGLU}
	keys := map[string]string{model.KeyVocabSize: "vocab_size", model.KeyDim: "hidden_size",
		model.KeyNLayers: "num_hidden_layers", model.KeyNHeads: "num_attention_heads",
		model.KeyNKVHeads: "num_key_value_heads", model.KeyFFNDim: "intermediate_size",
		model.KeyContextLength: "max_position_embeddings", model.KeyNormEps: "rms_norm_eps",
		model.KeyRopeTheta: "rope_theta"}
	if c.has("head_dim") {
		keys[model.KeyHeadDim] = "head_dim"
	}
	if err := c.resolve(&cfg, keys); err != nil {
		return nil, err
	}

	qDim, kvDim := heads*headDim, kvHeads*headDim
	b := newBuilder(st)
	// bias adds a q/k/v/o bias: required with attention_bias, else taken if present.
	bias := func(name string, n int) *safetensors.Tensor {
		if attnBias {
			return b.tensor(name, n)
		}
		return b.optional(name, n)
	}
	b.add("token_embd.weight", []int{vocab, dim}, b.tensor(prefix+"embed_tokens.weight", vocab, dim), nil)
	for l := 0; l < layers; l++ {
		in := fmt.Sprintf("%slayers.%d.", prefix, l)
		out := fmt.Sprintf("blk.%d.", l)
		b.ignore(in + "self_attn.rotary_emb.inv_freq") // a buffer in older checkpoints

		b.add(out+"attn_norm.weight", []int{dim}, b.tensor(in+"input_layernorm.weight", dim), nil)
		b.add(out+"attn_q.weight", []int{qDim, dim}, b.tensor(in+"self_attn.q_proj.weight", qDim, dim), unrotateHalf(heads, headDim, dim))
		b.add(out+"attn_q.bias", []int{qDim}, bias(in+"self_attn.q_proj.bias", qDim), unrotateHalf(heads, headDim, 1))
		b.add(out+"attn_k.weight", []int{kvDim, dim}, b.tensor(in+"self_attn.k_proj.weight", kvDim, dim), unrotateHalf(kvHeads, headDim, dim))
		b.add(out+"attn_k.bias", []int{kvDim}, bias(in+"self_attn.k_proj.bias", kvDim), unrotateHalf(kvHeads, headDim, 1))
		b.add(out+"attn_v.weight", []int{kvDim, dim}, b.tensor(in+"self_attn.v_proj.weight", kvDim, dim), nil)
		b.add(out+"attn_v.bias", []int{kvDim}, bias(in+"self_attn.v_proj.bias", kvDim), nil)
		b.add(out+"attn_output.weight", []int{dim, qDim}, b.tensor(in+"self_attn.o_proj.weight", dim, qDim), nil)
		b.add(out+"attn_output.bias", []int{dim}, bias(in+"self_attn.o_proj.bias", dim), nil)
		b.add(out+"ffn_norm.weight", []int{dim}, b.tensor(in+"post_attention_layernorm.weight", dim), nil)
		b.add(out+"ffn_gate.weight", []int{ffn, dim}, b.tensor(in+"mlp.gate_proj.weight", ffn, dim), nil)
		b.add(out+"ffn_up.weight", []int{ffn, dim}, b.tensor(in+"mlp.up_proj.weight", ffn, dim), nil)
		b.add(out+"ffn_down.weight", []int{dim, ffn}, b.tensor(in+"mlp.down_proj.weight", dim, ffn), nil)
	}
	b.add("output_norm.weight", []int{dim}, b.tensor(prefix+"norm.weight", dim), nil)
	// tie_word_embeddings defaults to true when there is no lm_head.weight.
	tied, err := c.bool("tie_word_embeddings", st.Tensor("lm_head.weight") == nil)
	if err != nil {
		return nil, err
	}
	if tied {
		b.ignore("lm_head.weight") // a copy of the embedding when present
	} else {
		b.add("output.weight", []int{vocab, dim}, b.tensor("lm_head.weight", vocab, dim), nil)
	}
	tensors, err := b.finish("llama")
	if err != nil {
		return nil, err
	}
	return &format.Checkpoint{Meta: format.Metadata(cfg.Metadata()), Tensors: tensors}, nil
}
