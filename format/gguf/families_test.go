package gguf_test

import (
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/gguf"
	"github.com/lmrun/lmrun/internal/archtest"
	"github.com/lmrun/lmrun/model"
)

// ggufCases are random models of each llama.cpp architecture of the Llama kind.
func ggufCases(t *testing.T) map[string]*archtest.Model {
	t.Helper()
	base := model.Config{VocabSize: 61, Dim: 64, NLayers: 2, NHeads: 4, NKVHeads: 2, FFNDim: 96, ContextLength: 64,
		NormEps: 1e-5, RopeTheta: 10000}
	mk := func(family string, seed uint64, qkvBias, tied bool, mod func(c *model.Config)) *archtest.Model {
		c := base
		c.Arch = family
		if family == "mistral" {
			c.Arch = "llama"
		}
		mod(&c)
		m, err := archtest.Random(family, c, seed, qkvBias, tied)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	return map[string]*archtest.Model{
		"llama3": mk("llama", 1, false, true, func(c *model.Config) {
			c.NHeads, c.NKVHeads, c.HeadDim, c.RopeTheta, c.RopeFreqFactors = 8, 2, 12, 500000, []float32{1, 1, 1.5, 6, 32, 32}
		}),
		"llama-bias": mk("llama", 2, true, false, func(c *model.Config) {}),
		"mistral":    mk("mistral", 3, false, false, func(c *model.Config) { c.NHeads, c.NKVHeads, c.AttnWindows = 8, 1, []int{20, 20} }),
		"qwen2":      mk("qwen2", 4, true, true, func(c *model.Config) { c.RopeStyle, c.RopeTheta = model.NeoX, 1e6 }),
		"phi3":       mk("phi3", 5, false, false, func(c *model.Config) { c.RopeStyle, c.NKVHeads, c.AttnWindows = model.NeoX, 4, []int{31, 31} }),
		"phi3-128k": mk("phi3", 6, false, false, func(c *model.Config) {
			c.RopeStyle, c.RopeDim = model.NeoX, 12
			c.RopeFreqFactors, c.RopeLongFactors = []float32{1, 1.1, 1.2, 1.4, 2, 3}, []float32{1, 2, 4, 8, 16, 32}
			c.RopeOrigContext, c.RopeAttnFactor = 16, 1.2
		}),
	}
}

// TestImportFamilies imports each architecture as llama.cpp writes it (F32 and Q8_0): the
// canonical description and tensors (split where llama.cpp fuses them), Q8_0 blocks kept.
func TestImportFamilies(t *testing.T) {
	for name, m := range ggufCases(t) {
		t.Run(name, func(t *testing.T) {
			for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeQ8_0} {
				path := filepath.Join(t.TempDir(), "m.gguf")
				if err := m.WriteGGUF(path, typ); err != nil {
					t.Fatal(err)
				}
				ck, err := gguf.Import(path)
				if err != nil {
					t.Fatalf("%s: %v", typ, err)
				}
				got, err := model.Parse(ck.Meta)
				if err != nil {
					t.Fatal(err)
				}
				want := m.Config
				if g, w := got.Metadata(), want.Metadata(); !reflect.DeepEqual(g, w) {
					t.Errorf("%s: imported description\n%v\nwant\n%v", typ, g, w)
				}
				dt, _ := typ.DType()
				q, err := m.Quantized(dt)
				if err != nil {
					t.Fatal(err)
				}
				if len(ck.Tensors) != len(q.Tensors) {
					t.Errorf("%s: %d tensors, want %d", typ, len(ck.Tensors), len(q.Tensors))
				}
				for _, w := range q.Tensors {
					s := ck.Source(w.Name)
					if s == nil {
						t.Fatalf("%s: no %s", typ, w.Name)
					}
					if len(w.Shape) == 2 && w.Shape[1]%32 == 0 && s.DType != dt {
						t.Errorf("%s: %s stored as %s", typ, w.Name, s.DType)
					}
					b, err := s.Data()
					if err != nil {
						t.Fatal(err)
					}
					v, err := dtype.Dequantize(s.DType, b, w.Shape[len(w.Shape)-1])
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(v, w.Data) {
						t.Errorf("%s: %s differs from the canonical tensor", typ, w.Name)
					}
				}
			}
		})
	}
}

