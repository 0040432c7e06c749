package hf

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/model"
)

// importGPTNeo converts GPTNeoForCausalLM checkpoints: GPT-3's alternation of dense
// ("global") and banded ("local") attention layers. Unlike GPT-2 its projections are
// nn.Linear ([out, in], no transpose), q/k/v have no bias, and attention scores are not
// scaled by 1/√head_dim.
func importGPTNeo(c *config, st *safetensors.File) (*format.Checkpoint, error) {
	if err := c.checkArchitectures("GPTNeoForCausalLM", "GPTNeoModel"); err != nil {
		return nil, err
	}
	var dim, layers, heads, ctx, vocab int
	if err := c.positives([]string{"hidden_size", "num_layers", "num_heads", "max_position_embeddings", "vocab_size"}, &dim, &layers, &heads, &ctx, &vocab); err != nil {
		return nil, err
	}
	if dim%heads != 0 {
		return nil, c.errorf("hidden_size %d is not a multiple of num_heads %d", dim, heads)
	}
	ffn, err := c.int("intermediate_size", 4*dim)
	if err != nil {
		return nil, err
	}
	if ffn <= 0 {
		return nil, c.errorf("intermediate_size = %d, want > 0", ffn)
	}
	eps, err := c.float("layer_norm_epsilon", 1e-5)
	if err != nil {
		return nil, err
	}
	act, err := c.activation("gelu_new")
	if err != nil {
		return nil, err
	}
	window, err := c.positive("window_size")
	if err != nil {
		return nil, err
	}
	// Check the numbers that size loops and tensors against what the file holds.
	prefix := namePrefix(st, "transformer.")
	if err := c.checkLayers("num_layers", layers, st, prefix+"h."); err != nil {
		return nil, err
	}
	if err := c.checkShape(st, prefix+"wte.weight", keyValues("vocab_size", vocab, "hidden_size", dim), vocab, dim); err != nil {
		return nil, err
	}
	if err := c.checkShape(st, prefix+"wpe.weight", keyValues("max_position_embeddings", ctx, "hidden_size", dim), ctx, dim); err != nil {
		return nil, err
	}
	// Every layer's attention kind: bounded by num_layers, itself bounded by the file.
	kinds, err := neoAttentionLayers(c, layers)
	if err != nil {
		return nil, err
	}
	windows := make([]int, layers)
	for i, k := range kinds {
		if k == "local" {
			windows[i] = window
		}
	}
	cfg := model.Config{Arch: "gpt_neo", VocabSize: vocab, Dim: dim, NLayers: layers, NHeads: heads, FFNDim: ffn,
		ContextLength: ctx, Norm: model.LayerNorm, NormEps: eps, Position: model.Learned,
		Activation: model.Activation(act), AttnWindows: windows,
		AttnScale: 1} // GPT-Neo does not scale q·k
	if err := c.resolve(&cfg, map[string]string{model.KeyVocabSize: "vocab_size", model.KeyDim: "hidden_size",
		model.KeyNLayers: "num_layers", model.KeyNHeads: "num_heads", model.KeyFFNDim: "intermediate_size",
		model.KeyContextLength: "max_position_embeddings", model.KeyNormEps: "layer_norm_epsilon",
		model.KeyAttnWindows: "window_size"}); err != nil {
		return nil, err
	}

	b := newBuilder(st)
	wte := b.tensor(prefix+"wte.weight", vocab, dim)
	b.add("token_embd.weight", []int{vocab, dim}, wte, nil)
	b.add("position_embd.weight", []int{ctx, dim}, b.tensor(prefix+"wpe.weight", ctx, dim), nil)
	for l := 0; l < layers; l++ {
		in := fmt.Sprintf("%sh.%d.", prefix, l)
		out := fmt.Sprintf("blk.%d.", l)
		b.ignore(in + "attn.attention.bias") // causal/local mask buffers of older checkpoints
		b.ignore(in + "attn.attention.masked_bias")
		b.add(out+"attn_norm.weight", []int{dim}, b.tensor(in+"ln_1.weight", dim), nil)
		b.add(out+"attn_norm.bias", []int{dim}, b.tensor(in+"ln_1.bias", dim), nil)
		for _, p := range [][2]string{{"attn_q", "q_proj"}, {"attn_k", "k_proj"}, {"attn_v", "v_proj"}} {
			b.add(out+p[0]+".weight", []int{dim, dim}, b.tensor(in+"attn.attention."+p[1]+".weight", dim, dim), nil)
		}
		b.add(out+"attn_output.weight", []int{dim, dim}, b.tensor(in+"attn.attention.out_proj.weight", dim, dim), nil)
		b.add(out+"attn_output.bias", []int{dim}, b.tensor(in+"attn.attention.out_proj.bias", dim), nil)
		b.add(out+"ffn_norm.weight", []int{dim}, b.tensor(in+"ln_2.weight", dim), nil)
		b.add(out+"ffn_norm.bias", []int{dim}, b.tensor(in+"ln_2.bias", dim), nil)
		b.add(out+"ffn_up.weight", []int{ffn, dim}, b.tensor(in+"mlp.c_fc.weight", ffn, dim), nil)
		b.add(out+"ffn_up.bias", []int{ffn}, b.tensor(in+"mlp.c_fc.bias", ffn), nil)
		b.add(out+"ffn_down.weight", []int{dim, ffn}, b.tensor(in+"mlp.c_proj.weight", dim, ffn), nil)
		b.add(out+"ffn_down.bias", []int{dim}, b.tensor(in+"mlp.c_proj.bias", dim), nil)
	}
	b.add("output_norm.weight", []int{dim}, b.tensor(prefix+"ln_f.weight", dim), nil)
	b.add("output_norm.bias", []int{dim}, b.tensor(prefix+"ln_f.bias", dim), nil)
	if err := b.tiedHead("lm_head.weight", wte, vocab, dim); err != nil {
		return nil, err
	}
	tensors, err := b.finish("gpt_neo")
	if err != nil {
		return nil, err
	}
	return &format.Checkpoint{Meta: format.Metadata(cfg.Metadata()), Tensors: tensors}, nil
}

