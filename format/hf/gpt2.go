package hf

import (
	"fmt"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/model"
)

// gpt2Activations maps GPT-2's activation_function to lmrun's lm.activation.
var gpt2Activations = map[string]string{
	"gelu_new":          "gelu_tanh",
	"gelu_pytorch_tanh": "gelu_tanh",
	"gelu_fast":         "gelu_tanh", // the same tanh approximation, computed differently
	"gelu":              "gelu",
	"relu":              "relu",
}

// importGPT2 converts GPT2LMHeadModel / GPT2Model checkpoints. Their Conv1D weights are
// stored [in, out] and are transposed; c_attn holds q, k and v side by side and is split.
func importGPT2(c *config, st *safetensors.File) (*format.Checkpoint, error) {
	if err := c.checkArchitectures("GPT2LMHeadModel", "GPT2Model"); err != nil {
		return nil, err
	}
	var dim, layers, heads, ctx, vocab int
	if err := c.positives([]string{"n_embd", "n_layer", "n_head", "n_positions", "vocab_size"}, &dim, &layers, &heads, &ctx, &vocab); err != nil {
		return nil, err
	}
	if dim%heads != 0 {
		return nil, c.errorf("n_embd %d is not a multiple of n_head %d", dim, heads)
	}
	ffn, err := c.int("n_inner", 4*dim)
	if err != nil {
		return nil, err
	}
	if ffn <= 0 {
		return nil, c.errorf("n_inner = %d, want > 0", ffn)
	}
	eps, err := c.float("layer_norm_epsilon", 1e-5)
	if err != nil {
		return nil, err
	}
	act, err := c.activation("gelu_new")
	if err != nil {
		return nil, err
	}
	scaleWeights, err := c.bool("scale_attn_weights", true)
	if err != nil {
		return nil, err
	}
	// reorder_and_upcast_attn only changes the precision of the score computation.
	for _, flag := range []string{"scale_attn_by_inverse_layer_idx", "add_cross_attention"} {
		on, err := c.bool(flag, false)
		if err != nil {
			return nil, err
		}
		if on {
			return nil, c.errorf("unsupported: %s is true", flag)
		}
	}

	// Check the numbers that size loops and tensors against what the file holds.
	prefix := namePrefix(st, "transformer.")
	if err := c.checkLayers("n_layer", layers, st, prefix+"h."); err != nil {
		return nil, err
	}
	if err := c.checkShape(st, prefix+"wte.weight", keyValues("vocab_size", vocab, "n_embd", dim), vocab, dim); err != nil {
		return nil, err
	}
	if err := c.checkShape(st, prefix+"wpe.weight", keyValues("n_positions", ctx, "n_embd", dim), ctx, dim); err != nil {
		return nil, err
	}
	cfg := model.Config{Arch: "gpt2", VocabSize: vocab, Dim: dim, NLayers: layers, NHeads: heads, FFNDim: ffn,
		ContextLength: ctx, Norm: model.LayerNorm, NormEps: eps, Position: model.Learned,
		Activation: model.Activation(act)}
	if !scaleWeights {
		cfg.AttnScale = 1
	}
	if err := c.resolve(&cfg, map[string]string{model.KeyVocabSize: "vocab_size", model.KeyDim: "n_embd",
		model.KeyNLayers: "n_layer", model.KeyNHeads: "n_head", model.KeyFFNDim: "n_inner",
		model.KeyContextLength: "n_positions", model.KeyNormEps: "layer_norm_epsilon"}); err != nil {
		return nil, err
	}

	b := newBuilder(st)
	wte := b.tensor(prefix+"wte.weight", vocab, dim)
	b.add("token_embd.weight", []int{vocab, dim}, wte, nil)
	b.add("position_embd.weight", []int{ctx, dim}, b.tensor(prefix+"wpe.weight", ctx, dim), nil)
	for l := 0; l < layers; l++ {
		in := fmt.Sprintf("%sh.%d.", prefix, l)
		out := fmt.Sprintf("blk.%d.", l)
		b.ignore(in + "attn.bias") // causal-mask buffers of older checkpoints
		b.ignore(in + "attn.masked_bias")

		b.add(out+"attn_norm.weight", []int{dim}, b.tensor(in+"ln_1.weight", dim), nil)
		b.add(out+"attn_norm.bias", []int{dim}, b.tensor(in+"ln_1.bias", dim), nil)
		qkv := b.tensor(in+"attn.c_attn.weight", dim, 3*dim)
		qkvBias := b.tensor(in+"attn.c_attn.bias", 3*dim)
		for i, name := range []string{"attn_q", "attn_k", "attn_v"} {
			b.add(out+name+".weight", []int{dim, dim}, qkv, transposeCols(dim, 3*dim, i*dim, dim))
			b.add(out+name+".bias", []int{dim}, qkvBias, slice(i*dim, (i+1)*dim))
		}
		b.add(out+"attn_output.weight", []int{dim, dim}, b.tensor(in+"attn.c_proj.weight", dim, dim), transposeCols(dim, dim, 0, dim))
		b.add(out+"attn_output.bias", []int{dim}, b.tensor(in+"attn.c_proj.bias", dim), nil)
		b.add(out+"ffn_norm.weight", []int{dim}, b.tensor(in+"ln_2.weight", dim), nil)
		b.add(out+"ffn_norm.bias", []int{dim}, b.tensor(in+"ln_2.bias", dim), nil)
		b.add(out+"ffn_up.weight", []int{ffn, dim}, b.tensor(in+"mlp.c_fc.weight", dim, ffn), transposeCols(dim, ffn, 0, ffn))
		b.add(out+"ffn_up.bias", []int{ffn}, b.tensor(in+"mlp.c_fc.bias", ffn), nil)
		b.add(out+"ffn_down.weight", []int{dim, ffn}, b.tensor(in+"mlp.c_proj.weight", ffn, dim), transposeCols(ffn, dim, 0, dim))
		b.add(out+"ffn_down.bias", []int{dim}, b.tensor(in+"mlp.c_proj.bias", dim), nil)
	}
	b.add("output_norm.weight", []int{dim}, b.tensor(prefix+"ln_f.weight", dim), nil)
	b.add("output_norm.bias", []int{dim}, b.tensor(prefix+"ln_f.bias", dim), nil)
	// The classifier is tied to wte unless lm_head.weight holds something else.
	if err := b.tiedHead("lm_head.weight", wte, vocab, dim); err != nil {
		return nil, err
	}
	tensors, err := b.finish("gpt2")
	if err != nil {
		return nil, err
	}
	return &format.Checkpoint{Meta: format.Metadata(cfg.Metadata()), Tensors: tensors}, nil
}
