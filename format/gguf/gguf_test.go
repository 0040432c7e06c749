package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/hf"
	"github.com/lmrun/lmrun/format/llama2c"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// tensorData reads every tensor of a checkpoint.
func tensorData(t *testing.T, ck *format.Checkpoint) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, s := range ck.Tensors {
		b, err := s.Data()
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		want, err := s.DType.ByteSize(s.Shape)
		if err != nil || int64(len(b)) != want {
			t.Fatalf("%s: %d bytes for %s %v (%v)", s.Name, len(b), s.DType, s.Shape, err)
		}
		m[s.Name] = b
	}
	return m
}

// sameTensors checks that two checkpoints hold the same tensors: names, dtypes, shapes
// and bytes.
func sameTensors(t *testing.T, got, want *format.Checkpoint) {
	t.Helper()
	names := func(ck *format.Checkpoint) []string {
		var s []string
		for _, x := range ck.Tensors {
			s = append(s, x.Name)
		}
		sort.Strings(s)
		return s
	}
	if a, b := names(got), names(want); !reflect.DeepEqual(a, b) {
		t.Fatalf("tensors differ:\n got %v\nwant %v", a, b)
	}
	gd, wd := tensorData(t, got), tensorData(t, want)
	for _, w := range want.Tensors {
		g := got.Source(w.Name)
		if g.DType != w.DType || !reflect.DeepEqual(g.Shape, w.Shape) {
			t.Errorf("%s: %s %v, want %s %v", w.Name, g.DType, g.Shape, w.DType, w.Shape)
			continue
		}
		if !bytes.Equal(gd[w.Name], wd[w.Name]) {
			t.Errorf("%s: data differs", w.Name)
		}
	}
}

