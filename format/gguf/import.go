package gguf

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/model"
)

// ErrNoWeights is returned by Import for a GGUF file without tensors, such as the
// vocabulary-only files llama.cpp ships for its tokenizer tests.
var ErrNoWeights = errors.New("the GGUF file has no tensors (a vocabulary-only file?): there are no weights to convert")

// importers maps general.architecture to its converter.
var importers = map[string]func(b *builder) (model.Config, error){
	"llama": importLlama,
	"qwen2": importQwen2,
	"phi3":  importPhi3,
	"gpt2":  importGPT2,
}

// SupportedArchitectures returns the general.architecture values Import understands.
func SupportedArchitectures() []string {
	return slices.Sorted(maps.Keys(importers))
}

// Import converts the GGUF model at path into an lmc checkpoint (format/SPEC.md):
// llama.cpp's tensor names are lmrun's, so tensors keep their names; GGUF dimensions
// are reversed into lmc shapes; gpt2's and phi3's fused attn_qkv is split into attn_q,
// attn_k and attn_v, and phi3's gate-and-up ffn_up into ffn_gate and ffn_up, by rows.
// F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K and Q6_K matrices keep their type and bytes (lmc's
// layouts are ggml's); 1-D tensors and the position table become f32. The hyper-parameters are
// translated into lm.* keys; tokenizer.* keys (tokenizer.ggml.* included) are copied
// under their own names with their values converted to lmc types, as is every other key
// outside the architecture's namespace whose type converts. Tensor data is read from
// path when the checkpoint is written.
func Import(path string) (*format.Checkpoint, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	size := f.Size
	f.Close()
	ck, err := convert(f, func(t *TensorInfo) ([]byte, error) { return readTensor(path, size, f.DataOffset, t) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ck, nil
}

// FromFile converts a parsed GGUF file as Import does, for running it in place. With a
// File from Open, the Data of every tensor taken as it is stored — a matrix in its
// type, an f32 vector, rows of gpt2's attn_qkv — returns a slice of the mapping, read
// only when used (format.NewFile keeps such slices as they are: no copy); the Data of a
// converted tensor (a vector stored as f16, say) computes it from the mapping. Either
// way f must stay open while the checkpoint is used:
//
//	ck, err := gguf.FromFile(f)
//	...
//	file, err := format.NewFile(ck.Meta, ck.Tensors, f.Close) // f is the File's now
func FromFile(f *File) (*format.Checkpoint, error) {
	return convert(f, func(t *TensorInfo) ([]byte, error) {
		if b, ok := f.View(t); ok {
			return b, nil
		}
		return f.TensorData(t)
	})
}

// readTensor reads a tensor from path, checking first that the file still has the size
// it had when it was parsed.
func readTensor(path string, size, dataOff int64, t *TensorInfo) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() != size {
		return nil, fmt.Errorf("%s: file changed size since it was opened (%d bytes, was %d)", path, st.Size(), size)
	}
	if t.Size > math.MaxInt {
		return nil, fmt.Errorf("%s: tensor %s: %d bytes do not fit in memory on this platform", path, t.Name, t.Size)
	}
	b := make([]byte, t.Size)
	if _, err := fh.ReadAt(b, dataOff+int64(t.Offset)); err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %w", path, t.Name, err)
	}
	return b, nil
}

func convert(f *File, read func(*TensorInfo) ([]byte, error)) (*format.Checkpoint, error) {
	archV, ok := f.Value("general.architecture")
	arch, isStr := archV.(string)
	if ok && !isStr {
		return nil, fmt.Errorf("%w: general.architecture is a %T, want a string", ErrFormat, archV)
	}
	if len(f.Tensors) == 0 {
		return nil, ErrNoWeights
	}
	if !ok {
		return nil, fmt.Errorf("%w: no general.architecture key", ErrFormat)
	}
	imp, known := importers[arch]
	if !known {
		return nil, fmt.Errorf("unsupported architecture %q (supported: %s)", arch, strings.Join(SupportedArchitectures(), ", "))
	}
	b := &builder{f: f, read: read, arch: arch, used: map[string]bool{}}
	cfg, err := imp(b)
	if err != nil {
		return nil, err
	}
	tensors, err := b.finish()
	if err != nil {
		return nil, err
	}
	meta := format.Metadata{}
	for _, kv := range f.KV {
		if !keepKey(kv.Key, arch) {
			continue
		}
		if v, ok := MetaValue(kv.Value); ok {
			meta[kv.Key] = v
		}
	}
	for k, v := range cfg.Metadata() {
		meta[k] = v
	}
	meta["general.architecture"] = arch
	meta["general.source"] = fmt.Sprintf("GGUF v%d %s", f.Version, arch)
	return &format.Checkpoint{Meta: meta, Tensors: tensors}, nil
}

