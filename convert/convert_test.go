package convert

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/internal/fixtures"
)

func TestDetect(t *testing.T) {
	td := fixtures.Dir(t)
	cases := map[string]Kind{
		"llama2c/stories260K.bin":                  KindLlama2C,
		"llama2c/stories260K_v1.bin":               KindLlama2C,
		"llama2c/stories260K_q80.bin":              KindLlama2C,
		"expected/llama_tiny.bin":                  KindLlama2C,
		"gguf/llama-2-tiny-random.gguf":            KindGGUF,
		"expected/gpt2_tiny.gguf":                  KindGGUF,
		"expected/gpt2_tiny_hf":                    KindHF,
		"hf/fake_gpt2":                             KindHF,
		"expected/llama_tiny_hf/model.safetensors": KindSafetensors,
		"hf/tiny_gpt2/model.safetensors":           KindSafetensors,
	}
	for rel, want := range cases {
		got, err := Detect(filepath.Join(td, rel))
		if err != nil || got != want {
			t.Errorf("Detect(%s) = %v, %v; want %v", rel, got, err, want)
		}
	}
	for _, rel := range []string{"llama2c/tok512.bin", "llama2c/tokenizer.model", "text/tinyshakespeare_a.txt", "hf/fake_gpt2/config.json", "gpt2", "expected/tiny_tokens.txt"} {
		p := filepath.Join(td, rel)
		if k, err := Detect(p); err == nil || !strings.Contains(err.Error(), "cannot tell the format of "+p) {
			t.Errorf("Detect(%s) = %v, %v; want a 'cannot tell' error", rel, k, err)
		}
	}

	dir := t.TempDir()
	// Names do not matter: a llama2.c checkpoint called model.safetensors is llama2.c.
	raw, err := os.ReadFile(filepath.Join(td, "llama2c/stories260K.bin"))
	if err != nil {
		t.Fatal(err)
	}
	misnamed := filepath.Join(dir, "model.safetensors")
	os.WriteFile(misnamed, raw, 0o644)
	if k, err := Detect(misnamed); k != KindLlama2C || err != nil {
		t.Errorf("misnamed llama2.c file: %v, %v", k, err)
	}
	// A truncated legacy file cannot be recognized.
	trunc := filepath.Join(dir, "trunc.bin")
	os.WriteFile(trunc, raw[:len(raw)-8], 0o644)
	if _, err := Detect(trunc); err == nil || !strings.Contains(err.Error(), "cannot tell") {
		t.Errorf("truncated llama2.c: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Detect(empty); err == nil {
		t.Error("empty file recognized")
	}
	bad := filepath.Join(dir, "v9.bin")
	os.WriteFile(bad, []byte{0x32, 0x34, 0x6b, 0x61, 9, 0, 0, 0}, 0o644)
	if _, err := Detect(bad); err == nil || !strings.Contains(err.Error(), "version 9") {
		t.Errorf("ak42 version 9: %v", err)
	}
	if _, err := Detect(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file recognized")
	}
	// A directory without config.json.
	if _, err := Detect(dir); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("plain directory: %v", err)
	}
	// An lmc file, and a safetensors index.
	lmc := filepath.Join(dir, "m.lmc")
	if err := format.WriteFile(lmc, format.Metadata{"lm.dim": int64(1)}, []format.Source{format.Float32s("x", []int{1}, []float32{1})}, nil); err != nil {
		t.Fatal(err)
	}
	if k, err := Detect(lmc); k != KindLMC || err != nil {
		t.Errorf("lmc: %v, %v", k, err)
	}
	index := filepath.Join(dir, "index.json")
	os.WriteFile(index, []byte(`{"metadata": {}, "weight_map": {"a": "model-00001-of-00001.safetensors"}}`), 0o644)
	if k, err := Detect(index); k != KindSafetensors || err != nil {
		t.Errorf("index: %v, %v", k, err)
	}
}

