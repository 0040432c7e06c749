package convert

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	if _, err := Import(g, Options{}); !errors.Is(err, ErrGGUFUnsupported) || !strings.Contains(err.Error(), g) {
		t.Errorf("GGUF: %v", err)
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
