package gguf

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/model"
)

// Export maps an lmc checkpoint of a Llama-style model (rmsnorm, rope, swiglu) or a
// GPT-2-style one (layernorm, learned positions, gelu_tanh) to the metadata and tensors
// of a GGUF file llama.cpp loads as architecture "llama", "qwen2", "phi3" or "gpt2" —
// qwen2 and phi3 when the checkpoint's general.architecture says so, llama for the other
// Llama-style models (Mistral among them) — as llama.cpp's convert_hf_to_gguf.py writes
// them:
//
//   - general.architecture, general.name, general.alignment (32), general.file_type, and
//     the architecture's hyper-parameter keys with the types llama.cpp checks (uint32,
//     float32);
//   - q/k rows in the architecture's RoPE pairing (interleaved for llama, rotate-half
//     for qwen2 and phi3), permuted by rows when the checkpoint has the other;
//   - RoPE scaling: llama's per-pair divisors as rope_freqs.weight, phi3's LongRoPE
//     factors as rope_factors_short/long.weight with rope.scaling.original_context_length,
//     and rope.scaling.attn_factor when it is not 1; a window on every layer as
//     attention.sliding_window (llama, phi3);
//   - phi3's q, k, v fused into attn_qkv and its gate and up into ffn_up (rows
//     concatenated), qwen2's missing q/k/v biases as zeros;
//   - output.weight: left out for a tied llama or qwen2 classifier (llama.cpp uses
//     token_embd), a copy of token_embd.weight for a tied gpt2 or phi3 one, whose
//     llama.cpp loaders require it;
//   - the tokenizer: the lmc's tokenizer.ggml.* keys (and tokenizer.chat_template) when
//     it has them; else a "llama2c" tokenizer as a SentencePiece ("llama") vocabulary
//     with token types, "gpt2" and "sentencepiece_bpe" ones as "gpt2" and "llama";
//     otherwise tokenizer.ggml.model "no_vocab";
//   - tensors under their lmc names (llama.cpp's) with dims reversed and their dtype
//     kept, 1-D tensors as F32; gpt2's attn_q, attn_k and attn_v fused into attn_qkv
//     (rows concatenated), and missing gpt2 biases, which llama.cpp requires, as zeros.
//     Fused parts of different dtypes are fused as f32.
//
// Tensor data is produced when the file is written.
func Export(ck *format.Checkpoint) ([]KV, []TensorSource, error) {
	m := ck.Meta
	hp, err := model.Parse(m)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot export to GGUF: %w", err)
	}
	if hp.NLayers > len(ck.Tensors) {
		return nil, nil, fmt.Errorf("cannot export to GGUF: %s = %d, but the checkpoint has only %d tensors", model.KeyNLayers, hp.NLayers, len(ck.Tensors))
	}
	arch, err := exportArch(hp)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot export to GGUF: %w", err)
	}
	x := &exporter{ck: ck, used: map[string]bool{}}
	if arch == "gpt2" {
		x.gpt2(hp)
	} else {
		x.llamaLike(hp, arch)
	}
	if err := x.finish(); err != nil {
		return nil, nil, fmt.Errorf("cannot export to GGUF: %w", err)
	}

	kvs := []KV{{"general.architecture", arch}}
	if name, ok, _ := m.String("general.name"); ok {
		kvs = append(kvs, KV{"general.name", name})
	}
	kvs = append(kvs, KV{"general.alignment", uint32(DefaultAlignment)}, KV{"general.file_type", x.fileType()})
	if x.quantized {
		kvs = append(kvs, KV{"general.quantization_version", uint32(2)})
	}
	u32 := func(key string, v int) { kvs = append(kvs, KV{arch + "." + key, uint32(v)}) }
	f32 := func(key string, v float64) { kvs = append(kvs, KV{arch + "." + key, float32(v)}) }
	u32("vocab_size", hp.VocabSize)
	u32("context_length", hp.ContextLength)
	u32("embedding_length", hp.Dim)
	u32("block_count", hp.NLayers)
	u32("feed_forward_length", hp.FFNDim)
	u32("attention.head_count", hp.NHeads)
	if arch != "gpt2" {
		u32("attention.head_count_kv", hp.NKVHeads)
		if hp.HeadDim != hp.Dim/hp.NHeads || hp.Dim%hp.NHeads != 0 {
			u32("attention.key_length", hp.HeadDim)
			u32("attention.value_length", hp.HeadDim)
		}
		u32("rope.dimension_count", hp.RopeDim)
		f32("rope.freq_base", hp.RopeTheta)
		f32("attention.layer_norm_rms_epsilon", hp.NormEps)
		if arch == "phi3" {
			orig := hp.ContextLength
			if hp.RopeLongFactors != nil {
				orig = hp.RopeOrigContext
			}
			u32("rope.scaling.original_context_length", orig)
		}
		if hp.RopeAttnFactor != 1 {
			f32("rope.scaling.attn_factor", hp.RopeAttnFactor)
		}
		if w := hp.AttnWindows[0]; w > 0 || arch == "phi3" {
			u32("attention.sliding_window", w) // phi3 files say 0 for none
		}
	} else {
		f32("attention.layer_norm_epsilon", hp.NormEps)
	}
	tok, err := tokenizerKVs(m)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot export to GGUF: %w", err)
	}
	kvs = append(kvs, tok...)
	return kvs, x.out, nil
}

