package llama2c

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// dims of stories260K.bin, from SOURCES.md.
const (
	sDim, sHidden, sLayers, sHeads, sKV, sVocab, sSeq = 64, 172, 5, 8, 4, 512, 512
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func data(t *testing.T, ck *format.Checkpoint, name string) []byte {
	t.Helper()
	s := ck.Source(name)
	if s == nil {
		t.Fatalf("tensor %s missing", name)
	}
	b, err := s.Data()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if want := 4 * dtype.NumElements(s.Shape); len(b) != want {
		t.Fatalf("%s: %d bytes, shape %v needs %d", name, len(b), s.Shape, want)
	}
	return b
}

func shapeIs(s []int, want ...int) bool { return fmt.Sprint(s) == fmt.Sprint(want) }

// legacyOffsets computes, independently of the importer, the byte offset of a few tensors
// of a legacy file.
func legacyOffsets(dim, hidden, L, heads, kvHeads, vocab int) map[string]int {
	kv := dim / heads * kvHeads
	off := 28
	m := map[string]int{"token_embd.weight": off}
	off += 4 * vocab * dim
	m["blk.0.attn_norm.weight"] = off
	m["blk.1.attn_norm.weight"] = off + 4*1*dim
	off += 4 * L * dim
	m["blk.0.attn_q.weight"] = off
	m[fmt.Sprintf("blk.%d.attn_q.weight", L-1)] = off + 4*(L-1)*dim*dim
	off += 4 * L * dim * dim
	m["blk.1.attn_k.weight"] = off + 4*kv*dim
	off += 4 * L * kv * dim
	m["blk.1.attn_v.weight"] = off + 4*kv*dim
	off += 4 * L * kv * dim
	m["blk.1.attn_output.weight"] = off + 4*dim*dim
	off += 4 * L * dim * dim
	m["blk.1.ffn_norm.weight"] = off + 4*dim
	off += 4 * L * dim
	m["blk.1.ffn_gate.weight"] = off + 4*hidden*dim
	off += 4 * L * hidden * dim
	m["blk.1.ffn_down.weight"] = off + 4*hidden*dim
	off += 4 * L * hidden * dim
	m["blk.1.ffn_up.weight"] = off + 4*hidden*dim
	off += 4 * L * hidden * dim
	m["output_norm.weight"] = off
	return m
}

func TestStories260K(t *testing.T) {
	path := fixtures.Path(t, "llama2c", "stories260K.bin")
	raw := readFile(t, path)
	ck, err := Import(path, "")
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := map[string]any{
		"general.architecture": "llama", "lm.vocab_size": int64(sVocab), "lm.dim": int64(sDim),
		"lm.n_layers": int64(sLayers), "lm.n_heads": int64(sHeads), "lm.n_kv_heads": int64(sKV),
		"lm.ffn_dim": int64(sHidden), "lm.context_length": int64(sSeq), "lm.norm": "rmsnorm",
		"lm.norm_eps": 1e-5, "lm.norm_position": "pre", "lm.position": "rope", "lm.rope_theta": 10000.0,
		"lm.activation": "swiglu", "lm.final_norm": true,
	}
	for k, v := range wantMeta {
		if ck.Meta[k] != v {
			t.Errorf("metadata %s = %#v, want %#v", k, ck.Meta[k], v)
		}
	}
	if w, _, _ := ck.Meta.Ints("lm.attn_windows"); len(w) != sLayers || w[0] != 0 || w[sLayers-1] != 0 {
		t.Errorf("lm.attn_windows = %v", w)
	}
	if _, ok := ck.Meta["tokenizer.model"]; ok {
		t.Error("tokenizer metadata without a tokenizer")
	}
	if len(ck.Tensors) != 1+9*sLayers+1 {
		t.Errorf("%d tensors, want %d (shared classifier: no output.weight)", len(ck.Tensors), 2+9*sLayers)
	}
	if ck.Source("output.weight") != nil {
		t.Error("output.weight present for a shared classifier")
	}
	kv := sDim / sHeads * sKV
	shapes := map[string][]int{
		"token_embd.weight": {sVocab, sDim}, "blk.4.attn_q.weight": {sDim, sDim},
		"blk.4.attn_k.weight": {kv, sDim}, "blk.4.attn_v.weight": {kv, sDim},
		"blk.4.attn_output.weight": {sDim, sDim}, "blk.4.ffn_gate.weight": {sHidden, sDim},
		"blk.4.ffn_down.weight": {sDim, sHidden}, "blk.4.ffn_up.weight": {sHidden, sDim},
		"blk.4.attn_norm.weight": {sDim}, "blk.4.ffn_norm.weight": {sDim}, "output_norm.weight": {sDim},
	}
	for name, want := range shapes {
		if s := ck.Source(name); s == nil || !shapeIs(s.Shape, want...) || s.DType != dtype.F32 {
			t.Errorf("%s: %+v, want f32 %v", name, s, want)
		}
	}
	for name, off := range legacyOffsets(sDim, sHidden, sLayers, sHeads, sKV, sVocab) {
		b := data(t, ck, name)
		if !bytes.Equal(b, raw[off:off+len(b)]) {
			t.Errorf("%s differs from the file bytes at %d", name, off)
		}
	}
	// The final norm ends where freq_cis begins: 2·seq·head_dim/2 floats before the end.
	fin := data(t, ck, "output_norm.weight")
	end := len(raw) - 4*sSeq*(sDim/sHeads)
	if !bytes.Equal(fin, raw[end-len(fin):end]) {
		t.Error("output_norm.weight is not just before freq_cis")
	}
	// Trained norms are not all zero, and embeddings vary.
	if v := dtype.BytesToF32(fin); v[0] == 0 && v[1] == 0 {
		t.Error("output_norm looks empty")
	}
}

func TestLlamaTiny(t *testing.T) {
	path := fixtures.Path(t, "expected", "llama_tiny.bin")
	raw := readFile(t, path)
	ck, err := Import(path, "")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]int64{"lm.dim": 64, "lm.ffn_dim": 192, "lm.n_layers": 2, "lm.n_heads": 4, "lm.n_kv_heads": 2, "lm.vocab_size": 512, "lm.context_length": 128} {
		if ck.Meta[k] != v {
			t.Errorf("%s = %v, want %d", k, ck.Meta[k], v)
		}
	}
	if ck.Source("output.weight") != nil {
		t.Error("llama_tiny.bin has a shared classifier, output.weight present")
	}
	for name, off := range legacyOffsets(64, 192, 2, 4, 2, 512) {
		b := data(t, ck, name)
		if !bytes.Equal(b, raw[off:off+len(b)]) {
			t.Errorf("%s differs from the file bytes at %d", name, off)
		}
	}
}