// TestImportRopeScalingKeys: linear scaling divides every frequency (rope.scaling.factor
// or the older rope.scale_linear) and multiplies rope_freqs, as ggml does; attn_factor
// is kept; yarn is refused by name.
func TestImportRopeScalingKeys(t *testing.T) {
	m := ggufCases(t)["llama3"]
	kvs, ts, err := m.GGUF(gguf.TypeF32)
	if err != nil {
		t.Fatal(err)
	}
	imp := func(extra ...gguf.KV) (*format.Checkpoint, error) {
		path := filepath.Join(t.TempDir(), "m.gguf")
		if err := gguf.WriteFile(path, append(append([]gguf.KV(nil), kvs...), extra...), ts, nil); err != nil {
			t.Fatal(err)
		}
		return gguf.Import(path)
	}
	ck, err := imp(gguf.KV{Key: "llama.rope.scaling.type", Value: "linear"}, gguf.KV{Key: "llama.rope.scaling.factor", Value: float32(4)},
		gguf.KV{Key: "llama.rope.scaling.attn_factor", Value: float32(1.25)})
	if err != nil {
		t.Fatal(err)
	}
	if f := ck.Meta[model.KeyRopeFreqFactors]; !reflect.DeepEqual(f, []float32{4, 4, 6, 24, 128, 128}) {
		t.Errorf("linear × rope_freqs: %v", f)
	}
	if a := ck.Meta[model.KeyRopeAttnFactor]; a != 1.25 {
		t.Errorf("attn_factor %v", a)
	}
	ck, err = imp(gguf.KV{Key: "llama.rope.scaling.type", Value: "linear"}, gguf.KV{Key: "llama.rope.scale_linear", Value: float32(2)})
	if err != nil {
		t.Fatal(err)
	}
	if f := ck.Meta[model.KeyRopeFreqFactors]; !reflect.DeepEqual(f, []float32{2, 2, 3, 12, 64, 64}) {
		t.Errorf("rope.scale_linear × rope_freqs: %v", f)
	}
	for _, c := range []struct {
		kv   []gguf.KV
		want string
	}{
		{[]gguf.KV{{Key: "llama.rope.scaling.type", Value: "yarn"}}, "unsupported: llama.rope.scaling.type yarn"},
		{[]gguf.KV{{Key: "llama.rope.scaling.type", Value: "linear"}, {Key: "llama.rope.scaling.factor", Value: float32(-1)}}, "rope.scaling.factor = -1"},
		{[]gguf.KV{{Key: "llama.rope.scaling.attn_factor", Value: float32(math.Inf(1))}}, "rope.scaling.attn_factor"},
		{[]gguf.KV{{Key: "llama.rope.scaling.type", Value: uint32(1)}}, "rope.scaling.type is a uint32"},
	} {
		if _, err := imp(c.kv...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.kv, err, c.want)
		}
	}
	// qwen2's window is per layer in Hugging Face's config, which one GGUF key cannot say.
	q := ggufCases(t)["qwen2"]
	kvs, ts, err = q.GGUF(gguf.TypeF32)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := imp(gguf.KV{Key: "qwen2.attention.sliding_window", Value: uint32(8)}); err == nil {
		t.Error("qwen2 with a sliding window accepted")
	}
}

// TestExportFamilies: importing a file of each architecture as llama.cpp writes it and
// exporting it again gives that file's metadata keys of the architecture and its
// tensors, byte for byte (phi3's fused tensors, rope_freqs and LongRoPE's factors
// included), in F32 and Q8_0.
func TestExportFamilies(t *testing.T) {
	for name, m := range ggufCases(t) {
		t.Run(name, func(t *testing.T) {
			for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeQ8_0} {
				kvs, ts, err := m.GGUF(typ)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(t.TempDir(), "m.gguf")
				if err := gguf.WriteFile(path, kvs, ts, nil); err != nil {
					t.Fatal(err)
				}
				ck, err := gguf.Import(path)
				if err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(t.TempDir(), "back.gguf")
				if err := gguf.ExportFile(ck, out, nil); err != nil {
					t.Fatal(err)
				}
				back, err := gguf.Open(out)
				if err != nil {
					t.Fatal(err)
				}
				defer back.Close()
				arch := m.GGUFArch()
				for _, kv := range kvs {
					if !strings.HasPrefix(kv.Key, arch+".") && kv.Key != "general.architecture" {
						continue
					}
					if got, _ := back.Value(kv.Key); !reflect.DeepEqual(got, kv.Value) {
						t.Errorf("%s: %s = %#v, want %#v", typ, kv.Key, got, kv.Value)
					}
				}
				if len(back.Tensors) != len(ts) {
					t.Errorf("%s: %d tensors exported, want %d", typ, len(back.Tensors), len(ts))
				}
				for _, want := range ts {
					got := back.Tensor(want.Name)
					if got == nil {
						t.Errorf("%s: %s not exported", typ, want.Name)
						continue
					}
					a, _ := want.Data()
					b, err := back.TensorData(got)
					if err != nil || !reflect.DeepEqual(a, b) || got.Type != want.Type || !reflect.DeepEqual(got.Dims, want.Dims) {
						t.Errorf("%s: %s differs from llama.cpp's layout (%s %v, want %s %v)", typ, want.Name, got.Type, got.Dims, want.Type, want.Dims)
					}
				}
			}
		})
	}
}