// neoAttentionLayers returns "global" or "local" for every layer, from attention_types
// ([[["global", "local"], 12]]: the pattern repeated 12 times), or attention_layers.
func neoAttentionLayers(c *config, layers int) ([]string, error) {
	var kinds []string
	if raw, ok := c.get("attention_types"); ok {
		groups, ok := raw.([]any)
		if !ok {
			return nil, c.errorf("attention_types: want a list")
		}
		for _, g := range groups {
			pair, ok := g.([]any)
			if !ok || len(pair) != 2 {
				return nil, c.errorf("attention_types: want [[pattern, repeat], ...]")
			}
			pattern, ok1 := pair[0].([]any)
			num, ok2 := pair[1].(json.Number)
			repeat, err := num.Int64()
			if !ok1 || !ok2 || err != nil || repeat < 0 {
				return nil, c.errorf("attention_types: bad entry %v", describe(g))
			}
			// The entries together may name no more than the model's layers: this bounds
			// what the repeats expand to by num_layers, whatever the number of entries.
			if repeat > int64(layers) || len(kinds)+int(repeat)*len(pattern) > layers {
				return nil, c.errorf("attention_types name more than the %d layers of num_layers (at entry %s)", layers, describe(g))
			}
			for r := 0; r < int(repeat); r++ {
				for _, k := range pattern {
					s, ok := k.(string)
					if !ok {
						return nil, c.errorf("attention_types: bad kind %v", k)
					}
					kinds = append(kinds, s)
				}
			}
		}
	} else {
		l, err := c.strings("attention_layers")
		if err != nil {
			return nil, err
		}
		kinds = l
	}
	if len(kinds) != layers {
		return nil, c.errorf("attention types name %d layers, the model has %d", len(kinds), layers)
	}
	for _, k := range kinds {
		if k != "global" && k != "local" {
			return nil, c.errorf("unsupported attention type %q (want global or local)", k)
		}
	}
	return kinds, nil
}

// describe summarizes a JSON value for an error message.
func describe(v any) string {
	s := strings.Join(strings.Fields(fmt.Sprint(v)), " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}
