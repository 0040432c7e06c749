package hf

import (
	"bytes"
	"encoding/json"
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
	"github.com/lmrun/lmrun/format/llama2c"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/internal/fixtures"
)

func f32(t *testing.T, ck *format.Checkpoint, name string) []float32 {
	t.Helper()
	s := ck.Source(name)
	if s == nil {
		t.Fatalf("tensor %s missing", name)
	}
	b, err := s.Data()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if s.DType != dtype.F32 || len(b) != 4*dtype.NumElements(s.Shape) {
		t.Fatalf("%s: %s, %d bytes for shape %v", name, s.DType, len(b), s.Shape)
	}
	return append([]float32(nil), dtype.BytesToF32(b)...)
}

// raw returns a source tensor of a safetensors file as float32.
func raw(t *testing.T, path, name string) ([]float32, []int) {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tt := f.Tensor(name)
	if tt == nil {
		t.Fatalf("%s: no tensor %s", path, name)
	}
	v, err := tt.Float32()
	if err != nil {
		t.Fatal(err)
	}
	return v, tt.Shape
}

func shapeIs(s []int, want ...int) bool { return fmt.Sprint(s) == fmt.Sprint(want) }

func checkMeta(t *testing.T, m format.Metadata, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if fmt.Sprintf("%T %v", m[k], m[k]) != fmt.Sprintf("%T %v", v, v) {
			t.Errorf("metadata %s = %#v, want %#v", k, m[k], v)
		}
	}
}