// TestExportPermutesRoPE: a model whose q/k rows are in the other pairing than the
// target architecture's is exported with its rows permuted — interleaved for llama,
// rotate-half for qwen2 — and imports back to the same model in the original pairing up
// to that permutation.
func TestExportPermutesRoPE(t *testing.T) {
	cases := ggufCases(t)
	for _, c := range []struct {
		name  string
		style model.RopeStyle
	}{{"llama-bias", model.NeoX}, {"qwen2", model.Interleaved}} {
		m := *cases[c.name]
		m.Config.RopeStyle = c.style
		var src []format.Source
		for _, tt := range m.Tensors {
			src = append(src, format.Float32s(tt.Name, tt.Shape, tt.Data))
		}
		ck := &format.Checkpoint{Meta: format.Metadata(m.Config.Metadata()), Tensors: src}
		kvs, ts, err := gguf.Export(ck)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		_ = kvs
		cfg := m.Config
		for _, ts := range ts {
			var rows, heads int
			switch {
			case strings.HasSuffix(ts.Name, "attn_q.weight"), strings.HasSuffix(ts.Name, "attn_q.bias"):
				heads = cfg.NHeads
			case strings.HasSuffix(ts.Name, "attn_k.weight"), strings.HasSuffix(ts.Name, "attn_k.bias"):
				heads = cfg.NKVHeads
			default:
				continue
			}
			rows = heads * cfg.HeadDim
			b, _ := ts.Data()
			got := dtype.BytesToF32(b)
			orig := m.Tensor(ts.Name).Data
			cols := len(orig) / rows
			half := cfg.RopeDim / 2
			for h := 0; h < heads; h++ {
				for i := 0; i < half; i++ {
					for j := 0; j < 2; j++ {
						il, nx := h*cfg.HeadDim+2*i+j, h*cfg.HeadDim+j*half+i // interleaved and rotate-half rows of one dimension
						from, to := nx, il
						if c.style == model.Interleaved {
							from, to = il, nx
						}
						if !reflect.DeepEqual(got[to*cols:(to+1)*cols], orig[from*cols:(from+1)*cols]) {
							t.Fatalf("%s: %s row %d is not the source's row %d", c.name, ts.Name, to, from)
						}
					}
				}
			}
		}
	}
}

// TestExportClassifier: a tied gpt2 or phi3 classifier is written as output.weight (a
// copy of token_embd.weight: llama.cpp's loaders for them require it, and llama.cpp's
// converter duplicates GPT-2's wte), a tied llama or qwen2 one is left out (llama.cpp
// falls back to token_embd).
func TestExportClassifier(t *testing.T) {
	for _, c := range []struct {
		family string
		want   bool
	}{{"llama", false}, {"qwen2", false}, {"phi3", true}} {
		cfg := model.Config{Arch: c.family, VocabSize: 40, Dim: 32, NLayers: 1, NHeads: 2, FFNDim: 32, ContextLength: 16}
		if c.family != "llama" {
			cfg.RopeStyle = model.NeoX
		}
		m, err := archtest.Random(c.family, cfg, 1, false, true)
		if err != nil {
			t.Fatal(err)
		}
		var src []format.Source
		for _, tt := range m.Tensors {
			src = append(src, format.Float32s(tt.Name, tt.Shape, tt.Data))
		}
		_, ts, err := gguf.Export(&format.Checkpoint{Meta: format.Metadata(m.Config.Metadata()), Tensors: src})
		if err != nil {
			t.Fatalf("%s: %v", c.family, err)
		}
		var out, emb []byte
		for _, s := range ts {
			switch s.Name {
			case "output.weight":
				out, _ = s.Data()
			case "token_embd.weight":
				emb, _ = s.Data()
			}
		}
		if (out != nil) != c.want || (out != nil && !reflect.DeepEqual(out, emb)) {
			t.Errorf("%s: output.weight exported %v (want %v), equal to token_embd %v", c.family, out != nil, c.want, reflect.DeepEqual(out, emb))
		}
	}
}

// TestExportRefusesFamilies: what llama.cpp's architectures cannot hold is refused.
func TestExportRefusesFamilies(t *testing.T) {
	cases := ggufCases(t)
	for name, c := range map[string]struct {
		model string
		mod   func(c *model.Config)
		want  string
	}{
		"qwen2 window":       {"qwen2", func(c *model.Config) { c.AttnWindows = []int{0, 8} }, "local attention windows"},
		"llama long factors": {"llama3", func(c *model.Config) { c.RopeLongFactors, c.RopeOrigContext = c.RopeFreqFactors, 8 }, "rope_long_factors"},
		"qwen2 rope_freqs":   {"qwen2", func(c *model.Config) { c.RopeFreqFactors = []float32{1, 1, 1, 1, 1, 1, 1, 2} }, "rope_freq_factors"},
		"mixed windows":      {"mistral", func(c *model.Config) { c.AttnWindows = []int{20, 0} }, "local attention windows"},
	} {
		m := *cases[c.model]
		c.mod(&m.Config)
		var src []format.Source
		for _, tt := range m.Tensors {
			src = append(src, format.Float32s(tt.Name, tt.Shape, tt.Data))
		}
		_, _, err := gguf.Export(&format.Checkpoint{Meta: format.Metadata(m.Config.Metadata()), Tensors: src})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
