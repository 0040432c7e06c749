package hf

import (
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/internal/archtest"
	"github.com/lmrun/lmrun/model"
)

// small is a Llama-like shape for importer tests: GQA 2:1 by default.
func small() model.Config {
	return model.Config{VocabSize: 61, Dim: 32, NLayers: 3, NHeads: 4, NKVHeads: 2, FFNDim: 48, ContextLength: 64,
		NormEps: 1e-5, RopeTheta: 10000}
}

// llama3Divisors is transformers' llama3 rope_scaling written out per pair: 1 for
// wavelengths below orig/high, factor above orig/low, 1/((1−s)/factor + s) between.
func llama3Divisors(d int, theta, factor, low, high float64, orig int) []float32 {
	f := make([]float32, d/2)
	for i := range f {
		wavelen := 2 * math.Pi * math.Pow(theta, float64(2*i)/float64(d))
		switch s := (float64(orig)/wavelen - low) / (high - low); {
		case wavelen < float64(orig)/high:
			f[i] = 1
		case wavelen > float64(orig)/low:
			f[i] = float32(factor)
		default:
			f[i] = float32(1 / ((1-s)/factor + s))
		}
	}
	return f
}

// familyCase is a random model of one family and what its config.json says beyond the
// keys archtest derives.
type familyCase struct {
	name    string
	family  string
	cfg     func(c *model.Config)
	hf      map[string]any
	qkvBias bool
	tied    bool
}

func familyCases() []familyCase {
	return []familyCase{
		{"llama3.2", "llama", func(c *model.Config) {
			c.NHeads, c.NKVHeads, c.HeadDim, c.RopeTheta = 8, 2, 6, 500000
			c.RopeFreqFactors = llama3Divisors(6, 500000, 32, 1, 4, 16)
		}, map[string]any{"rope_scaling": map[string]any{"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
			"high_freq_factor": 4.0, "original_max_position_embeddings": 16}}, false, true},
		{"smollm2", "llama", func(c *model.Config) { c.NHeads, c.NKVHeads, c.RopeTheta = 4, 4, 100000 }, nil, false, true},
		{"llama-bias-linear", "llama", func(c *model.Config) { c.RopeFreqFactors = []float32{2, 2, 2, 2} },
			map[string]any{"rope_scaling": map[string]any{"type": "linear", "factor": 2.0}}, true, false},
		{"mistral", "mistral", func(c *model.Config) {
			c.NHeads, c.NKVHeads, c.Dim, c.HeadDim, c.AttnWindows = 7, 1, 28, 6, []int{9, 9, 9}
		}, nil, false, false},
		{"mistral-v0.3", "mistral", func(c *model.Config) {}, nil, false, false},
		{"qwen2.5", "qwen2", func(c *model.Config) { c.RopeStyle, c.RopeTheta, c.NormEps = model.NeoX, 1e6, 1e-6 }, nil, true, true},
		{"qwen2-window", "qwen2", func(c *model.Config) { c.RopeStyle, c.AttnWindows = model.NeoX, []int{0, 11, 11} }, nil, true, false},
		{"phi3-mini", "phi3", func(c *model.Config) { c.RopeStyle, c.NKVHeads, c.AttnWindows = model.NeoX, 4, []int{15, 15, 15} }, nil, false, false},
		{"phi3-128k", "phi3", func(c *model.Config) {
			c.RopeStyle, c.NKVHeads = model.NeoX, 4
			c.RopeFreqFactors, c.RopeLongFactors, c.RopeOrigContext = []float32{1, 1.25, 1.5, 3}, []float32{1, 2, 9, 40}, 16
			c.RopeAttnFactor = math.Sqrt(1 + math.Log(64.0/16)/math.Log(16))
		}, nil, false, false},
		{"phi3-partial", "phi3", func(c *model.Config) { c.RopeStyle, c.RopeDim = model.NeoX, 4 },
			map[string]any{"partial_rotary_factor": 0.5}, false, false},
	}
}

func (fc familyCase) model(t testing.TB, seed uint64) *archtest.Model {
	t.Helper()
	cfg := small()
	fc.cfg(&cfg)
	cfg.Arch = fc.family
	m, err := archtest.Random(fc.family, cfg, seed, fc.qkvBias, fc.tied)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range fc.hf {
		m.HF[k] = v
	}
	return m
}

// checkImport compares an import with the canonical model: the same description and
// every tensor with the same values (HF q/k rows permuted back, fused ones split).
func checkImport(t *testing.T, ck *format.Checkpoint, m *archtest.Model) {
	t.Helper()
	got, err := model.Parse(ck.Meta)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := got.Metadata(), m.Config.Metadata(); !reflect.DeepEqual(g, w) {
		t.Errorf("imported description\n%v\nwant\n%v", g, w)
	}
	if len(ck.Tensors) != len(m.Tensors) {
		t.Errorf("%d tensors, want %d", len(ck.Tensors), len(m.Tensors))
	}
	for _, want := range m.Tensors {
		if got := f32(t, ck, want.Name); !equalF32(got, want.Data) {
			t.Errorf("%s differs from the canonical tensor", want.Name)
		}
	}
}

