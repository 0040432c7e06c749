// Package llama2c imports checkpoints and tokenizers written by Andrej Karpathy's llama2.c:
// the legacy .bin export (a 7-int32 header followed by float32 tensors), the "ak42"
// version 1 (float32) and version 2 (int8, dequantized on import) exports, and the
// tokenizer.bin vocabulary.
//
// Every size is checked against the file before anything is allocated from it, and
// tensor data is read from the file only when the checkpoint writer asks for it.
package llama2c

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"strings"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/model"
)

// Magic is the first word of the versioned llama2.c exports (bytes "24ka" on disk).
const Magic = 0x616b3432

// Header sizes of the two layouts.
const (
	LegacyHeaderSize    = 28
	VersionedHeaderSize = 256
)

// ErrFormat is wrapped by every error that reports a malformed llama2.c file.
var ErrFormat = errors.New("malformed llama2.c file")

// Header describes a llama2.c checkpoint whose size has been checked against its header.
type Header struct {
	Version    int // 0 for the legacy export, else 1 (float32) or 2 (int8 Q8)
	Dim        int
	HiddenDim  int
	NLayers    int
	NHeads     int
	NKVHeads   int
	VocabSize  int // always positive; see Shared
	SeqLen     int
	Shared     bool // classifier tied to the token embedding
	GroupSize  int  // version 2: elements per quantization group
	FileSize   int64
	headDim    int
	kvDim      int
	dataOffset int64
}

// HeadDim returns the per-head width.
func (h *Header) HeadDim() int { return h.headDim }

