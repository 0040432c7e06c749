// Package archtest writes random-weight models of the Llama-like families (llama,
// mistral, qwen2, phi3) as Hugging Face directories and as GGUF files, each following
// that format's own conventions — Hugging Face's rotate-half q/k rows and fused Phi-3
// projections, llama.cpp's tensor names, interleaved llama rows and metadata types —
// written from the formats' definitions and not from lmrun's importers, so that tests
// can check every importer against one canonical model and the float64 reference.
//
// A Model holds the canonical form: lmc tensor names and layouts (q/k rows in the RoPE
// style of its Config) and the Config the importers are expected to produce. Weights
// are drawn as values bfloat16 represents exactly, so F32, F16 and BF16 files of one
// model hold the same numbers.
package archtest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/gguf"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/model"
)

// Tensor is one canonical tensor: lmc name, lmc shape ([out, in] for matrices), values.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// Model is a canonical random model of one family.
type Model struct {
	Family  string       // "llama", "mistral", "qwen2" or "phi3": the Hugging Face model_type
	Config  model.Config // what the importers must produce (resolved)
	Tensors []Tensor
	Tied    bool // no output.weight: the classifier is token_embd
	QKVBias bool // q, k and v have biases (and o, for llama: attention_bias)
	// HF holds config.json entries beyond those derived from Config (rope_scaling,
	// partial_rotary_factor, ...); a nil value writes JSON null, Delete drops the key.
	HF map[string]any
}

// Delete, as a value in Model.HF, leaves the key out of config.json.
var Delete = &struct{ delete bool }{true}

// Random returns a model of cfg (resolved here) with seeded random weights: biases on
// q, k and v when qkvBias (and o for llama, whose attention_bias covers all four), an
// output.weight unless tied.
func Random(family string, cfg model.Config, seed uint64, qkvBias, tied bool) (*Model, error) {
	if err := cfg.Resolve(); err != nil {
		return nil, err
	}
	m := &Model{Family: family, Config: cfg, Tied: tied, QKVBias: qkvBias, HF: map[string]any{}}
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	add := func(name string, scale, offset float64, shape ...int) {
		v := make([]float32, dtype.NumElements(shape))
		for i := range v {
			v[i] = bf16(offset + scale*r.NormFloat64())
		}
		m.Tensors = append(m.Tensors, Tensor{name, shape, v})
	}
	d, q, kv, ff := cfg.Dim, cfg.QDim(), cfg.KVDim(), cfg.FFNDim
	add("token_embd.weight", 1, 0, cfg.VocabSize, d)
	for l := 0; l < cfg.NLayers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		add(p+"attn_norm.weight", 0.2, 1, d)
		add(p+"attn_q.weight", 0.3, 0, q, d)
		add(p+"attn_k.weight", 0.3, 0, kv, d)
		add(p+"attn_v.weight", 0.3, 0, kv, d)
		if qkvBias {
			add(p+"attn_q.bias", 0.3, 0, q)
			add(p+"attn_k.bias", 0.3, 0, kv)
			add(p+"attn_v.bias", 0.3, 0, kv)
		}
		add(p+"attn_output.weight", 0.2, 0, d, q)
		if qkvBias && family == "llama" { // Llama's attention_bias covers o_proj too
			add(p+"attn_output.bias", 0.3, 0, d)
		}
		add(p+"ffn_norm.weight", 0.2, 1, d)
		add(p+"ffn_gate.weight", 0.2, 0, ff, d)
		add(p+"ffn_up.weight", 0.2, 0, ff, d)
		add(p+"ffn_down.weight", 0.1, 0, d, ff)
	}
	add("output_norm.weight", 0.2, 1, d)
	if !tied {
		add("output.weight", 0.5, 0, cfg.VocabSize, d)
	}
	return m, nil
}

// bf16 rounds x to the nearest value bfloat16 holds (ties to even), flushing magnitudes
// below 2^-14 to zero so that binary16 holds it exactly too.
func bf16(x float64) float32 {
	if math.Abs(x) < 0x1p-14 {
		return 0
	}
	b := math.Float32bits(float32(x))
	b += 0x7fff + (b>>16)&1
	return math.Float32frombits(b &^ 0xffff)
}

