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