// unshared rewrites a legacy shared-classifier file as an unshared one with the given
// classifier appended.
func unshared(raw []byte, wcls []byte) []byte {
	b := append([]byte(nil), raw...)
	v := int32(binary.LittleEndian.Uint32(b[20:]))
	binary.LittleEndian.PutUint32(b[20:], uint32(-v))
	return append(b, wcls...)
}

func TestUnshared(t *testing.T) {
	raw := readFile(t, fixtures.Path(t, "llama2c", "stories260K.bin"))
	wcls := make([]float32, sVocab*sDim)
	for i := range wcls {
		wcls[i] = float32(i%977) * 0.001
	}
	p := filepath.Join(t.TempDir(), "unshared.bin")
	if err := os.WriteFile(p, unshared(raw, dtype.F32ToBytes(wcls)), 0o644); err != nil {
		t.Fatal(err)
	}
	ck, err := Import(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if ck.Meta["lm.vocab_size"] != int64(sVocab) {
		t.Errorf("vocab %v", ck.Meta["lm.vocab_size"])
	}
	s := ck.Source("output.weight")
	if s == nil || !shapeIs(s.Shape, sVocab, sDim) {
		t.Fatalf("output.weight: %+v", s)
	}
	if !bytes.Equal(data(t, ck, "output.weight"), dtype.F32ToBytes(wcls)) {
		t.Error("output.weight is not the appended classifier")
	}
	if ck.Tensors[len(ck.Tensors)-1].Name != "output.weight" {
		t.Error("output.weight is not last")
	}
	// The unshared header without its classifier is a truncated file, and the shared
	// header with a classifier has trailing data.
	p2 := filepath.Join(t.TempDir(), "x.bin")
	os.WriteFile(p2, unshared(raw, nil), 0o644)
	if _, err := Import(p2, ""); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("unshared header without classifier: %v", err)
	}
	os.WriteFile(p2, append(append([]byte(nil), raw...), dtype.F32ToBytes(wcls)...), 0o644)
	if _, err := Import(p2, ""); err == nil || !strings.Contains(err.Error(), "trailing") {
		t.Errorf("shared header with classifier: %v", err)
	}
}