// Tensor returns the named canonical tensor, nil when there is none.
func (m *Model) Tensor(name string) *Tensor {
	for i := range m.Tensors {
		if m.Tensors[i].Name == name {
			return &m.Tensors[i]
		}
	}
	return nil
}

// WriteLMC writes the canonical model as an lmc checkpoint, without any importer: the
// file the float64 reference runs on.
func (m *Model) WriteLMC(path string) error {
	var ts []format.Source
	for _, t := range m.Tensors {
		ts = append(ts, format.Float32s(t.Name, t.Shape, t.Data))
	}
	return format.WriteFile(path, m.Config.Metadata(), ts, nil)
}

// Quantized returns the model with every matrix whose rows are whole q8_0/q4_0 blocks
// replaced by its decoded dt encoding: the values a GGUF file written with WriteGGUF(dt)
// holds.
func (m *Model) Quantized(dt dtype.DType) (*Model, error) {
	out := *m
	out.Tensors = make([]Tensor, len(m.Tensors))
	for i, t := range m.Tensors {
		out.Tensors[i] = t
		if !quantizable(t, dt) {
			continue
		}
		cols := t.Shape[1]
		b, err := dtype.Quantize(dt, t.Data, cols)
		if err != nil {
			return nil, err
		}
		v, err := dtype.Dequantize(dt, b, cols)
		if err != nil {
			return nil, err
		}
		out.Tensors[i].Data = v
	}
	return &out, nil
}

// quantizable reports whether WriteGGUF stores t as dt (matrices of whole blocks).
func quantizable(t Tensor, dt dtype.DType) bool {
	return dt != dtype.F32 && len(t.Shape) == 2 && t.Shape[1]%dtype.QBlock == 0
}

// canonicalIsInterleaved reports whether the canonical q/k rows are interleaved pairs,
// which Hugging Face files store permuted to rotate-half order.
func (m *Model) canonicalIsInterleaved() bool { return m.Config.RopeStyle != model.NeoX }

// rotateHalfRows maps canonical interleaved q or k rows (or a bias, cols = 1) to Hugging
// Face's order, as Meta's checkpoints were converted: within each head of width hd, HF
// row j·hd/2 + i is Meta's row 2i + j.
func rotateHalfRows(v []float32, heads, hd, cols int) []float32 {
	out := make([]float32, len(v))
	for h := 0; h < heads; h++ {
		for i := 0; i < hd/2; i++ {
			for j := 0; j < 2; j++ {
				src := (h*hd + 2*i + j) * cols
				dst := (h*hd + j*hd/2 + i) * cols
				copy(out[dst:dst+cols], v[src:src+cols])
			}
		}
	}
	return out
}

// HFConfig returns the config.json of the model: the keys transformers' config class of
// the family reads, derived from Config, then m.HF's entries.
func (m *Model) HFConfig() map[string]any {
	c := m.Config
	arch := map[string]string{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
		"qwen2": "Qwen2ForCausalLM", "phi3": "Phi3ForCausalLM"}[m.Family]
	j := map[string]any{
		"architectures": []string{arch}, "model_type": m.Family, "hidden_act": "silu",
		"hidden_size": c.Dim, "intermediate_size": c.FFNDim, "num_hidden_layers": c.NLayers,
		"num_attention_heads": c.NHeads, "num_key_value_heads": c.NKVHeads, "vocab_size": c.VocabSize,
		"max_position_embeddings": c.ContextLength, "rms_norm_eps": c.NormEps, "rope_theta": c.RopeTheta,
		"tie_word_embeddings": m.Tied, "torch_dtype": "float32",
	}
	if c.HeadDim*c.NHeads != c.Dim {
		j["head_dim"] = c.HeadDim
	}
	w := uniformWindow(c.AttnWindows)
	switch m.Family {
	case "llama":
		j["attention_bias"] = m.QKVBias
		j["mlp_bias"] = false
	case "mistral", "phi3":
		if m.Family == "phi3" {
			j["original_max_position_embeddings"] = m.origContext()
			if c.RopeLongFactors != nil {
				j["rope_scaling"] = map[string]any{"type": "longrope", "short_factor": c.RopeFreqFactors, "long_factor": c.RopeLongFactors}
			}
		}
		if w > 0 {
			j["sliding_window"] = w
		} else {
			j["sliding_window"] = nil
		}
	case "qwen2":
		// Qwen2.5's configs: the window is off unless use_sliding_window, and then only
		// from max_window_layers on.
		j["use_sliding_window"], j["sliding_window"], j["max_window_layers"] = false, 32768, c.NLayers
		for i, x := range c.AttnWindows {
			if x > 0 {
				j["use_sliding_window"], j["sliding_window"], j["max_window_layers"] = true, x, i
				break
			}
		}
	}
	for k, v := range m.HF {
		if v == Delete {
			delete(j, k)
			continue
		}
		j[k] = v
	}
	return j
}

