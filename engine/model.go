package engine

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/lmrun/lmrun/backends"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/engine/parallel"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/kernels"
	"github.com/lmrun/lmrun/model"
	"github.com/lmrun/lmrun/tokenizer"
)

// Options configure Load.
type Options struct {
	// Backend names the kernel backend ("" = $LMRUN_BACKEND or the best available).
	Backend string
	// Threads is the number of threads a forward pass uses (≤ 0: parallel.DefaultThreads,
	// one per physical core).
	Threads int
	// F32Activations multiplies block-quantized weights (q8_0, q4_0 and the k-quants)
	// with the float32 activations. By default activations are quantized once per
	// product — to q8_0 blocks for q8_0/q4_0 weights, to q8_k super-blocks for the
	// k-quants, as llama.cpp does — and multiplied with integer dot products: faster, and
	// within a tested tolerance of the exact path. Likewise, on a backend with a faster
	// product for them (kernels.BF16Kernels), bf16 weights by default take activations
	// rounded to bfloat16, as llama.cpp does; F32Activations keeps them float32 too.
	F32Activations bool
	// Repack prepares, at load, every q8_0 matrix multiplied with quantized activations
	// in the layout of the backend's int8 GEMM (kernels.Repacker; the amd64 backends
	// decline q4_0, whose packed form is twice the file's bytes), which
	// then skips the repack it otherwise does on every product: faster batched decoding
	// and prefill, for memory (RepackedBytes; the file's bytes stay mapped but are no
	// longer read, so the OS may drop them). Results are the same bits. No effect with
	// F32Activations or on a backend without a Repacker.
	Repack bool
}

// Model is a loaded checkpoint: configuration, weights (aliasing the file's read-only
// mapping), tokenizer and the kernels that run them. It is immutable and safe for
// concurrent use by any number of Sessions.
type Model struct {
	cfg    model.Config
	meta   format.Metadata
	tok    tokenizer.Tokenizer // nil when the checkpoint carries none
	tokErr error               // why tok is nil when the checkpoint's kind is unsupported

	file    *format.File
	kern    kernels.Kernels
	q8      kernels.Q8Kernels       // the q8-activation path, nil when off or unavailable
	bf16    kernels.BF16Kernels     // bf16 weights' bf16-activation path, nil when off or unavailable
	prep    kernels.XPreparer       // products on x laid out once per product, nil when the backend has none
	scored  kernels.ScoredAttention // a prompt's attention scores by matrix products, nil when the backend has none
	backend string
	pool    *parallel.Pool

	// actTypes holds the activation types (kernels.ActivationDType) of the model's
	// block-quantized matrices: the quantized activations a Session needs buffers for.
	actTypes map[dtype.DType]bool
	// repacked is the bytes of the matrices packed at load (Options.Repack).
	repacked int64
	// repackGrowth is what the packed matrices take beyond their bytes in the file:
	// what a decoded token reads more (Footprint).
	repackGrowth int64

	tokEmbd *kernels.Mat // [vocab, embdim]
	projIn  *kernels.Mat // [dim, embdim] when cfg.Projected
	projOut *kernels.Mat // [embdim, dim] when cfg.Projected
	posEmbd *kernels.Mat // [context+offset, dim], learned positions only
	layers  []layer
	outNorm norm
	output  *kernels.Mat // classifier [vocab, embdim]; token_embd when tied

	ropeFreq, ropeFreqLong []float64 // [rope_dim/2] angle per position of each rotated pair (long: LongRoPE's)

	names map[*kernels.Mat]string // tensor name of every bound matrix (ObserveMatMul)
}

type norm struct{ w, b []float32 }

type layer struct {
	attnNorm, ffnNorm norm
	wq, wk, wv, wo    *kernels.Mat
	bq, bk, bv, bo    []float32
	gate, up, down    *kernels.Mat
	bgate, bup, bdown []float32
	window            int
}

