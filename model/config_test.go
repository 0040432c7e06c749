package model

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

// meta is a minimal Values over a map, typed as format.Metadata is.
type meta map[string]any

func get[T any](m meta, key string) (T, bool, error) {
	var zero T
	x, ok := m[key]
	if !ok {
		return zero, false, nil
	}
	v, ok := x.(T)
	if !ok {
		return zero, true, fmt.Errorf("metadata %s: want %T, have %T", key, zero, x)
	}
	return v, true, nil
}

func (m meta) Int(key string) (int, bool, error) {
	v, ok, err := get[int64](m, key)
	return int(v), ok, err
}
func (m meta) Float(key string) (float64, bool, error) { return get[float64](m, key) }
func (m meta) String(key string) (string, bool, error) { return get[string](m, key) }
func (m meta) Bool(key string) (bool, bool, error)     { return get[bool](m, key) }
func (m meta) Ints(key string) ([]int64, bool, error)  { return get[[]int64](m, key) }
func (m meta) Floats(key string) ([]float32, bool, error) {
	return get[[]float32](m, key)
}
func required() meta {
	return meta{KeyVocabSize: int64(32), KeyDim: int64(64), KeyNLayers: int64(2), KeyNHeads: int64(4),
		KeyFFNDim: int64(96), KeyContextLength: int64(128)}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse(required())
	if err != nil {
		t.Fatal(err)
	}
	want := Config{VocabSize: 32, Dim: 64, NLayers: 2, NHeads: 4, NKVHeads: 4, HeadDim: 16, FFNDim: 96,
		ContextLength: 128, Norm: RMSNorm, NormEps: 1e-5, Position: RoPE, RopeTheta: 10000, RopeDim: 16,
		RopeStyle: Interleaved, RopeAttnFactor: 1, Activation: SwiGLU, AttnWindows: []int{0, 0}, AttnScale: 0.25}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(required keys only) =\n%+v\nwant\n%+v", c, want)
	}
	// A Config built in code with the same zero fields means the same model.
	built := Config{VocabSize: 32, Dim: 64, NLayers: 2, NHeads: 4, FFNDim: 96, ContextLength: 128}
	if err := built.Resolve(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(built, want) {
		t.Errorf("Resolve =\n%+v\nwant\n%+v", built, want)
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	cases := []Config{
		{Arch: "llama", VocabSize: 97, Dim: 24, NLayers: 3, NHeads: 4, NKVHeads: 2, HeadDim: 10, FFNDim: 40,
			ContextLength: 32, NormEps: 1e-6, RopeTheta: 500000, RopeDim: 8, AttnWindows: []int{0, 4, 0}},
		{Arch: "opt", VocabSize: 50, Dim: 16, NLayers: 2, NHeads: 2, FFNDim: 64, ContextLength: 20,
			Norm: LayerNorm, PostNorm: true, NoFinalNorm: true, Position: Learned, PositionOffset: 2,
			Activation: ReLU, EmbedDim: 8},
		{Arch: "gpt_neo", VocabSize: 50, Dim: 16, NLayers: 2, NHeads: 2, FFNDim: 64, ContextLength: 20,
			Norm: LayerNorm, Position: Learned, Activation: GELUTanh, AttnScale: 1, AttnWindows: []int{0, 7}},
		{Arch: "phi3", VocabSize: 97, Dim: 24, NLayers: 2, NHeads: 4, NKVHeads: 2, HeadDim: 6, FFNDim: 40,
			ContextLength: 64, RopeStyle: NeoX, RopeFreqFactors: []float32{1, 1.5, 2}, RopeLongFactors: []float32{1, 4, 8},
			RopeOrigContext: 16, RopeAttnFactor: 1.19, AttnWindows: []int{31, 31}},
		{Arch: "llama", VocabSize: 97, Dim: 24, NLayers: 1, NHeads: 4, FFNDim: 40, ContextLength: 64,
			RopeTheta: 500000, RopeFreqFactors: []float32{1, 1, 32}},
	}
	for _, c := range cases {
		if err := c.Resolve(); err != nil {
			t.Fatalf("%s: %v", c.Arch, err)
		}
		m := meta(c.Metadata())
		for k, v := range m {
			switch v.(type) {
			case int64, float64, bool, string, []int64, []float32:
			default:
				t.Errorf("%s: metadata %s has type %T, which checkpoints do not store", c.Arch, k, v)
			}
		}
		back, err := Parse(m)
		if err != nil {
			t.Fatalf("%s: %v", c.Arch, err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("%s: round trip\n%+v\nwant\n%+v", c.Arch, back, c)
		}
	}
}

// TestAbsurdConfigs: numbers from a file that no model has are refused by Validate, with
// the key named, before anything is sized by them.
func TestAbsurdConfigs(t *testing.T) {
	for _, tc := range []struct {
		key  string
		vals []any
	}{
		{KeyVocabSize, []any{int64(0), int64(-1), int64(1 << 31), int64(math.MaxInt64)}},
		{KeyDim, []any{int64(0), int64(-64), int64(1 << 30)}},
		{KeyNLayers, []any{int64(0), int64(-2), int64(1 << 30)}},
		{KeyNHeads, []any{int64(0), int64(-4), int64(3), int64(1 << 30)}},
		{KeyNKVHeads, []any{int64(-1), int64(3), int64(1 << 30)}},
		{KeyHeadDim, []any{int64(-16), int64(1 << 30)}},
		{KeyFFNDim, []any{int64(0), int64(-1), int64(1 << 30)}},
		{KeyContextLength, []any{int64(0), int64(-1), int64(1 << 31)}},
		{KeyEmbeddingDim, []any{int64(-1), int64(1 << 30)}},
		{KeyPositionOffset, []any{int64(-1), int64(1 << 31)}},
		{KeyNormEps, []any{-1.0, math.NaN(), 2.0}},
		{KeyRopeTheta, []any{0.5, math.Inf(1), math.NaN()}},
		{KeyRopeDim, []any{int64(3), int64(18), int64(-2)}},
		{KeyAttnWindows, []any{[]int64{0}, []int64{0, -1}, []int64{0, 1 << 40}, make([]int64, 1<<11)}},
		{KeyAttnScale, []any{math.Inf(1), math.NaN()}},
		{KeyNorm, []any{"batchnorm"}},
		{KeyPosition, []any{"alibi"}},
		{KeyActivation, []any{"tanh"}},
		{KeyNormPosition, []any{"middle"}},
		{KeyDim, []any{"64", 64.0}},
		{KeyRopeStyle, []any{"rotate", int64(1)}},
		{KeyRopeFreqFactors, []any{[]float32{1, 2}, []float32{1, 1, 1, 1, 1, 1, 1, -1}, []float32{1, 1, 1, 1, 1, 1, 1, float32(math.NaN())},
			[]float32{1, 1, 1, 1, 1, 1, 1, float32(math.Inf(1))}, []float32{0, 1, 1, 1, 1, 1, 1, 1}, []int64{1, 1, 1, 1, 1, 1, 1, 1}}},
		{KeyRopeOrigContext, []any{int64(-1), int64(1 << 30), int64(4096)}},
		{KeyRopeAttnFactor, []any{-1.0, math.NaN(), math.Inf(1), 1e9}},
	} {
		for _, v := range tc.vals {
			m := required()
			m[tc.key] = v
			_, err := Parse(m)
			if err == nil {
				t.Errorf("%s = %v accepted", tc.key, v)
				continue
			}
			name := strings.TrimPrefix(tc.key, "lm.")
			if !strings.Contains(err.Error(), name) && !strings.Contains(err.Error(), "attention window") {
				t.Errorf("%s = %v: error %q does not name the key", tc.key, v, err)
			}
			// A value the validator rejects is reported under its key, for importers to
			// translate into their own files' names.
			var ce *ConfigError
			if errors.As(err, &ce) && ce.Key != tc.key {
				t.Errorf("%s = %v: ConfigError names %s", tc.key, v, ce.Key)
			}
		}
	}
	for _, k := range []string{KeyVocabSize, KeyDim, KeyNLayers, KeyNHeads, KeyFFNDim, KeyContextLength} {
		m := required()
		delete(m, k)
		if _, err := Parse(m); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("missing %s: error %v", k, err)
		}
	}
}

// TestRopeFactors: long factors apply only to sessions longer than the original context,
// and need that context to be stated.
func TestRopeFactors(t *testing.T) {
	m := required()
	m[KeyRopeLongFactors] = []float32{1, 1, 1, 1, 1, 1, 1, 9}
	if _, err := Parse(m); err == nil || !strings.Contains(err.Error(), "rope_original_context") {
		t.Fatalf("long factors without an original context: %v", err)
	}
	m[KeyRopeOrigContext] = int64(32)
	m[KeyRopeFreqFactors] = []float32{1, 1, 1, 1, 1, 1, 1, 2}
	c, err := Parse(m)
	if err != nil {
		t.Fatal(err)
	}
	if f := c.RopeFactors(32); f[7] != 2 {
		t.Errorf("context 32 uses %v, want the short factors", f)
	}
	if f := c.RopeFactors(33); f[7] != 9 {
		t.Errorf("context 33 uses %v, want the long factors", f)
	}
	if f := (Config{}).RopeFactors(1 << 20); f != nil {
		t.Errorf("no scaling gives %v", f)
	}
}

func TestConfigCopyIsIndependent(t *testing.T) {
	c, err := Parse(required())
	if err != nil {
		t.Fatal(err)
	}
	m := c.Metadata()
	c.AttnWindows[0] = 5
	if w := m[KeyAttnWindows].([]int64); w[0] != 0 {
		t.Error("Metadata aliases the Config's windows")
	}
}

// TestLlama3RopeFactors: Llama 3.2 1B's scaling (d 64, theta 500000, factor 32, low 1,
// high 4, original 8192) keeps the fast pairs, divides the slow ones by 32, and moves
// smoothly between, as transformers' _compute_llama3_parameters does.
func TestLlama3RopeFactors(t *testing.T) {
	f := Llama3RopeFactors(64, 500000, 32, 1, 4, 8192)
	if len(f) != 32 || f[0] != 1 || f[31] != 32 {
		t.Fatalf("factors %v", f)
	}
	for i := 1; i < len(f); i++ {
		if f[i] < f[i-1] {
			t.Fatalf("factors decrease at %d: %v", i, f)
		}
		wavelen := 2 * math.Pi * math.Pow(500000, float64(2*i)/64)
		switch {
		case wavelen < 8192.0/4 && f[i] != 1, wavelen > 8192 && f[i] != 32:
			t.Errorf("pair %d (wavelength %.0f): factor %v", i, wavelen, f[i])
		case wavelen >= 2048 && wavelen <= 8192:
			s := (8192/wavelen - 1) / 3
			if want := 1 / ((1-s)/32 + s); math.Abs(float64(f[i])-want) > 1e-6*want {
				t.Errorf("pair %d: factor %v, want %v", i, f[i], want)
			}
		}
	}
}