// sameLM checks that every lm.* key of want is in got with the same type and value.
func sameLM(t *testing.T, got, want format.Metadata) {
	t.Helper()
	for k, v := range want {
		if !strings.HasPrefix(k, "lm.") {
			continue
		}
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("metadata %s = %#v, want %#v", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; strings.HasPrefix(k, "lm.") && !ok {
			t.Errorf("extra metadata %s = %#v", k, got[k])
		}
	}
}

func TestLlamaTinyMatchesLlama2c(t *testing.T) {
	ck, err := Import(fixtures.Path(t, "expected", "llama_tiny.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := llama2c.Import(fixtures.Path(t, "expected", "llama_tiny.bin"), "")
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, ck, ref)
	sameLM(t, ck.Meta, ref.Meta)
	if ck.Meta["general.architecture"] != "llama" || ck.Meta["general.name"] != "lmrun-ref-random" {
		t.Errorf("general keys: %v %v", ck.Meta["general.architecture"], ck.Meta["general.name"])
	}
	for _, k := range []string{"llama.block_count", "general.file_type", "general.alignment"} {
		if _, ok := ck.Meta[k]; ok {
			t.Errorf("%s copied into the lmc metadata", k)
		}
	}
	// The tensor order is the one the other importers use.
	for i, s := range ref.Tensors {
		if ck.Tensors[i].Name != s.Name {
			t.Fatalf("tensor %d is %s, want %s", i, ck.Tensors[i].Name, s.Name)
		}
	}
}

func TestGPT2TinyMatchesHF(t *testing.T) {
	ck, err := Import(fixtures.Path(t, "expected", "gpt2_tiny.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := hf.Import(fixtures.Path(t, "expected", "gpt2_tiny_hf"))
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, ck, ref)
	sameLM(t, ck.Meta, ref.Meta)
}

// TestQ8_0 imports llama.cpp-style Q8_0 weights: matrices stay q8_0, norms f32, and every
// dequantized weight lies within d/2 + 127·|d − f16(d)| ≤ 0.57·d (d, the block's step) of
// llama_tiny's f32 value.
func TestQ8_0(t *testing.T) {
	ck, err := Import(fixtures.Path(t, "expected", "llama_tiny_q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := llama2c.Import(fixtures.Path(t, "expected", "llama_tiny.bin"), "")
	if err != nil {
		t.Fatal(err)
	}
	sameLM(t, ck.Meta, ref.Meta)
	rd := tensorData(t, ref)
	requantized := 0
	for name, b := range tensorData(t, ck) {
		s := ck.Source(name)
		want := dtype.BytesToF32(rd[name])
		if len(s.Shape) == 1 {
			if s.DType != dtype.F32 || !bytes.Equal(b, rd[name]) {
				t.Errorf("%s: %s, want the f32 norm unchanged", name, s.DType)
			}
			continue
		}
		if s.DType != dtype.Q8_0 {
			t.Fatalf("%s: %s, want q8_0", name, s.DType)
		}
		got, err := dtype.Dequantize(dtype.Q8_0, b, s.Shape[1])
		if err != nil {
			t.Fatal(err)
		}
		for blk := 0; blk < len(got)/32; blk++ {
			d := float64(dtype.F16ToF32(binary.LittleEndian.Uint16(b[blk*34:])))
			for j := blk * 32; j < blk*32+32; j++ {
				if e := math.Abs(float64(got[j]) - float64(want[j])); e > d*0.57 {
					t.Fatalf("%s[%d] = %v, f32 %v: off by %g, step %g", name, j, got[j], want[j], e, d)
				}
			}
		}
		// lmrun's quantizer reproduces the fixture's bytes.
		mine, err := dtype.Quantize(dtype.Q8_0, want, s.Shape[1])
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(mine, b) {
			requantized++
		}
	}
	if requantized != 1+2*7 {
		t.Errorf("only %d of %d matrices requantize to the fixture's bytes", requantized, 1+2*7)
	}
}

// TestTinyRandomF16 imports a GGUF made by llama.cpp: F16 matrices, F32 norms, an untied
// classifier and the Llama 2 vocabulary.
func TestTinyRandomF16(t *testing.T) {
	path := fixtures.Path(t, "gguf", "llama-2-tiny-random.gguf")
	ck, err := Import(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"lm.dim": int64(8), "lm.n_layers": int64(1), "lm.n_heads": int64(2), "lm.n_kv_heads": int64(2),
		"lm.ffn_dim": int64(32), "lm.vocab_size": int64(32000), "lm.context_length": int64(4096),
		"lm.norm": "rmsnorm", "lm.norm_eps": 1e-5, "lm.rope_theta": 10000.0, "lm.position": "rope",
		"lm.activation": "swiglu", "general.name": "LLaMA v2",
		"tokenizer.ggml.model": "llama", "tokenizer.ggml.bos_token_id": int64(1),
		"tokenizer.ggml.eos_token_id": int64(2), "tokenizer.ggml.unknown_token_id": int64(0),
	}
	for k, v := range want {
		if !reflect.DeepEqual(ck.Meta[k], v) {
			t.Errorf("%s = %#v, want %#v", k, ck.Meta[k], v)
		}
	}
	toks, _, err := ck.Meta.Strings("tokenizer.ggml.tokens")
	if err != nil || len(toks) != 32000 || toks[1] != "<s>" || toks[3] != "<0x00>" {
		t.Errorf("tokens: %d, %v", len(toks), err)
	}
	scores, _, err := ck.Meta.Floats("tokenizer.ggml.scores")
	if err != nil || len(scores) != 32000 {
		t.Errorf("scores: %d, %v", len(scores), err)
	}
	types, _, err := ck.Meta.Ints("tokenizer.ggml.token_type")
	if err != nil || len(types) != 32000 || types[0] != 2 || types[1] != 3 || types[3] != 6 {
		t.Errorf("token types: %v, %v", types[:4], err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := tensorData(t, ck)
	if len(data) != 12 {
		t.Errorf("%d tensors, want 12", len(data))
	}
	for _, ti := range f.Tensors {
		s := ck.Source(ti.Name)
		if s == nil {
			t.Fatalf("%s missing", ti.Name)
		}
		raw, err := f.TensorData(&ti)
		if err != nil {
			t.Fatal(err)
		}
		wantDT, _ := ti.Type.DType()
		if s.DType != wantDT || !bytes.Equal(data[ti.Name], raw) || !reflect.DeepEqual(s.Shape, ti.Shape()) {
			t.Errorf("%s: %s %v, want the GGUF's %s %v bytes", ti.Name, s.DType, s.Shape, ti.Type, ti.Shape())
		}
	}
	if ck.Source("output.weight").DType != dtype.F16 || ck.Source("output_norm.weight").DType != dtype.F32 {
		t.Error("dtypes not kept")
	}
	// The written checkpoint opens and verifies.
	out := filepath.Join(t.TempDir(), "m.lmc")
	if err := ck.WriteFile(out, nil); err != nil {
		t.Fatal(err)
	}
	lf, err := format.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := lf.Verify(nil); err != nil {
		t.Fatal(err)
	}
	if lf.Tensor("token_embd.weight").DType != dtype.F16 {
		t.Error("token_embd.weight not f16 in the lmc file")
	}
}

func TestVocabOnly(t *testing.T) {
	for _, name := range []string{"ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf"} {
		path := fixtures.Path(t, "gguf", name)
		f, err := Open(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(f.Tensors) != 0 || len(f.KV) < 10 {
			t.Errorf("%s: %d tensors, %d keys", name, len(f.Tensors), len(f.KV))
		}
		if v, _ := f.Value("tokenizer.ggml.tokens"); len(v.([]string)) < 32000 {
			t.Errorf("%s: %d tokens", name, len(v.([]string)))
		}
		f.Close()
		_, err = Import(path)
		if !errors.Is(err, ErrNoWeights) || !strings.Contains(err.Error(), "no tensors") || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// synthetic returns the metadata and tensors of a small random llama (or gpt2) GGUF
// model with matrices stored as typ.
func synthetic(arch string, typ Type, seed uint64) ([]KV, []TensorSource) {
	const dim, ffn, vocab, ctx, heads = 32, 64, 8, 4, 2
	rng := rand.New(rand.NewPCG(seed, 1))
	dt, _ := typ.DType()
	tensor := func(name string, shape ...int) TensorSource {
		v := make([]float32, dtype.NumElements(shape))
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		t, d := TypeF32, dtype.F32
		if len(shape) == 2 && !strings.HasPrefix(name, "position") {
			t, d = typ, dt
		}
		b, err := dtype.Quantize(d, v, shape[len(shape)-1])
		if err != nil {
			panic(err)
		}
		return TensorSource{Name: name, Type: t, Dims: Dims(shape), Data: func() ([]byte, error) { return b, nil }}
	}
	kvs := []KV{
		{"general.architecture", arch}, {"general.name", "synthetic"},
		{arch + ".context_length", uint32(ctx)}, {arch + ".embedding_length", uint32(dim)},
		{arch + ".block_count", uint32(1)}, {arch + ".feed_forward_length", uint32(ffn)},
		{arch + ".attention.head_count", uint32(heads)},
		{"tokenizer.ggml.model", "llama"}, {"tokenizer.ggml.bos_token_id", uint32(1)},
		{"tokenizer.ggml.add_bos_token", true}, {"tokenizer.ggml.token_type", []int32{1, 3, 2}},
		{"tokenizer.chat_template", "{{ x }}"}, {"custom.nested", []any{[]uint8{1}, []string{"a"}}},
		{"custom.u64", uint64(math.MaxUint64)}, {"custom.f64", 0.25}, {"custom.i8s", []int8{-1, 2}},
	}
	var ts []TensorSource
	ts = append(ts, tensor("token_embd.weight", vocab, dim))
	if arch == "llama" {
		kvs = append(kvs, KV{arch + ".attention.head_count_kv", uint32(1)}, KV{arch + ".attention.layer_norm_rms_epsilon", float32(1e-6)},
			KV{arch + ".rope.freq_base", float32(500000)})
		ts = append(ts, tensor("blk.0.attn_norm.weight", dim), tensor("blk.0.attn_q.weight", dim, dim),
			tensor("blk.0.attn_k.weight", dim/2, dim), tensor("blk.0.attn_v.weight", dim/2, dim),
			tensor("blk.0.attn_output.weight", dim, dim), tensor("blk.0.ffn_norm.weight", dim),
			tensor("blk.0.ffn_gate.weight", ffn, dim), tensor("blk.0.ffn_up.weight", ffn, dim),
			tensor("blk.0.ffn_down.weight", dim, ffn), tensor("output_norm.weight", dim), tensor("output.weight", vocab, dim))
	} else {
		kvs = append(kvs, KV{arch + ".attention.layer_norm_epsilon", float32(1e-5)})
		ts = append(ts, tensor("position_embd.weight", ctx, dim))
		for _, p := range []struct {
			name string
			n, m int
		}{{"attn_norm", dim, 0}, {"attn_qkv", 3 * dim, dim}, {"attn_output", dim, dim}, {"ffn_norm", dim, 0}, {"ffn_up", ffn, dim}, {"ffn_down", dim, ffn}} {
			if p.m == 0 {
				ts = append(ts, tensor("blk.0."+p.name+".weight", p.n))
			} else {
				ts = append(ts, tensor("blk.0."+p.name+".weight", p.n, p.m))
			}
			ts = append(ts, tensor("blk.0."+p.name+".bias", p.n))
		}
		ts = append(ts, tensor("output_norm.weight", dim), tensor("output_norm.bias", dim))
	}
	return kvs, ts
}

func encode(t testing.TB, kvs []KV, ts []TensorSource) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, kvs, ts, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func parseBytes(b []byte) (*File, error) { return Parse(bytes.NewReader(b), int64(len(b))) }

// TestWriteParse writes every value type and reads it back, checks the layout llama.cpp
// requires (consecutive aligned offsets, padded data) and imports the synthetic models.
func TestWriteParse(t *testing.T) {
	all := []KV{
		{"u8", uint8(200)}, {"i8", int8(-100)}, {"u16", uint16(60000)}, {"i16", int16(-30000)},
		{"u32", uint32(4e9)}, {"i32", int32(-2e9)}, {"f32", float32(1.5)}, {"b", true}, {"s", "héllo\x00"},
		{"u64", uint64(1 << 63)}, {"i64", int64(-1 << 62)}, {"f64", math.Pi},
		{"au8", []uint8{1, 2}}, {"ai8", []int8{-1}}, {"au16", []uint16{7}}, {"ai16", []int16{-7}},
		{"au32", []uint32{9, 10}}, {"ai32", []int32{-9}}, {"af32", []float32{0.5, -2}}, {"ab", []bool{true, false}},
		{"as", []string{"", "x"}}, {"au64", []uint64{1 << 40}}, {"ai64", []int64{-1 << 40}}, {"af64", []float64{1e300}},
		{"empty", []string{}}, {"nested", []any{[]int32{1, 2}, []any{[]string{"deep"}}, []float32{}}},
		{"general.alignment", uint32(64)},
	}
	_, ts := synthetic("llama", TypeQ8_0, 1)
	b := encode(t, all, ts)
	f, err := parseBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if f.Version != 3 || f.Alignment != 64 || f.DataOffset%64 != 0 || !reflect.DeepEqual(f.KV, all) {
		t.Fatalf("round trip: version %d alignment %d\n got %#v\nwant %#v", f.Version, f.Alignment, f.KV, all)
	}
	var next uint64
	for i, ti := range f.Tensors {
		if ti.Offset != next {
			t.Errorf("tensor %s at %d, want %d (consecutive)", ti.Name, ti.Offset, next)
		}
		next = (ti.Offset + ti.Size + 63) &^ 63
		want, _ := ts[i].Data()
		got, err := f.TensorData(&ti)
		if err != nil || !bytes.Equal(got, want) || ti.Name != ts[i].Name || ti.Type != ts[i].Type {
			t.Errorf("tensor %d: %s %s, %v", i, ti.Name, ti.Type, err)
		}
	}
	if int64(len(b)) != f.DataOffset+int64(next) {
		t.Errorf("file is %d bytes, want %d (last tensor padded)", len(b), f.DataOffset+int64(next))
	}
	// Version 2 has the same layout.
	v2 := append([]byte(nil), b...)
	binary.LittleEndian.PutUint32(v2[4:], 2)
	if f, err := parseBytes(v2); err != nil || f.Version != 2 {
		t.Errorf("version 2: %v", err)
	}

	for _, arch := range []string{"llama", "gpt2"} {
		for _, typ := range []Type{TypeF32, TypeF16, TypeBF16, TypeQ8_0, TypeQ4_0} {
			kvs, ts := synthetic(arch, typ, 2)
			f, err := parseBytes(encode(t, kvs, ts))
			if err != nil {
				t.Fatal(err)
			}
			ck, err := FromFile(f)
			if err != nil {
				t.Fatalf("%s %s: %v", arch, typ, err)
			}
			data := tensorData(t, ck)
			dt, _ := typ.DType()
			if s := ck.Source("blk.0.attn_q.weight"); s.DType != dt {
				t.Errorf("%s %s: attn_q is %s", arch, typ, s.DType)
			}
			if arch == "gpt2" {
				// The fused rows are split: q, k, v in order, weights and biases.
				qkv := f.Tensor("blk.0.attn_qkv.weight")
				raw, _ := f.TensorData(qkv)
				rb := len(raw) / 3
				bias, _ := f.TensorData(f.Tensor("blk.0.attn_qkv.bias"))
				for i, n := range []string{"attn_q", "attn_k", "attn_v"} {
					if !bytes.Equal(data["blk.0."+n+".weight"], raw[i*rb:(i+1)*rb]) || !bytes.Equal(data["blk.0."+n+".bias"], bias[i*4*32:(i+1)*4*32]) {
						t.Errorf("%s: %s is not part %d of attn_qkv", typ, n, i)
					}
				}
				if ck.Source("position_embd.weight").DType != dtype.F32 {
					t.Error("position table not f32")
				}
			}
			m := ck.Meta
			if arch == "llama" && (m["lm.rope_theta"] != 500000.0 || m["lm.norm_eps"] != 1e-6 || m["lm.n_kv_heads"] != int64(1)) {
				t.Errorf("llama hyper-parameters: %v %v %v", m["lm.rope_theta"], m["lm.norm_eps"], m["lm.n_kv_heads"])
			}
			if !reflect.DeepEqual(m["tokenizer.ggml.token_type"], []int64{1, 3, 2}) || m["tokenizer.ggml.add_bos_token"] != true ||
				m["tokenizer.chat_template"] != "{{ x }}" || m["custom.f64"] != 0.25 || !reflect.DeepEqual(m["custom.i8s"], []int64{-1, 2}) {
				t.Errorf("metadata not converted: %#v", m)
			}
			if _, ok := m["custom.nested"]; ok {
				t.Error("nested array kept")
			}
			if _, ok := m["custom.u64"]; ok {
				t.Error("uint64 beyond int64 kept")
			}
		}
	}
}

// lmcCheckpoint returns a checkpoint that reads an open lmc file.
func lmcCheckpoint(f *format.File) *format.Checkpoint {
	ck := &format.Checkpoint{Meta: f.Meta}
	for _, tt := range f.Tensors {
		ck.Tensors = append(ck.Tensors, format.Bytes(tt.Name, tt.DType, tt.Shape, tt.Data))
	}
	return ck
}

// roundTrip writes ck as an lmc file, exports that to GGUF and imports it back.
func roundTrip(t *testing.T, ck *format.Checkpoint) (*format.Checkpoint, *File) {
	t.Helper()
	dir := t.TempDir()
	lmc := filepath.Join(dir, "m.lmc")
	if err := ck.WriteFile(lmc, nil); err != nil {
		t.Fatal(err)
	}
	lf, err := format.Open(lmc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lf.Close() })
	out := filepath.Join(dir, "m.gguf")
	if err := ExportFile(lmcCheckpoint(lf), out, nil); err != nil {
		t.Fatal(err)
	}
	back, err := Import(out)
	if err != nil {
		t.Fatal(err)
	}
	gf, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gf.Close() })
	return back, gf
}

func TestExportRoundTrip(t *testing.T) {
	llama, err := llama2c.Import(fixtures.Path(t, "expected", "llama_tiny.bin"), fixtures.Path(t, "llama2c", "tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	back, gf := roundTrip(t, llama)
	sameTensors(t, back, llama)
	sameLM(t, back.Meta, llama.Meta)
	// The GGUF has what llama.cpp needs, with the types it checks.
	want := map[string]any{
		"general.architecture": "llama", "general.alignment": uint32(32), "general.file_type": uint32(0),
		"llama.vocab_size": uint32(512), "llama.context_length": uint32(128), "llama.embedding_length": uint32(64),
		"llama.block_count": uint32(2), "llama.feed_forward_length": uint32(192), "llama.attention.head_count": uint32(4),
		"llama.attention.head_count_kv": uint32(2), "llama.rope.dimension_count": uint32(16),
		"llama.rope.freq_base": float32(10000), "llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"tokenizer.ggml.model": "llama", "tokenizer.ggml.bos_token_id": uint32(1), "tokenizer.ggml.eos_token_id": uint32(2),
		"tokenizer.ggml.unknown_token_id": uint32(0), "tokenizer.ggml.add_bos_token": true,
	}
	for k, v := range want {
		if got, _ := gf.Value(k); !reflect.DeepEqual(got, v) {
			t.Errorf("GGUF %s = %#v, want %#v", k, got, v)
		}
	}
	toks, _ := gf.Value("tokenizer.ggml.tokens")
	types, _ := gf.Value("tokenizer.ggml.token_type")
	tk, tt := toks.([]string), types.([]int32)
	if tk[0] != "<unk>" || tk[1] != "<s>" || tk[2] != "</s>" || tk[3] != "<0x00>" || tt[0] != 2 || tt[1] != 3 || tt[3] != 6 {
		t.Errorf("specials: %q %v", tk[:4], tt[:4])
	}
	for i, p := range tk {
		if strings.Contains(p, " ") || (tt[i] == 1 && strings.HasPrefix(p, "<0x")) {
			t.Fatalf("token %d: %q type %d", i, p, tt[i])
		}
	}

	gpt2, err := hf.Import(fixtures.Path(t, "expected", "gpt2_tiny_hf"))
	if err != nil {
		t.Fatal(err)
	}
	back, gf = roundTrip(t, gpt2)
	sameTensors(t, back, gpt2)
	sameLM(t, back.Meta, gpt2.Meta)
	if v, _ := gf.Value("tokenizer.ggml.model"); v != "no_vocab" {
		t.Errorf("tokenizer of a model without one: %v", v)
	}
	// llama.cpp's gpt2 requires output.weight ("missing tensor 'output.weight'"): a tied
	// classifier is written as a copy of token_embd, as its converter writes GPT-2's wte.
	if out, emb := gf.Tensor("output.weight"), gf.Tensor("token_embd.weight"); out == nil {
		t.Error("gpt2 export without output.weight")
	} else {
		a, _ := gf.TensorData(out)
		b, _ := gf.TensorData(emb)
		if !bytes.Equal(a, b) || !reflect.DeepEqual(out.Dims, emb.Dims) {
			t.Error("gpt2's output.weight is not a copy of token_embd.weight")
		}
	}
	// The export of an imported GGUF has the same tensor bytes as the original.
	orig, err := Open(fixtures.Path(t, "expected", "gpt2_tiny.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	for _, ti := range orig.Tensors {
		a, err1 := orig.TensorData(&ti)
		mine := gf.Tensor(ti.Name)
		if mine == nil {
			t.Fatalf("%s not exported", ti.Name)
		}
		b, err2 := gf.TensorData(mine)
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) || mine.Type != ti.Type || !reflect.DeepEqual(mine.Dims, ti.Dims) {
			t.Errorf("%s differs from llama.cpp's layout", ti.Name)
		}
	}

	// Quantized weights and GGUF tokenizer keys survive too.
	q8, err := Import(fixtures.Path(t, "expected", "llama_tiny_q8_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	back, gf = roundTrip(t, q8)
	sameTensors(t, back, q8)
	if v, _ := gf.Value("general.file_type"); v != uint32(7) {
		t.Errorf("file type %v, want 7 (mostly q8_0)", v)
	}
	tiny, err := Import(fixtures.Path(t, "gguf", "llama-2-tiny-random.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	back, gf = roundTrip(t, tiny)
	sameTensors(t, back, tiny)
	for _, k := range []string{"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "general.name"} {
		if !reflect.DeepEqual(back.Meta[k], tiny.Meta[k]) {
			t.Errorf("%s changed in the round trip", k)
		}
	}
	if v, _ := gf.Value("tokenizer.ggml.token_type"); reflect.TypeOf(v) != reflect.TypeOf([]int32{}) {
		t.Errorf("token_type exported as %T, llama.cpp wants int32", v)
	}
}

func TestExportRejects(t *testing.T) {
	ck, err := llama2c.Import(fixtures.Path(t, "expected", "llama_tiny.bin"), "")
	if err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(ck *format.Checkpoint){
		"windows":  func(ck *format.Checkpoint) { ck.Meta["lm.attn_windows"] = []int64{0, 4} },
		"postnorm": func(ck *format.Checkpoint) { ck.Meta["lm.norm_position"] = "post" },
		"relu":     func(ck *format.Checkpoint) { ck.Meta["lm.activation"] = "relu" },
		"extra": func(ck *format.Checkpoint) {
			ck.Tensors = append(ck.Tensors, format.Float32s("blk.0.extra", []int{1}, []float32{1}))
		},
		"missing": func(ck *format.Checkpoint) { ck.Tensors = ck.Tensors[1:] },
	} {
		c := &format.Checkpoint{Meta: format.Metadata{}, Tensors: append([]format.Source(nil), ck.Tensors...)}
		for k, v := range ck.Meta {
			c.Meta[k] = v
		}
		mod(c)
		if _, _, err := Export(c); err == nil || !strings.Contains(err.Error(), "cannot export to GGUF") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestImportErrors checks the importer's messages for well-formed files it cannot use.
func TestImportErrors(t *testing.T) {
	cases := map[string]struct {
		mod  func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource)
		want string
	}{
		"q3_k": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			ts[2] = TensorSource{Name: ts[2].Name, Type: TypeQ3_K, Dims: []uint64{256, 64},
				Data: func() ([]byte, error) { return make([]byte, 64*110), nil }}
			return kvs, ts
		}, "unsupported tensor type Q3_K"},
		"arch": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			kvs[0].Value = "falcon"
			return kvs, ts
		}, `unsupported architecture "falcon"`},
		"missing tensor": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			return kvs, append(ts[:3], ts[4:]...)
		}, "missing tensors: blk.0.attn_k.weight"},
		"extra tensor": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			return kvs, append(ts, TensorSource{Name: "blk.0.attn_q_norm.weight", Type: TypeF32, Dims: []uint64{8}, Data: func() ([]byte, error) { return make([]byte, 32), nil }})
		}, "should not have"},
		"zero rope_freqs": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			return kvs, append(ts, TensorSource{Name: "rope_freqs.weight", Type: TypeF32, Dims: []uint64{8}, Data: func() ([]byte, error) { return make([]byte, 32), nil }})
		}, "rope_freq_factors[0] = 0"},
		"rope_freqs length": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			return kvs, append(ts, TensorSource{Name: "rope_freqs.weight", Type: TypeF32, Dims: []uint64{4}, Data: func() ([]byte, error) { return make([]byte, 16), nil }})
		}, "rope_freqs.weight: want 8 factors"},
		"longrope without factors": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			return append(kvs, KV{"llama.rope.scaling.type", "longrope"}), ts
		}, "longrope without rope_factors_short.weight"},
		"long factors without context": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			one := func() ([]byte, error) { return dtype.F32ToBytes([]float32{1, 1, 1, 1, 1, 1, 1, 1}), nil }
			return kvs, append(ts, TensorSource{Name: "rope_factors_long.weight", Type: TypeF32, Dims: []uint64{8}, Data: one},
				TensorSource{Name: "rope_factors_short.weight", Type: TypeF32, Dims: []uint64{8}, Data: one})
		}, "missing metadata llama.rope.scaling.original_context_length"},
		"window type": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			return append(kvs, KV{"llama.attention.sliding_window", "wide"}), ts
		}, "llama.attention.sliding_window is a string"},
		"wrong shape": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			ts[2].Dims = []uint64{16, 64}
			return kvs, ts
		}, "blk.0.attn_q.weight has shape [64 16]"},
		"missing key": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			return append(kvs[:3], kvs[4:]...), ts
		}, "missing metadata llama.embedding_length"},
		"string key": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			kvs[4].Value = "one"
			return kvs, ts
		}, "llama.block_count is a string"},
		"rope scaling": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			return append(kvs, KV{"llama.rope.scaling.type", "yarn"}), ts
		}, "rope.scaling.type yarn"},
		"bad alignment type": {func(kvs []KV, ts []TensorSource) ([]KV, []TensorSource) {
			return append(kvs, KV{"general.alignment", "32"}), ts
		}, "general.alignment"},
	}
	for name, c := range cases {
		kvs, ts := synthetic("llama", TypeF16, 3)
		kvs, ts = c.mod(kvs, ts)
		var buf bytes.Buffer
		err := Write(&buf, kvs, ts, nil)
		if err == nil {
			var f *File
			if f, err = parseBytes(buf.Bytes()); err == nil {
				_, err = FromFile(f)
			}
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// TestCorrupt feeds malformed files to Parse: each must fail with ErrFormat, quickly and
// without allocating much more than the file's size.
func TestCorrupt(t *testing.T) {
	kvs, ts := synthetic("llama", TypeQ8_0, 4)
	good := encode(t, kvs, ts)
	f, err := parseBytes(good)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	header := func(nT, nKV uint64) []byte {
		b := []byte(Magic)
		b = le.AppendUint32(b, 3)
		b = le.AppendUint64(b, nT)
		return le.AppendUint64(b, nKV)
	}
	kv := func(b []byte, key string, typ ValueType) []byte {
		b = le.AppendUint64(b, uint64(len(key)))
		b = append(b, key...)
		return le.AppendUint32(b, uint32(typ))
	}
	nested := kv(header(0, 1), "bomb", TypeArray)
	for range 1000 {
		nested = le.AppendUint32(nested, uint32(TypeArray))
		nested = le.AppendUint64(nested, 1)
	}
	tensorInfo := func(dims []uint64, typ Type, off uint64) []byte {
		b := kv(header(1, 0)[:0], "t", 0)[:9] // name only
		b = le.AppendUint32(b, uint32(len(dims)))
		for _, d := range dims {
			b = le.AppendUint64(b, d)
		}
		b = le.AppendUint32(b, uint32(typ))
		return le.AppendUint64(b, off)
	}
	withTensor := func(dims []uint64, typ Type, off uint64, data int) []byte {
		b := append(header(1, 0), tensorInfo(dims, typ, off)...)
		b = append(b, make([]byte, int(padLen(uint64(len(b)), 32)))...)
		return append(b, make([]byte, data)...)
	}
	cases := map[string][]byte{
		"empty":            {},
		"magic":            []byte("GGUX\x03\x00\x00\x00"),
		"version 1":        append([]byte(Magic), 1, 0, 0, 0),
		"version 4":        append([]byte(Magic), 4, 0, 0, 0),
		"big-endian":       append([]byte(Magic), 0, 0, 0, 3),
		"huge kv count":    header(0, 1<<62),
		"huge tensors":     header(1<<62, 0),
		"huge key":         le.AppendUint64(header(0, 1), 1<<62),
		"huge string":      le.AppendUint64(kv(header(0, 1), "s", TypeString), 1<<62),
		"huge array":       le.AppendUint64(le.AppendUint32(kv(header(0, 1), "a", TypeArray), uint32(TypeUint64)), 1<<60),
		"huge string arr":  le.AppendUint64(le.AppendUint32(kv(header(0, 1), "a", TypeArray), uint32(TypeString)), 1<<40),
		"nested arrays":    nested,
		"unknown type":     append(kv(header(0, 1), "x", 13), 0, 0, 0, 0),
		"unknown elem":     append(le.AppendUint32(kv(header(0, 1), "a", TypeArray), 99), make([]byte, 8)...),
		"dup key":          append(kv(append(kv(header(0, 2), "k", TypeUint8), 1), "k", TypeUint8), 1),
		"too many dims":    withTensor([]uint64{1, 1, 1, 1, 1}, TypeF32, 0, 4),
		"huge dim":         withTensor([]uint64{1 << 40}, TypeF32, 0, 4),
		"overflow":         withTensor([]uint64{1 << 30, 1 << 30, 1 << 30, 1 << 30}, TypeF32, 0, 4),
		"unknown ggml":     withTensor([]uint64{4}, 31, 0, 16),
		"partial block":    withTensor([]uint64{31}, TypeQ8_0, 0, 34),
		"past the end":     withTensor([]uint64{8}, TypeF32, 0, 16),
		"offset past end":  withTensor([]uint64{4}, TypeF32, 1<<50, 16),
		"misaligned":       withTensor([]uint64{4}, TypeF32, 4, 32),
		"truncated data":   good[:len(good)-1-int(f.Tensors[len(f.Tensors)-1].Size)],
		"truncated header": good[:f.DataOffset-40],
	}
	for name, b := range cases {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := parseBytes(b)
		runtime.ReadMemStats(&after)
		if err == nil || !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v, want an ErrFormat error", name, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20+40*uint64(len(b)) {
			t.Errorf("%s: %d bytes allocated for a %d-byte file", name, alloc, len(b))
		}
	}
	// Every truncation of a valid file fails cleanly.
	for n := 0; n < len(good); n += 1 + n/64 {
		if _, err := parseBytes(good[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: accepted", n, len(good))
		}
	}
}

func TestMetaValue(t *testing.T) {
	for _, c := range []struct {
		in   any
		want any
	}{
		{uint8(3), int64(3)}, {int16(-3), int64(-3)}, {uint32(7), int64(7)}, {uint64(9), int64(9)},
		{float32(1e-5), 1e-5}, {float32(0.1), 0.1}, {2.5, 2.5}, {true, true}, {"s", "s"},
		{[]uint32{1, 2}, []int64{1, 2}}, {[]bool{true, false}, []int64{1, 0}}, {[]float64{0.5}, []float32{0.5}},
		{[]string{"a"}, []string{"a"}}, {[]float32{1.5}, []float32{1.5}},
	} {
		got, ok := MetaValue(c.in)
		if !ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("MetaValue(%#v) = %#v, %v; want %#v", c.in, got, ok, c.want)
		}
	}
	for _, in := range []any{uint64(1 << 63), []uint64{1 << 63}, []any{[]int8{1}}} {
		if _, ok := MetaValue(in); ok {
			t.Errorf("MetaValue(%#v) converted", in)
		}
	}
}

func TestFileChangesAfterImport(t *testing.T) {
	kvs, ts := synthetic("llama", TypeF32, 5)
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := WriteFile(path, kvs, ts, nil); err != nil {
		t.Fatal(err)
	}
	ck, err := Import(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := ck.Tensors[0].Data(); err == nil || !strings.Contains(err.Error(), "changed size") {
		t.Errorf("reading after truncation: %v", err)
	}
	if _, err := Import(filepath.Join(t.TempDir(), "missing.gguf")); err == nil {
		t.Error("missing file imported")
	}
}

// withKV returns kvs with key set to v (appended when absent, removed when v is nil).
func withKV(kvs []KV, key string, v any) []KV {
	out := make([]KV, 0, len(kvs)+1)
	found := false
	for _, kv := range kvs {
		if kv.Key == key {
			found = true
			if v == nil {
				continue
			}
			kv.Value = v
		}
		out = append(out, kv)
	}
	if !found && v != nil {
		out = append(out, KV{key, v})
	}
	return out
}

// TestAbsurdMetadata: a small, well-formed GGUF file whose hyper-parameters are absurd —
// billions of blocks, heads, positions or dimensions, zero, negative, of the wrong type —
// is an error naming the key and its value, found at once and without allocating
// anything sized by the absurd number.
func TestAbsurdMetadata(t *testing.T) {
	const billion = uint32(1 << 30)
	cases := []struct {
		arch, key string // key without the "arch." prefix
		value     any
		want      string
	}{
		// llama: embedding_length 32, feed_forward_length 64, 1 block, 2 heads, 1 KV head, 8 tokens.
		{"llama", "block_count", billion, "llama.block_count = 1073741824, but the file holds tensors for at most 1 blocks"},
		{"llama", "block_count", uint32(2), "llama.block_count = 2, but the file holds tensors for at most 1 blocks"},
		{"llama", "block_count", uint32(0), "llama.block_count = 0, want a positive int32"},
		{"llama", "block_count", int32(-1), "llama.block_count = -1, want a positive int32"},
		{"llama", "block_count", int64(math.MaxInt64), "llama.block_count = 9223372036854775807, want a positive int32"},
		{"llama", "block_count", uint64(math.MaxUint64), "llama.block_count = 18446744073709551615 is too large"},
		{"llama", "block_count", float32(1), "llama.block_count is a float32"},
		{"llama", "block_count", []uint32{1}, "llama.block_count is a []uint32"},
		{"llama", "block_count", "1", "llama.block_count is a string"},
		{"llama", "block_count", nil, "missing metadata llama.block_count"},
		{"llama", "attention.head_count", billion, "embedding_length 32 is not a multiple of head_count 1073741824"},
		{"llama", "attention.head_count", uint32(0), "llama.attention.head_count = 0"},
		{"llama", "attention.head_count_kv", uint32(3), "head_count 2 is not a multiple of head_count_kv 3"},
		{"llama", "attention.head_count_kv", billion, "head_count 2 is not a multiple of head_count_kv 1073741824"},
		{"llama", "attention.head_count_kv", int8(-1), "llama.attention.head_count_kv = -1"},
		{"llama", "context_length", billion, "llama.context_length = 1073741824: invalid model config: context_length 1073741824"},
		{"llama", "context_length", uint32(math.MaxUint32), "llama.context_length = 4294967295, want a positive int32"},
		{"llama", "embedding_length", billion, "llama.embedding_length = 1073741824, but token_embd.weight has rows of 32"},
		{"llama", "embedding_length", uint32(16), "llama.embedding_length = 16, but token_embd.weight has rows of 32"},
		{"llama", "feed_forward_length", billion, "llama.feed_forward_length = 1073741824: invalid model config: ffn_dim 1073741824"},
		{"llama", "feed_forward_length", uint32(128), "blk.0.ffn_gate.weight has shape [64 32], the metadata implies [128 32]"},
		{"llama", "feed_forward_length", []int32{64, 65}, "llama.feed_forward_length differs between layers"},
		{"llama", "feed_forward_length", []int32{}, "llama.feed_forward_length = []"},
		{"llama", "feed_forward_length", []int64{-64}, "llama.feed_forward_length = [-64]"},
		{"llama", "attention.key_length", billion, "llama.attention.key_length = 1073741824: invalid model config: head_dim 1073741824"},
		{"llama", "attention.key_length", uint32(31), "head dimension 31 is odd"},
		{"llama", "rope.dimension_count", billion, "rope.dimension_count 1073741824 must be even and at most the head dimension 16"},
		{"llama", "rope.freq_base", float32(-1), "rope.freq_base = -1, want > 0"},
		{"llama", "rope.freq_base", float32(0.5), "llama.rope.freq_base = 0.5: invalid model config: rope_theta 0.5"},
		{"llama", "rope.freq_base", float32(math.Inf(1)), "llama.rope.freq_base = +Inf"},
		{"llama", "attention.layer_norm_rms_epsilon", float32(math.NaN()), "llama.attention.layer_norm_rms_epsilon = NaN"},
		{"llama", "attention.layer_norm_rms_epsilon", float32(1e10), "llama.attention.layer_norm_rms_epsilon = 1e+10: invalid model config: norm_eps"},
		{"llama", "attention.layer_norm_rms_epsilon", uint32(1), "llama.attention.layer_norm_rms_epsilon is a uint32"},
		{"llama", "vocab_size", billion, "llama.vocab_size = 1073741824, but token_embd.weight has 8 rows"},
		// gpt2: embedding_length 32, feed_forward_length 64, 1 block, 2 heads, context 4, 8 tokens.
		{"gpt2", "context_length", billion, "gpt2.context_length = 1073741824, but position_embd.weight has shape [4 32]"},
		{"gpt2", "context_length", uint32(3), "gpt2.context_length = 3, but position_embd.weight has shape [4 32]"},
		{"gpt2", "block_count", billion, "gpt2.block_count = 1073741824, but the file holds tensors for at most 1 blocks"},
		{"gpt2", "attention.head_count", uint32(3), "embedding_length 32 is not a multiple of head_count 3"},
		{"gpt2", "attention.head_count", billion, "embedding_length 32 is not a multiple of head_count 1073741824"},
		{"gpt2", "embedding_length", billion, "gpt2.embedding_length = 1073741824, but token_embd.weight has rows of 32"},
		{"gpt2", "feed_forward_length", uint32(1 << 20), "gpt2.feed_forward_length = 1048576: invalid model config: ffn_dim 1048576"},
		{"gpt2", "attention.head_count_kv", uint32(1), "unsupported: gpt2 with head_count_kv 1"},
		{"gpt2", "attention.layer_norm_epsilon", 2.0, "gpt2.attention.layer_norm_epsilon = 2: invalid model config: norm_eps 2"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s.%s=%v", c.arch, c.key, c.value), func(t *testing.T) {
			kvs, ts := synthetic(c.arch, TypeF16, 5)
			b := encode(t, withKV(kvs, c.arch+"."+c.key, c.value), ts)
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := Import(path)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v, want one naming %s and saying %q", err, path, c.want)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 || elapsed > 5*time.Second {
				t.Errorf("the import allocated %d MB in %v", alloc>>20, elapsed)
			}
		})
	}
}

// TestLongRoPEContextCostsNothing: a llama file's context length sizes no tensor, so the
// largest one lmrun accepts imports without allocating anything in proportion to it.
func TestLongRoPEContextCostsNothing(t *testing.T) {
	kvs, ts := synthetic("llama", TypeF16, 5)
	f, err := parseBytes(encode(t, withKV(kvs, "llama.context_length", uint32(1<<21)), ts))
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ck, err := FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	tensorData(t, ck)
	runtime.ReadMemStats(&after)
	if ck.Meta["lm.context_length"] != int64(1<<21) {
		t.Errorf("lm.context_length = %v", ck.Meta["lm.context_length"])
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("importing a tiny model with a 2M context allocated %d MB", alloc>>20)
	}
}