// ExportFile writes ck as a GGUF file at path (see Export). progress, if not nil, is
// called after each tensor.
func ExportFile(ck *format.Checkpoint, path string, progress func(done, total int)) error {
	kvs, tensors, err := Export(ck)
	if err != nil {
		return err
	}
	return WriteFile(path, kvs, tensors, progress)
}

// exportArch tells which llama.cpp architecture computes the same model as c.
func exportArch(c model.Config) (string, error) {
	if c.PostNorm {
		return "", fmt.Errorf("post-norm blocks (llama.cpp's llama and gpt2 are pre-norm)")
	}
	if c.PositionOffset != 0 {
		return "", fmt.Errorf("%s %d (llama.cpp's gpt2 reads position 0 from row 0)", model.KeyPositionOffset, c.PositionOffset)
	}
	if c.AttnScale != float32(1/math.Sqrt(float64(c.HeadDim))) {
		return "", fmt.Errorf("%s %v (llama.cpp's llama and gpt2 scale by 1/√head_dim)", model.KeyAttnScale, c.AttnScale)
	}
	if c.NoFinalNorm {
		return "", fmt.Errorf("no final norm (llama.cpp's llama and gpt2 have one)")
	}
	if c.Projected() {
		return "", fmt.Errorf("%s %d ≠ dim %d (llama.cpp's llama and gpt2 have no projection)", model.KeyEmbeddingDim, c.EmbedDim, c.Dim)
	}
	arch := ""
	switch {
	case c.Norm == model.RMSNorm && c.Position == model.RoPE && c.Activation == model.SwiGLU:
		arch = "llama"
		if c.Arch == "qwen2" || c.Arch == "phi3" {
			arch = c.Arch
		}
	case c.Norm == model.LayerNorm && c.Position == model.Learned && c.Activation == model.GELUTanh:
		arch = "gpt2"
	default:
		return "", fmt.Errorf("%s %q, %s %q, %s %q match neither llama (rmsnorm, rope, swiglu) nor gpt2 (layernorm, learned, gelu_tanh)",
			model.KeyNorm, c.Norm, model.KeyPosition, c.Position, model.KeyActivation, c.Activation)
	}
	// Windows: one key for every layer, in the architectures that have it.
	for _, w := range c.AttnWindows {
		if w != c.AttnWindows[0] || (w != 0 && arch != "llama" && arch != "phi3") {
			return "", fmt.Errorf("local attention windows %v (llama.cpp's %s attends densely, or with one window on every layer for llama and phi3)", c.AttnWindows, arch)
		}
	}
	if c.RopeLongFactors != nil && arch != "phi3" {
		return "", fmt.Errorf("%s (LongRoPE's long factors) in a %s model: only llama.cpp's phi3 reads them", model.KeyRopeLongFactors, arch)
	}
	if c.RopeFreqFactors != nil && c.RopeLongFactors == nil && arch != "llama" {
		return "", fmt.Errorf("%s in a %s model: only llama.cpp's llama reads rope_freqs", model.KeyRopeFreqFactors, arch)
	}
	return arch, nil
}