func TestImport(t *testing.T) {
	td := fixtures.Dir(t)
	ck, err := Import(filepath.Join(td, "llama2c/stories260K.bin"), Options{TokenizerPath: filepath.Join(td, "llama2c/tok512.bin")})
	if err != nil {
		t.Fatal(err)
	}
	if ck.Meta["general.architecture"] != "llama" || ck.Meta["tokenizer.model"] != "llama2c" {
		t.Errorf("llama2c import metadata: %v %v", ck.Meta["general.architecture"], ck.Meta["tokenizer.model"])
	}
	for _, p := range []string{"expected/gpt2_tiny_hf", "expected/gpt2_tiny_hf/model.safetensors"} {
		ck, err = Import(filepath.Join(td, p), Options{})
		if err != nil {
			t.Fatal(err)
		}
		if ck.Meta["general.architecture"] != "gpt2" || ck.Source("blk.1.attn_q.weight") == nil {
			t.Errorf("%s: not imported as gpt2", p)
		}
	}
	// A tokenizer merged into an HF import must match its vocabulary (llama_tiny has 512).
	ck, err = Import(filepath.Join(td, "expected/llama_tiny_hf"), Options{TokenizerPath: filepath.Join(td, "llama2c/tok512.bin")})
	if err != nil {
		t.Fatal(err)
	}
	if toks, _, _ := ck.Meta.Strings("tokenizer.tokens"); len(toks) != 512 {
		t.Errorf("%d tokens merged", len(toks))
	}
	g := filepath.Join(td, "gguf/llama-2-tiny-random.gguf")
	if ck, err := Import(g, Options{}); err != nil || ck.Meta["general.architecture"] != "llama" || ck.Source("output.weight").DType != dtype.F16 {
		t.Errorf("GGUF: %v", err)
	}
	v := filepath.Join(td, "gguf/ggml-vocab-gpt-2.gguf")
	if _, err := Import(v, Options{}); err == nil || strings.Count(err.Error(), v) != 1 || !strings.Contains(err.Error(), "no tensors") {
		t.Errorf("vocabulary-only GGUF: %v", err)
	}
	lmc := filepath.Join(t.TempDir(), "m.lmc")
	format.WriteFile(lmc, format.Metadata{}, []format.Source{format.Float32s("x", []int{1}, []float32{1})}, nil)
	if _, err := Import(lmc, Options{}); !errors.Is(err, ErrAlreadyLMC) {
		t.Errorf("lmc: %v", err)
	}
	// Importer errors name the file exactly once.
	bin := filepath.Join(td, "llama2c/stories260K.bin")
	_, err = Import(bin, Options{TokenizerPath: filepath.Join(td, "llama2c/tokenizer.bin")})
	if err == nil || !strings.Contains(err.Error(), "tokenizer.bin") {
		t.Errorf("wrong tokenizer: %v", err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type": "bert"}`), 0o644)
	_, err = Import(dir, Options{})
	if err == nil || strings.Count(err.Error(), dir) != 1 || !strings.Contains(err.Error(), "unsupported model_type bert") {
		t.Errorf("bert: %v", err)
	}
}

// TestShardedImport converts a two-shard copy of llama_tiny_hf through Detect and Import
// and compares it with the single-file import.
func TestShardedImport(t *testing.T) {
	td := fixtures.Dir(t)
	src := filepath.Join(td, "expected/llama_tiny_hf")
	f, err := safetensors.Open(filepath.Join(src, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg, _ := os.ReadFile(filepath.Join(src, "config.json"))
	os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644)
	var shards [2][]safetensors.TensorData
	var index bytes.Buffer
	index.WriteString(`{"metadata": {"total_size": 525568}, "weight_map": {`)
	for i, tt := range f.Tensors {
		b, err := tt.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		k := i % 2
		shards[k] = append(shards[k], safetensors.TensorData{Name: tt.Name, DType: tt.DType, Shape: tt.Shape, Data: b})
		if i > 0 {
			index.WriteString(",")
		}
		index.WriteString(`"` + tt.Name + `": "shard` + string(rune('0'+k)) + `.safetensors"`)
	}
	index.WriteString("}}")
	for k := range shards {
		if err := safetensors.WriteFile(filepath.Join(dir, "shard"+string(rune('0'+k))+".safetensors"), shards[k], nil); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, safetensors.IndexName), index.Bytes(), 0o644)

	single, err := Import(src, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sharded, err := Import(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(single.Tensors) != len(sharded.Tensors) {
		t.Fatalf("%d vs %d tensors", len(single.Tensors), len(sharded.Tensors))
	}
	for i, s := range single.Tensors {
		a, err1 := s.Data()
		b, err2 := sharded.Tensors[i].Data()
		if err1 != nil || err2 != nil || sharded.Tensors[i].Name != s.Name || !bytes.Equal(a, b) {
			t.Errorf("%s differs (%v, %v)", s.Name, err1, err2)
		}
	}
	// Round trip through the lmc writer and reader.
	out := filepath.Join(t.TempDir(), "m.lmc")
	if err := sharded.WriteFile(out, nil); err != nil {
		t.Fatal(err)
	}
	lf, err := format.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	for _, s := range single.Tensors {
		a, _ := s.Data()
		if lt := lf.Tensor(s.Name); lt == nil || !bytes.Equal(lt.Data, a) {
			t.Errorf("%s changed in the round trip", s.Name)
		}
	}
}

// TestWithDType quantizes llama_tiny at conversion: q8_0 gives exactly the bytes of the
// llama.cpp-made llama_tiny_q8_0.gguf; norms stay f32; rows that are not whole blocks
// fall back to f16; every dtype round-trips within its error bound.
func TestWithDType(t *testing.T) {
	td := fixtures.Dir(t)
	ck, err := Import(filepath.Join(td, "expected/llama_tiny.bin"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := Import(filepath.Join(td, "expected/llama_tiny_q8_0.gguf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	q8, err := WithDType(ck, dtype.Q8_0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range q8.Tensors {
		want := ref.Source(s.Name)
		a, err1 := s.Data()
		b, err2 := want.Data()
		if err1 != nil || err2 != nil || s.DType != want.DType || !bytes.Equal(a, b) {
			t.Errorf("%s: %s, llama.cpp's file has %s (equal bytes: %v)", s.Name, s.DType, want.DType, bytes.Equal(a, b))
		}
	}
	orig := map[string][]float32{}
	for _, s := range ck.Tensors {
		b, _ := s.Data()
		orig[s.Name] = append([]float32(nil), dtype.BytesToF32(b)...)
	}
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16, dtype.Q8_0, dtype.Q4_0} {
		out, err := WithDType(ck, dt)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), dt.String()+".lmc")
		if err := out.WriteFile(path, nil); err != nil {
			t.Fatal(err)
		}
		f, err := format.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range f.Tensors {
			want := dt
			if len(tt.Shape) == 1 {
				want = dtype.F32
			}
			if dt == dtype.Q4_0 && tt.Name == "token_embd.weight" && f.Tensor("output.weight") == nil {
				want = dtype.Q8_0 // the tied classifier keeps 8 bits
			}
			if tt.DType != want {
				t.Errorf("%s: %s is %s, want %s", dt, tt.Name, tt.DType, want)
			}
			v, err := dtype.Dequantize(tt.DType, tt.Data, tt.Shape[len(tt.Shape)-1])
			if err != nil {
				t.Fatal(err)
			}
			tol := map[dtype.DType]float64{dtype.F32: 0, dtype.F16: 1e-3, dtype.BF16: 8e-3, dtype.Q8_0: 0.02, dtype.Q4_0: 0.35}[dt]
			for i, x := range orig[tt.Name] {
				if d := math.Abs(float64(v[i] - x)); d > tol*math.Max(1, math.Abs(float64(x))) {
					t.Fatalf("%s: %s[%d] = %v, was %v", dt, tt.Name, i, v[i], x)
				}
			}
		}
		// Back to f32 from a quantized file: exactly the dequantized values.
		back, err := WithDType(FromLMC(f), dtype.F32)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range back.Tensors {
			b, err := s.Data()
			if err != nil {
				t.Fatal(err)
			}
			v, _ := dtype.Dequantize(f.Tensors[i].DType, f.Tensors[i].Data, s.Shape[len(s.Shape)-1])
			if s.DType != dtype.F32 || !bytes.Equal(b, dtype.F32ToBytes(v)) {
				t.Errorf("%s → f32: %s differs from its dequantization", dt, s.Name)
			}
		}
		f.Close()
	}
	// stories260K's ffn_down rows (172) are not whole blocks; GPT-2's position table
	// stays f32.
	s260, err := Import(filepath.Join(td, "llama2c/stories260K.bin"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	q4, _ := WithDType(s260, dtype.Q4_0)
	if got := q4.Source("blk.0.ffn_down.weight").DType; got != dtype.F16 {
		t.Errorf("ffn_down of rows of 172: %s, want f16", got)
	}
	if got := q4.Source("blk.0.ffn_up.weight").DType; got != dtype.Q4_0 {
		t.Errorf("ffn_up: %s, want q4_0", got)
	}
	gpt2, err := Import(filepath.Join(td, "expected/gpt2_tiny_hf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	g8, _ := WithDType(gpt2, dtype.Q8_0)
	for name, want := range map[string]dtype.DType{"position_embd.weight": dtype.F32, "token_embd.weight": dtype.Q8_0, "blk.0.attn_q.bias": dtype.F32, "blk.1.ffn_up.weight": dtype.Q8_0} {
		if got := g8.Source(name).DType; got != want {
			t.Errorf("gpt2 %s: %s, want %s", name, got, want)
		}
	}
}

// TestCommittedCheckpoint: testdata/stories260K.lmc, the model the examples load, is what
// converting the llama2.c files gives today (testdata/SOURCES.md has the command).
func TestCommittedCheckpoint(t *testing.T) {
	td := fixtures.Dir(t)
	ck, err := Import(filepath.Join(td, "llama2c/stories260K.bin"), Options{TokenizerPath: filepath.Join(td, "llama2c/tok512.bin")})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "s.lmc")
	if err := ck.WriteFile(out, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := fixtures.ReadFile(t, "stories260K.lmc"); !bytes.Equal(got, want) {
		t.Errorf("converting stories260K.bin gives %d bytes that differ from testdata/stories260K.lmc (%d bytes): regenerate it with the command in testdata/SOURCES.md if the change is intended", len(got), len(want))
	}
}