// ReadHeader reads the header of the llama2.c checkpoint at path, checks its values and
// checks that the file is exactly as long as the header implies.
func ReadHeader(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	var buf [VersionedHeaderSize]byte
	n, err := io.ReadFull(f, buf[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h, err := parseHeader(buf[:n], st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// parseHeader decodes and checks the header b of a file of size bytes, which must be
// exactly as long as the header implies.
func parseHeader(b []byte, size int64) (*Header, error) {
	h, err := decodeHeader(b, size)
	if err != nil {
		return nil, err
	}
	want, err := h.layout(nil)
	if err != nil {
		return nil, err
	}
	if want != size {
		what := "truncated"
		if size > want {
			what = "has trailing data"
		}
		return nil, fmt.Errorf("%w: file is %d bytes, its header (%s) implies %d: %s, or not a llama2.c checkpoint",
			ErrFormat, size, h.describe(), want, what)
	}
	return h, nil
}

// decodeHeader decodes the header b and checks its fields, but not the file size (size
// only names it in errors and is recorded).
func decodeHeader(b []byte, size int64) (*Header, error) {
	le := binary.LittleEndian
	if len(b) < LegacyHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrFormat, size, LegacyHeaderSize)
	}
	h := &Header{FileSize: size}
	params := b
	if le.Uint32(b) == Magic {
		if len(b) < VersionedHeaderSize {
			return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrFormat, size, VersionedHeaderSize)
		}
		h.Version = int(int32(le.Uint32(b[4:])))
		switch h.Version {
		case 1, 2:
		default:
			return nil, fmt.Errorf("%w: unknown llama2.c export version %d (this build reads versions 1 and 2 and the legacy format)", ErrFormat, h.Version)
		}
		params = b[8:]
		switch b[36] {
		case 0:
		case 1:
			h.Shared = true
		default:
			return nil, fmt.Errorf("%w: shared_classifier flag is %d, want 0 or 1", ErrFormat, b[36])
		}
		if h.Version == 2 {
			h.GroupSize = int(int32(le.Uint32(b[37:])))
			if h.GroupSize <= 0 {
				return nil, fmt.Errorf("%w: group size %d", ErrFormat, h.GroupSize)
			}
		}
		h.dataOffset = VersionedHeaderSize
	} else {
		h.dataOffset = LegacyHeaderSize
	}
	var p [7]int64
	for i := range p {
		p[i] = int64(int32(le.Uint32(params[4*i:])))
	}
	vocab := p[5]
	if h.Version == 0 {
		h.Shared = vocab > 0
		if vocab < 0 {
			vocab = -vocab
		}
	}
	names := [7]string{"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"}
	for i, v := range [7]int64{p[0], p[1], p[2], p[3], p[4], vocab, p[6]} {
		if v <= 0 {
			return nil, fmt.Errorf("%w: header %s = %d, want > 0 (%v)", ErrFormat, names[i], p[i], p)
		}
	}
	h.Dim, h.HiddenDim, h.NLayers, h.NHeads, h.NKVHeads, h.VocabSize, h.SeqLen =
		int(p[0]), int(p[1]), int(p[2]), int(p[3]), int(p[4]), int(vocab), int(p[6])
	switch {
	case h.Dim%h.NHeads != 0:
		return nil, fmt.Errorf("%w: dim %d is not a multiple of n_heads %d", ErrFormat, h.Dim, h.NHeads)
	case h.NKVHeads > h.NHeads || h.NHeads%h.NKVHeads != 0:
		return nil, fmt.Errorf("%w: n_heads %d is not a multiple of n_kv_heads %d", ErrFormat, h.NHeads, h.NKVHeads)
	case (h.Dim/h.NHeads)%2 != 0:
		return nil, fmt.Errorf("%w: head dimension %d is odd (RoPE rotates pairs)", ErrFormat, h.Dim/h.NHeads)
	}
	h.headDim = h.Dim / h.NHeads
	h.kvDim = h.headDim * h.NKVHeads
	return h, nil
}

func (h *Header) describe() string {
	s := fmt.Sprintf("dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab %d, seq_len %d",
		h.Dim, h.HiddenDim, h.NLayers, h.NHeads, h.NKVHeads, h.VocabSize, h.SeqLen)
	if h.Shared {
		s += ", shared classifier"
	} else {
		s += ", separate classifier"
	}
	if h.Version > 0 {
		s = fmt.Sprintf("version %d, %s", h.Version, s)
	}
	if h.Version == 2 {
		s += fmt.Sprintf(", group size %d", h.GroupSize)
	}
	return s
}

// tensor is one output tensor's place in the file.
type tensor struct {
	name   string
	shape  []int
	offset int64
	quant  bool // version 2: int8 values then float32 group scales
}

// counter accumulates byte offsets with overflow detection.
type counter struct {
	off      uint64
	overflow bool
}

// take reserves n elements of elem bytes each and returns their offset.
func (c *counter) take(elem uint64, dims ...int) uint64 {
	start := c.off
	n := elem
	for _, d := range dims {
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > 1<<62 {
			c.overflow = true
		}
		n = lo
	}
	sum, carry := bits.Add64(c.off, n, 0)
	if carry != 0 || sum > 1<<62 {
		c.overflow = true
	}
	c.off = sum
	return start
}

// layout computes where every tensor lies (appending to ts when it is not nil) and
// returns the file size the header implies.
func (h *Header) layout(ts *[]tensor) (int64, error) {
	c := &counter{off: uint64(h.dataOffset)}
	badGroup := "" // version 2: a tensor whose size is not a multiple of the group size
	L, dim, hid, kv, vocab := h.NLayers, h.Dim, h.HiddenDim, h.kvDim, h.VocabSize
	add := func(name string, off uint64, quant bool, shape ...int) {
		if ts != nil && !c.overflow {
			*ts = append(*ts, tensor{name: name, shape: shape, offset: int64(off), quant: quant})
		}
	}
	// perLayer lays out a [L][rows][cols] array of f32 (legacy, version 1).
	perLayer := func(suffix string, rows, cols int) {
		base := c.take(4, L, rows, cols)
		for l := 0; ts != nil && l < L; l++ {
			add(fmt.Sprintf("blk.%d.%s", l, suffix), base+uint64(l)*4*uint64(rows)*uint64(cols), false, rows, cols)
		}
	}
	vec := func(suffix string) { // [L][dim] norms
		base := c.take(4, L, dim)
		for l := 0; ts != nil && l < L; l++ {
			add(fmt.Sprintf("blk.%d.%s", l, suffix), base+uint64(l)*4*uint64(dim), false, dim)
		}
	}
	matrices := []struct {
		suffix     string
		rows, cols int
	}{
		{"attn_q.weight", dim, dim}, {"attn_k.weight", kv, dim}, {"attn_v.weight", kv, dim},
		{"attn_output.weight", dim, dim},
	}
	ffn := []struct {
		suffix     string
		rows, cols int
	}{{"ffn_gate.weight", hid, dim}, {"ffn_down.weight", dim, hid}, {"ffn_up.weight", hid, dim}}

	switch h.Version {
	case 0:
		add("token_embd.weight", c.take(4, vocab, dim), false, vocab, dim)
		vec("attn_norm.weight")
		for _, m := range matrices {
			perLayer(m.suffix, m.rows, m.cols)
		}
		vec("ffn_norm.weight")
		for _, m := range ffn {
			perLayer(m.suffix, m.rows, m.cols)
		}
		add("output_norm.weight", c.take(4, dim), false, dim)
		c.take(4, h.SeqLen, h.headDim/2) // freq_cis_real
		c.take(4, h.SeqLen, h.headDim/2) // freq_cis_imag
		if !h.Shared {
			add("output.weight", c.take(4, vocab, dim), false, vocab, dim)
		}
	case 1:
		vec("attn_norm.weight")
		vec("ffn_norm.weight")
		add("output_norm.weight", c.take(4, dim), false, dim)
		add("token_embd.weight", c.take(4, vocab, dim), false, vocab, dim)
		for _, m := range append(matrices, ffn...) {
			perLayer(m.suffix, m.rows, m.cols)
		}
		if !h.Shared {
			add("output.weight", c.take(4, vocab, dim), false, vocab, dim)
		}
	case 2:
		vec("attn_norm.weight")
		vec("ffn_norm.weight")
		add("output_norm.weight", c.take(4, dim), false, dim)
		gs := uint64(h.GroupSize)
		// q8 reserves count quantized tensors, each rows·cols int8 values followed by a
		// float32 scale per group. Only the sizes are needed when ts is nil.
		q8 := func(name string, count, rows, cols int) {
			n := uint64(rows) * uint64(cols) // each factor < 2^31: no overflow
			if n%gs != 0 {
				if badGroup == "" {
					badGroup = name
				}
				return
			}
			if ts == nil {
				c.take(1, count, rows, cols)
				c.take(4, count, int(n/gs))
				return
			}
			for l := 0; l < count; l++ {
				off := c.take(1, rows, cols)
				c.take(4, int(n/gs))
				tn := name
				if strings.Contains(name, "%d") {
					tn = fmt.Sprintf(name, l)
				}
				add(tn, off, true, rows, cols)
			}
		}
		q8("token_embd.weight", 1, vocab, dim)
		for _, m := range append(matrices, ffn...) {
			q8("blk.%d."+m.suffix, L, m.rows, m.cols)
		}
		if !h.Shared {
			q8("output.weight", 1, vocab, dim)
		}
	}
	if c.overflow {
		return 0, fmt.Errorf("%w: header (%s) describes an impossible size", ErrFormat, h.describe())
	}
	if badGroup != "" {
		return 0, fmt.Errorf("%w: %s has a size that is not a multiple of the group size %d", ErrFormat, strings.Replace(badGroup, "%d", "N", 1), h.GroupSize)
	}
	return int64(c.off), nil
}

// headerKey names the header field a model metadata key comes from ("" for none).
func headerKey(key string) string {
	switch key {
	case model.KeyDim:
		return "dim"
	case model.KeyFFNDim:
		return "hidden_dim"
	case model.KeyNLayers:
		return "n_layers"
	case model.KeyNHeads:
		return "n_heads"
	case model.KeyNKVHeads:
		return "n_kv_heads"
	case model.KeyVocabSize:
		return "vocab_size"
	case model.KeyContextLength:
		return "seq_len"
	}
	return ""
}

// Import reads the llama2.c checkpoint at binPath (any supported version) and, when
// tokenizerPath is not empty, the llama2.c tokenizer at tokenizerPath. Tensor data is
// read from binPath when the returned checkpoint is written.
func Import(binPath, tokenizerPath string) (*format.Checkpoint, error) {
	h, err := ReadHeader(binPath)
	if err != nil {
		return nil, err
	}
	cfg := model.Config{Arch: "llama", VocabSize: h.VocabSize, Dim: h.Dim, NLayers: h.NLayers, NHeads: h.NHeads,
		NKVHeads: h.NKVHeads, FFNDim: h.HiddenDim, ContextLength: h.SeqLen, Norm: model.RMSNorm,
		NormEps: 1e-5, Position: model.RoPE, RopeTheta: 10000, Activation: model.SwiGLU}
	if err := cfg.Resolve(); err != nil {
		var ce *model.ConfigError
		if errors.As(err, &ce) {
			if k := headerKey(ce.Key); k != "" {
				return nil, fmt.Errorf("%s: header %s = %v: %w", binPath, k, ce.Value, err)
			}
		}
		return nil, fmt.Errorf("%s: %w", binPath, err)
	}
	var ts []tensor
	if _, err := h.layout(&ts); err != nil {
		return nil, fmt.Errorf("%s: %w", binPath, err)
	}
	source := "llama2.c legacy export"
	if h.Version > 0 {
		source = fmt.Sprintf("llama2.c version %d export", h.Version)
	}
	meta := format.Metadata(cfg.Metadata())
	meta["general.source"] = source
	if tokenizerPath != "" {
		tm, err := ReadTokenizer(tokenizerPath, h.VocabSize)
		if err != nil {
			return nil, err
		}
		for k, v := range tm {
			meta[k] = v
		}
	}
	ck := &format.Checkpoint{Meta: meta}
	byName := make(map[string]tensor, len(ts))
	for _, t := range ts {
		byName[t.name] = t
	}
	for _, name := range canonicalOrder(h.NLayers) {
		if t, ok := byName[name]; ok {
			ck.Tensors = append(ck.Tensors, h.source(binPath, t))
		}
	}
	if len(ck.Tensors) != len(ts) {
		return nil, fmt.Errorf("%s: internal error: %d of %d tensors placed", binPath, len(ck.Tensors), len(ts))
	}
	return ck, nil
}

// canonicalOrder lists the tensor names in the order lmrun writes them.
func canonicalOrder(layers int) []string {
	names := []string{"token_embd.weight"}
	for l := 0; l < layers; l++ {
		for _, s := range []string{"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"} {
			names = append(names, fmt.Sprintf("blk.%d.%s.weight", l, s))
		}
	}
	return append(names, "output_norm.weight", "output.weight")
}

// source returns a lazily read f32 source for t.
func (h *Header) source(path string, t tensor) format.Source {
	n := int64(dtype.NumElements(t.shape))
	if !t.quant {
		return format.Source{Name: t.name, DType: dtype.F32, Shape: t.shape, Data: func() ([]byte, error) {
			return readAt(path, t.offset, 4*n, h.FileSize)
		}}
	}
	gs := int64(h.GroupSize)
	return format.Source{Name: t.name, DType: dtype.F32, Shape: t.shape, Data: func() ([]byte, error) {
		raw, err := readAt(path, t.offset, n+4*(n/gs), h.FileSize)
		if err != nil {
			return nil, err
		}
		q, scales := raw[:n], raw[n:]
		out := make([]float32, n)
		for g := int64(0); g < n/gs; g++ {
			s := math.Float32frombits(binary.LittleEndian.Uint32(scales[4*g:]))
			for i := g * gs; i < (g+1)*gs; i++ {
				out[i] = float32(int8(q[i])) * s
			}
		}
		return dtype.F32ToBytes(out), nil
	}}
}

// readAt reads n bytes at off from path, checking first that the file still has the size
// it had when its header was checked.
func readAt(path string, off, n, size int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() != size {
		return nil, fmt.Errorf("%s: file changed size since it was opened (%d bytes, was %d)", path, st.Size(), size)
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("%s: reading %d bytes at %d: %w", path, n, off, err)
	}
	return b, nil
}