// exporter builds the GGUF tensor list from the lmc tensors.
type exporter struct {
	ck        *format.Checkpoint
	used      map[string]bool
	missing   []string
	out       []TensorSource
	elems     map[dtype.DType]int // elements of matrices by dtype, for general.file_type
	quantized bool
}

func (x *exporter) src(name string) *format.Source {
	x.used[name] = true
	return x.ck.Source(name)
}

// tensor exports the named lmc tensor as is (vectors as F32); a missing required tensor
// is recorded.
func (x *exporter) tensor(name string, required bool) {
	s := x.src(name)
	if s == nil {
		if required {
			x.missing = append(x.missing, name)
		}
		return
	}
	if len(s.Shape) == 1 {
		x.out = append(x.out, TensorSource{Name: name, Type: TypeF32, Dims: Dims(s.Shape), Data: f32Data(s)})
		return
	}
	t, err := TypeFor(s.DType)
	if err != nil {
		x.missing = append(x.missing, name+" ("+err.Error()+")")
		return
	}
	x.count(s.DType, s.Shape)
	x.out = append(x.out, TensorSource{Name: name, Type: t, Dims: Dims(s.Shape), Data: s.Data})
}

func (x *exporter) count(dt dtype.DType, shape []int) {
	if x.elems == nil {
		x.elems = map[dtype.DType]int{}
	}
	x.elems[dt] += dtype.NumElements(shape)
	if dt == dtype.Q8_0 || dt == dtype.Q4_0 || dt.KQuant() {
		x.quantized = true
	}
}

// f32Data returns s's data as f32, converting other dtypes.
func f32Data(s *format.Source) func() ([]byte, error) {
	if s.DType == dtype.F32 {
		return s.Data
	}
	return func() ([]byte, error) {
		b, err := s.Data()
		if err != nil {
			return nil, err
		}
		v, err := dtype.Dequantize(s.DType, b, s.Shape[len(s.Shape)-1])
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", s.Name, err)
		}
		return dtype.F32ToBytes(v), nil
	}
}