// origContext is Phi-3's original_max_position_embeddings: LongRoPE's original context,
// else the context (4k models state it equal).
func (m *Model) origContext() int {
	if m.Config.RopeLongFactors != nil {
		return m.Config.RopeOrigContext
	}
	return m.Config.ContextLength
}

// uniformWindow returns the window every windowed layer has (0 when none has one).
func uniformWindow(ws []int) int {
	for _, w := range ws {
		if w > 0 {
			return w
		}
	}
	return 0
}

// hfTensors returns the model's tensors under Hugging Face's names and layouts.
func (m *Model) hfTensors() []Tensor {
	c := m.Config
	var out []Tensor
	get := func(name string) Tensor { return *m.Tensor(name) }
	put := func(name string, t Tensor) { out = append(out, Tensor{name, t.Shape, t.Data}) }
	qk := func(t Tensor, heads int) Tensor {
		if m.canonicalIsInterleaved() {
			cols := 1
			if len(t.Shape) == 2 {
				cols = t.Shape[1]
			}
			t.Data = rotateHalfRows(t.Data, heads, c.HeadDim, cols)
		}
		return t
	}
	concat := func(ts ...Tensor) Tensor {
		r := Tensor{Shape: []int{0, ts[0].Shape[1]}}
		for _, t := range ts {
			r.Shape[0] += t.Shape[0]
			r.Data = append(r.Data, t.Data...)
		}
		return r
	}
	put("model.embed_tokens.weight", get("token_embd.weight"))
	for l := 0; l < c.NLayers; l++ {
		p, h := fmt.Sprintf("blk.%d.", l), fmt.Sprintf("model.layers.%d.", l)
		put(h+"input_layernorm.weight", get(p+"attn_norm.weight"))
		if m.Family == "phi3" {
			put(h+"self_attn.qkv_proj.weight", concat(get(p+"attn_q.weight"), get(p+"attn_k.weight"), get(p+"attn_v.weight")))
			put(h+"mlp.gate_up_proj.weight", concat(get(p+"ffn_gate.weight"), get(p+"ffn_up.weight")))
		} else {
			put(h+"self_attn.q_proj.weight", qk(get(p+"attn_q.weight"), c.NHeads))
			put(h+"self_attn.k_proj.weight", qk(get(p+"attn_k.weight"), c.NKVHeads))
			put(h+"self_attn.v_proj.weight", get(p+"attn_v.weight"))
			if m.QKVBias {
				put(h+"self_attn.q_proj.bias", qk(get(p+"attn_q.bias"), c.NHeads))
				put(h+"self_attn.k_proj.bias", qk(get(p+"attn_k.bias"), c.NKVHeads))
				put(h+"self_attn.v_proj.bias", get(p+"attn_v.bias"))
			}
			put(h+"mlp.gate_proj.weight", get(p+"ffn_gate.weight"))
			put(h+"mlp.up_proj.weight", get(p+"ffn_up.weight"))
		}
		put(h+"self_attn.o_proj.weight", get(p+"attn_output.weight"))
		if m.Tensor(p+"attn_output.bias") != nil {
			put(h+"self_attn.o_proj.bias", get(p+"attn_output.bias"))
		}
		put(h+"post_attention_layernorm.weight", get(p+"ffn_norm.weight"))
		put(h+"mlp.down_proj.weight", get(p+"ffn_down.weight"))
	}
	put("model.norm.weight", get("output_norm.weight"))
	if !m.Tied {
		put("lm_head.weight", get("output.weight"))
	}
	return out
}