// keepKey tells which GGUF keys are copied into the lmc metadata: all but the
// architecture's own namespace (translated into lm.* keys instead), the keys describing
// the GGUF file rather than the model, and keys lmc cannot store.
func keepKey(key, arch string) bool {
	switch {
	case len(key) == 0 || len(key) > format.MaxNameLen:
		return false
	case strings.HasPrefix(key, arch+"."), strings.HasPrefix(key, "lm."):
		return false
	}
	switch key {
	case "general.architecture", "general.alignment", "general.file_type", "general.quantization_version", "general.source":
		return false
	}
	return true
}

// MetaValue converts a GGUF metadata value to an lmc one: integers to int64 (uint64
// values above the int64 range do not convert), float32 to the float64 of its shortest
// decimal form (1e-05 stays 1e-05), float64, bool and string as they are; arrays of
// integers or bools to []int64, of floats to []float32, of strings to []string. Arrays of
// arrays do not convert.
func MetaValue(v any) (any, bool) {
	switch x := v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		return int64(x), x <= math.MaxInt64
	case float32:
		return shortFloat(x), true
	case float64, bool, string, []string, []float32:
		return x, true
	case []float64:
		return convertSlice(x, func(y float64) float32 { return float32(y) }), true
	case []uint8:
		return convertSlice(x, func(y uint8) int64 { return int64(y) }), true
	case []int8:
		return convertSlice(x, func(y int8) int64 { return int64(y) }), true
	case []uint16:
		return convertSlice(x, func(y uint16) int64 { return int64(y) }), true
	case []int16:
		return convertSlice(x, func(y int16) int64 { return int64(y) }), true
	case []uint32:
		return convertSlice(x, func(y uint32) int64 { return int64(y) }), true
	case []int32:
		return convertSlice(x, func(y int32) int64 { return int64(y) }), true
	case []int64:
		return x, true
	case []uint64:
		for _, y := range x {
			if y > math.MaxInt64 {
				return nil, false
			}
		}
		return convertSlice(x, func(y uint64) int64 { return int64(y) }), true
	case []bool:
		return convertSlice(x, func(y bool) int64 {
			if y {
				return 1
			}
			return 0
		}), true
	}
	return nil, false
}

func convertSlice[S, T any](s []S, f func(S) T) []T {
	out := make([]T, len(s))
	for i, x := range s {
		out[i] = f(x)
	}
	return out
}

// shortFloat returns the float64 nearest the shortest decimal that reads back as x.
func shortFloat(x float32) float64 {
	if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
		return float64(x)
	}
	v, err := strconv.ParseFloat(strconv.FormatFloat(float64(x), 'g', -1, 32), 64)
	if err != nil {
		return float64(x)
	}
	return v
}

// builder collects the output tensors of one import, checking each GGUF tensor's shape
// and type and remembering every problem so that one error can list them all.
type builder struct {
	f       *File
	read    func(*TensorInfo) ([]byte, error)
	arch    string
	used    map[string]bool
	missing []string
	bad     []string
	out     []format.Source
}

// intKey returns a positive integer hyper-parameter of the architecture (key without
// the "arch." prefix); def < 0 makes it required.
func (b *builder) intKey(key string, def int) (int, error) {
	full := b.arch + "." + key
	v, ok := b.f.Value(full)
	if !ok {
		if def < 0 {
			return 0, fmt.Errorf("missing metadata %s", full)
		}
		return def, nil
	}
	var n int64
	switch v.(type) {
	case uint8, int8, uint16, int16, uint32, int32, int64, uint64:
		x, ok := MetaValue(v)
		if !ok {
			return 0, fmt.Errorf("metadata %s = %v is too large", full, v)
		}
		n = x.(int64)
	default:
		return 0, fmt.Errorf("metadata %s is a %T (%s), want an integer", full, v, describe(v))
	}
	if n <= 0 || n > math.MaxInt32 {
		return 0, fmt.Errorf("metadata %s = %d, want a positive int32", full, n)
	}
	return int(n), nil
}