// llamaLike exports the tensors of a Llama-style model as llama.cpp's arch (llama,
// qwen2 or phi3) has them.
func (x *exporter) llamaLike(h model.Config, arch string) {
	// llama.cpp's llama rotates interleaved pairs, qwen2 and phi3 rotate halves.
	want := model.Interleaved
	if arch != "llama" {
		want = model.NeoX
	}
	qk := func(name string, heads int) rowMap {
		if h.RopeStyle == want {
			return nil
		}
		return ropeRows(heads, h.HeadDim, h.RopeDim, want == model.Interleaved)
	}
	x.tensor("token_embd.weight", true)
	for l := 0; l < h.NLayers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		x.tensor(p+"attn_norm.weight", true)
		if arch == "phi3" {
			x.concat(p+"attn_qkv.weight", []string{p + "attn_q.weight", p + "attn_k.weight", p + "attn_v.weight"},
				[]rowMap{qk("q", h.NHeads), qk("k", h.NKVHeads), nil})
			for _, n := range []string{"attn_q", "attn_k", "attn_v", "attn_output"} {
				x.refuse(p+n+".bias", "llama.cpp's phi3 has no attention biases")
			}
		} else {
			x.rows(p+"attn_q.weight", qk("q", h.NHeads), true)
			x.rows(p+"attn_k.weight", qk("k", h.NKVHeads), true)
			x.tensor(p+"attn_v.weight", true)
			if arch == "qwen2" {
				x.biasOrZeros(p+"attn_q.bias", h.QDim(), qk("q", h.NHeads))
				x.biasOrZeros(p+"attn_k.bias", h.KVDim(), qk("k", h.NKVHeads))
				x.biasOrZeros(p+"attn_v.bias", h.KVDim(), nil)
				x.refuse(p+"attn_output.bias", "llama.cpp's qwen2 has no output projection bias")
			} else {
				x.rows(p+"attn_q.bias", qk("q", h.NHeads), false)
				x.rows(p+"attn_k.bias", qk("k", h.NKVHeads), false)
				x.tensor(p+"attn_v.bias", false)
				x.tensor(p+"attn_output.bias", false)
			}
		}
		x.tensor(p+"attn_output.weight", true)
		x.tensor(p+"ffn_norm.weight", true)
		if arch == "phi3" {
			x.concat(p+"ffn_up.weight", []string{p + "ffn_gate.weight", p + "ffn_up.weight"}, nil)
		} else {
			x.tensor(p+"ffn_gate.weight", true)
			x.tensor(p+"ffn_up.weight", true)
		}
		x.tensor(p+"ffn_down.weight", true)
	}
	x.tensor("output_norm.weight", true)
	if arch == "phi3" {
		x.classifierCopy()
	} else {
		x.tensor("output.weight", false)
	}
	vec := func(name string, v []float32) {
		x.out = append(x.out, TensorSource{Name: name, Type: TypeF32, Dims: []uint64{uint64(len(v))},
			Data: func() ([]byte, error) { return dtype.F32ToBytes(append([]float32(nil), v...)), nil }})
	}
	switch {
	case h.RopeLongFactors != nil:
		vec("rope_factors_long.weight", h.RopeLongFactors)
		vec("rope_factors_short.weight", h.RopeFreqFactors)
	case h.RopeFreqFactors != nil:
		vec("rope_freqs.weight", h.RopeFreqFactors)
	}
}

// rowMap maps an output row to the source row it is copied from.
type rowMap func(r int) int

// ropeRows maps q or k rows between RoPE's two pairings, within each head of width hd
// whose first rd dimensions rotate: interleaved row 2i+j is rotate-half row j·rd/2+i.
// toInterleaved gives the map of an interleaved output from rotate-half rows.
func ropeRows(heads, hd, rd int, toInterleaved bool) rowMap {
	half := rd / 2
	return func(r int) int {
		h, d := r/hd, r%hd
		if d >= rd {
			return r
		}
		if toInterleaved { // output row d = 2i+j holds rotate-half row j·half+i
			return h*hd + (d%2)*half + d/2
		}
		return h*hd + 2*(d%half) + d/half // output row d = j·half+i holds row 2i+j
	}
}

// permuted returns s's data with its rows (the first dimension; a vector's elements)
// reordered by m.
func permuted(s *format.Source, m rowMap) func() ([]byte, error) {
	return func() ([]byte, error) {
		b, err := s.Data()
		if err != nil {
			return nil, err
		}
		if m == nil {
			return b, nil
		}
		rows := s.Shape[0]
		rb := len(b) / rows
		out := make([]byte, len(b))
		for r := 0; r < rows; r++ {
			src := m(r)
			copy(out[r*rb:(r+1)*rb], b[src*rb:(src+1)*rb])
		}
		return out, nil
	}
}

