package engine

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/kernels"
)

// TestMixedActivations: one product over q, k and v stored as q4_k, q8_0 and q6_k gives
// each matrix the activations of its type — q8_k super-blocks for the k-quants, q8_0
// blocks for q8_0, both quantized from the same input — so each output equals the
// reference's MatMulQ8 on those activations; with F32Activations, MatMul on the float32
// input.
func TestMixedActivations(t *testing.T) {
	p, err := synth.Lookup("tiny")
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.Config
	cfg.Dim, cfg.NLayers, cfg.NHeads, cfg.NKVHeads, cfg.HeadDim = 256, 1, 4, 2, 64
	cfg.RopeDim, cfg.FFNDim, cfg.VocabSize, cfg.AttnWindows = 64, 256, 260, []int{0}
	ck, err := synth.Build(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(8, 8))
	types := map[string]dtype.DType{"blk.0.attn_q.weight": dtype.Q4_K, "blk.0.attn_k.weight": dtype.Q8_0, "blk.0.attn_v.weight": dtype.Q6_K}
	for i, s := range ck.Tensors {
		dt, ok := types[s.Name]
		if !ok {
			continue
		}
		n := s.Shape[0] * s.Shape[1]
		var b []byte
		if dt == dtype.Q8_0 {
			v := make([]float32, n)
			for j := range v {
				v[j] = float32(r.NormFloat64() * 0.05)
			}
			b, _ = dtype.Quantize(dt, v, s.Shape[1])
		} else {
			_, bs := dt.Block()
			b = make([]byte, n/dtype.QKBlock*bs)
			for j := range b {
				b[j] = byte(r.IntN(256))
			}
			for o := 0; o < len(b); o += bs {
				at := 0
				if dt == dtype.Q6_K {
					at = 208
				}
				binary.LittleEndian.PutUint16(b[o+at:], 1<<10|uint16(r.IntN(1024)))
				if dt == dtype.Q4_K {
					binary.LittleEndian.PutUint16(b[o+2:], 1<<10|uint16(r.IntN(1024)))
				}
			}
		}
		ck.Tensors[i] = format.Bytes(s.Name, dt, s.Shape, b)
	}
	path := filepath.Join(t.TempDir(), "mixed.lmc")
	if err := ck.WriteFile(path, nil); err != nil {
		t.Fatal(err)
	}
	for _, f32Act := range []bool{false, true} {
		m, err := Load(path, Options{Threads: 2, F32Activations: f32Act})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		if (m.q8 == nil) != f32Act || !m.actTypes[dtype.Q8_0] || !m.actTypes[dtype.Q8_K] {
			t.Fatalf("q8 path %v, activation types %v", m.q8 != nil, m.actTypes)
		}
		s := m.NewSession(SessionOptions{Batch: 8})
		const T = 5
		x := make([]float32, T*cfg.Dim)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		l := &m.layers[0]
		ws := []*kernels.Mat{l.wq, l.wk, l.wv}
		dsts := make([][]float32, 3)
		ops := make([]mm, 3)
		for i, w := range ws {
			dsts[i] = make([]float32, T*w.Rows)
			ops[i] = mm{dsts[i], w.Rows, w, nil}
		}
		s.p.matmul(x, T, ops...)
		var ref kernels.Reference
		for i, w := range ws {
			want := make([]float32, T*w.Rows)
			if f32Act {
				ref.MatMul(want, w.Rows, x, T, w, nil, 0, w.Rows, nil)
			} else {
				adt := kernels.ActivationDType(w.DType)
				rb := dtype.RowBytes(adt, cfg.Dim)
				xq := make([]byte, T*rb)
				for t0 := 0; t0 < T; t0++ {
					kernels.QuantizeActivations(ref, w.DType, x[t0*cfg.Dim:(t0+1)*cfg.Dim], xq[t0*rb:(t0+1)*rb])
				}
				ref.MatMulQ8(want, w.Rows, xq, T, w, nil, 0, w.Rows, nil)
			}
			for j := range want {
				// The backend's MatMul on float32 activations may sum in another order.
				tol := 0.0
				if f32Act {
					tol = 1e-5 * (1 + math.Abs(float64(want[j])))
				}
				if math.Abs(float64(dsts[i][j]-want[j])) > tol || math.IsNaN(float64(dsts[i][j])) {
					t.Fatalf("f32 activations %v, %s (%s): [%d] = %v, reference %v", f32Act, m.names[w], w.DType, j, dsts[i][j], want[j])
				}
			}
		}
	}
}