func TestVersion1MatchesLegacy(t *testing.T) {
	legacy, err := Import(fixtures.Path(t, "llama2c", "stories260K.bin"), "")
	if err != nil {
		t.Fatal(err)
	}
	v1, err := Import(fixtures.Path(t, "llama2c", "stories260K_v1.bin"), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(v1.Tensors) != len(legacy.Tensors) {
		t.Fatalf("%d tensors, legacy has %d", len(v1.Tensors), len(legacy.Tensors))
	}
	for i, s := range legacy.Tensors {
		if v1.Tensors[i].Name != s.Name || !shapeIs(v1.Tensors[i].Shape, s.Shape...) {
			t.Fatalf("tensor %d: %s %v, legacy %s %v", i, v1.Tensors[i].Name, v1.Tensors[i].Shape, s.Name, s.Shape)
		}
		if !bytes.Equal(data(t, v1, s.Name), data(t, legacy, s.Name)) {
			t.Errorf("%s differs between v1 and legacy", s.Name)
		}
	}
	for _, k := range legacy.Meta.Keys() {
		if k != "general.source" && fmt.Sprint(legacy.Meta[k]) != fmt.Sprint(v1.Meta[k]) {
			t.Errorf("metadata %s: v1 %v, legacy %v", k, v1.Meta[k], legacy.Meta[k])
		}
	}
}

func TestVersion2Dequantized(t *testing.T) {
	qpath := fixtures.Path(t, "llama2c", "stories260K_q80.bin")
	legacy, err := Import(fixtures.Path(t, "llama2c", "stories260K.bin"), "")
	if err != nil {
		t.Fatal(err)
	}
	q, err := Import(qpath, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Tensors) != len(legacy.Tensors) {
		t.Fatalf("%d tensors, legacy has %d", len(q.Tensors), len(legacy.Tensors))
	}
	for _, s := range legacy.Tensors {
		want := dtype.BytesToF32(data(t, legacy, s.Name))
		got := dtype.BytesToF32(data(t, q, s.Name))
		if len(s.Shape) == 1 { // norms are stored in f32
			if !bytes.Equal(dtype.F32ToBytes(got), dtype.F32ToBytes(want)) {
				t.Errorf("%s differs", s.Name)
			}
			continue
		}
		// Each group of 32 is quantized with scale max|w|/127: the error is at most half a step.
		for g := 0; g < len(want); g += 32 {
			var amax float32
			for _, w := range want[g : g+32] {
				amax = max(amax, float32(math.Abs(float64(w))))
			}
			tol := amax/127/2*1.0001 + 1e-9
			for i := g; i < g+32; i++ {
				if d := math.Abs(float64(got[i] - want[i])); d > float64(tol) {
					t.Fatalf("%s[%d] = %v, f32 model has %v (tolerance %v)", s.Name, i, got[i], want[i], tol)
				}
			}
		}
	}
	// Exact check of the first group of the embedding against the file bytes: norms take
	// (2·L+1)·dim floats after the 256-byte header, then int8 values, then scales.
	raw := readFile(t, qpath)
	off := 256 + 4*(2*sLayers+1)*sDim
	n := sVocab * sDim
	scale := math.Float32frombits(binary.LittleEndian.Uint32(raw[off+n:]))
	emb := dtype.BytesToF32(data(t, q, "token_embd.weight"))
	for i := 0; i < 32; i++ {
		if want := float32(int8(raw[off+i])) * scale; emb[i] != want {
			t.Fatalf("token_embd[%d] = %v, want %v", i, emb[i], want)
		}
	}
}

func TestTokenizer(t *testing.T) {
	path := fixtures.Path(t, "llama2c", "tok512.bin")
	md, err := ReadTokenizer(path, 512)
	if err != nil {
		t.Fatal(err)
	}
	toks, _, _ := md.Strings("tokenizer.tokens")
	scores, _, _ := md.Floats("tokenizer.scores")
	if len(toks) != 512 || len(scores) != 512 {
		t.Fatalf("%d tokens, %d scores", len(toks), len(scores))
	}
	if toks[0] != "<unk>" || toks[1] != "\n<s>\n" || toks[2] != "\n</s>\n" {
		t.Errorf("special tokens %q %q %q", toks[0], toks[1], toks[2])
	}
	if md["tokenizer.model"] != "llama2c" || md["tokenizer.bos_id"] != int64(1) || md["tokenizer.eos_id"] != int64(2) ||
		md["tokenizer.unk_id"] != int64(0) || md["tokenizer.add_bos"] != true {
		t.Errorf("metadata %v", md)
	}
	maxLen := 0
	for _, s := range toks {
		maxLen = max(maxLen, len(s))
	}
	if maxLen != 7 {
		t.Errorf("longest token %d bytes, SOURCES.md says 7", maxLen)
	}
	for _, n := range []int{511, 513, 0} {
		if _, err := ReadTokenizer(path, n); err == nil {
			t.Errorf("vocab %d accepted", n)
		}
	}
	raw := readFile(t, path)
	dir := t.TempDir()
	bad := map[string][]byte{
		"truncated": raw[:len(raw)-3],
		"trailing":  append(append([]byte(nil), raw...), 0),
		"neglen": func() []byte {
			b := append([]byte(nil), raw...)
			binary.LittleEndian.PutUint32(b[8:], 0xffffffff)
			return b
		}(),
		"hugelen": func() []byte { b := append([]byte(nil), raw...); binary.LittleEndian.PutUint32(b[8:], 1<<30); return b }(),
		"empty":   nil,
	}
	for name, b := range bad {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		if _, err := ReadTokenizer(p, 512); err == nil {
			t.Errorf("%s tokenizer accepted", name)
		}
	}

	// Import merges the tokenizer.
	ck, err := Import(fixtures.Path(t, "llama2c", "stories260K.bin"), path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _, _ := ck.Meta.Strings("tokenizer.tokens"); len(got) != 512 || got[1] != "\n<s>\n" {
		t.Error("tokenizer not merged")
	}
	// A tokenizer of the wrong size for the model is refused.
	if _, err := Import(fixtures.Path(t, "llama2c", "stories260K.bin"), fixtures.Path(t, "llama2c", "tokenizer.bin")); err == nil {
		t.Error("32000-token tokenizer accepted for a 512-token model")
	}
	if md, err := ReadTokenizer(fixtures.Path(t, "llama2c", "tokenizer.bin"), 32000); err != nil {
		t.Error(err)
	} else if toks, _, _ := md.Strings("tokenizer.tokens"); toks[1] != "\n<s>\n" {
		t.Errorf("Llama 2 token 1 = %q", toks[1])
	}
}

func header(p ...int32) []byte {
	var b []byte
	for _, v := range p {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	return b
}

func TestBadFiles(t *testing.T) {
	raw := readFile(t, fixtures.Path(t, "llama2c", "stories260K.bin"))
	v1 := readFile(t, fixtures.Path(t, "llama2c", "stories260K_v1.bin"))
	modify := func(b []byte, off int, v uint32) []byte {
		c := append([]byte(nil), b...)
		binary.LittleEndian.PutUint32(c[off:], v)
		return c
	}
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"empty":            {nil, "shorter than"},
		"short header":     {raw[:20], "shorter than"},
		"truncated":        {raw[:len(raw)-4], "truncated"},
		"oversized":        {append(append([]byte(nil), raw...), 0, 0, 0, 0), "trailing data"},
		"garbage":          {[]byte(strings.Repeat("this is not a checkpoint. ", 10)), "llama2.c"},
		"zero dim":         {modify(raw, 0, 0), "dim = 0"},
		"negative layers":  {modify(raw, 8, 0xfffffffe), "n_layers = -2"},
		"zero vocab":       {modify(raw, 20, 0), "vocab_size = 0"},
		"dim not mult":     {modify(raw, 0, 66), "not a multiple of n_heads"},
		"kv not divisor":   {modify(raw, 16, 3), "n_kv_heads"},
		"kv more than q":   {modify(raw, 16, 16), "n_kv_heads"},
		"odd head dim":     {modify(raw, 0, 8*3), "odd"},
		"huge":             {header(1<<30, 1<<30, 1<<30, 1<<20, 1<<20, 1<<30, 1<<30), "impossible size"},
		"huge small file":  {header(1<<16, 1<<16, 1<<12, 1<<8, 1<<8, 1<<16, 1<<16), "implies"},
		"v1 bad version":   {modify(v1, 4, 7), "version 7"},
		"v1 bad shared":    {func() []byte { c := append([]byte(nil), v1...); c[36] = 2; return c }(), "shared_classifier"},
		"v1 truncated":     {v1[:len(v1)-1], "truncated"},
		"v1 short":         {v1[:100], "shorter than"},
		"v1 unshared size": {func() []byte { c := append([]byte(nil), v1...); c[36] = 0; return c }(), "truncated"},
	}
	dir := t.TempDir()
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			if err := os.WriteFile(p, c.b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Import(p, "")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
			if !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	q := readFile(t, fixtures.Path(t, "llama2c", "stories260K_q80.bin"))
	p := filepath.Join(dir, "q")
	os.WriteFile(p, modify(q, 37, 31), 0o644) // group size 31 divides nothing
	if _, err := Import(p, ""); err == nil || !strings.Contains(err.Error(), "group size") {
		t.Errorf("group size 31: %v", err)
	}
}

func TestFileChangesAfterImport(t *testing.T) {
	raw := readFile(t, fixtures.Path(t, "llama2c", "stories260K.bin"))
	p := filepath.Join(t.TempDir(), "m.bin")
	os.WriteFile(p, raw, 0o644)
	ck, err := Import(p, "")
	if err != nil {
		t.Fatal(err)
	}
	os.Truncate(p, 1000)
	if _, err := ck.Tensors[3].Data(); err == nil {
		t.Error("read from a file that shrank after import")
	}
}

func TestRoundTrip(t *testing.T) {
	path := fixtures.Path(t, "llama2c", "stories260K.bin")
	ck, err := Import(path, fixtures.Path(t, "llama2c", "tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "m.lmc")
	if err := ck.WriteFile(out, nil); err != nil {
		t.Fatal(err)
	}
	f, err := format.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Verify(nil); err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != len(ck.Tensors) {
		t.Fatalf("%d tensors written, %d imported", len(f.Tensors), len(ck.Tensors))
	}
	raw := readFile(t, path)
	offs := legacyOffsets(sDim, sHidden, sLayers, sHeads, sKV, sVocab)
	for i, s := range ck.Tensors {
		ft := f.Tensors[i]
		if ft.Name != s.Name || !shapeIs(ft.Shape, s.Shape...) || ft.DType != dtype.F32 {
			t.Fatalf("tensor %d: %s %v %v, imported %s %v", i, ft.Name, ft.Shape, ft.DType, s.Name, s.Shape)
		}
		if !bytes.Equal(ft.Data, data(t, ck, s.Name)) {
			t.Errorf("%s changed in the round trip", s.Name)
		}
		if off, ok := offs[s.Name]; ok && !bytes.Equal(ft.Data, raw[off:off+len(ft.Data)]) {
			t.Errorf("%s differs from the source file", s.Name)
		}
	}
	for _, k := range ck.Meta.Keys() {
		if fmt.Sprint(f.Meta[k]) != fmt.Sprint(ck.Meta[k]) {
			t.Errorf("metadata %s changed in the round trip", k)
		}
	}
}

// fields are a llama2.c header's seven ints, in file order.
type fields struct{ dim, hidden, layers, heads, kvHeads, vocab, seqLen int32 }

// encodeHeader returns a llama2.c header of the given version (0: legacy) holding f and,
// for version 2, group size gs; versioned headers have a shared classifier.
func encodeHeader(version int, f fields, gs int32) []byte {
	b := header(f.dim, f.hidden, f.layers, f.heads, f.kvHeads, f.vocab, f.seqLen)
	if version == 0 {
		return b
	}
	v := make([]byte, VersionedHeaderSize)
	binary.LittleEndian.PutUint32(v, Magic)
	binary.LittleEndian.PutUint32(v[4:], uint32(version))
	copy(v[8:], b)
	v[36] = 1
	binary.LittleEndian.PutUint32(v[37:], uint32(gs))
	return v
}

// impliedSize returns the file size the header implies.
func impliedSize(version int, f fields, gs int32) (int64, error) {
	h, err := decodeHeader(encodeHeader(version, f, gs), 0)
	if err != nil {
		return 0, err
	}
	return h.layout(nil)
}

// sparseCheckpoint writes a llama2.c checkpoint whose header is encodeHeader(version,
// f, gs) and whose size is size bytes, or exactly what the header implies when size < 0.
// The data is a hole: the file costs no disk, however large the header makes it.
func sparseCheckpoint(t *testing.T, version int, f fields, gs int32, size int64) string {
	t.Helper()
	if size < 0 {
		var err error
		if size, err = impliedSize(version, f, gs); err != nil {
			t.Fatalf("test header %+v: %v", f, err)
		}
	}
	p := filepath.Join(t.TempDir(), "m.bin")
	if err := os.WriteFile(p, encodeHeader(version, f, gs), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAbsurdHeaders: a llama2.c header with absurd, negative or zero fields is an error
// naming the field and its value, found from the header and the file size alone: nothing
// is read or allocated in proportion to the numbers, even when the file (sparse here) is
// exactly as long as they imply.
func TestAbsurdHeaders(t *testing.T) {
	tiny := fields{dim: 8, hidden: 16, layers: 1, heads: 2, kvHeads: 2, vocab: 32, seqLen: 8}
	with := func(edit func(*fields)) fields { f := tiny; edit(&f); return f }
	cases := []struct {
		name    string
		version int
		f       fields
		gs      int32
		size    int64 // -1: what the header implies
		want    []string
	}{
		{"layers 2000 (file of that size)", 1, with(func(f *fields) { f.layers = 2000 }), 0, -1, []string{"header n_layers = 2000", "invalid model config: n_layers 2000"}},
		{"layers 2^30 (small file)", 1, with(func(f *fields) { f.layers = 1 << 30 }), 0, 4096, []string{"layers 1073741824", "implies"}},
		{"layers max int32", 0, with(func(f *fields) { f.layers = math.MaxInt32 }), 0, 4096, []string{"layers 2147483647", "implies"}},
		{"layers negative", 1, with(func(f *fields) { f.layers = -1 }), 0, 4096, []string{"n_layers = -1, want > 0"}},
		{"layers zero", 0, with(func(f *fields) { f.layers = 0 }), 0, 4096, []string{"n_layers = 0, want > 0"}},
		{"dim 2^30", 1, with(func(f *fields) { f.dim = 1 << 30 }), 0, 4096, []string{"dim 1073741824", "impossible size"}},
		{"dim 2^17 (file of that size)", 1, fields{dim: 1 << 17, hidden: 1, layers: 1, heads: 1 << 16, kvHeads: 1 << 16, vocab: 1, seqLen: 1}, 0, -1, []string{"header dim = 131072", "invalid model config: dim 131072"}},
		{"dim negative", 0, with(func(f *fields) { f.dim = -8 }), 0, 4096, []string{"dim = -8, want > 0"}},
		{"hidden 2^30", 1, with(func(f *fields) { f.hidden = 1 << 30 }), 0, 4096, []string{"hidden 1073741824", "implies"}},
		{"hidden 2^20 (file of that size)", 1, with(func(f *fields) { f.hidden = 1 << 20 }), 0, -1, []string{"header hidden_dim = 1048576", "invalid model config: ffn_dim 1048576"}},
		{"hidden zero", 1, with(func(f *fields) { f.hidden = 0 }), 0, 4096, []string{"hidden_dim = 0, want > 0"}},
		{"heads 2^30", 1, with(func(f *fields) { f.heads = 1 << 30 }), 0, 4096, []string{"dim 8 is not a multiple of n_heads 1073741824"}},
		{"heads negative", 1, with(func(f *fields) { f.heads = -2 }), 0, 4096, []string{"n_heads = -2, want > 0"}},
		{"kv heads not dividing", 1, with(func(f *fields) { f.kvHeads = 3 }), 0, 4096, []string{"n_heads 2 is not a multiple of n_kv_heads 3"}},
		{"kv heads zero", 1, with(func(f *fields) { f.kvHeads = 0 }), 0, 4096, []string{"n_kv_heads = 0, want > 0"}},
		{"kv heads max int32", 1, with(func(f *fields) { f.kvHeads = math.MaxInt32 }), 0, 4096, []string{"n_kv_heads 2147483647"}},
		{"vocab 2^30", 1, with(func(f *fields) { f.vocab = 1 << 30 }), 0, 4096, []string{"vocab 1073741824", "implies"}},
		{"vocab 2^23 (file of that size)", 1, with(func(f *fields) { f.vocab = 1 << 23 }), 0, -1, []string{"header vocab_size = 8388608", "invalid model config: vocab_size 8388608"}},
		{"vocab min int32 (legacy, unshared)", 0, with(func(f *fields) { f.vocab = math.MinInt32 }), 0, 4096, []string{"vocab 2147483648", "implies"}},
		{"vocab zero", 0, with(func(f *fields) { f.vocab = 0 }), 0, 4096, []string{"vocab_size = 0, want > 0"}},
		{"seq_len max int32", 1, with(func(f *fields) { f.seqLen = math.MaxInt32 }), 0, -1, []string{"header seq_len = 2147483647", "invalid model config: context_length 2147483647"}},
		{"seq_len 2^24 (legacy, file of that size)", 0, with(func(f *fields) { f.seqLen = 1 << 24 }), 0, -1, []string{"header seq_len = 16777216", "invalid model config: context_length 16777216"}},
		{"seq_len 2^30 (legacy, small file)", 0, with(func(f *fields) { f.seqLen = 1 << 30 }), 0, 4096, []string{"seq_len 1073741824", "implies"}},
		{"seq_len negative", 1, with(func(f *fields) { f.seqLen = -8 }), 0, 4096, []string{"seq_len = -8, want > 0"}},
		{"all huge", 0, fields{1 << 30, math.MaxInt32, math.MaxInt32, 1, 1, math.MaxInt32, math.MaxInt32}, 0, 4096, []string{"impossible size"}},
		{"group size zero", 2, tiny, 0, 4096, []string{"group size 0"}},
		{"group size negative", 2, tiny, -32, 4096, []string{"group size -32"}},
		{"group size 2^30", 2, tiny, 1 << 30, 4096, []string{"not a multiple of the group size 1073741824"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := sparseCheckpoint(t, c.version, c.f, c.gs, c.size)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := Import(p, "")
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(c.want, p) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 || elapsed > 5*time.Second {
				t.Errorf("the import allocated %d MB in %v", alloc>>20, elapsed)
			}
		})
	}
}

// TestManyLayersImportQuickly: a valid header with the most layers lmrun accepts and
// tiny dimensions is a small file; importing it takes time linear in its tensors.
func TestManyLayersImportQuickly(t *testing.T) {
	p := sparseCheckpoint(t, 1, fields{dim: 2, hidden: 1, layers: 1024, heads: 1, kvHeads: 1, vocab: 1, seqLen: 1}, 0, -1)
	start := time.Now()
	ck, err := Import(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ck.Tensors) != 2+9*1024 {
		t.Errorf("%d tensors", len(ck.Tensors))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("importing 1024 tiny layers took %v", d)
	}
}

// TestLongContextCostsNothing: seq_len sizes nothing in a version 1 file, so the largest
// context lmrun accepts imports without allocating anything in proportion to it.
func TestLongContextCostsNothing(t *testing.T) {
	p := sparseCheckpoint(t, 1, fields{dim: 8, hidden: 16, layers: 1, heads: 2, kvHeads: 2, vocab: 32, seqLen: 1 << 21}, 0, -1)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ck, err := Import(p, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ck.Tensors {
		if _, err := s.Data(); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("importing a tiny model with a 2M context allocated %d MB", alloc>>20)
	}
}

// TestAbsurdTokenizerVocab: a header whose vocabulary the tokenizer file cannot hold is
// refused from the file's size, before anything is allocated for the tokens.
func TestAbsurdTokenizerVocab(t *testing.T) {
	p := sparseCheckpoint(t, 1, fields{dim: 2, hidden: 1, layers: 1, heads: 1, kvHeads: 1, vocab: 1 << 22, seqLen: 8}, 0, -1)
	tok := fixtures.Path(t, "llama2c", "tok512.bin")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Import(p, tok)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "cannot hold 4194304 tokens") || !strings.Contains(err.Error(), tok) {
		t.Fatalf("error %v, want one saying %s cannot hold 4194304 tokens", err, tok)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("refusing the tokenizer allocated %d MB", alloc>>20)
	}
}