// rows exports the named tensor with its rows reordered by m (nil: as it is).
func (x *exporter) rows(name string, m rowMap, required bool) {
	if m == nil {
		x.tensor(name, required)
		return
	}
	s := x.src(name)
	if s == nil {
		if required {
			x.missing = append(x.missing, name)
		}
		return
	}
	src := &format.Source{Name: s.Name, DType: s.DType, Shape: s.Shape, Data: permuted(s, m)}
	if len(s.Shape) == 1 {
		x.out = append(x.out, TensorSource{Name: name, Type: TypeF32, Dims: Dims(s.Shape), Data: f32Data(src)})
		return
	}
	t, err := TypeFor(s.DType)
	if err != nil {
		x.missing = append(x.missing, name+" ("+err.Error()+")")
		return
	}
	x.count(s.DType, s.Shape)
	x.out = append(x.out, TensorSource{Name: name, Type: t, Dims: Dims(s.Shape), Data: src.Data})
}

// biasOrZeros exports a bias llama.cpp requires, n zeros when the checkpoint has none.
func (x *exporter) biasOrZeros(name string, n int, m rowMap) {
	if x.ck.Source(name) != nil {
		x.rows(name, m, true)
		return
	}
	x.out = append(x.out, TensorSource{Name: name, Type: TypeF32, Dims: []uint64{uint64(n)},
		Data: func() ([]byte, error) { return make([]byte, 4*n), nil }})
}

// refuse records a tensor the architecture cannot hold, if the checkpoint has it.
func (x *exporter) refuse(name, why string) {
	if x.src(name) != nil {
		x.missing = append(x.missing, name+" ("+why+")")
	}
}

// classifierCopy exports output.weight, or a copy of token_embd.weight when the
// classifier is tied (llama.cpp's gpt2 and phi3 require the tensor).
func (x *exporter) classifierCopy() {
	if x.ck.Source("output.weight") != nil {
		x.tensor("output.weight", true)
		return
	}
	emb := x.ck.Source("token_embd.weight")
	if emb == nil || len(emb.Shape) != 2 {
		return // reported by token_embd's own export
	}
	t, err := TypeFor(emb.DType)
	if err != nil {
		return
	}
	x.count(emb.DType, emb.Shape)
	x.out = append(x.out, TensorSource{Name: "output.weight", Type: t, Dims: Dims(emb.Shape), Data: emb.Data})
}

// concat exports the named matrices as one, their rows concatenated in order (each
// reordered by its map, if any): phi3's attn_qkv and gate-and-up ffn_up. Parts of
// different dtypes are fused as f32.
func (x *exporter) concat(name string, parts []string, maps []rowMap) {
	srcs := make([]*format.Source, len(parts))
	for i, p := range parts {
		if srcs[i] = x.src(p); srcs[i] == nil {
			x.missing = append(x.missing, p)
		}
	}
	for _, s := range srcs {
		if s == nil {
			return
		}
	}
	cols, rows, dt := srcs[0].Shape[len(srcs[0].Shape)-1], 0, srcs[0].DType
	for _, s := range srcs {
		if len(s.Shape) != 2 || s.Shape[1] != cols {
			x.missing = append(x.missing, fmt.Sprintf("%s with %d columns (it has shape %v)", s.Name, cols, s.Shape))
			return
		}
		rows += s.Shape[0]
		if s.DType != dt {
			dt = dtype.F32
		}
	}
	t, err := TypeFor(dt)
	if err != nil {
		x.missing = append(x.missing, parts[0]+" ("+err.Error()+")")
		return
	}
	x.count(dt, []int{rows, cols})
	x.out = append(x.out, TensorSource{Name: name, Type: t, Dims: []uint64{uint64(cols), uint64(rows)},
		Data: func() ([]byte, error) {
			var out []byte
			for i, s := range srcs {
				var m rowMap
				if maps != nil {
					m = maps[i]
				}
				src := &format.Source{Name: s.Name, DType: s.DType, Shape: s.Shape, Data: permuted(s, m)}
				data := src.Data
				if s.DType != dt {
					data = f32Data(src)
				}
				b, err := data()
				if err != nil {
					return nil, fmt.Errorf("tensor %s: %w", s.Name, err)
				}
				out = append(out, b...)
			}
			return out, nil
		}})
}

