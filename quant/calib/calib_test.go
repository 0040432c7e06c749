package calib_test

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/internal/fixtures"
	"github.com/lmrun/lmrun/quant/calib"
)

func stories260K(t *testing.T) *format.Checkpoint {
	t.Helper()
	ck, err := convert.Import(fixtures.Path(t, "llama2c", "stories260K.bin"), convert.Options{TokenizerPath: fixtures.Path(t, "llama2c", "tok512.bin")})
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

func load(t *testing.T, ck *format.Checkpoint) *engine.Model {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.lmc")
	if err := ck.WriteFile(path, nil); err != nil {
		t.Fatal(err)
	}
	m, err := engine.Load(path, engine.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestCollect: the Hessians cover every q4_0 matrix, matrices sharing an input share
// one, and each is symmetric with N = sequences × length inputs.
func TestCollect(t *testing.T) {
	ck := stories260K(t)
	m := load(t, ck)
	want := map[string]bool{}
	q4, err := convert.WithDType(ck, dtype.Q4_0)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range q4.Tensors {
		if s.DType == dtype.Q4_0 {
			want[s.Name] = true
		}
	}
	hs, err := calib.Collect(t.Context(), m, want, calib.Options{Seqs: 2, Len: 40, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != len(want) {
		t.Fatalf("%d Hessians for %d q4_0 matrices", len(hs), len(want))
	}
	if hs["blk.0.attn_q.weight"] != hs["blk.0.attn_v.weight"] || hs["blk.0.attn_q.weight"] == hs["blk.0.attn_output.weight"] {
		t.Error("q/k/v should share a Hessian, attn_output have its own")
	}
	for name, h := range hs {
		if h.N != 2*40 {
			t.Errorf("%s: N = %d, want 80", name, h.N)
		}
		n := h.Cols
		for i := 0; i < n; i++ {
			if !(h.H[i*n+i] >= 0) {
				t.Fatalf("%s: H[%d][%d] = %g", name, i, i, h.H[i*n+i])
			}
			for j := 0; j < i; j++ {
				if h.H[i*n+j] != h.H[j*n+i] {
					t.Fatalf("%s: H not symmetric at %d,%d", name, i, j)
				}
			}
		}
	}
}

// TestGPTQPerplexity: stories260K quantized to q4_0 with GPTQ (default calibration: 32
// self-generated sequences of 512 tokens) stays within 5% of f32's perplexity on the
// TinyStories text, where per-block least-squares scales alone give +5.89%
// (engine.TestQuantizedPerplexity).
func TestGPTQPerplexity(t *testing.T) {
	if testing.Short() {
		t.Skip("calibrates on 16k tokens and evaluates 105k")
	}
	var f32ppl float64
	raw, err := os.ReadFile(fixtures.Path(t, "expected", "stories260K_ppl_tinystories_valid_a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(raw)) {
		if v, ok := strings.CutPrefix(f, "ppl="); ok {
			f32ppl, _ = strconv.ParseFloat(v, 64)
		}
	}
	if f32ppl == 0 {
		t.Fatalf("no ppl= in %q", raw)
	}
	ck := stories260K(t)
	start := time.Now()
	q4, err := calib.Quantize(t.Context(), ck, t.TempDir(), calib.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	m := load(t, q4)
	t.Logf("calibrated and quantized in %v", time.Since(start).Round(time.Millisecond))
	for _, name := range []string{"blk.0.attn_q.weight", "blk.0.ffn_up.weight", "output.weight"} {
		want := dtype.Q4_0
		if name == "output.weight" {
			want = dtype.Q8_0
		}
		if tn := m.File().Tensor(name); tn != nil && tn.DType != want {
			t.Errorf("%s stored as %s, want %s", name, tn.DType, want)
		}
	}
	text, err := os.ReadFile(fixtures.Path(t, "text", "tinystories_valid_a.txt"))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := m.Tokenizer().Encode(string(text), true, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Perplexity(t.Context(), ids, engine.PerplexityOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := math.Exp(r.NLL / float64(r.Tokens))
	t.Logf("q4_0 gptq: perplexity %.4f (%+.2f%% vs f32 %.4f)", p, 100*(p/f32ppl-1), f32ppl)
	if p/f32ppl-1 > 0.05 {
		t.Errorf("q4_0 gptq perplexity is %+.2f%% off f32 (target 5%%)", 100*(p/f32ppl-1))
	}
}