// floatKey returns a float hyper-parameter; required when def is NaN.
func (b *builder) floatKey(key string, def float64) (float64, error) {
	full := b.arch + "." + key
	v, ok := b.f.Value(full)
	if !ok {
		if math.IsNaN(def) {
			return 0, fmt.Errorf("missing metadata %s", full)
		}
		return def, nil
	}
	var x float64
	switch y := v.(type) {
	case float32:
		x = shortFloat(y)
	case float64:
		x = y
	default:
		return 0, fmt.Errorf("metadata %s is a %T (%s), want a float", full, v, describe(v))
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, fmt.Errorf("metadata %s = %v", full, x)
	}
	return x, nil
}

// tensor returns the named tensor after checking its shape (lmc order) and type; a
// missing or mismatched tensor is recorded and nil returned.
func (b *builder) tensor(name string, shape ...int) *TensorInfo {
	t := b.optional(name, shape...)
	if t == nil && b.f.Tensor(name) == nil {
		b.missing = append(b.missing, name)
	}
	return t
}

// optional is tensor for a tensor that may be absent (nil without an error).
func (b *builder) optional(name string, shape ...int) *TensorInfo {
	b.used[name] = true
	t := b.f.Tensor(name)
	if t == nil {
		return nil
	}
	if _, ok := t.Type.DType(); !ok {
		b.bad = append(b.bad, fmt.Sprintf("tensor %s: unsupported tensor type %s (lmrun reads F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K and Q6_K)", name, t.Type))
		return nil
	}
	// Trailing GGUF dimensions of 1 beyond the expected rank do not matter.
	ne := t.Dims
	for len(ne) > len(shape) && ne[len(ne)-1] == 1 {
		ne = ne[:len(ne)-1]
	}
	if !sameShape(Shape(ne), shape) {
		b.bad = append(b.bad, fmt.Sprintf("tensor %s has shape %v, the metadata implies %v", name, Shape(ne), shape))
		return nil
	}
	return t
}

// add appends src as an lmc tensor of the given shape: a matrix keeps its type and
// bytes; a vector (or any tensor when toF32) is converted to f32. Nothing is added when
// src is nil (its problem is already recorded).
func (b *builder) add(name string, shape []int, src *TensorInfo, toF32 bool) {
	b.addRows(name, shape, src, 0, shape[0], toF32)
}

// addRows appends rows [r0, r1) of src (its first lmc dimension) as an lmc tensor of
// the given shape; for a vector, elements [r0, r1).
func (b *builder) addRows(name string, shape []int, src *TensorInfo, r0, r1 int, toF32 bool) {
	if src == nil {
		return
	}
	dt, _ := src.Type.DType()
	cols := int(src.Dims[0]) // ne0, the fastest dimension
	vector := len(shape) == 1
	read := b.read
	if vector || toF32 {
		b.out = append(b.out, format.Source{Name: name, DType: dtype.F32, Shape: shape, Data: func() ([]byte, error) {
			raw, err := read(src)
			if err != nil {
				return nil, err
			}
			if dt == dtype.F32 { // already what lmc stores: the bytes as they are
				if vector {
					return raw[4*r0 : 4*r1 : 4*r1], nil
				}
				return raw[4*r0*cols : 4*r1*cols : 4*r1*cols], nil
			}
			v, err := dtype.Dequantize(dt, raw, cols)
			if err != nil {
				return nil, fmt.Errorf("tensor %s: %w", src.Name, err)
			}
			if vector {
				return dtype.F32ToBytes(v[r0:r1]), nil
			}
			return dtype.F32ToBytes(v[r0*cols : r1*cols]), nil
		}})
		return
	}
	rb := dtype.RowBytes(dt, cols)
	b.out = append(b.out, format.Source{Name: name, DType: dt, Shape: shape, Data: func() ([]byte, error) {
		raw, err := read(src)
		if err != nil {
			return nil, err
		}
		return raw[r0*rb : r1*rb : r1*rb], nil
	}})
}