func (x *exporter) gpt2(h model.Config) {
	x.tensor("token_embd.weight", true)
	x.tensor("position_embd.weight", true)
	for l := 0; l < h.NLayers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		x.pair(p+"attn_norm", h.Dim)
		x.fused(p)
		x.pair(p+"attn_output", h.Dim)
		x.pair(p+"ffn_norm", h.Dim)
		x.pair(p+"ffn_up", h.FFNDim)
		x.pair(p+"ffn_down", h.Dim)
	}
	x.pair("output_norm", h.Dim)
	x.classifierCopy() // convert_hf_to_gguf.py writes GPT-2's tied wte as output.weight too
}

// pair exports name.weight and name.bias, a bias of n zeros when it is missing.
func (x *exporter) pair(name string, n int) {
	x.tensor(name+".weight", true)
	if x.ck.Source(name+".bias") != nil {
		x.tensor(name+".bias", true)
		return
	}
	x.out = append(x.out, TensorSource{Name: name + ".bias", Type: TypeF32, Dims: []uint64{uint64(n)},
		Data: func() ([]byte, error) { return make([]byte, 4*n), nil }})
}

// fused exports a gpt2 layer's attn_q, attn_k, attn_v (weights and biases) as
// attn_qkv: the rows of q, then k, then v. Weights of different dtypes are fused as f32.
func (x *exporter) fused(p string) {
	var ws [3]*format.Source
	var bs [3]*format.Source
	for i, n := range []string{"attn_q", "attn_k", "attn_v"} {
		ws[i] = x.src(p + n + ".weight")
		bs[i] = x.src(p + n + ".bias")
		if ws[i] == nil {
			x.missing = append(x.missing, p+n+".weight")
		}
	}
	if ws[0] == nil || ws[1] == nil || ws[2] == nil {
		return
	}
	cols := ws[0].Shape[len(ws[0].Shape)-1]
	rows := 0
	dt := ws[0].DType
	for _, w := range ws {
		if len(w.Shape) != 2 || w.Shape[1] != cols {
			x.missing = append(x.missing, fmt.Sprintf("%s with %d columns (it has shape %v)", w.Name, cols, w.Shape))
			return
		}
		rows += w.Shape[0]
		if w.DType != dt {
			dt = dtype.F32
		}
	}
	t, err := TypeFor(dt)
	if err != nil {
		x.missing = append(x.missing, p+"attn_q.weight ("+err.Error()+")")
		return
	}
	x.count(dt, []int{rows, cols})
	x.out = append(x.out, TensorSource{Name: p + "attn_qkv.weight", Type: t, Dims: []uint64{uint64(cols), uint64(rows)},
		Data: func() ([]byte, error) {
			var out []byte
			for _, w := range ws {
				b, err := w.Data()
				if err != nil {
					return nil, fmt.Errorf("tensor %s: %w", w.Name, err)
				}
				if w.DType != dt {
					if b, err = f32Data(w)(); err != nil {
						return nil, err
					}
				}
				out = append(out, b...)
			}
			return out, nil
		}})
	x.out = append(x.out, TensorSource{Name: p + "attn_qkv.bias", Type: TypeF32, Dims: []uint64{uint64(rows)},
		Data: func() ([]byte, error) {
			out := make([]byte, 0, 4*rows)
			for i, b := range bs {
				if b == nil {
					out = append(out, make([]byte, 4*ws[i].Shape[0])...)
					continue
				}
				v, err := f32Data(b)()
				if err != nil {
					return nil, err
				}
				out = append(out, v...)
			}
			return out, nil
		}})
}

