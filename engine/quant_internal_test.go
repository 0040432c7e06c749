package engine

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/model"
)

// TestQuantizedWeights: a model whose matrices are stored as f16, bf16, q8_0 or q4_0 runs
// with exactly the maths of its dequantized weights — checked against the float64
// reference, which dequantizes every tensor itself.
func TestQuantizedWeights(t *testing.T) {
	// (The q8-activation path is tested on a trained model in TestQ8Activations.)
	base := model.Config{VocabSize: 97, Dim: 64, NLayers: 2, NHeads: 4, NKVHeads: 2, HeadDim: 16, FFNDim: 96,
		ContextLength: 32, Norm: model.RMSNorm, NormEps: 1e-5, Position: model.RoPE, RopeTheta: 10000, RopeDim: 16,
		Activation: model.SwiGLU, AttnWindows: []int{0, 0}, AttnScale: 0.25}
	gpt := base
	gpt.Norm, gpt.Position, gpt.Activation, gpt.NKVHeads = model.LayerNorm, model.Learned, model.GELUTanh, 4
	for _, cfg := range []model.Config{base, gpt} {
		for _, dt := range []dtype.DType{dtype.F16, dtype.BF16, dtype.Q8_0, dtype.Q4_0} {
			t.Run(fmt.Sprintf("%s/%s", cfg.Norm, dt), func(t *testing.T) {
				src, err := format.Open(randomCheckpoint(t, cfg, 4))
				if err != nil {
					t.Fatal(err)
				}
				defer src.Close()
				var ts []format.Source
				for _, tt := range src.Tensors {
					s := format.Source{Name: tt.Name, DType: tt.DType, Shape: tt.Shape, Data: func() ([]byte, error) { return tt.Data, nil }}
					if len(tt.Shape) == 2 {
						v, _ := tt.F32()
						q, err := dtype.Quantize(dt, v, tt.Shape[1])
						if err != nil {
							t.Fatal(err)
						}
						s.DType, s.Data = dt, func() ([]byte, error) { return q, nil }
					}
					ts = append(ts, s)
				}
				path := filepath.Join(t.TempDir(), "q.lmc")
				if err := format.WriteFile(path, src.Meta, ts, nil); err != nil {
					t.Fatal(err)
				}
				m, err := Load(path, Options{Threads: 2, F32Activations: true})
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if m.File().Tensor("blk.0.attn_q.weight").DType != dt {
					t.Fatal("weights were not stored quantized")
				}
				checkAgainstRef64(t, m, 20, rand.New(rand.NewPCG(uint64(dt), 1)), 7)
			})
		}
	}
}

// quantizeCheckpoint rewrites src with every matrix whose rows allow it stored as dt.
func quantizeCheckpoint(t *testing.T, src *format.File, dt dtype.DType) string {
	t.Helper()
	var ts []format.Source
	for _, tt := range src.Tensors {
		s := format.Source{Name: tt.Name, DType: tt.DType, Shape: tt.Shape, Data: func() ([]byte, error) { return tt.Data, nil }}
		if len(tt.Shape) == 2 && (tt.Shape[1]%dtype.QBlock == 0 || !blockQuantized(dt)) {
			v, _ := tt.F32()
			q, err := dtype.Quantize(dt, v, tt.Shape[1])
			if err != nil {
				t.Fatal(err)
			}
			s.DType, s.Data = dt, func() ([]byte, error) { return q, nil }
		}
		ts = append(ts, s)
	}
	path := filepath.Join(t.TempDir(), "q.lmc")
	if err := format.WriteFile(path, src.Meta, ts, nil); err != nil {
		t.Fatal(err)
	}
	return path
}