// finish returns the tensors, or an error listing every missing, mismatched and
// unexpected tensor. Unexpected tensors are an error: dropping weights we do not
// understand would silently give a different model.
func (b *builder) finish() ([]format.Source, error) {
	var unused []string
	for _, t := range b.f.Tensors {
		if !b.used[t.Name] {
			unused = append(unused, t.Name)
		}
	}
	var msgs []string
	if len(b.missing) > 0 {
		msgs = append(msgs, "missing tensors: "+list(b.missing))
	}
	msgs = append(msgs, b.bad...)
	if len(unused) > 0 {
		sort.Strings(unused)
		msgs = append(msgs, fmt.Sprintf("tensors a %s model should not have (a variant lmrun does not support?): %s", b.arch, list(unused)))
	}
	if len(msgs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return b.out, nil
}

// classifier adds output.weight unless it is absent or a copy of token_embd.weight (a
// tied classifier), which lmc expresses by leaving it out.
func (b *builder) classifier(vocab, dim int) error {
	out := b.optional("output.weight", vocab, dim)
	if out == nil {
		return nil
	}
	if emb := b.f.Tensor("token_embd.weight"); emb != nil && emb.Type == out.Type && emb.Size == out.Size {
		x, err := b.read(emb)
		if err != nil {
			return err
		}
		y, err := b.read(out)
		if err != nil {
			return err
		}
		if bytes.Equal(x, y) {
			return nil
		}
	}
	b.add("output.weight", []int{vocab, dim}, out, false)
	return nil
}

// list joins names, eliding all but the first 20.
func list(names []string) string {
	const show = 20
	if len(names) <= show {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:show], ", "), len(names)-show)
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// common reads the hyper-parameters both architectures share and checks the token
// embedding, whose rows give the vocabulary size.
type common struct {
	dim, layers, heads, ffn, ctx, vocab int
}

func (b *builder) common() (common, error) {
	var c common
	var err error
	for _, p := range []struct {
		key string
		v   *int
	}{{"embedding_length", &c.dim}, {"block_count", &c.layers}, {"attention.head_count", &c.heads}, {"context_length", &c.ctx}} {
		if *p.v, err = b.intKey(p.key, -1); err != nil {
			return c, err
		}
	}
	// Every block has tensors: this bounds the loops and allocations block_count drives.
	if n := blockCount(b.f); c.layers > n {
		return c, fmt.Errorf("metadata %s.block_count = %d, but the file holds tensors for at most %d blocks", b.arch, c.layers, n)
	}
	if c.ffn, err = b.ffnKey(); err != nil {
		return c, err
	}
	emb := b.f.Tensor("token_embd.weight")
	if emb == nil || len(emb.Dims) < 2 || emb.Dims[1] == 0 {
		return c, fmt.Errorf("missing tensors: token_embd.weight (or it is not a matrix)")
	}
	if emb.Dims[0] != uint64(c.dim) {
		return c, fmt.Errorf("metadata %s.embedding_length = %d, but token_embd.weight has rows of %d", b.arch, c.dim, emb.Dims[0])
	}
	c.vocab = int(emb.Dims[1])
	if v, ok := b.f.Value(b.arch + ".vocab_size"); ok {
		if n, ok := MetaValue(v); ok && n != any(int64(c.vocab)) {
			return c, fmt.Errorf("metadata %s.vocab_size = %v, but token_embd.weight has %d rows", b.arch, n, c.vocab)
		}
	}
	return c, nil
}

// blockCount returns how many distinct block indices n the tensor names of f hold as
// "blk.n.".
func blockCount(f *File) int {
	names := make([]string, len(f.Tensors))
	for i, t := range f.Tensors {
		names[i] = t.Name
	}
	return format.CountLayers(names, "blk.")
}

// resolve fills in cfg's defaults and validates it (model.Config.Resolve). A rejected
// value is reported under the metadata key of this file it came from, when keys (names
// without the "arch." prefix) maps the model package's key for it.
func (b *builder) resolve(cfg *model.Config, keys map[string]string) error {
	err := cfg.Resolve()
	if err == nil {
		return nil
	}
	var ce *model.ConfigError
	if errors.As(err, &ce) {
		if k, ok := keys[ce.Key]; ok {
			return fmt.Errorf("metadata %s.%s = %v: %w", b.arch, k, ce.Value, err)
		}
	}
	return err
}

// ggufKeys maps the model package's metadata keys to the GGUF keys (without the "arch."
// prefix) both architectures read them from, and those of extra.
func ggufKeys(extra map[string]string) map[string]string {
	keys := map[string]string{
		model.KeyDim: "embedding_length", model.KeyNLayers: "block_count", model.KeyNHeads: "attention.head_count",
		model.KeyFFNDim: "feed_forward_length", model.KeyContextLength: "context_length",
	}
	for k, v := range extra {
		keys[k] = v
	}
	return keys
}