func TestGPT2Tiny(t *testing.T) {
	dir := fixtures.Path(t, "expected", "gpt2_tiny_hf")
	st := filepath.Join(dir, "model.safetensors")
	ck, err := Import(dir)
	if err != nil {
		t.Fatal(err)
	}
	const dim, L, H, V, ctx, ffn = 64, 2, 4, 1000, 128, 256
	checkMeta(t, ck.Meta, map[string]any{
		"general.architecture": "gpt2", "lm.vocab_size": int64(V), "lm.dim": int64(dim),
		"lm.n_layers": int64(L), "lm.n_heads": int64(H), "lm.n_kv_heads": int64(H),
		"lm.ffn_dim": int64(ffn), "lm.context_length": int64(ctx), "lm.norm": "layernorm",
		"lm.norm_eps": 1e-5, "lm.norm_position": "pre", "lm.position": "learned",
		"lm.position_offset": int64(0), "lm.activation": "gelu_tanh", "lm.final_norm": true,
		"lm.attn_windows": []int64{0, 0},
	})
	if _, ok := ck.Meta["lm.attn_scale"]; ok {
		t.Error("lm.attn_scale set although scale_attn_weights defaults to true")
	}
	if len(ck.Tensors) != 2+16*L+2 {
		t.Errorf("%d tensors, want %d", len(ck.Tensors), 2+16*L+2)
	}
	if ck.Source("output.weight") != nil {
		t.Error("tied model has output.weight")
	}
	shapes := map[string][]int{
		"token_embd.weight": {V, dim}, "position_embd.weight": {ctx, dim},
		"blk.1.attn_q.weight": {dim, dim}, "blk.1.attn_q.bias": {dim}, "blk.1.attn_v.weight": {dim, dim},
		"blk.1.attn_output.weight": {dim, dim}, "blk.1.ffn_up.weight": {ffn, dim}, "blk.1.ffn_up.bias": {ffn},
		"blk.1.ffn_down.weight": {dim, ffn}, "output_norm.bias": {dim},
	}
	for name, s := range shapes {
		if src := ck.Source(name); src == nil || !shapeIs(src.Shape, s...) {
			t.Errorf("%s: %+v, want shape %v", name, src, s)
		}
	}
	for l := 0; l < L; l++ {
		// q, k, v rows are the transposed column blocks of c_attn, biases its slices.
		w, _ := raw(t, st, fmt.Sprintf("h.%d.attn.c_attn.weight", l))
		bias, _ := raw(t, st, fmt.Sprintf("h.%d.attn.c_attn.bias", l))
		for i, name := range []string{"attn_q", "attn_k", "attn_v"} {
			got := f32(t, ck, fmt.Sprintf("blk.%d.%s.weight", l, name))
			for o := 0; o < dim; o++ {
				for in := 0; in < dim; in++ {
					if got[o*dim+in] != w[in*3*dim+i*dim+o] {
						t.Fatalf("blk.%d.%s.weight[%d][%d] = %v, c_attn[%d][%d] = %v", l, name, o, in, got[o*dim+in], in, i*dim+o, w[in*3*dim+i*dim+o])
					}
				}
			}
			gb := f32(t, ck, fmt.Sprintf("blk.%d.%s.bias", l, name))
			for o := range gb {
				if gb[o] != bias[i*dim+o] {
					t.Fatalf("blk.%d.%s.bias[%d] = %v, want %v", l, name, o, gb[o], bias[i*dim+o])
				}
			}
		}
		fc, _ := raw(t, st, fmt.Sprintf("h.%d.mlp.c_fc.weight", l)) // [dim, ffn]
		up := f32(t, ck, fmt.Sprintf("blk.%d.ffn_up.weight", l))    // [ffn, dim]
		proj, _ := raw(t, st, fmt.Sprintf("h.%d.mlp.c_proj.weight", l))
		down := f32(t, ck, fmt.Sprintf("blk.%d.ffn_down.weight", l))
		ao, _ := raw(t, st, fmt.Sprintf("h.%d.attn.c_proj.weight", l))
		out := f32(t, ck, fmt.Sprintf("blk.%d.attn_output.weight", l))
		for o := 0; o < ffn; o++ {
			for in := 0; in < dim; in++ {
				if up[o*dim+in] != fc[in*ffn+o] || down[in*ffn+o] != proj[o*dim+in] {
					t.Fatalf("layer %d: ffn transpose wrong at [%d][%d]", l, o, in)
				}
			}
		}
		for o := 0; o < dim; o++ {
			for in := 0; in < dim; in++ {
				if out[o*dim+in] != ao[in*dim+o] {
					t.Fatalf("layer %d: attn_output transpose wrong at [%d][%d]", l, o, in)
				}
			}
		}
		ln, _ := raw(t, st, fmt.Sprintf("h.%d.ln_2.bias", l))
		if got := f32(t, ck, fmt.Sprintf("blk.%d.ffn_norm.bias", l)); !equalF32(got, ln) {
			t.Errorf("layer %d: ffn_norm.bias differs from ln_2.bias", l)
		}
	}
	wte, _ := raw(t, st, "wte.weight")
	if !equalF32(f32(t, ck, "token_embd.weight"), wte) {
		t.Error("token_embd differs from wte")
	}
	wpe, _ := raw(t, st, "wpe.weight")
	if !equalF32(f32(t, ck, "position_embd.weight"), wpe) {
		t.Error("position_embd differs from wpe")
	}

	// The safetensors file itself is accepted too.
	ck2, err := Import(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(ck2.Tensors) != len(ck.Tensors) {
		t.Errorf("importing the file gives %d tensors, the directory %d", len(ck2.Tensors), len(ck.Tensors))
	}
}

func equalF32(a, b []float32) bool {
	return bytes.Equal(dtype.F32ToBytes(a), dtype.F32ToBytes(b))
}

func TestSmallGPT2Fixtures(t *testing.T) {
	for _, c := range []struct {
		dir    string
		vocab  int
		prefix string
	}{{"fake_gpt2", 50257, "transformer."}, {"tiny_gpt2", 21, ""}} {
		t.Run(c.dir, func(t *testing.T) {
			dir := fixtures.Path(t, "hf", c.dir)
			ck, err := Import(dir)
			if err != nil {
				t.Fatal(err)
			}
			checkMeta(t, ck.Meta, map[string]any{
				"lm.vocab_size": int64(c.vocab), "lm.dim": int64(2), "lm.n_layers": int64(1),
				"lm.n_heads": int64(1), "lm.ffn_dim": int64(8), "lm.context_length": int64(1024),
				"lm.activation": "gelu_tanh",
			})
			if len(ck.Tensors) != 2+16+2 {
				t.Errorf("%d tensors", len(ck.Tensors))
			}
			st := filepath.Join(dir, "model.safetensors")
			w, _ := raw(t, st, c.prefix+"h.0.attn.c_attn.weight") // [2, 6]
			k := f32(t, ck, "blk.0.attn_k.weight")                // [2, 2]: k[o][i] = w[i][2+o]
			want := []float32{w[0*6+2], w[1*6+2], w[0*6+3], w[1*6+3]}
			if !equalF32(k, want) {
				t.Errorf("attn_k = %v, want %v", k, want)
			}
			wte, _ := raw(t, st, c.prefix+"wte.weight")
			if !equalF32(f32(t, ck, "token_embd.weight"), wte) {
				t.Error("token_embd differs")
			}
			if ck.Source("output.weight") != nil {
				t.Error("tied model has output.weight")
			}
		})
	}
}

// TestLlamaMatchesLlama2c checks the rotate-half un-permutation: the Hugging Face and
// llama2.c copies of the same random model must give identical tensors.
func TestLlamaMatchesLlama2c(t *testing.T) {
	hfDir := fixtures.Path(t, "expected", "llama_tiny_hf")
	ck, err := Import(hfDir)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := llama2c.Import(fixtures.Path(t, "expected", "llama_tiny.bin"), "")
	if err != nil {
		t.Fatal(err)
	}
	checkMeta(t, ck.Meta, map[string]any{
		"general.architecture": "llama", "lm.vocab_size": int64(512), "lm.dim": int64(64),
		"lm.n_layers": int64(2), "lm.n_heads": int64(4), "lm.n_kv_heads": int64(2), "lm.ffn_dim": int64(192),
		"lm.context_length": int64(128), "lm.norm": "rmsnorm", "lm.norm_eps": 1e-5, "lm.position": "rope",
		"lm.rope_theta": 10000.0, "lm.activation": "swiglu", "lm.final_norm": true, "lm.norm_position": "pre",
	})
	for _, k := range []string{"lm.vocab_size", "lm.dim", "lm.n_layers", "lm.n_heads", "lm.n_kv_heads", "lm.ffn_dim", "lm.context_length", "lm.norm", "lm.position", "lm.activation", "lm.rope_theta", "lm.norm_eps"} {
		if fmt.Sprint(ck.Meta[k]) != fmt.Sprint(ref.Meta[k]) {
			t.Errorf("%s: hf %v, llama2c %v", k, ck.Meta[k], ref.Meta[k])
		}
	}
	if len(ck.Tensors) != len(ref.Tensors) {
		t.Fatalf("hf has %d tensors, llama2c %d", len(ck.Tensors), len(ref.Tensors))
	}
	for i, s := range ref.Tensors {
		h := ck.Tensors[i]
		if h.Name != s.Name || !shapeIs(h.Shape, s.Shape...) {
			t.Fatalf("tensor %d: hf %s %v, llama2c %s %v", i, h.Name, h.Shape, s.Name, s.Shape)
		}
		a, b := f32(t, ck, s.Name), f32(t, ref, s.Name)
		if !equalF32(a, b) {
			var maxd float64
			for j := range a {
				maxd = math.Max(maxd, math.Abs(float64(a[j]-b[j])))
			}
			t.Errorf("%s: hf and llama2c differ (max |Δ| %g)", s.Name, maxd)
		}
	}
	// The permutation is not the identity: the raw HF q_proj differs from llama2.c's wq.
	q, _ := raw(t, filepath.Join(hfDir, "model.safetensors"), "model.layers.0.self_attn.q_proj.weight")
	if equalF32(q, f32(t, ref, "blk.0.attn_q.weight")) {
		t.Error("raw q_proj already equals llama2.c's wq: the test proves nothing")
	}
}

func TestUnrotateHalf(t *testing.T) {
	// One head of dim 6 (pairs i = 0..2), one column: HF rows are
	// [x0 x2 x4 | x1 x3 x5] in lmrun order, i.e. HF row j·3+i holds lmrun row 2i+j.
	hf := []float32{0, 2, 4, 1, 3, 5}
	got := unrotateHalf(1, 6, 1)(hf)
	if !equalF32(got, []float32{0, 1, 2, 3, 4, 5}) {
		t.Errorf("unrotateHalf = %v", got)
	}
	// Two heads of dim 4, two columns.
	hf = []float32{0, 0, 2, 2, 1, 1, 3, 3, 4, 4, 6, 6, 5, 5, 7, 7}
	got = unrotateHalf(2, 4, 2)(hf)
	if !equalF32(got, []float32{0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7}) {
		t.Errorf("unrotateHalf = %v", got)
	}
}

// tensorsOf reads every tensor of a safetensors file.
func tensorsOf(t *testing.T, path string) []safetensors.TensorData {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []safetensors.TensorData
	for _, tt := range f.Tensors {
		b, err := tt.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, safetensors.TensorData{Name: tt.Name, DType: tt.DType, Shape: tt.Shape, Data: b})
	}
	return out
}