// Load opens a checkpoint and prepares it for inference.
func Load(path string, opts Options) (*Model, error) {
	f, err := format.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := newModel(f, opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Config returns the model's description. It is a copy: changing it changes nothing.
func (m *Model) Config() model.Config {
	c := m.cfg
	c.AttnWindows = slices.Clone(m.cfg.AttnWindows)
	c.RopeFreqFactors = slices.Clone(m.cfg.RopeFreqFactors)
	c.RopeLongFactors = slices.Clone(m.cfg.RopeLongFactors)
	return c
}

// Metadata returns the value of a checkpoint metadata key (nil when it is missing). Slice
// values are the model's own and must not be modified.
func (m *Model) Metadata(key string) any { return m.meta[key] }

// MetadataKeys returns the checkpoint's metadata keys in sorted order.
func (m *Model) MetadataKeys() []string { return m.meta.Keys() }

// Tokenizer returns the checkpoint's tokenizer, or nil when it carries none or one of a
// kind lmrun does not implement (TokenizerErr then says which).
func (m *Model) Tokenizer() tokenizer.Tokenizer { return m.tok }

// TokenizerErr says why Tokenizer is nil when the checkpoint carries a tokenizer of a
// kind lmrun does not implement (the model still runs on token ids); nil otherwise.
func (m *Model) TokenizerErr() error { return m.tokErr }

// FromFile prepares an already open checkpoint — one format.Open read, or one
// convert.Open made of a GGUF, Hugging Face or llama2.c model. The Model takes ownership
// of f when FromFile succeeds (Close closes it); on error, f is still the caller's.
func FromFile(f *format.File, opts Options) (*Model, error) { return newModel(f, opts) }

func newModel(f *format.File, opts Options) (*Model, error) {
	cfg, err := model.Parse(f.Meta)
	if err != nil {
		return nil, err
	}
	b, err := backends.Resolve(opts.Backend)
	if err != nil {
		return nil, err
	}
	m := &Model{cfg: cfg, meta: f.Meta, file: f, kern: b.New(), backend: b.Name}
	if err := m.bind(); err != nil {
		return nil, err
	}
	m.actTypes = m.activationTypes()
	if q8, ok := m.kern.(kernels.Q8Kernels); ok && !opts.F32Activations && len(m.actTypes) > 0 {
		m.q8 = q8
	}
	if rp, ok := m.kern.(kernels.Repacker); ok && opts.Repack && m.q8 != nil {
		m.repack(rp)
	}
	if bk, ok := m.kern.(kernels.BF16Kernels); ok && !opts.F32Activations && m.hasBF16Matrices() && bk.FastBF16() {
		m.bf16 = bk
	}
	m.prep, _ = m.kern.(kernels.XPreparer)
	m.scored, _ = m.kern.(kernels.ScoredAttention)
	tok, err := tokenizer.FromMetadata(f.Meta)
	switch {
	case errors.Is(err, tokenizer.ErrNoTokenizer):
	case errors.Is(err, tokenizer.ErrUnsupported):
		// The weights still run on token ids; say why text does not.
		m.tokErr = err
	case err != nil:
		return nil, fmt.Errorf("tokenizer: %w", err)
	default:
		if tok.VocabSize() > cfg.VocabSize {
			return nil, fmt.Errorf("tokenizer has %d tokens, the model only %d", tok.VocabSize(), cfg.VocabSize)
		}
		m.tok = tok
	}
	if cfg.Position == model.RoPE {
		m.ropeFreq = ropeFrequencies(cfg, cfg.RopeFreqFactors)
		if cfg.RopeLongFactors != nil {
			m.ropeFreqLong = ropeFrequencies(cfg, cfg.RopeLongFactors)
		}
	}
	m.pool = parallel.New(opts.Threads)
	return m, nil
}

// repack offers every matrix the forward pass multiplies to rp, once each (the
// classifier may be the token embeddings), and counts the bytes packed.
func (m *Model) repack(rp kernels.Repacker) {
	ws := []*kernels.Mat{m.projIn, m.projOut, m.output}
	for i := range m.layers {
		l := &m.layers[i]
		ws = append(ws, l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down)
	}
	for _, w := range ws {
		if w != nil && w.Packed == nil && blockQuantized(w.DType) && rp.Repack(w) {
			m.repacked += int64(len(w.Packed.Data))
			m.repackGrowth += int64(len(w.Packed.Data)) - int64(len(w.Data))
		}
	}
}

// RepackedBytes returns the memory the matrices packed at load take (Options.Repack), 0
// when none were.
func (m *Model) RepackedBytes() int64 { return m.repacked }

// activationTypes returns the activation types the model's block-quantized matrices
// (q8_0, q4_0, the k-quants) take on the q8 path; empty when it has none.
func (m *Model) activationTypes() map[dtype.DType]bool {
	types := map[dtype.DType]bool{}
	for _, t := range m.file.Tensors {
		if len(t.Shape) == 2 && blockQuantized(t.DType) {
			types[kernels.ActivationDType(t.DType)] = true
		}
	}
	return types
}

// hasBF16Matrices reports whether the model has bf16 weight matrices (which take
// activations rounded to bfloat16 when m.bf16 is set).
func (m *Model) hasBF16Matrices() bool {
	for _, t := range m.file.Tensors {
		if len(t.Shape) == 2 && t.DType == dtype.BF16 {
			return true
		}
	}
	return false
}

// ropeFrequencies returns θ_i = theta^(−2i/rope_dim) / factors[i] for each rotated pair
// i (factors nil: all 1). Angles are computed per forward pass (no table sized by the
// context length, which a hostile checkpoint could make huge).
func ropeFrequencies(c model.Config, factors []float32) []float64 {
	f := make([]float64, c.RopeDim/2)
	for i := range f {
		f[i] = math.Pow(c.RopeTheta, -float64(2*i)/float64(c.RopeDim))
		if factors != nil {
			f[i] /= float64(factors[i])
		}
	}
	return f
}

// Close releases the pool and the checkpoint mapping. Sessions must not be used after.
func (m *Model) Close() error {
	m.pool.Close()
	return m.file.Close()
}

// Backend returns the name of the kernel backend in use.
func (m *Model) Backend() string { return m.backend }

// Threads returns the number of threads a forward pass uses.
func (m *Model) Threads() int { return m.pool.Threads() }

// File returns the underlying checkpoint.
func (m *Model) File() *format.File { return m.file }

// Footprint says what one token costs a forward pass: the weight bytes a decoded token
// reads (every layer tensor, the final norm and the classifier, but one row of the
// token and position embeddings: what bounds decoding by memory bandwidth), and the
// multiply-adds of its matrix products without and with the classifier (a prompt's
// tokens skip the classifier but the last; attention is not counted). Int8LayerMACs and
// Int8ClassifierMACs are the parts of those the model runs as integer products: those of
// block-quantized weights (q8_0, q4_0, the k-quants) with quantized activations, zero
// when it was loaded with f32 activations or its backend has no such path. The matrices
// packed at load (Options.Repack) count at their packed size.
type Footprint struct {
	StreamedBytes      int64
	LayerMACs          int64
	ClassifierMACs     int64
	Int8LayerMACs      int64
	Int8ClassifierMACs int64
}

// Footprint returns the model's per-token footprint.
func (m *Model) Footprint() Footprint {
	fp := Footprint{StreamedBytes: m.file.DataSize() + m.repackGrowth}
	rowOnly := func(w *kernels.Mat) {
		if w != nil && w.Rows > 0 {
			fp.StreamedBytes -= int64(len(w.Data)) - int64(len(w.Data)/w.Rows)
		}
	}
	if m.output != m.tokEmbd {
		rowOnly(m.tokEmbd)
	}
	rowOnly(m.posEmbd)
	int8 := func(w *kernels.Mat) bool { return m.q8 != nil && blockQuantized(w.DType) }
	macs := func(ws ...*kernels.Mat) {
		for _, w := range ws {
			if w != nil {
				n := int64(w.Rows) * int64(w.Cols)
				fp.LayerMACs += n
				if int8(w) {
					fp.Int8LayerMACs += n
				}
			}
		}
	}
	macs(m.projIn, m.projOut)
	for i := range m.layers {
		l := &m.layers[i]
		macs(l.wq, l.wk, l.wv, l.wo, l.gate, l.up, l.down)
	}
	fp.ClassifierMACs = int64(m.output.Rows) * int64(m.output.Cols)
	if int8(m.output) {
		fp.Int8ClassifierMACs = fp.ClassifierMACs
	}
	return fp
}

// PromptMACs returns the multiply-adds of the matrix products a forward pass runs over
// a prompt of tokens tokens when only its last token's logits are asked for (what
// Session.Forward does, in one pass or in chunks), and the part of them the model runs
// as integer products (as Footprint counts them): every layer's products on every
// token, but the last layer's output projection and feed-forward products, the
// projection out (Config.Projected) and the classifier on the last token alone.
// Attention is not counted.
func (m *Model) PromptMACs(tokens int) (macs, int8 int64) {
	if tokens <= 0 {
		return 0, 0
	}
	add := func(rows int64, ws ...*kernels.Mat) {
		for _, w := range ws {
			if w != nil {
				n := rows * int64(w.Rows) * int64(w.Cols)
				macs += n
				if m.q8 != nil && blockQuantized(w.DType) {
					int8 += n
				}
			}
		}
	}
	T := int64(tokens)
	add(T, m.projIn)
	for i := range m.layers {
		l := &m.layers[i]
		add(T, l.wq, l.wk, l.wv)
		rows := T
		if i == len(m.layers)-1 {
			rows = 1
		}
		add(rows, l.wo, l.gate, l.up, l.down)
	}
	add(1, m.projOut, m.output)
	return macs, int8
}

func (m *Model) bind() error {
	c := &m.cfg
	var err error
	m.names = map[*kernels.Mat]string{}
	mat := func(name string, rows, cols int, required bool) *kernels.Mat {
		if err != nil {
			return nil
		}
		t := m.file.Tensor(name)
		if t == nil {
			if required {
				err = fmt.Errorf("tensor %s is missing", name)
			}
			return nil
		}
		if len(t.Shape) != 2 || t.Shape[0] != rows || t.Shape[1] != cols {
			err = fmt.Errorf("tensor %s has shape %v, the config needs [%d %d]", name, t.Shape, rows, cols)
			return nil
		}
		mm, e := kernels.NewMat(t.DType, t.Data, rows, cols)
		if e != nil {
			err = fmt.Errorf("tensor %s: %w", name, e)
			return nil
		}
		m.names[mm] = name
		return mm
	}
	vec := func(name string, n int, required bool) []float32 {
		if err != nil {
			return nil
		}
		t := m.file.Tensor(name)
		if t == nil {
			if required {
				err = fmt.Errorf("tensor %s is missing", name)
			}
			return nil
		}
		if len(t.Shape) != 1 || t.Shape[0] != n {
			err = fmt.Errorf("tensor %s has shape %v, the config needs [%d]", name, t.Shape, n)
			return nil
		}
		if t.DType == dtype.F32 {
			return dtype.BytesToF32(t.Data)
		}
		// Norm weights and biases are small: a converted copy costs nothing.
		v, e := dtype.Dequantize(t.DType, t.Data, n)
		if e != nil {
			err = fmt.Errorf("tensor %s: %w", name, e)
		}
		return v
	}
	nrm := func(prefix string) norm {
		n := norm{w: vec(prefix+".weight", c.Dim, true)}
		if c.Norm == model.LayerNorm {
			n.b = vec(prefix+".bias", c.Dim, false)
		}
		return n
	}
	ed := c.EmbeddingDim()
	m.tokEmbd = mat("token_embd.weight", c.VocabSize, ed, true)
	if c.Projected() {
		m.projIn = mat("proj_in.weight", c.Dim, ed, true)
		m.projOut = mat("proj_out.weight", ed, c.Dim, true)
	}
	if c.Position == model.Learned {
		m.posEmbd = mat("position_embd.weight", c.ContextLength+c.PositionOffset, c.Dim, true)
	}
	q, kv := c.QDim(), c.KVDim()
	if err != nil {
		return err
	}
	names := make([]string, len(m.file.Tensors))
	for i, t := range m.file.Tensors {
		names[i] = t.Name
	}
	if n := format.CountLayers(names, "blk."); c.NLayers > n {
		return fmt.Errorf("metadata %s = %d, but the file holds tensors for at most %d layers", model.KeyNLayers, c.NLayers, n)
	}
	m.layers = make([]layer, c.NLayers)
	for i := range m.layers {
		l := &m.layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		l.attnNorm = nrm(p + "attn_norm")
		l.wq = mat(p+"attn_q.weight", q, c.Dim, true)
		l.wk = mat(p+"attn_k.weight", kv, c.Dim, true)
		l.wv = mat(p+"attn_v.weight", kv, c.Dim, true)
		l.wo = mat(p+"attn_output.weight", c.Dim, q, true)
		l.bq = vec(p+"attn_q.bias", q, false)
		l.bk = vec(p+"attn_k.bias", kv, false)
		l.bv = vec(p+"attn_v.bias", kv, false)
		l.bo = vec(p+"attn_output.bias", c.Dim, false)
		l.ffnNorm = nrm(p + "ffn_norm")
		if c.Activation == model.SwiGLU {
			l.gate = mat(p+"ffn_gate.weight", c.FFNDim, c.Dim, true)
			l.bgate = vec(p+"ffn_gate.bias", c.FFNDim, false)
		}
		l.up = mat(p+"ffn_up.weight", c.FFNDim, c.Dim, true)
		l.bup = vec(p+"ffn_up.bias", c.FFNDim, false)
		l.down = mat(p+"ffn_down.weight", c.Dim, c.FFNDim, true)
		l.bdown = vec(p+"ffn_down.bias", c.Dim, false)
		l.window = c.AttnWindows[i]
	}
	if !c.NoFinalNorm {
		m.outNorm = nrm("output_norm")
	}
	m.output = mat("output.weight", c.VocabSize, ed, false)
	if m.output == nil && err == nil {
		m.output = m.tokEmbd
	}
	return err
}