// ffnKey reads feed_forward_length, which some files store per layer (all equal here).
func (b *builder) ffnKey() (int, error) {
	full := b.arch + ".feed_forward_length"
	v, ok := b.f.Value(full)
	if ok {
		if arr, isArr := MetaValue(v); isArr {
			if s, isInts := arr.([]int64); isInts {
				for _, x := range s {
					if x != s[0] {
						return 0, fmt.Errorf("unsupported: %s differs between layers (%v)", full, describe(s))
					}
				}
				if len(s) == 0 || s[0] <= 0 || s[0] > math.MaxInt32 {
					return 0, fmt.Errorf("metadata %s = %v", full, describe(s))
				}
				return int(s[0]), nil
			}
		}
	}
	return b.intKey("feed_forward_length", -1)
}

// llamaLike is how one llama.cpp architecture of the Llama kind lays out its tensors.
type llamaLike struct {
	// style is the RoPE pairing of the file's q/k rows: llama.cpp permutes llama's to
	// interleaved pairs and keeps qwen2's and phi3's in Hugging Face's rotate-half order
	// (its NEOX rope type).
	style model.RopeStyle
	// qkvBias: q, k and v have biases, o none (qwen2); otherwise any of the four may.
	qkvBias bool
	// fused: attn_qkv (rows q, k, v) instead of three tensors, and ffn_up holding the
	// gate's rows and then the up projection's, with no ffn_gate (phi3).
	fused bool
	// windows: attention.sliding_window applies to every layer (0: none); without it a
	// window is refused.
	windows bool
}

var (
	archLlama = llamaLike{style: model.Interleaved, windows: true}
	archQwen2 = llamaLike{style: model.NeoX, qkvBias: true}
	archPhi3  = llamaLike{style: model.NeoX, fused: true, windows: true}
)

// importLlama converts architecture "llama" (Llama, Mistral, SmolLM...): q/k rows in the
// interleaved order lmrun rotates, optional q/k/v/o biases, Llama 3's rope_freqs.
func importLlama(b *builder) (model.Config, error) { return b.llamaLike(archLlama) }

// importQwen2 converts architecture "qwen2": rotate-half q/k rows with biases on q, k
// and v.
func importQwen2(b *builder) (model.Config, error) { return b.llamaLike(archQwen2) }

// importPhi3 converts architecture "phi3": rotate-half rows, fused attn_qkv and
// gate-and-up ffn_up split by rows, LongRoPE's rope_factors_short/long.
func importPhi3(b *builder) (model.Config, error) { return b.llamaLike(archPhi3) }