// modelDir makes a model directory in a temp dir from a config (as a map) and tensors.
func modelDir(t *testing.T, cfg map[string]any, tensors []safetensors.TensorData) string {
	t.Helper()
	dir := t.TempDir()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	if tensors != nil {
		if err := safetensors.WriteFile(filepath.Join(dir, "model.safetensors"), tensors, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readConfigMap(t *testing.T, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func sameCheckpoint(t *testing.T, a, b *format.Checkpoint) {
	t.Helper()
	if len(a.Tensors) != len(b.Tensors) {
		t.Fatalf("%d tensors vs %d", len(a.Tensors), len(b.Tensors))
	}
	for i, s := range a.Tensors {
		if b.Tensors[i].Name != s.Name || !shapeIs(b.Tensors[i].Shape, s.Shape...) {
			t.Fatalf("tensor %d: %s %v vs %s %v", i, s.Name, s.Shape, b.Tensors[i].Name, b.Tensors[i].Shape)
		}
		if !equalF32(f32(t, a, s.Name), f32(t, b, s.Name)) {
			t.Errorf("%s differs", s.Name)
		}
	}
}

func TestSharded(t *testing.T) {
	src := fixtures.Path(t, "expected", "llama_tiny_hf")
	single, err := Import(src)
	if err != nil {
		t.Fatal(err)
	}
	all := tensorsOf(t, filepath.Join(src, "model.safetensors"))
	dir := modelDir(t, readConfigMap(t, src), nil)
	shards := [2][]safetensors.TensorData{}
	wm := map[string]string{}
	names := [2]string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
	for i, td := range all {
		k := 0
		if i >= len(all)/2 {
			k = 1
		}
		shards[k] = append(shards[k], td)
		wm[td.Name] = names[k]
	}
	for k := range shards {
		if err := safetensors.WriteFile(filepath.Join(dir, names[k]), shards[k], nil); err != nil {
			t.Fatal(err)
		}
	}
	index, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 0}, "weight_map": wm})
	if err := os.WriteFile(filepath.Join(dir, safetensors.IndexName), index, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Join(dir, safetensors.IndexName)} {
		sharded, err := Import(p)
		if err != nil {
			t.Fatal(err)
		}
		sameCheckpoint(t, single, sharded)
	}
}

func TestHalfPrecisionSources(t *testing.T) {
	src := fixtures.Path(t, "expected", "gpt2_tiny_hf")
	all := tensorsOf(t, filepath.Join(src, "model.safetensors"))
	for _, dt := range []safetensors.DType{safetensors.F16, safetensors.BF16} {
		conv := make([]safetensors.TensorData, len(all))
		// The expected values are the f32 ones rounded to dt.
		expect := make([]safetensors.TensorData, len(all))
		for i, td := range all {
			v := dtype.BytesToF32(td.Data)
			half := make([]byte, 2*len(v))
			back := make([]float32, len(v))
			for j, x := range v {
				var h uint16
				if dt == safetensors.F16 {
					h = dtype.F32ToF16(x)
					back[j] = dtype.F16ToF32(h)
				} else {
					h = dtype.F32ToBF16(x)
					back[j] = dtype.BF16ToF32(h)
				}
				half[2*j], half[2*j+1] = byte(h), byte(h>>8)
			}
			conv[i] = safetensors.TensorData{Name: td.Name, DType: dt, Shape: td.Shape, Data: half}
			expect[i] = safetensors.TensorData{Name: td.Name, DType: safetensors.F32, Shape: td.Shape, Data: append([]byte(nil), dtype.F32ToBytes(back)...)}
		}
		cfg := readConfigMap(t, src)
		got, err := Import(modelDir(t, cfg, conv))
		if err != nil {
			t.Fatal(err)
		}
		want, err := Import(modelDir(t, cfg, expect))
		if err != nil {
			t.Fatal(err)
		}
		sameCheckpoint(t, want, got)
	}
}

func TestGPT2Variants(t *testing.T) {
	src := fixtures.Path(t, "expected", "gpt2_tiny_hf")
	all := tensorsOf(t, filepath.Join(src, "model.safetensors"))
	base := readConfigMap(t, src)
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	// Unscaled attention.
	ck, err := Import(modelDir(t, with("scale_attn_weights", false, "reorder_and_upcast_attn", true), all))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Meta["lm.attn_scale"] != 1.0 {
		t.Errorf("lm.attn_scale = %v, want 1", ck.Meta["lm.attn_scale"])
	}
	// Activations.
	for act, want := range map[string]string{"gelu": "gelu", "relu": "relu", "gelu_pytorch_tanh": "gelu_tanh"} {
		ck, err := Import(modelDir(t, with("activation_function", act), all))
		if err != nil || ck.Meta["lm.activation"] != want {
			t.Errorf("activation %s: %v, %v", act, ck, err)
		}
	}
	// An lm_head equal to wte is tied; a different one becomes output.weight, untransposed.
	wte := all[0]
	if wte.Name != "wte.weight" {
		t.Fatalf("first tensor %s", wte.Name)
	}
	ck, err = Import(modelDir(t, base, append(append([]safetensors.TensorData(nil), all...), safetensors.TensorData{Name: "lm_head.weight", DType: wte.DType, Shape: wte.Shape, Data: wte.Data})))
	if err != nil {
		t.Fatal(err)
	}
	if ck.Source("output.weight") != nil {
		t.Error("lm_head equal to wte was not tied")
	}
	head := append([]byte(nil), wte.Data...)
	head[5] ^= 0x40
	ck, err = Import(modelDir(t, base, append(append([]safetensors.TensorData(nil), all...), safetensors.TensorData{Name: "lm_head.weight", DType: wte.DType, Shape: wte.Shape, Data: head})))
	if err != nil {
		t.Fatal(err)
	}
	if s := ck.Source("output.weight"); s == nil || !shapeIs(s.Shape, 1000, 64) {
		t.Fatalf("output.weight: %+v", s)
	}
	if b, _ := ck.Source("output.weight").Data(); !bytes.Equal(b, head) {
		t.Error("output.weight is not lm_head.weight")
	}
	// Ignored buffers.
	mask := safetensors.TensorData{Name: "h.0.attn.bias", DType: safetensors.U8, Shape: []int{1, 1, 4, 4}, Data: make([]byte, 16)}
	if _, err := Import(modelDir(t, base, append(append([]safetensors.TensorData(nil), all...), mask))); err != nil {
		t.Errorf("attn.bias buffer: %v", err)
	}

	bad := []struct {
		name    string
		cfg     map[string]any
		tensors []safetensors.TensorData
		want    []string
	}{
		{"activation", with("activation_function", "swish"), all, []string{"activation_function", "swish"}},
		{"inverse layer idx", with("scale_attn_by_inverse_layer_idx", true), all, []string{"scale_attn_by_inverse_layer_idx"}},
		{"cross attention", with("add_cross_attention", true), all, []string{"add_cross_attention"}},
		{"n_embd", with("n_embd", 32), all, []string{"wte.weight", "[1000 64]", "[1000 32]"}},
		{"n_inner", with("n_inner", 128), all, []string{"h.0.mlp.c_fc.weight", "[64 256]", "[64 128]"}},
		{"n_head", with("n_head", 5), all, []string{"n_head"}},
		{"missing", base, all[:len(all)-2], []string{"missing tensors", "ln_f.weight", "ln_f.bias"}},
		{"extra", base, append(append([]safetensors.TensorData(nil), all...), safetensors.TensorData{Name: "h.0.attn.q_norm.weight", DType: safetensors.F32, Shape: []int{1}, Data: make([]byte, 4)}), []string{"h.0.attn.q_norm.weight"}},
		{"architecture", with("architectures", []string{"GPT2ForSequenceClassification"}), all, []string{"GPT2ForSequenceClassification"}},
		{"model type", with("model_type", "bert"), all, []string{"unsupported model_type bert (supported: gpt2, gpt_neo, llama, mistral, opt, phi3, qwen2)"}},
		{"no model type", with("model_type", nil), all, []string{"no model_type"}},
		{"bad dtype", base, func() []safetensors.TensorData {
			c := append([]safetensors.TensorData(nil), all...)
			c[1] = safetensors.TensorData{Name: c[1].Name, DType: safetensors.I32, Shape: c[1].Shape, Data: c[1].Data}
			return c
		}(), []string{"wpe.weight", "I32"}},
		{"n_layer string", with("n_layer", "two"), all, []string{"n_layer"}},
		{"no tensors file", base, nil, []string{"model.safetensors"}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			dir := modelDir(t, c.cfg, c.tensors)
			_, err := Import(dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(c.want, dir) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLlamaVariants(t *testing.T) {
	src := fixtures.Path(t, "expected", "llama_tiny_hf")
	all := tensorsOf(t, filepath.Join(src, "model.safetensors"))
	base := readConfigMap(t, src)
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	emb := all[0]
	if emb.Name != "model.embed_tokens.weight" {
		t.Fatalf("first tensor %s", emb.Name)
	}
	head := append([]byte(nil), emb.Data...)
	head[0] ^= 1
	withHead := append(append([]safetensors.TensorData(nil), all...), safetensors.TensorData{Name: "lm_head.weight", DType: emb.DType, Shape: emb.Shape, Data: head})
	withBias := append(append([]safetensors.TensorData(nil), all...), safetensors.TensorData{Name: "model.layers.0.self_attn.q_proj.bias", DType: safetensors.F32, Shape: []int{64}, Data: make([]byte, 256)})
	ck, err := Import(modelDir(t, with("tie_word_embeddings", false), withHead))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := ck.Source("output.weight").Data(); !bytes.Equal(b, head) {
		t.Error("untied lm_head.weight not imported as output.weight")
	}
	// Without tie_word_embeddings, tying follows the presence of lm_head.weight.
	ck, err = Import(modelDir(t, with("tie_word_embeddings", nil), withHead))
	if err != nil || ck.Source("output.weight") == nil {
		t.Errorf("lm_head present, tie unspecified: %v", err)
	}
	ck, err = Import(modelDir(t, with("tie_word_embeddings", nil), all))
	if err != nil || ck.Source("output.weight") != nil {
		t.Errorf("lm_head absent, tie unspecified: %v", err)
	}
	// Defaults: no num_key_value_heads means as many as heads (so k_proj has the wrong shape here).
	_, err = Import(modelDir(t, with("num_key_value_heads", nil), all))
	if err == nil || !strings.Contains(err.Error(), "model.layers.0.self_attn.k_proj.weight has shape [32 64], the config implies [64 64]") {
		t.Errorf("kv heads default: %v", err)
	}
	// An explicit head_dim is recorded.
	ck, err = Import(modelDir(t, with("head_dim", 16), all))
	if err != nil || ck.Meta["lm.head_dim"] != int64(16) {
		t.Errorf("head_dim: %v", err)
	}
	// Old checkpoints' inv_freq buffers are ignored.
	invf := safetensors.TensorData{Name: "model.layers.1.self_attn.rotary_emb.inv_freq", DType: safetensors.F32, Shape: []int{8}, Data: make([]byte, 32)}
	if _, err := Import(modelDir(t, base, append(append([]safetensors.TensorData(nil), all...), invf))); err != nil {
		t.Errorf("inv_freq: %v", err)
	}

	bad := []struct {
		name    string
		cfg     map[string]any
		tensors []safetensors.TensorData
		want    []string
	}{
		{"rope scaling", with("rope_scaling", map[string]any{"type": "dynamic", "factor": 2.0}), all, []string{"unsupported rope type \"dynamic\"", "rope_scaling"}},
		{"yarn", with("rope_scaling", map[string]any{"rope_type": "yarn", "factor": 4.0}), all, []string{"unsupported rope type \"yarn\"", "rope_scaling"}},
		{"llama3 incomplete", with("rope_scaling", map[string]any{"rope_type": "llama3", "factor": 8.0}), all, []string{"missing low_freq_factor", "rope_scaling"}},
		{"llama3 high<low", with("rope_scaling", map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
			"high_freq_factor": 1.0, "original_max_position_embeddings": 8192}), all, []string{"high_freq_factor"}},
		{"linear zero", with("rope_scaling", map[string]any{"type": "linear", "factor": 0.0}), all, []string{"factor = 0"}},
		{"partial rotary", with("partial_rotary_factor", 0.5), all, []string{"partial_rotary_factor"}},
		{"tied but different head", with("tie_word_embeddings", true), withHead, []string{"tie_word_embeddings is true", "lm_head.weight"}},
		{"bias without attention_bias", base, withBias, []string{"should not have", "q_proj.bias"}},
		{"hidden act", with("hidden_act", "gelu"), all, []string{"hidden_act", "gelu"}},
		{"mlp bias", with("mlp_bias", true), all, []string{"mlp_bias"}},
		{"attention bias", with("attention_bias", true), all, []string{"missing tensors", "model.layers.0.self_attn.q_proj.bias"}},
		{"untied without head", with("tie_word_embeddings", false), all, []string{"missing tensors: lm_head.weight"}},
		{"intermediate", with("intermediate_size", 100), all, []string{"model.layers.0.mlp.gate_proj.weight has shape [192 64], the config implies [100 64]"}},
		{"kv heads", with("num_key_value_heads", 3), all, []string{"num_key_value_heads"}},
		{"odd head dim", with("head_dim", 15), all, []string{"odd"}},
		{"vocab", with("vocab_size", 500), all, []string{"model.embed_tokens.weight"}},
		{"missing", base, all[1:], []string{"missing tensors: model.embed_tokens.weight"}},
		{"architecture", with("architectures", []string{"LlamaForSequenceClassification"}), all, []string{"LlamaForSequenceClassification"}},
		{"eps type", with("rms_norm_eps", "small"), all, []string{"rms_norm_eps"}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			dir := modelDir(t, c.cfg, c.tensors)
			_, err := Import(dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(c.want, dir) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for _, dir := range []string{fixtures.Path(t, "expected", "llama_tiny_hf"), fixtures.Path(t, "expected", "gpt2_tiny_hf")} {
		ck, err := Import(dir)
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
		if err := f.Verify(nil); err != nil {
			t.Fatal(err)
		}
		if len(f.Tensors) != len(ck.Tensors) {
			t.Fatalf("%d tensors written, %d imported", len(f.Tensors), len(ck.Tensors))
		}
		for i, s := range ck.Tensors {
			b, err := s.Data()
			if err != nil {
				t.Fatal(err)
			}
			if f.Tensors[i].Name != s.Name || !bytes.Equal(f.Tensors[i].Data, b) {
				t.Errorf("%s changed in the round trip", s.Name)
			}
		}
		for _, k := range ck.Meta.Keys() {
			if fmt.Sprint(f.Meta[k]) != fmt.Sprint(ck.Meta[k]) {
				t.Errorf("metadata %s changed in the round trip", k)
			}
		}
		f.Close()
	}
}

// measure runs f and returns its error, the bytes it allocated and the time it took.
func measure(f func() error) (error, uint64, time.Duration) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	err := f()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return err, after.TotalAlloc - before.TotalAlloc, elapsed
}

// Bounds for importing a tiny fixture under an absurd config: generous for the machine,
// tiny next to what the absurd numbers would ask for.
const (
	maxAbsurdAlloc = 64 << 20
	maxAbsurdTime  = 5 * time.Second
)

// absurdDir writes a model directory holding the fixture's config.json with key set to
// value (deleted when value is nil) beside a link to the fixture's weights.
func absurdDir(t *testing.T, fixture, key string, value any) string {
	t.Helper()
	src := fixtures.Path(t, "expected", fixture)
	cfg := readConfigMap(t, src)
	if value == nil {
		delete(cfg, key)
	} else {
		cfg[key] = value
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(src, "model.safetensors"), filepath.Join(dir, "model.safetensors")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestAbsurdConfigs: a config.json whose numbers are absurd — billions of layers, heads,
// positions or dimensions, negative, zero, of the wrong JSON type — next to a real tiny
// checkpoint is an error naming the key and its value, found at once and without
// allocating anything sized by the absurd number.
func TestAbsurdConfigs(t *testing.T) {
	const billion = 1 << 30
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	many := func(n int, entry string) json.RawMessage {
		return raw("[" + strings.TrimSuffix(strings.Repeat(entry+",", n), ",") + "]")
	}
	cases := []struct {
		fixture, key string
		value        any
		want         []string
	}{
		// GPT-2: n_embd 64, n_layer 2, n_head 4, n_positions 128, vocab_size 1000.
		{"gpt2_tiny_hf", "n_layer", billion, []string{"n_layer = 1073741824", "model.safetensors holds tensors for at most 2 layers"}},
		{"gpt2_tiny_hf", "n_layer", 3, []string{"n_layer = 3", "at most 2 layers"}},
		{"gpt2_tiny_hf", "n_layer", 5000000000, []string{"n_layer = 5000000000 is out of range"}},
		{"gpt2_tiny_hf", "n_layer", -1, []string{"n_layer = -1, want > 0"}},
		{"gpt2_tiny_hf", "n_layer", 0, []string{"n_layer = 0, want > 0"}},
		{"gpt2_tiny_hf", "n_layer", "2", []string{"n_layer is 2, want an integer"}},
		{"gpt2_tiny_hf", "n_layer", 2.5, []string{"n_layer is 2.5, want an integer"}},
		{"gpt2_tiny_hf", "n_layer", 1e300, []string{"n_layer is 1e+300, want an integer"}},
		{"gpt2_tiny_hf", "n_layer", raw("99999999999999999999999"), []string{"n_layer is 99999999999999999999999, want an integer"}},
		{"gpt2_tiny_hf", "n_layer", []int{2}, []string{"n_layer is [2], want an integer"}},
		{"gpt2_tiny_hf", "n_layer", nil, []string{"missing n_layer"}},
		{"gpt2_tiny_hf", "n_head", billion, []string{"n_embd 64 is not a multiple of n_head 1073741824"}},
		{"gpt2_tiny_hf", "n_head", -4, []string{"n_head = -4, want > 0"}},
		{"gpt2_tiny_hf", "n_embd", billion, []string{"vocab_size = 1000 and n_embd = 1073741824 imply wte.weight of shape [1000 1073741824]", "[1000 64]"}},
		{"gpt2_tiny_hf", "vocab_size", 2000000000, []string{"vocab_size = 2000000000 and n_embd = 64 imply wte.weight of shape [2000000000 64]"}},
		{"gpt2_tiny_hf", "vocab_size", 0, []string{"vocab_size = 0, want > 0"}},
		{"gpt2_tiny_hf", "n_positions", 2000000000, []string{"n_positions = 2000000000 and n_embd = 64 imply wpe.weight of shape [2000000000 64]", "[128 64]"}},
		{"gpt2_tiny_hf", "n_inner", 2000000000, []string{"n_inner = 2000000000", "ffn_dim 2000000000"}},
		{"gpt2_tiny_hf", "n_inner", 4096, []string{"h.0.mlp.c_fc.weight has shape [64 256], the config implies [64 4096]"}},
		{"gpt2_tiny_hf", "n_inner", -1, []string{"n_inner = -1, want > 0"}},
		{"gpt2_tiny_hf", "layer_norm_epsilon", 1e10, []string{"layer_norm_epsilon = 1e+10", "norm_eps"}},
		{"gpt2_tiny_hf", "layer_norm_epsilon", "small", []string{"layer_norm_epsilon is small, want a number"}},
		// Llama: hidden_size 64, intermediate_size 192, 2 layers, 4 heads, 2 KV heads, vocab 512.
		{"llama_tiny_hf", "num_hidden_layers", billion, []string{"num_hidden_layers = 1073741824", "at most 2 layers"}},
		{"llama_tiny_hf", "num_attention_heads", billion, []string{"hidden_size 64 is not a multiple of num_attention_heads 1073741824"}},
		{"llama_tiny_hf", "num_attention_heads", 6, []string{"hidden_size 64 is not a multiple of num_attention_heads 6"}},
		{"llama_tiny_hf", "num_key_value_heads", 3, []string{"num_attention_heads 4 is not a multiple of num_key_value_heads 3"}},
		{"llama_tiny_hf", "num_key_value_heads", 8, []string{"num_key_value_heads 8"}},
		{"llama_tiny_hf", "num_key_value_heads", 0, []string{"num_key_value_heads = 0, want > 0"}},
		{"llama_tiny_hf", "num_key_value_heads", 2.0000001, []string{"num_key_value_heads is 2.0000001, want an integer"}},
		{"llama_tiny_hf", "head_dim", billion, []string{"head_dim = 1073741824", "invalid model config: head_dim 1073741824"}},
		{"llama_tiny_hf", "head_dim", 2147483647, []string{"head dimension 2147483647 is odd"}},
		{"llama_tiny_hf", "head_dim", 1 << 17, []string{"head_dim = 131072", "invalid model config: head_dim 131072"}},
		{"llama_tiny_hf", "head_dim", 1 << 16, []string{"model.layers.0.self_attn.q_proj.weight has shape [64 64], the config implies [262144 64]"}},
		{"llama_tiny_hf", "hidden_size", billion, []string{"vocab_size = 512 and hidden_size = 1073741824 imply model.embed_tokens.weight"}},
		{"llama_tiny_hf", "vocab_size", 2000000000, []string{"vocab_size = 2000000000 and hidden_size = 64 imply model.embed_tokens.weight"}},
		{"llama_tiny_hf", "intermediate_size", 2000000000, []string{"intermediate_size = 2000000000", "ffn_dim 2000000000"}},
		{"llama_tiny_hf", "intermediate_size", "192", []string{"intermediate_size is 192, want an integer"}},
		{"llama_tiny_hf", "max_position_embeddings", 2000000000, []string{"max_position_embeddings = 2000000000", "context_length 2000000000"}},
		{"llama_tiny_hf", "max_position_embeddings", -1, []string{"max_position_embeddings = -1, want > 0"}},
		{"llama_tiny_hf", "rope_theta", 0.5, []string{"rope_theta = 0.5", "rope_theta 0.5"}},
		{"llama_tiny_hf", "rms_norm_eps", -1, []string{"rms_norm_eps = -1", "norm_eps"}},
		// GPT-Neo: hidden_size 64, 4 layers, 4 heads, 128 positions, window 8, vocab 512.
		{"gpt_neo_tiny_hf", "num_layers", billion, []string{"num_layers = 1073741824", "at most 4 layers"}},
		{"gpt_neo_tiny_hf", "attention_types", raw(`[[["global"], 1073741824]]`), []string{"attention_types name more than the 4 layers of num_layers"}},
		{"gpt_neo_tiny_hf", "attention_types", many(100000, `[["global","local"],2]`), []string{"attention_types name more than the 4 layers of num_layers"}},
		{"gpt_neo_tiny_hf", "attention_types", raw(`[[["global","local"], -2]]`), []string{"attention_types: bad entry"}},
		{"gpt_neo_tiny_hf", "attention_types", raw(`[[["global","local"], 2.5]]`), []string{"attention_types: bad entry"}},
		{"gpt_neo_tiny_hf", "attention_types", "global", []string{"attention_types: want a list"}},
		{"gpt_neo_tiny_hf", "window_size", billion, []string{"window_size = 1073741824", "attention window 1073741824"}},
		{"gpt_neo_tiny_hf", "window_size", 0, []string{"window_size = 0, want > 0"}},
		{"gpt_neo_tiny_hf", "max_position_embeddings", 2000000000, []string{"max_position_embeddings = 2000000000 and hidden_size = 64 imply transformer.wpe.weight"}},
		{"gpt_neo_tiny_hf", "intermediate_size", billion, []string{"intermediate_size = 1073741824", "ffn_dim"}},
		{"gpt_neo_tiny_hf", "vocab_size", -512, []string{"vocab_size = -512, want > 0"}},
		// OPT: hidden_size 64, ffn_dim 256, 2 layers, 4 heads, 128 positions (+2), vocab 512.
		{"opt_tiny_hf", "num_hidden_layers", billion, []string{"num_hidden_layers = 1073741824", "at most 2 layers"}},
		{"opt_tiny_hf", "ffn_dim", 2000000000, []string{"ffn_dim = 2000000000", "ffn_dim 2000000000"}},
		{"opt_tiny_hf", "word_embed_proj_dim", billion, []string{"vocab_size = 512 and word_embed_proj_dim = 1073741824 imply model.decoder.embed_tokens.weight"}},
		{"opt_tiny_hf", "word_embed_proj_dim", -3, []string{"word_embed_proj_dim = -3, want > 0"}},
		{"opt_tiny_hf", "max_position_embeddings", math.MaxInt32, []string{"max_position_embeddings = 2147483647 and hidden_size = 64", "[2147483649 64]"}},
		{"opt_tiny_hf", "hidden_size", billion, []string{"max_position_embeddings = 128 and hidden_size = 1073741824"}},
		{"opt_tiny_hf", "num_attention_heads", billion, []string{"hidden_size 64 is not a multiple of num_attention_heads 1073741824"}},
		{"opt_tiny_hf", "vocab_size", true, []string{"vocab_size is true, want an integer"}},
	}
	for _, c := range cases {
		value := fmt.Sprint(c.value)
		if r, ok := c.value.(json.RawMessage); ok {
			value = string(r)
		}
		if len(value) > 40 {
			value = value[:40] + "..."
		}
		t.Run(fmt.Sprintf("%s/%s=%s", c.fixture, c.key, value), func(t *testing.T) {
			dir := absurdDir(t, c.fixture, c.key, c.value)
			err, alloc, elapsed := measure(func() error { _, err := Import(dir); return err })
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range append(c.want, dir) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if alloc > maxAbsurdAlloc || elapsed > maxAbsurdTime {
				t.Errorf("the import allocated %d MB in %v", alloc>>20, elapsed)
			}
		})
	}
}

// TestLongRoPEContextCostsNothing: a RoPE model's context length sizes no tensor, so the
// largest one lmrun accepts imports without allocating anything in proportion to it.
func TestLongRoPEContextCostsNothing(t *testing.T) {
	dir := absurdDir(t, "llama_tiny_hf", "max_position_embeddings", 1<<21)
	var ck *format.Checkpoint
	err, alloc, _ := measure(func() error {
		var err error
		if ck, err = Import(dir); err != nil {
			return err
		}
		for _, s := range ck.Tensors {
			if _, err := s.Data(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ck.Meta["lm.context_length"] != int64(1<<21) {
		t.Errorf("lm.context_length = %v", ck.Meta["lm.context_length"])
	}
	if alloc > maxAbsurdAlloc {
		t.Errorf("importing a 0.5 MB model with a 2M context allocated %d MB", alloc>>20)
	}
}
