package hf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/internal/fixtures"
	"github.com/lmrun/lmrun/model"
)

// fuzzFixtures are the model directories whose config.json seeds FuzzConfig and whose
// weights it imports under each fuzzed config.
var fuzzFixtures = [][2]string{
	{"expected", "gpt2_tiny_hf"}, {"expected", "llama_tiny_hf"}, {"expected", "gpt_neo_tiny_hf"},
	{"expected", "opt_tiny_hf"}, {"expected", "opt_postnorm_tiny_hf"}, {"hf", "tiny_gpt2"}, {"hf", "fake_gpt2"},
}

// FuzzConfig imports a fixture's weights (chosen by which) under arbitrary config.json
// bytes. Whatever the numbers, the import must end quickly with an error or a checkpoint
// whose metadata describes a valid model and whose tensors hold no more elements than
// the weights it came from (nothing sized by a number of the config alone).
func FuzzConfig(f *testing.F) {
	var weights []*safetensors.File
	for i, fx := range fuzzFixtures {
		dir := fixtures.Path(f, fx[0], fx[1])
		js, err := os.ReadFile(filepath.Join(dir, ConfigName))
		if err != nil {
			f.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, safetensors.SingleName))
		if err != nil {
			f.Fatal(err)
		}
		st, err := safetensors.Parse(b)
		if err != nil {
			f.Fatal(err)
		}
		weights = append(weights, st)
		f.Add(js, uint8(i))
	}
	// Random models of the Llama-like families, with their own configs.
	for i, fc := range familyCases() {
		if fc.name != "qwen2-window" && fc.name != "phi3-128k" && fc.name != "mistral" && fc.name != "llama3.2" {
			continue
		}
		m := fc.model(f, uint64(i))
		dir := f.TempDir()
		if err := m.WriteHF(dir, safetensors.BF16, 1); err != nil {
			f.Fatal(err)
		}
		js, err := os.ReadFile(filepath.Join(dir, ConfigName))
		if err != nil {
			f.Fatal(err)
		}
		st, err := safetensors.Open(filepath.Join(dir, safetensors.SingleName))
		if err != nil {
			f.Fatal(err)
		}
		weights = append(weights, st)
		f.Add(js, uint8(len(weights)-1))
	}
	f.Add([]byte(`{"model_type": "gpt2", "n_layer": 1073741824, "n_embd": 64, "n_head": 4, "n_positions": 128, "vocab_size": 1000}`), uint8(0))
	f.Add([]byte(`{"model_type": "gpt_neo", "num_layers": 4, "hidden_size": 64, "num_heads": 4, "max_position_embeddings": 128, "vocab_size": 512, "window_size": 8, "attention_types": [[["global", "local"], 2], [["local"], 4]]}`), uint8(2))
	f.Fuzz(func(t *testing.T, js []byte, which uint8) {
		if len(js) > maxConfigSize {
			return
		}
		st := weights[int(which)%len(weights)]
		c, err := parseConfig(ConfigName, js)
		if err != nil {
			return
		}
		ck, err := importConfig(c, st)
		if err != nil {
			return
		}
		if _, err := model.Parse(ck.Meta); err != nil {
			t.Fatalf("imported metadata does not parse: %v", err)
		}
		var in, out int
		for _, s := range st.Tensors {
			in += s.NumElements()
		}
		for _, s := range ck.Tensors {
			out += dtype.NumElements(s.Shape)
		}
		if out > in {
			t.Fatalf("%d output elements from %d source elements", out, in)
		}
		checkData(t, ck)
	})
}

// checkData reads every tensor of ck and checks its size against its shape.
func checkData(t *testing.T, ck *format.Checkpoint) {
	t.Helper()
	for _, s := range ck.Tensors {
		b, err := s.Data()
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if n, err := s.DType.ByteSize(s.Shape); err != nil || int64(len(b)) != n {
			t.Fatalf("%s: %d bytes for %s %v (%v)", s.Name, len(b), s.DType, s.Shape, err)
		}
	}
}