// llamaLike converts an architecture of the Llama kind: RMSNorm, RoPE, SwiGLU.
func (b *builder) llamaLike(a llamaLike) (model.Config, error) {
	var none model.Config
	c, err := b.common()
	if err != nil {
		return none, err
	}
	kvHeads, err := b.intKey("attention.head_count_kv", c.heads)
	if err != nil {
		return none, err
	}
	if kvHeads > c.heads || c.heads%kvHeads != 0 {
		return none, fmt.Errorf("head_count %d is not a multiple of head_count_kv %d", c.heads, kvHeads)
	}
	headDim := c.dim / c.heads
	if _, ok := b.f.Value(b.arch + ".attention.key_length"); ok {
		if headDim, err = b.intKey("attention.key_length", -1); err != nil {
			return none, err
		}
		if vl, err := b.intKey("attention.value_length", headDim); err != nil {
			return none, err
		} else if vl != headDim {
			return none, fmt.Errorf("unsupported: attention.value_length %d differs from key_length %d", vl, headDim)
		}
	} else if c.dim%c.heads != 0 {
		return none, fmt.Errorf("embedding_length %d is not a multiple of head_count %d", c.dim, c.heads)
	}
	if headDim%2 != 0 {
		return none, fmt.Errorf("head dimension %d is odd (RoPE rotates pairs)", headDim)
	}
	ropeDim, err := b.intKey("rope.dimension_count", headDim)
	if err != nil {
		return none, err
	}
	if ropeDim > headDim || ropeDim%2 != 0 {
		return none, fmt.Errorf("rope.dimension_count %d must be even and at most the head dimension %d", ropeDim, headDim)
	}
	eps, err := b.floatKey("attention.layer_norm_rms_epsilon", math.NaN())
	if err != nil {
		return none, err
	}
	theta, err := b.floatKey("rope.freq_base", 10000)
	if err != nil {
		return none, err
	}
	if theta <= 0 {
		return none, fmt.Errorf("rope.freq_base = %v, want > 0", theta)
	}
	if v, ok := b.f.Value(b.arch + ".expert_count"); ok {
		if n, _ := MetaValue(v); n != int64(0) {
			return none, fmt.Errorf("unsupported: a mixture of experts (expert_count %s)", describe(v))
		}
	}
	windows, err := b.windows(a, c.layers)
	if err != nil {
		return none, err
	}
	cfg := model.Config{Arch: b.arch, VocabSize: c.vocab, Dim: c.dim, NLayers: c.layers, NHeads: c.heads,
		NKVHeads: kvHeads, HeadDim: headDim, FFNDim: c.ffn, ContextLength: c.ctx, Norm: model.RMSNorm,
		NormEps: eps, Position: model.RoPE, RopeTheta: theta, RopeDim: ropeDim, RopeStyle: a.style,
		Activation: model.SwiGLU, AttnWindows: windows}
	if err := b.ropeScaling(&cfg); err != nil {
		return none, err
	}
	keys := ggufKeys(map[string]string{model.KeyNKVHeads: "attention.head_count_kv", model.KeyRopeDim: "rope.dimension_count",
		model.KeyNormEps: "attention.layer_norm_rms_epsilon", model.KeyRopeTheta: "rope.freq_base",
		model.KeyAttnWindows: "attention.sliding_window", model.KeyRopeOrigContext: "rope.scaling.original_context_length",
		model.KeyRopeAttnFactor: "rope.scaling.attn_factor"})
	if _, ok := b.f.Value(b.arch + ".attention.key_length"); ok {
		keys[model.KeyHeadDim] = "attention.key_length"
	}
	if err := b.resolve(&cfg, keys); err != nil {
		return none, err
	}
	dim, qDim, kvDim, ffn := c.dim, c.heads*headDim, kvHeads*headDim, c.ffn
	b.add("token_embd.weight", []int{c.vocab, dim}, b.tensor("token_embd.weight", c.vocab, dim), false)
	for l := 0; l < c.layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		vec := func(name string, n int, required bool) {
			if required {
				b.add(p+name, []int{n}, b.tensor(p+name, n), true)
			} else {
				b.add(p+name, []int{n}, b.optional(p+name, n), true)
			}
		}
		mat := func(name string, rows, cols int) {
			b.add(p+name, []int{rows, cols}, b.tensor(p+name, rows, cols), false)
		}
		vec("attn_norm.weight", dim, true)
		if a.fused && (b.f.Tensor(p+"attn_qkv.weight") != nil || b.f.Tensor(p+"attn_q.weight") == nil) {
			w := b.tensor(p+"attn_qkv.weight", qDim+2*kvDim, dim)
			b.addRows(p+"attn_q.weight", []int{qDim, dim}, w, 0, qDim, false)
			b.addRows(p+"attn_k.weight", []int{kvDim, dim}, w, qDim, qDim+kvDim, false)
			b.addRows(p+"attn_v.weight", []int{kvDim, dim}, w, qDim+kvDim, qDim+2*kvDim, false)
		} else {
			mat("attn_q.weight", qDim, dim)
			mat("attn_k.weight", kvDim, dim)
			mat("attn_v.weight", kvDim, dim)
		}
		if !a.fused {
			vec("attn_q.bias", qDim, a.qkvBias)
			vec("attn_k.bias", kvDim, a.qkvBias)
			vec("attn_v.bias", kvDim, a.qkvBias)
		}
		mat("attn_output.weight", dim, qDim)
		if !a.fused && !a.qkvBias {
			vec("attn_output.bias", dim, false)
		}
		vec("ffn_norm.weight", dim, true)
		if a.fused {
			up := b.tensor(p+"ffn_up.weight", 2*ffn, dim)
			b.addRows(p+"ffn_gate.weight", []int{ffn, dim}, up, 0, ffn, false)
			b.addRows(p+"ffn_up.weight", []int{ffn, dim}, up, ffn, 2*ffn, false)
		} else {
			mat("ffn_gate.weight", ffn, dim)
			mat("ffn_up.weight", ffn, dim)
		}
		mat("ffn_down.weight", dim, ffn)
	}
	b.add("output_norm.weight", []int{dim}, b.tensor("output_norm.weight", dim), true)
	if err := b.classifier(c.vocab, dim); err != nil {
		return none, err
	}
	return cfg, nil
}