// WriteHF writes the model as a Hugging Face directory: config.json and the weights in
// st (F32, F16 or BF16), in one model.safetensors or, with shards > 1, that many shards
// and a model.safetensors.index.json.
func (m *Model) WriteHF(dir string, st safetensors.DType, shards int) error {
	js, err := json.MarshalIndent(m.HFConfig(), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), js, 0o644); err != nil {
		return err
	}
	var data []safetensors.TensorData
	for _, t := range m.hfTensors() {
		b, err := encodeHF(st, t.Data)
		if err != nil {
			return err
		}
		data = append(data, safetensors.TensorData{Name: t.Name, DType: st, Shape: t.Shape, Data: b})
	}
	if shards <= 1 {
		return safetensors.WriteFile(filepath.Join(dir, safetensors.SingleName), data, map[string]string{"format": "pt"})
	}
	weightMap := map[string]string{}
	per := (len(data) + shards - 1) / shards
	for s := 0; s < shards; s++ {
		part := data[min(s*per, len(data)):min((s+1)*per, len(data))]
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", s+1, shards)
		for _, t := range part {
			weightMap[t.Name] = name
		}
		if err := safetensors.WriteFile(filepath.Join(dir, name), part, map[string]string{"format": "pt"}); err != nil {
			return err
		}
	}
	idx, err := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": weightMap})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, safetensors.IndexName), idx, 0o644)
}

func encodeHF(st safetensors.DType, v []float32) ([]byte, error) {
	switch st {
	case safetensors.F32:
		return dtype.F32ToBytes(append([]float32(nil), v...)), nil
	case safetensors.F16:
		return dtype.Quantize(dtype.F16, v, len(v))
	case safetensors.BF16:
		return dtype.Quantize(dtype.BF16, v, len(v))
	}
	return nil, fmt.Errorf("archtest: no encoding for %s", st)
}

// GGUFArch returns llama.cpp's architecture for the family (mistral is llama).
func (m *Model) GGUFArch() string {
	if m.Family == "mistral" {
		return "llama"
	}
	return m.Family
}