// finish reports missing and unexpected lmc tensors.
func (x *exporter) finish() error {
	var msgs []string
	if len(x.missing) > 0 {
		msgs = append(msgs, "missing tensors: "+list(x.missing))
	}
	var extra []string
	for _, s := range x.ck.Tensors {
		if !x.used[s.Name] {
			extra = append(extra, s.Name)
		}
	}
	if len(extra) > 0 {
		msgs = append(msgs, "tensors with no GGUF equivalent: "+list(extra))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}

// fileType returns llama.cpp's general.file_type for the dtype most matrix elements
// have (LLAMA_FTYPE_ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7, MOSTLY_BF16 32,
// and for the k-quants the medium mixes llama-quantize names after them: MOSTLY_Q4_K_M
// 15, MOSTLY_Q5_K_M 17, MOSTLY_Q6_K 18). The key is informational: llama.cpp reads each
// tensor's own type.
func (x *exporter) fileType() uint32 {
	best, n := dtype.F32, -1
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16, dtype.Q8_0, dtype.Q4_0, dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
		if x.elems[dt] > n {
			best, n = dt, x.elems[dt]
		}
	}
	return map[dtype.DType]uint32{dtype.F32: 0, dtype.F16: 1, dtype.Q4_0: 2, dtype.Q8_0: 7, dtype.BF16: 32,
		dtype.Q4_K: 15, dtype.Q5_K: 17, dtype.Q6_K: 18}[best]
}

// GGUF token types (llama.cpp's llama_token_type).
const (
	tokenNormal  = 1
	tokenUnknown = 2
	tokenControl = 3
	tokenByte    = 6
)

