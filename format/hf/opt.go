package hf

import (
	"fmt"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/model"
)

// importOPT converts OPTForCausalLM checkpoints. OPT reads position p from row p+2 of its
// position table; opt-350m is post-norm (do_layer_norm_before false: each LayerNorm follows
// its residual add, and there is no final LayerNorm) and projects its 512-wide embeddings
// to the 1024-wide model (project_in, project_out). All projections have biases; the FFN
// uses ReLU; the classifier is tied to the embeddings.
func importOPT(c *config, st *safetensors.File) (*format.Checkpoint, error) {
	if err := c.checkArchitectures("OPTForCausalLM", "OPTModel"); err != nil {
		return nil, err
	}
	var dim, ffn, layers, heads, ctx, vocab int
	if err := c.positives([]string{"hidden_size", "ffn_dim", "num_hidden_layers", "num_attention_heads", "max_position_embeddings", "vocab_size"}, &dim, &ffn, &layers, &heads, &ctx, &vocab); err != nil {
		return nil, err
	}
	if dim%heads != 0 {
		return nil, c.errorf("hidden_size %d is not a multiple of num_attention_heads %d", dim, heads)
	}
	embDim, err := c.int("word_embed_proj_dim", dim)
	if err != nil {
		return nil, err
	}
	if embDim <= 0 {
		return nil, c.errorf("word_embed_proj_dim = %d, want > 0", embDim)
	}
	pre, err := c.bool("do_layer_norm_before", true)
	if err != nil {
		return nil, err
	}
	removeFinal, err := c.bool("_remove_final_layer_norm", false)
	if err != nil {
		return nil, err
	}
	// Settings that change the maths in ways the engine does not implement.
	for _, f := range []struct {
		key  string
		want bool
	}{{"enable_bias", true}, {"layer_norm_elementwise_affine", true}} {
		v, err := c.bool(f.key, f.want)
		if err != nil {
			return nil, err
		}
		if v != f.want {
			return nil, c.errorf("unsupported: %s is %v (lmrun implements OPT with %s %v)", f.key, v, f.key, f.want)
		}
	}
	act, err := c.activation("relu")
	if err != nil {
		return nil, err
	}
	finalNorm := pre && !removeFinal

	// Check the numbers that size loops and tensors against what the file holds.
	embKey := "hidden_size"
	if c.has("word_embed_proj_dim") {
		embKey = "word_embed_proj_dim"
	}
	const posOffset = 2
	prefix := namePrefix(st, "model.") + "decoder."
	if err := c.checkLayers("num_hidden_layers", layers, st, prefix+"layers."); err != nil {
		return nil, err
	}
	if err := c.checkShape(st, prefix+"embed_tokens.weight", keyValues("vocab_size", vocab, embKey, embDim), vocab, embDim); err != nil {
		return nil, err
	}
	if err := c.checkShape(st, prefix+"embed_positions.weight", keyValues("max_position_embeddings", ctx, "hidden_size", dim)+
		fmt.Sprintf(" (and OPT's offset of %d rows)", posOffset), ctx+posOffset, dim); err != nil {
		return nil, err
	}
	cfg := model.Config{Arch: "opt", VocabSize: vocab, Dim: dim, NLayers: layers, NHeads: heads, FFNDim: ffn,
		ContextLength: ctx, Norm: model.LayerNorm, NormEps: 1e-5, // nn.LayerNorm's default; OPT's config does not carry it
		PostNorm: !pre, NoFinalNorm: !finalNorm, Position: model.Learned, PositionOffset: posOffset,
		Activation: model.Activation(act)}
	if embDim != dim {
		cfg.EmbedDim = embDim
	}
	if err := c.resolve(&cfg, map[string]string{model.KeyVocabSize: "vocab_size", model.KeyDim: "hidden_size",
		model.KeyNLayers: "num_hidden_layers", model.KeyNHeads: "num_attention_heads", model.KeyFFNDim: "ffn_dim",
		model.KeyContextLength: "max_position_embeddings", model.KeyEmbeddingDim: "word_embed_proj_dim"}); err != nil {
		return nil, err
	}

	b := newBuilder(st)
	wte := b.tensor(prefix+"embed_tokens.weight", vocab, embDim)
	b.add("token_embd.weight", []int{vocab, embDim}, wte, nil)
	b.add("position_embd.weight", []int{ctx + posOffset, dim}, b.tensor(prefix+"embed_positions.weight", ctx+posOffset, dim), nil)
	if embDim != dim {
		b.add("proj_in.weight", []int{dim, embDim}, b.tensor(prefix+"project_in.weight", dim, embDim), nil)
		b.add("proj_out.weight", []int{embDim, dim}, b.tensor(prefix+"project_out.weight", embDim, dim), nil)
	}
	for l := 0; l < layers; l++ {
		in := fmt.Sprintf("%slayers.%d.", prefix, l)
		out := fmt.Sprintf("blk.%d.", l)
		b.add(out+"attn_norm.weight", []int{dim}, b.tensor(in+"self_attn_layer_norm.weight", dim), nil)
		b.add(out+"attn_norm.bias", []int{dim}, b.tensor(in+"self_attn_layer_norm.bias", dim), nil)
		for _, p := range [][2]string{{"attn_q", "q_proj"}, {"attn_k", "k_proj"}, {"attn_v", "v_proj"}, {"attn_output", "out_proj"}} {
			b.add(out+p[0]+".weight", []int{dim, dim}, b.tensor(in+"self_attn."+p[1]+".weight", dim, dim), nil)
			b.add(out+p[0]+".bias", []int{dim}, b.tensor(in+"self_attn."+p[1]+".bias", dim), nil)
		}
		b.add(out+"ffn_norm.weight", []int{dim}, b.tensor(in+"final_layer_norm.weight", dim), nil)
		b.add(out+"ffn_norm.bias", []int{dim}, b.tensor(in+"final_layer_norm.bias", dim), nil)
		b.add(out+"ffn_up.weight", []int{ffn, dim}, b.tensor(in+"fc1.weight", ffn, dim), nil)
		b.add(out+"ffn_up.bias", []int{ffn}, b.tensor(in+"fc1.bias", ffn), nil)
		b.add(out+"ffn_down.weight", []int{dim, ffn}, b.tensor(in+"fc2.weight", dim, ffn), nil)
		b.add(out+"ffn_down.bias", []int{dim}, b.tensor(in+"fc2.bias", dim), nil)
	}
	if finalNorm {
		b.add("output_norm.weight", []int{dim}, b.tensor(prefix+"final_layer_norm.weight", dim), nil)
		b.add("output_norm.bias", []int{dim}, b.tensor(prefix+"final_layer_norm.bias", dim), nil)
	}
	if err := b.tiedHead("lm_head.weight", wte, vocab, embDim); err != nil {
		return nil, err
	}
	tensors, err := b.finish("opt")
	if err != nil {
		return nil, err
	}
	return &format.Checkpoint{Meta: format.Metadata(cfg.Metadata()), Tensors: tensors}, nil
}