// TestFamilies imports every family written as Hugging Face does (rotate-half q/k rows,
// fused Phi-3 projections, F32, BF16 and F16, one file and shards) and checks it is the
// canonical model, description included.
func TestFamilies(t *testing.T) {
	for i, fc := range familyCases() {
		t.Run(fc.name, func(t *testing.T) {
			m := fc.model(t, uint64(i))
			for _, v := range []struct {
				st     safetensors.DType
				shards int
			}{{safetensors.F32, 1}, {safetensors.BF16, 3}, {safetensors.F16, 2}} {
				dir := t.TempDir()
				if err := m.WriteHF(dir, v.st, v.shards); err != nil {
					t.Fatal(err)
				}
				ck, err := Import(dir)
				if err != nil {
					t.Fatalf("%s×%d: %v", v.st, v.shards, err)
				}
				checkImport(t, ck, m)
			}
		})
	}
}

// TestFamilyConfigs: what each family's config.json may say, read as transformers does.
func TestFamilyConfigs(t *testing.T) {
	windows := func(ck *format.Checkpoint) string { return fmt.Sprint(ck.Meta[model.KeyAttnWindows]) }
	fcs := familyCases()
	byName := map[string]familyCase{}
	for _, fc := range fcs {
		byName[fc.name] = fc
	}
	imp := func(t *testing.T, name string, kv ...any) (*format.Checkpoint, error) {
		t.Helper()
		m := byName[name].model(t, 7)
		for i := 0; i < len(kv); i += 2 {
			m.HF[kv[i].(string)] = kv[i+1]
		}
		dir := t.TempDir()
		if err := m.WriteHF(dir, safetensors.F32, 1); err != nil {
			t.Fatal(err)
		}
		return Import(dir)
	}
	mustImport := func(t *testing.T, name string, kv ...any) *format.Checkpoint {
		t.Helper()
		ck, err := imp(t, name, kv...)
		if err != nil {
			t.Fatal(err)
		}
		return ck
	}
	// MistralConfig's sliding_window defaults to 4096; null (v0.2, v0.3) means none.
	if w := windows(mustImport(t, "mistral-v0.3", "sliding_window", deleteKey)); w != "[4096 4096 4096]" {
		t.Errorf("mistral without sliding_window: windows %s", w)
	}
	if w := windows(mustImport(t, "mistral-v0.3")); w != "[0 0 0]" {
		t.Errorf("mistral with sliding_window null: windows %s", w)
	}
	if w := windows(mustImport(t, "mistral", "layer_types", []string{"sliding_attention", "full_attention", "sliding_attention"})); w != "[9 0 9]" {
		t.Errorf("mistral layer_types: windows %s", w)
	}
	// Qwen2: the window is off without use_sliding_window, whatever sliding_window says;
	// with it, from max_window_layers on, or where layer_types says.
	if w := windows(mustImport(t, "qwen2.5", "sliding_window", 5, "max_window_layers", 0)); w != "[0 0 0]" {
		t.Errorf("qwen2 without use_sliding_window: windows %s", w)
	}
	if w := windows(mustImport(t, "qwen2.5", "use_sliding_window", true, "sliding_window", 5, "max_window_layers", 2)); w != "[0 0 5]" {
		t.Errorf("qwen2 max_window_layers 2: windows %s", w)
	}
	if w := windows(mustImport(t, "qwen2.5", "use_sliding_window", true, "sliding_window", 5, "layer_types",
		[]string{"sliding_attention", "full_attention", "full_attention"})); w != "[5 0 0]" {
		t.Errorf("qwen2 layer_types: windows %s", w)
	}
	// transformers v5 moves rope_theta and the scaling into rope_parameters.
	ck := mustImport(t, "llama3.2", "rope_theta", deleteKey, "rope_scaling", deleteKey, "rope_parameters", map[string]any{
		"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
		"original_max_position_embeddings": 16})
	if got, want := ck.Meta[model.KeyRopeFreqFactors], llama3Divisors(6, 500000, 32, 1, 4, 16); !reflect.DeepEqual(got, want) || ck.Meta[model.KeyRopeTheta] != 500000.0 {
		t.Errorf("rope_parameters: factors %v theta %v, want %v", got, ck.Meta[model.KeyRopeTheta], want)
	}
	ck = mustImport(t, "smollm2", "rope_parameters", map[string]any{"rope_type": "default", "rope_theta": 100000.0})
	if ck.Meta[model.KeyRopeFreqFactors] != nil || ck.Meta[model.KeyRopeTheta] != 100000.0 {
		t.Errorf("default rope_parameters: %v", ck.Meta)
	}
	// Phi-3 128k's attention factor: √(1 + ln(131072/4096) / ln 4096).
	ck = mustImport(t, "phi3-128k", "rope_scaling", map[string]any{"type": "su", "short_factor": []float64{1, 1, 1, 1},
		"long_factor": []float64{1, 1, 1, 1}}, "max_position_embeddings", 131072, "original_max_position_embeddings", 4096)
	if a := ck.Meta[model.KeyRopeAttnFactor].(float64); math.Abs(a-1.1902380714238083) > 1e-15 {
		t.Errorf("phi3 128k attention factor %v", a)
	}
	ck = mustImport(t, "phi3-128k", "rope_scaling", map[string]any{"type": "longrope", "short_factor": []float64{1, 1, 1, 1},
		"long_factor": []float64{1, 1, 1, 1}, "attention_factor": 1.5})
	if a := ck.Meta[model.KeyRopeAttnFactor].(float64); a != 1.5 {
		t.Errorf("explicit attention_factor: %v", a)
	}

	for _, c := range []struct {
		name string
		kv   []any
		want string
	}{
		{"phi3-128k", []any{"rope_scaling", map[string]any{"type": "longrope", "short_factor": []float64{1, 1}, "long_factor": []float64{1, 1, 1, 1}}}, "short_factor has 2 entries"},
		{"phi3-128k", []any{"original_max_position_embeddings", deleteKey}, "needs original_max_position_embeddings"},
		{"phi3-128k", []any{"rope_scaling", map[string]any{"type": "longrope", "short_factor": []float64{1, 1, 1, 0}, "long_factor": []float64{1, 1, 1, 1}}}, "short_factor[3] = 0"},
		{"phi3-128k", []any{"rope_scaling", map[string]any{"type": "yarn", "factor": 4.0}}, `unsupported rope type "yarn"`},
		{"phi3-mini", []any{"partial_rotary_factor", 0.1}, "partial_rotary_factor 0.1 rotates 0"},
		{"qwen2.5", []any{"partial_rotary_factor", 0.5}, "unsupported: partial_rotary_factor"},
		{"qwen2.5", []any{"use_sliding_window", true, "sliding_window", -3}, "sliding_window = -3"},
		{"qwen2.5", []any{"use_sliding_window", true, "layer_types", []string{"full_attention"}}, "layer_types has 1 entries for 3 layers"},
		{"mistral", []any{"layer_types", []string{"chunked_attention", "full_attention", "full_attention"}}, `unsupported layer_types[0] "chunked_attention"`},
		{"qwen2.5", []any{"hidden_act", "gelu"}, "hidden_act"},
		{"mistral", []any{"attention_bias", true}, "unsupported: attention_bias is true (mistral"},
		{"phi3-mini", []any{"attention_bias", true}, "unsupported: attention_bias is true (phi3"},
		{"llama3.2", []any{"rope_scaling", "llama3"}, "rope_scaling is llama3, want an object"},
		{"smollm2", []any{"tie_word_embeddings", false}, "missing tensors: lm_head.weight"},
	} {
		_, err := imp(t, c.name, c.kv...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: %v, want %q", c.name, c.kv, err, c.want)
		}
	}
}