// GGUF returns the metadata and tensors llama.cpp's convert_hf_to_gguf.py writes for the
// model, matrices of whole blocks stored as typ (F32 or Q8_0), the rest F32:
//
//   - <arch>.context_length, embedding_length, block_count, feed_forward_length,
//     attention.head_count, attention.head_count_kv, attention.layer_norm_rms_epsilon,
//     rope.freq_base, rope.dimension_count (uint32, float32), attention.key_length and
//     value_length when head_dim ≠ dim/heads;
//   - llama: q/k rows interleaved; Llama 3's scaling as the rope_freqs.weight tensor of
//     per-pair divisors; a window on every layer as attention.sliding_window;
//   - qwen2: q/k rows as Hugging Face has them (rotate-half), q/k/v biases;
//   - phi3: attn_qkv (rows q, k, v) and ffn_up (rows gate, up) fused,
//     rope.scaling.original_context_length, attention.sliding_window (0: none), LongRoPE
//     as rope_factors_short/long.weight with rope.scaling.attn_factor;
//   - output.weight only when the classifier is not tied.
func (m *Model) GGUF(typ gguf.Type) ([]gguf.KV, []gguf.TensorSource, error) {
	c, arch := m.Config, m.GGUFArch()
	dt, ok := typ.DType()
	if !ok {
		return nil, nil, fmt.Errorf("archtest: type %s", typ)
	}
	kvs := []gguf.KV{{Key: "general.architecture", Value: arch}, {Key: "general.name", Value: "archtest " + m.Family}}
	u32 := func(k string, v int) { kvs = append(kvs, gguf.KV{Key: arch + "." + k, Value: uint32(v)}) }
	f32 := func(k string, v float64) { kvs = append(kvs, gguf.KV{Key: arch + "." + k, Value: float32(v)}) }
	u32("context_length", c.ContextLength)
	u32("embedding_length", c.Dim)
	u32("block_count", c.NLayers)
	u32("feed_forward_length", c.FFNDim)
	u32("attention.head_count", c.NHeads)
	u32("attention.head_count_kv", c.NKVHeads)
	f32("attention.layer_norm_rms_epsilon", c.NormEps)
	f32("rope.freq_base", c.RopeTheta)
	u32("rope.dimension_count", c.RopeDim)
	if c.HeadDim*c.NHeads != c.Dim {
		u32("attention.key_length", c.HeadDim)
		u32("attention.value_length", c.HeadDim)
	}
	w := uniformWindow(c.AttnWindows)
	switch m.Family {
	case "phi3":
		u32("rope.scaling.original_context_length", m.origContext())
		if c.RopeLongFactors != nil {
			f32("rope.scaling.attn_factor", c.RopeAttnFactor)
		}
		u32("attention.sliding_window", w)
	case "mistral":
		if w > 0 {
			u32("attention.sliding_window", w)
		}
	}
	var ts []gguf.TensorSource
	add := func(name string, shape []int, v []float32) error {
		t, d := gguf.TypeF32, dtype.F32
		if quantizable(Tensor{Shape: shape}, dt) {
			t, d = typ, dt
		}
		cols := shape[len(shape)-1]
		b, err := dtype.Quantize(d, v, cols)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		ts = append(ts, gguf.TensorSource{Name: name, Type: t, Dims: gguf.Dims(shape), Data: func() ([]byte, error) { return b, nil }})
		return nil
	}
	vec := func(name string, v []float32) error { return add(name, []int{len(v)}, v) }
	if c.RopeLongFactors != nil {
		if err := vec("rope_factors_long.weight", c.RopeLongFactors); err != nil {
			return nil, nil, err
		}
		if err := vec("rope_factors_short.weight", c.RopeFreqFactors); err != nil {
			return nil, nil, err
		}
	} else if c.RopeFreqFactors != nil {
		if err := vec("rope_freqs.weight", c.RopeFreqFactors); err != nil {
			return nil, nil, err
		}
	}
	names := make([]string, 0, len(m.Tensors))
	for _, t := range m.Tensors {
		names = append(names, t.Name)
	}
	done := map[string]bool{}
	for _, name := range names {
		if done[name] {
			continue
		}
		t := *m.Tensor(name)
		var l int
		if _, err := fmt.Sscanf(name, "blk.%d.", &l); err == nil && m.Family == "phi3" {
			p := fmt.Sprintf("blk.%d.", l)
			switch name {
			case p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight":
				var v []float32
				for _, n := range []string{"attn_q", "attn_k", "attn_v"} {
					v = append(v, m.Tensor(p+n+".weight").Data...)
					done[p+n+".weight"] = true
				}
				if err := add(p+"attn_qkv.weight", []int{c.QDim() + 2*c.KVDim(), c.Dim}, v); err != nil {
					return nil, nil, err
				}
				continue
			case p + "ffn_gate.weight", p + "ffn_up.weight":
				v := append(append([]float32(nil), m.Tensor(p+"ffn_gate.weight").Data...), m.Tensor(p+"ffn_up.weight").Data...)
				done[p+"ffn_gate.weight"], done[p+"ffn_up.weight"] = true, true
				if err := add(p+"ffn_up.weight", []int{2 * c.FFNDim, c.Dim}, v); err != nil {
					return nil, nil, err
				}
				continue
			}
		}
		done[name] = true
		if err := add(name, t.Shape, t.Data); err != nil {
			return nil, nil, err
		}
	}
	return kvs, ts, nil
}

// WriteGGUF writes the model as a GGUF file (see GGUF).
func (m *Model) WriteGGUF(path string, typ gguf.Type) error {
	kvs, ts, err := m.GGUF(typ)
	if err != nil {
		return err
	}
	return gguf.WriteFile(path, kvs, ts, nil)
}