// windows returns the attention window of every layer: attention.sliding_window on
// every layer for the architectures whose llama.cpp file states it so (0: none).
func (b *builder) windows(a llamaLike, layers int) ([]int, error) {
	key := "attention.sliding_window"
	v, ok := b.f.Value(b.arch + "." + key)
	if !ok {
		return nil, nil
	}
	if n, _ := MetaValue(v); n == int64(0) {
		return nil, nil // phi3 files without a window say 0
	}
	w, err := b.intKey(key, -1)
	if err != nil {
		return nil, err
	}
	if !a.windows {
		return nil, fmt.Errorf("unsupported: %s.%s %d (its window does not apply to every layer)", b.arch, key, w)
	}
	ws := make([]int, layers)
	for i := range ws {
		ws[i] = w
	}
	return ws, nil
}

// ropeScaling reads RoPE's frequency scaling: rope.scaling.type none or linear (factor
// from rope.scaling.factor, or the older rope.scale_linear, dividing every frequency);
// the per-pair divisors of a rope_freqs.weight tensor (Llama 3), multiplied by a linear
// factor as ggml does; LongRoPE's rope_factors_short.weight and rope_factors_long.weight
// (phi3) with rope.scaling.original_context_length; and rope.scaling.attn_factor, which
// multiplies cos and sin. Other scaling types (yarn) are refused.
func (b *builder) ropeScaling(cfg *model.Config) error {
	half := cfg.RopeDim / 2
	linear := 1.0
	typ := "none"
	if v, ok := b.f.Value(b.arch + ".rope.scaling.type"); ok {
		s, isStr := v.(string)
		if !isStr {
			return fmt.Errorf("metadata %s.rope.scaling.type is a %T (%s), want a string", b.arch, v, describe(v))
		}
		typ = s
	}
	longFile := b.f.Tensor("rope_factors_long.weight") != nil || b.f.Tensor("rope_factors_short.weight") != nil
	switch typ {
	case "none", "":
	case "linear":
		var err error
		key := "rope.scaling.factor"
		if _, ok := b.f.Value(b.arch + "." + key); !ok {
			key = "rope.scale_linear"
		}
		if linear, err = b.floatKey(key, 1); err != nil {
			return err
		}
		if !(linear > 0) {
			return fmt.Errorf("metadata %s.%s = %v, want > 0", b.arch, key, linear)
		}
	case "longrope":
		if !longFile {
			return fmt.Errorf("%s.rope.scaling.type longrope without rope_factors_short.weight and rope_factors_long.weight", b.arch)
		}
	default:
		return fmt.Errorf("unsupported: %s.rope.scaling.type %s (lmrun implements none, linear, Llama 3's rope_freqs and LongRoPE's factors)", b.arch, describe(typ))
	}
	factors := func(name string, required bool) ([]float32, error) {
		var t *TensorInfo
		if required {
			t = b.tensor(name, half)
		} else {
			t = b.optional(name, half)
		}
		if t == nil {
			if b.f.Tensor(name) != nil || required {
				return nil, fmt.Errorf("tensor %s: want %d factors (one per rotated pair) as a vector", name, half)
			}
			return nil, nil
		}
		raw, err := b.read(t)
		if err != nil {
			return nil, err
		}
		dt, _ := t.Type.DType()
		v, err := dtype.Dequantize(dt, raw, half)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", name, err)
		}
		return v, nil
	}
	var err error
	if longFile {
		if cfg.RopeFreqFactors, err = factors("rope_factors_short.weight", true); err != nil {
			return err
		}
		if cfg.RopeLongFactors, err = factors("rope_factors_long.weight", true); err != nil {
			return err
		}
		if cfg.RopeOrigContext, err = b.intKey("rope.scaling.original_context_length", -1); err != nil {
			return fmt.Errorf("LongRoPE factors: %w", err)
		}
	} else if cfg.RopeFreqFactors, err = factors("rope_freqs.weight", false); err != nil {
		return err
	}
	if linear != 1 {
		if cfg.RopeFreqFactors == nil {
			cfg.RopeFreqFactors = make([]float32, half)
			for i := range cfg.RopeFreqFactors {
				cfg.RopeFreqFactors[i] = 1
			}
		}
		for _, fs := range [][]float32{cfg.RopeFreqFactors, cfg.RopeLongFactors} {
			for i := range fs {
				fs[i] = float32(float64(fs[i]) * linear)
			}
		}
	}
	if cfg.RopeAttnFactor, err = b.floatKey("rope.scaling.attn_factor", 1); err != nil {
		return err
	}
	return nil
}

