package engine

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// TestHFFixturesAgainstFloat64 runs the other real-format fixtures (GPT-2 with a 50257
// vocabulary, GPT-2 without the transformer. prefix, stories260K) on token sequences the
// expected files do not cover, against the independent float64 reference.
func TestFixturesAgainstFloat64(t *testing.T) {
	cases := []struct{ name, src, tok string }{
		{"fake_gpt2", filepath.Join("hf", "fake_gpt2"), ""},
		{"tiny_gpt2", filepath.Join("hf", "tiny_gpt2"), ""},
		{"stories260K", filepath.Join("llama2c", "stories260K.bin"), ""},
		{"gpt2_tiny", filepath.Join("expected", "gpt2_tiny_hf"), ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ck, err := convert.Import(fixtures.Path(t, c.src), convert.Options{})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "m.lmc")
			if err := ck.WriteFile(path, nil); err != nil {
				t.Fatal(err)
			}
			m, err := Load(path, Options{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			checkAgainstRef64(t, m, 33, rand.New(rand.NewPCG(uint64(i), 77)), 8)
		})
	}
}