// tokenizerKVs returns the tokenizer.* keys of the GGUF file.
func tokenizerKVs(m format.Metadata) ([]KV, error) {
	if _, ok := m["tokenizer.ggml.model"]; ok {
		var keys []string
		for k := range m {
			if strings.HasPrefix(k, "tokenizer.ggml.") || k == "tokenizer.chat_template" || strings.HasPrefix(k, "tokenizer.chat_template.") {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var kvs []KV
		for _, k := range keys {
			if v, ok := ggufValue(k, m[k]); ok {
				kvs = append(kvs, KV{k, v})
			}
		}
		return kvs, nil
	}
	kind, _, err := m.String("tokenizer.model")
	if err != nil {
		return nil, err
	}
	tokens, _, err := m.Strings("tokenizer.tokens")
	if err != nil {
		return nil, err
	}
	id := func(key string) int64 {
		v, ok, err := m.Int(key)
		if err != nil || !ok {
			return -1
		}
		return int64(v)
	}
	bos, eos, unk, pad := id("tokenizer.bos_id"), id("tokenizer.eos_id"), id("tokenizer.unk_id"), id("tokenizer.pad_id")
	specials := func(kvs []KV) []KV {
		for _, s := range []struct {
			key string
			id  int64
		}{{"bos_token_id", bos}, {"eos_token_id", eos}, {"unknown_token_id", unk}, {"padding_token_id", pad}} {
			if s.id >= 0 && s.id < int64(len(tokens)) {
				kvs = append(kvs, KV{"tokenizer.ggml." + s.key, uint32(s.id)})
			}
		}
		if add, ok, err := m.Bool("tokenizer.add_bos"); err == nil && ok {
			kvs = append(kvs, KV{"tokenizer.ggml.add_bos_token", add})
		}
		if tmpl, ok, err := m.String("tokenizer.chat_template"); err == nil && ok {
			kvs = append(kvs, KV{"tokenizer.chat_template", tmpl})
		}
		return kvs
	}
	types := func() []int32 {
		if tt, ok, err := m.Ints("tokenizer.token_type"); err == nil && ok && len(tt) == len(tokens) {
			out := make([]int32, len(tt))
			for i, t := range tt {
				out[i] = int32(t)
			}
			return out
		}
		return nil
	}
	switch {
	case kind == "llama2c" && len(tokens) > 0:
		scores, ok, err := m.Floats("tokenizer.scores")
		if err != nil || !ok || len(scores) != len(tokens) {
			return nil, fmt.Errorf("tokenizer.scores: want %d scores (%v)", len(tokens), err)
		}
		pieces := make([]string, len(tokens))
		tt := make([]int32, len(tokens))
		for i, p := range tokens {
			switch {
			case int64(i) == unk:
				pieces[i], tt[i] = p, tokenUnknown
			case int64(i) == bos || int64(i) == eos:
				pieces[i], tt[i] = strings.TrimSpace(p), tokenControl // llama2.c stores "\n<s>\n"
			case isByteToken(p):
				pieces[i], tt[i] = p, tokenByte
			default:
				pieces[i], tt[i] = strings.ReplaceAll(p, " ", "▁"), tokenNormal
			}
		}
		return specials([]KV{{"tokenizer.ggml.model", "llama"}, {"tokenizer.ggml.tokens", pieces},
			{"tokenizer.ggml.scores", scores}, {"tokenizer.ggml.token_type", tt}}), nil
	case kind == "gpt2" && len(tokens) > 0:
		kvs := []KV{{"tokenizer.ggml.model", "gpt2"}}
		if pre, ok, _ := m.String("tokenizer.pre"); ok {
			kvs = append(kvs, KV{"tokenizer.ggml.pre", pre})
		}
		kvs = append(kvs, KV{"tokenizer.ggml.tokens", tokens})
		if tt := types(); tt != nil {
			kvs = append(kvs, KV{"tokenizer.ggml.token_type", tt})
		}
		if merges, ok, _ := m.Strings("tokenizer.merges"); ok {
			kvs = append(kvs, KV{"tokenizer.ggml.merges", merges})
		}
		return specials(kvs), nil
	case kind == "sentencepiece_bpe" && len(tokens) > 0:
		kvs := []KV{{"tokenizer.ggml.model", "llama"}, {"tokenizer.ggml.tokens", tokens}}
		if scores, ok, _ := m.Floats("tokenizer.scores"); ok && len(scores) == len(tokens) {
			kvs = append(kvs, KV{"tokenizer.ggml.scores", scores})
		}
		if tt := types(); tt != nil {
			kvs = append(kvs, KV{"tokenizer.ggml.token_type", tt})
		}
		for _, k := range []string{"add_space_prefix", "remove_extra_whitespaces"} {
			if v, ok, _ := m.Bool("tokenizer." + k); ok {
				kvs = append(kvs, KV{"tokenizer.ggml." + k, v})
			}
		}
		return specials(kvs), nil
	}
	// No vocabulary llama.cpp can use: it then makes vocab_size dummy tokens.
	return []KV{{"tokenizer.ggml.model", "no_vocab"}}, nil
}

// isByteToken reports whether p is a byte-fallback piece "<0xXX>".
func isByteToken(p string) bool {
	if len(p) != 6 || p[:3] != "<0x" || p[5] != '>' {
		return false
	}
	for _, c := range p[3:5] {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ggufValue converts an lmc metadata value to the GGUF type llama.cpp expects for
// tokenizer keys: ints to uint32 (ids, counts; int32 or int64 when they do not fit),
// int arrays to []int32 (token types; []uint8 for precompiled_charsmap), floats to
// float32. ok is false for values that cannot be stored (negative "none" ids).
func ggufValue(key string, v any) (any, bool) {
	switch x := v.(type) {
	case int64:
		switch {
		case x >= 0 && x <= math.MaxUint32:
			return uint32(x), true
		case strings.HasSuffix(key, "_id"):
			return nil, false
		case x >= math.MinInt32 && x <= math.MaxInt32:
			return int32(x), true
		}
		return x, true
	case float64:
		return float32(x), true
	case []int64:
		if strings.HasSuffix(key, "precompiled_charsmap") {
			out := make([]uint8, len(x))
			for i, y := range x {
				if y < 0 || y > math.MaxUint8 {
					return x, true
				}
				out[i] = uint8(y)
			}
			return out, true
		}
		out := make([]int32, len(x))
		for i, y := range x {
			if y < math.MinInt32 || y > math.MaxInt32 {
				return x, true
			}
			out[i] = int32(y)
		}
		return out, true
	case bool, string, []string, []float32:
		return x, true
	}
	return nil, false
}