// importGPT2 converts architecture "gpt2": LayerNorm with biases, learned positions,
// GELU (tanh form); attn_qkv is split into attn_q, attn_k and attn_v (files with the
// three separate are accepted too).
func importGPT2(b *builder) (model.Config, error) {
	var none model.Config
	c, err := b.common()
	if err != nil {
		return none, err
	}
	if c.dim%c.heads != 0 {
		return none, fmt.Errorf("embedding_length %d is not a multiple of head_count %d", c.dim, c.heads)
	}
	if kv, err := b.intKey("attention.head_count_kv", c.heads); err != nil {
		return none, err
	} else if kv != c.heads {
		return none, fmt.Errorf("unsupported: gpt2 with head_count_kv %d ≠ head_count %d", kv, c.heads)
	}
	eps, err := b.floatKey("attention.layer_norm_epsilon", math.NaN())
	if err != nil {
		return none, err
	}
	// The learned position table must hold context_length rows: check it before the
	// length sizes anything.
	if pos := b.f.Tensor("position_embd.weight"); pos != nil && (len(pos.Dims) < 2 || pos.Dims[1] != uint64(c.ctx)) {
		return none, fmt.Errorf("metadata %s.context_length = %d, but position_embd.weight has shape %v", b.arch, c.ctx, pos.Shape())
	}
	cfg := model.Config{Arch: b.arch, VocabSize: c.vocab, Dim: c.dim, NLayers: c.layers, NHeads: c.heads,
		FFNDim: c.ffn, ContextLength: c.ctx, Norm: model.LayerNorm, NormEps: eps, Position: model.Learned,
		Activation: model.GELUTanh}
	if err := b.resolve(&cfg, ggufKeys(map[string]string{model.KeyNormEps: "attention.layer_norm_epsilon"})); err != nil {
		return none, err
	}
	dim := c.dim
	b.add("token_embd.weight", []int{c.vocab, dim}, b.tensor("token_embd.weight", c.vocab, dim), false)
	b.add("position_embd.weight", []int{c.ctx, dim}, b.tensor("position_embd.weight", c.ctx, dim), true)
	for l := 0; l < c.layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		vec := func(name string, n int) { b.add(p+name, []int{n}, b.tensor(p+name, n), true) }
		mat := func(name string, rows, cols int) {
			b.add(p+name, []int{rows, cols}, b.tensor(p+name, rows, cols), false)
		}
		vec("attn_norm.weight", dim)
		vec("attn_norm.bias", dim)
		if b.f.Tensor(p+"attn_qkv.weight") != nil || b.f.Tensor(p+"attn_q.weight") == nil {
			w := b.tensor(p+"attn_qkv.weight", 3*dim, dim)
			bias := b.tensor(p+"attn_qkv.bias", 3*dim)
			for i, name := range []string{"attn_q", "attn_k", "attn_v"} {
				b.addRows(p+name+".weight", []int{dim, dim}, w, i*dim, (i+1)*dim, false)
				b.addRows(p+name+".bias", []int{dim}, bias, i*dim, (i+1)*dim, true)
			}
		} else {
			for _, name := range []string{"attn_q", "attn_k", "attn_v"} {
				mat(name+".weight", dim, dim)
				vec(name+".bias", dim)
			}
		}
		mat("attn_output.weight", dim, dim)
		vec("attn_output.bias", dim)
		vec("ffn_norm.weight", dim)
		vec("ffn_norm.bias", dim)
		mat("ffn_up.weight", c.ffn, dim)
		vec("ffn_up.bias", c.ffn)
		mat("ffn_down.weight", dim, c.ffn)
		vec("ffn_down.bias", dim)
	}
	b.add("output_norm.weight", []int{dim}, b.tensor("output_norm.weight", dim), true)
	b.add("output_norm.bias", []int{dim}, b.tensor("output_norm.bias", dim), true)
	if err := b.classifier(c.vocab, dim); err != nil {
		return none, err
	}
	return cfg, nil
}
