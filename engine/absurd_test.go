package engine_test

import (
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/model"
)

// allocated runs f and returns the bytes it allocated and the time it took.
func allocated(f func()) (uint64, time.Duration) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, elapsed
}

// writeEdited writes the synthesized preset with key set to value in its metadata
// (deleted when value is nil), and the keys and values of more likewise, and returns the
// path.
func writeEdited(t *testing.T, preset, key string, value any, more ...any) string {
	t.Helper()
	p, err := synth.Lookup(preset)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := synth.Build(p.Config, 1)
	if err != nil {
		t.Fatal(err)
	}
	more = append([]any{key, value}, more...)
	for i := 0; i+1 < len(more); i += 2 {
		if k := more[i].(string); more[i+1] == nil {
			delete(ck.Meta, k)
		} else {
			ck.Meta[k] = more[i+1]
		}
	}
	path := filepath.Join(t.TempDir(), "m.lmc")
	if err := format.WriteFile(path, ck.Meta, ck.Tensors, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAbsurdMetadata: an lmc checkpoint whose model metadata is absurd — billions of
// layers, heads, positions or dimensions, zero, negative, of the wrong type, or just
// not what its tensors hold — fails to load with an error naming the key and its value,
// at once and without allocating anything sized by the absurd number.
func TestAbsurdMetadata(t *testing.T) {
	// tiny: Llama-style, dim 64, 2 layers, 4 heads (2 KV), head_dim 16, ffn 172, vocab 512.
	// tiny-gpt2: learned positions, context 256.
	cases := []struct {
		preset, key string
		value       any
		want        string
		more        []any // more keys and values to set
	}{
		{"tiny", model.KeyNLayers, int64(1 << 30), "n_layers 1073741824", nil},
		{"tiny", model.KeyNLayers, int64(1024), "lm.n_layers = 1024, but the file holds tensors for at most 2 layers", []any{model.KeyAttnWindows, nil}},
		{"tiny", model.KeyNLayers, int64(3), "lm.n_layers = 3, but the file holds tensors for at most 2 layers", []any{model.KeyAttnWindows, nil}},
		{"tiny", model.KeyNLayers, int64(3), "2 attention windows for 3 layers", nil},
		{"tiny", model.KeyNLayers, int64(-2), "n_layers -2", nil},
		{"tiny", model.KeyNLayers, int64(math.MinInt64), "lm.n_layers", nil},
		{"tiny", model.KeyNLayers, "two", "lm.n_layers", nil},
		{"tiny", model.KeyNLayers, 2.0, "lm.n_layers", nil},
		{"tiny", model.KeyNLayers, nil, "metadata lm.n_layers is missing", nil},
		{"tiny", model.KeyVocabSize, int64(1 << 30), "vocab_size 1073741824", nil},
		{"tiny", model.KeyVocabSize, int64(1 << 22), "tensor token_embd.weight has shape [512 64], the config needs [4194304 64]", nil},
		{"tiny", model.KeyVocabSize, int64(0), "vocab_size 0", nil},
		{"tiny", model.KeyDim, int64(1 << 30), "dim 1073741824", nil},
		{"tiny", model.KeyDim, int64(1 << 16), "token_embd.weight has shape [512 64], the config needs [512 65536]", nil},
		{"tiny", model.KeyNHeads, int64(1 << 30), "n_heads 1073741824", nil},
		{"tiny", model.KeyNKVHeads, int64(3), "n_kv_heads 3 must divide n_heads 4", nil},
		{"tiny", model.KeyHeadDim, int64(1 << 17), "head_dim 131072", nil},
		{"tiny", model.KeyHeadDim, int64(1 << 14), "blk.0.attn_q.weight has shape [64 64], the config needs [65536 64]", nil},
		{"tiny", model.KeyFFNDim, int64(1 << 30), "ffn_dim 1073741824", nil},
		{"tiny", model.KeyFFNDim, int64(1 << 19), "blk.0.ffn_gate.weight has shape [172 64], the config needs [524288 64]", nil},
		{"tiny", model.KeyContextLength, int64(1 << 30), "context_length 1073741824", nil},
		{"tiny", model.KeyContextLength, int64(-1), "context_length -1", nil},
		{"tiny", model.KeyAttnWindows, make([]int64, 1<<11), "lm.attn_windows has 2048 entries", nil},
		{"tiny", model.KeyAttnWindows, []int64{0, 1 << 40}, "lm.attn_windows[1] = 1099511627776", nil},
		{"tiny", model.KeyAttnWindows, []int64{0}, "1 attention windows for 2 layers", nil},
		{"tiny", model.KeyRopeTheta, math.NaN(), "rope_theta NaN", nil},
		{"tiny", model.KeyRopeDim, int64(1 << 20), "rope_dim 1048576", nil},
		{"tiny", model.KeyNormEps, 1e300, "norm_eps 1e+300", nil},
		{"tiny", model.KeyRopeStyle, "sideways", `rope_style "sideways"`, nil},
		{"tiny", model.KeyRopeFreqFactors, make([]float32, 1<<20), "rope_freq_factors has 1048576 factors, rope_dim 16 needs 8", nil},
		{"tiny", model.KeyRopeFreqFactors, []float32{1, 1, 1, 1, 1, 1, 1, float32(math.Inf(1))}, "rope_freq_factors[7] = +Inf", nil},
		{"tiny", model.KeyRopeLongFactors, []float32{1, 1, 1, 1, 1, 1, 1, 1}, "rope_long_factors without rope_original_context", nil},
		{"tiny", model.KeyRopeOrigContext, int64(1 << 40), "rope_original_context 1099511627776", []any{model.KeyRopeLongFactors, []float32{1, 1, 1, 1, 1, 1, 1, 1}}},
		{"tiny", model.KeyRopeAttnFactor, math.Inf(-1), "rope_attn_factor -Inf", nil},
		{"tiny", model.KeyPosition, "learned", "tensor position_embd.weight is missing", nil},
		{"tiny-gpt2", model.KeyContextLength, int64(1 << 21), "position_embd.weight has shape [256 64], the config needs [2097152 64]", nil},
		{"tiny-gpt2", model.KeyPositionOffset, int64(1 << 21), "position_embd.weight has shape [256 64], the config needs [2097408 64]", nil},
		{"tiny-gpt2", model.KeyPositionOffset, int64(1 << 30), "position_offset 1073741824", nil},
		{"tiny-gpt2", model.KeyEmbeddingDim, int64(1 << 16), "token_embd.weight has shape [512 64], the config needs [512 65536]", nil},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s/%s=%v", c.preset, c.key, c.value)
		t.Run(name[:min(len(name), 60)], func(t *testing.T) {
			path := writeEdited(t, c.preset, c.key, c.value, c.more...)
			var err error
			alloc, elapsed := allocated(func() {
				var m *engine.Model
				if m, err = engine.Load(path, engine.Options{Threads: 1}); err == nil {
					m.Close()
				}
			})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v, want one naming %s and saying %q", err, path, c.want)
			}
			if alloc > 16<<20 || elapsed > 5*time.Second {
				t.Errorf("loading allocated %d MB in %v", alloc>>20, elapsed)
			}
		})
	}
}

// TestLongContextCostsNothing: a RoPE model with the longest context lmrun accepts loads,
// and a session over it allocates only what the positions it holds need.
func TestLongContextCostsNothing(t *testing.T) {
	path := writeEdited(t, "tiny", model.KeyContextLength, int64(1<<21))
	var m *engine.Model
	var err error
	alloc, _ := allocated(func() {
		if m, err = engine.Load(path, engine.Options{Threads: 1}); err != nil {
			return
		}
		s := m.NewSession(engine.SessionOptions{})
		_, err = s.Forward([]int{1, 2, 3})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if alloc > 16<<20 {
		t.Errorf("loading and running 3 tokens allocated %d MB", alloc>>20)
	}
	if got := m.NewSession(engine.SessionOptions{Context: 2000000000}).Context(); got != 1<<21 {
		t.Errorf("a session asking for 2e9 positions holds %d, want the model's %d", got, 1<<21)
	}
}
