package convert

import (
	"slices"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/internal/fixtures"
	"github.com/lmrun/lmrun/tokenizer"
)

// TestImportTokenizers checks the tokenizer each import carries: --tokenizer files
// of every kind, a Hugging Face directory's own tokenizer.json, GGUF's keys.
func TestImportTokenizers(t *testing.T) {
	hello := func(t *testing.T, ckMeta map[string]any, kind string, want []int) {
		t.Helper()
		tok, err := tokenizer.FromMetadata(ckMeta)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := tok.Encode("Hello world", false, false)
		if err != nil || tok.Kind() != kind || !slices.Equal(ids, want) {
			t.Errorf("kind %s, Encode(Hello world) = %v, %v; want %s %v", tok.Kind(), ids, err, kind, want)
		}
	}
	// A Hugging Face directory with tokenizer.json: stored automatically.
	ck, err := Import(fixtures.Path(t, "hf", "fake_gpt2"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	hello(t, ck.Meta, "gpt2", []int{15496, 995})
	// --tokenizer replaces it, whatever its kind (here the same vocabulary from
	// encoder.json + vocab.bpe).
	ck, err = Import(fixtures.Path(t, "hf", "fake_gpt2"), Options{TokenizerPath: fixtures.Path(t, "gpt2", "vocab.bpe")})
	if err != nil {
		t.Fatal(err)
	}
	hello(t, ck.Meta, "gpt2", []int{15496, 995})
	// llama2.c checkpoints take any kind that fits their vocabulary.
	ck, err = Import(fixtures.Path(t, "llama2c", "stories260K.bin"), Options{TokenizerPath: fixtures.Path(t, "llama2c", "tok512.bin")})
	if err != nil {
		t.Fatal(err)
	}
	hello(t, ck.Meta, "llama2c", []int{346, 306, 414, 263, 304, 341}) // tok512_expected.json
	// A tokenizer with more tokens than the model is refused, naming the file.
	for _, tp := range []string{fixtures.Path(t, "gpt2", "encoder.json"), fixtures.Path(t, "llama2c", "tokenizer.model")} {
		_, err := Import(fixtures.Path(t, "llama2c", "stories260K.bin"), Options{TokenizerPath: tp})
		if err == nil || !strings.Contains(err.Error(), tp) {
			t.Errorf("%s for a 512-token model: %v", tp, err)
		}
	}
	// GGUF: the tokenizer.ggml.* keys are read as they are, or replaced by --tokenizer.
	g := fixtures.Path(t, "gguf", "llama-2-tiny-random.gguf")
	ck, err = Import(g, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ck.Meta["tokenizer.ggml.tokens"]; !ok {
		t.Fatal("GGUF import has no tokenizer.ggml.tokens")
	}
	hello(t, ck.Meta, "sentencepiece_bpe", []int{15043, 3186})
	ck, err = Import(g, Options{TokenizerPath: fixtures.Path(t, "llama2c", "tokenizer.model")})
	if err != nil {
		t.Fatal(err)
	}
	for k := range ck.Meta {
		if strings.HasPrefix(k, "tokenizer.ggml.") {
			t.Errorf("%s kept beside --tokenizer", k)
		}
	}
	hello(t, ck.Meta, "sentencepiece_bpe", []int{15043, 3186})
	// A directory without tokenizer files imports without a tokenizer.
	ck, err = Import(fixtures.Path(t, "expected", "gpt2_tiny_hf"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokenizer.FromMetadata(ck.Meta); err != tokenizer.ErrNoTokenizer {
		t.Errorf("gpt2_tiny_hf: %v", err)
	}
}