// deleteKey, as a value for archtest's HF map, drops the key from config.json.
var deleteKey = archtest.Delete

// TestQwen2BiasesRequired: Qwen2's q/k/v biases are part of the model, an o_proj bias is
// not.
func TestQwen2BiasesRequired(t *testing.T) {
	fc := familyCases()[5]
	m := fc.model(t, 3)
	dir := t.TempDir()
	if err := m.WriteHF(dir, safetensors.F32, 1); err != nil {
		t.Fatal(err)
	}
	all := tensorsOf(t, filepath.Join(dir, "model.safetensors"))
	var noBias []safetensors.TensorData
	for _, td := range all {
		if !strings.HasSuffix(td.Name, "k_proj.bias") {
			noBias = append(noBias, td)
		}
	}
	cfg := readConfigMap(t, dir)
	if _, err := Import(modelDir(t, cfg, noBias)); err == nil || !strings.Contains(err.Error(), "missing tensors: model.layers.0.self_attn.k_proj.bias") {
		t.Errorf("qwen2 without k bias: %v", err)
	}
	oBias := append(all, safetensors.TensorData{Name: "model.layers.0.self_attn.o_proj.bias", DType: safetensors.F32, Shape: []int{32},
		Data: dtype.F32ToBytes(make([]float32, 32))})
	if _, err := Import(modelDir(t, cfg, oBias)); err == nil || !strings.Contains(err.Error(), "o_proj.bias") {
		t.Errorf("qwen2 with an o_proj bias: %v", err)
	}
}
